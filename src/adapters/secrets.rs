//! Secrets: resolving a plan's secret reference (environment, file, terminal prompt) into a value
//! that cannot be printed by accident, and the redactor that scrubs resolved values from any text.
//! Nothing here logs, stores or displays a secret's value.

use std::fmt;
use std::path::PathBuf;

use crate::plan::Secret;

/// A resolved secret. `Debug` prints `***`; there is no `Display`; `expose` is the only way in.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> SecretString {
        SecretString(value.into())
    }

    /// The value, for the one place that must hand it over (a child's stdin, a login packet).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        // Overwritten before the allocation is released, with volatile writes the optimiser may
        // not remove (a plain `fill(0)` on memory about to be freed is a dead store it may drop).
        // Copies made by earlier reallocations are out of reach; secrets are built once, at size.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Why a secret could not be resolved. Names the source, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {name} is not set (it should hold a secret the plan needs)")]
    EnvMissing { name: String },
    #[error("environment variable {name} does not hold valid Unicode text")]
    EnvNotUnicode { name: String },
    #[error("cannot read the secret file {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the secret from {source_name} is empty")]
    Empty { source_name: String },
    #[error("cannot prompt for {what}: no terminal is available ({source}); give the secret with {{env: NAME}} or {{file: PATH}} instead")]
    NoTerminal {
        what: String,
        source: std::io::Error,
    },
}

/// Resolves a secret reference; a prompt asks for "the password".
pub fn resolve(secret: &Secret) -> Result<SecretString, SecretError> {
    resolve_for(secret, "the password")
}

/// Resolves a secret reference; a prompt names `what` is asked for (e.g. "the SQL password for sa").
pub fn resolve_for(secret: &Secret, what: &str) -> Result<SecretString, SecretError> {
    let (value, source_name) = match secret {
        Secret::Env(name) => match std::env::var(name) {
            Ok(v) => (v, format!("environment variable {name}")),
            Err(std::env::VarError::NotPresent) => {
                return Err(SecretError::EnvMissing { name: name.clone() })
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(SecretError::EnvNotUnicode { name: name.clone() })
            }
        },
        Secret::File(path) => {
            let path = path.to_path_buf();
            let mut text = std::fs::read_to_string(&path).map_err(|source| SecretError::File {
                path: path.clone(),
                source,
            })?;
            strip_one_newline(&mut text);
            (text, format!("file {}", path.display()))
        }
        Secret::Prompt(_) => {
            let text = rpassword::prompt_password(format!("Enter {what}: ")).map_err(|source| {
                SecretError::NoTerminal {
                    what: what.to_string(),
                    source,
                }
            })?;
            (text, "the prompt".to_string())
        }
    };
    if value.is_empty() {
        return Err(SecretError::Empty { source_name });
    }
    tracing::debug!(source = %source_name, "secret resolved");
    Ok(SecretString(value))
}

/// Removes one trailing `\n` (or `\r\n`), as a file written by an editor or `echo` ends.
fn strip_one_newline(text: &mut String) {
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
}

/// Replaces every known secret value in a text with `***`. Cheap to clone.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Non-empty values, longest first so a secret containing another is replaced whole.
    secrets: std::sync::Arc<Vec<SecretString>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub fn new(secrets: Vec<SecretString>) -> Redactor {
        let mut secrets: Vec<SecretString> =
            secrets.into_iter().filter(|s| !s.is_empty()).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        secrets.dedup();
        Redactor {
            secrets: std::sync::Arc::new(secrets),
        }
    }

    /// A redactor that also knows `secret`.
    pub fn with(&self, secret: SecretString) -> Redactor {
        let mut all: Vec<SecretString> = self.secrets.as_ref().clone();
        all.push(secret);
        Redactor::new(all)
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.secrets.iter() {
            if out.contains(secret.expose()) {
                out = out.replace(secret.expose(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::AbsPath;

    #[test]
    fn a_secret_never_prints_its_value() {
        let s = SecretString::new("hunter2-canary");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2-canary");
    }

    #[test]
    fn every_known_secret_is_replaced_even_inside_a_longer_one() {
        let r = Redactor::new(vec![
            SecretString::new("abc"),
            SecretString::new("abcdef"),
            SecretString::new(""),
        ]);
        assert_eq!(r.redact("pw=abcdef and abc, x"), "pw=*** and ***, x");
        assert_eq!(r.redact("nothing here"), "nothing here");
        let r2 = r.with(SecretString::new("zz"));
        assert_eq!(r2.redact("zz abc"), "*** ***");
        assert_eq!(format!("{r2:?}"), "Redactor(3 secrets)");
    }

    #[test]
    fn a_secret_file_loses_exactly_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n\n").unwrap();
        let secret = Secret::File(AbsPath::parse(path.to_str().unwrap()).unwrap());
        assert_eq!(resolve(&secret).unwrap().expose(), "s3cret\n");
        std::fs::write(&path, "s3cret\r\n").unwrap();
        assert_eq!(resolve(&secret).unwrap().expose(), "s3cret");
    }

    #[test]
    fn a_missing_env_var_or_file_is_named_in_the_error() {
        let err = resolve(&Secret::Env("UPGRADE_TEST_SURELY_UNSET_VAR".into())).unwrap_err();
        assert!(
            err.to_string().contains("UPGRADE_TEST_SURELY_UNSET_VAR"),
            "{err}"
        );
        let err = resolve(&Secret::File(
            AbsPath::parse("/nonexistent/pw-file").unwrap(),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pw-file"), "{err}");
    }

    #[test]
    fn an_env_secret_is_read_from_the_environment() {
        // Unique name: tests run in parallel threads of one process.
        std::env::set_var("UPGRADE_TEST_SECRET_ENV_1", "from-env");
        let v = resolve(&Secret::Env("UPGRADE_TEST_SECRET_ENV_1".into())).unwrap();
        assert_eq!(v.expose(), "from-env");
        std::env::set_var("UPGRADE_TEST_SECRET_ENV_2", "");
        let err = resolve(&Secret::Env("UPGRADE_TEST_SECRET_ENV_2".into())).unwrap_err();
        assert!(matches!(err, SecretError::Empty { .. }), "{err}");
    }
}

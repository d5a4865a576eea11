//! Secrets: resolving a plan's secret reference (environment, file, terminal prompt) into a value
//! that cannot be printed by accident, and the redactor that masks resolved values in text from
//! tools and servers. Nothing here logs, stores or displays a secret's value.

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
    #[error("the secret from {source_name} has {length} character(s); upgrade needs at least {MIN_SECRET_CHARS}: output from tools is masked where it holds the secret as a whole word, and a shorter one would mask ordinary words too (where the *** fall would tell the secret)")]
    TooShort { source_name: String, length: usize },
    #[error("cannot prompt for {what}: no terminal is available ({source}); give the secret with {{env: NAME}} or {{file: PATH}} instead")]
    NoTerminal {
        what: String,
        source: std::io::Error,
    },
}

/// The shortest secret upgrade accepts. Text from tools is masked where it holds a secret as a
/// whole word (see `Redactor::redact`); a shorter secret would be likely to equal ordinary words
/// in that text, and masking them would garble it and show where the secret stands.
pub const MIN_SECRET_CHARS: usize = 6;

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
    let length = value.chars().count();
    if length < MIN_SECRET_CHARS {
        // The value is dropped (and zeroed) with the error; only its length is told.
        drop(SecretString(value));
        return Err(SecretError::TooShort {
            source_name,
            length,
        });
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

/// Masks known secrets in text from tools and servers. Cheap to clone.
///
/// It masks by what is known, never by fragments: the exact command-line arguments that carried
/// a secret (`Arg::Secret`, e.g. `SERVICEPASSWORD=...`), wherever a tool echoes one, and a bare
/// secret only where it stands as a whole word (between spaces, quotes, line ends, or after `=`
/// or `:` as in `/password:...`). A password `Upgrade` leaves `D:\Upgrade\miis.bak` as it is.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Non-empty values, longest first so a secret containing another is replaced whole.
    secrets: std::sync::Arc<Vec<SecretString>>,
    /// Whole command-line arguments that carried a secret, longest first.
    arguments: std::sync::Arc<Vec<SecretString>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Redactor({} secrets, {} arguments)",
            self.secrets.len(),
            self.arguments.len()
        )
    }
}

/// Non-empty values, longest first, without repeats.
fn longest_first(values: Vec<SecretString>) -> std::sync::Arc<Vec<SecretString>> {
    let mut values: Vec<SecretString> = values.into_iter().filter(|s| !s.is_empty()).collect();
    values.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
    values.dedup();
    std::sync::Arc::new(values)
}

/// Whether the character before a match lets it stand as a whole word.
fn opens_word(before: Option<char>) -> bool {
    before.is_none_or(|c| c.is_whitespace() || "\"'`=:,;([{<".contains(c))
}

/// Whether the text after a match lets it stand as a whole word (a full stop only when it ends
/// the sentence: `... was Upgrade.` but not `Upgrade.bak`).
fn closes_word(after: &str) -> bool {
    let mut chars = after.chars();
    match chars.next() {
        None => true,
        Some('.') => chars.next().is_none_or(char::is_whitespace),
        Some(c) => c.is_whitespace() || "\"'`,;)]}>".contains(c),
    }
}

/// `text` with each whole-word occurrence of `word` replaced by `***`.
fn mask_whole_word(text: &str, word: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    for (at, _) in text.match_indices(word) {
        let end = at + word.len();
        if at < done || !opens_word(text[..at].chars().next_back()) || !closes_word(&text[end..]) {
            continue;
        }
        out.push_str(&text[done..at]);
        out.push_str("***");
        done = end;
    }
    out.push_str(&text[done..]);
    out
}

impl Redactor {
    pub fn new(secrets: Vec<SecretString>) -> Redactor {
        Redactor {
            secrets: longest_first(secrets),
            arguments: std::sync::Arc::default(),
        }
    }

    /// A redactor that also knows `secret`.
    pub fn with(&self, secret: SecretString) -> Redactor {
        let mut all: Vec<SecretString> = self.secrets.as_ref().clone();
        all.push(secret);
        Redactor {
            secrets: longest_first(all),
            arguments: self.arguments.clone(),
        }
    }

    /// A redactor that also masks `argument`, a whole command-line argument that carried a
    /// secret, wherever a tool echoes it.
    pub fn with_argument(&self, argument: SecretString) -> Redactor {
        let mut all: Vec<SecretString> = self.arguments.as_ref().clone();
        all.push(argument);
        Redactor {
            secrets: self.secrets.clone(),
            arguments: longest_first(all),
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for argument in self.arguments.iter() {
            if out.contains(argument.expose()) {
                out = out.replace(argument.expose(), "***");
            }
        }
        for secret in self.secrets.iter() {
            if out.contains(secret.expose()) {
                out = mask_whole_word(&out, secret.expose());
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
        assert_eq!(format!("{r2:?}"), "Redactor(3 secrets, 0 arguments)");
    }

    #[test]
    fn a_password_that_is_also_a_folder_name_leaves_paths_alone() {
        let r = Redactor::new(vec![SecretString::new("Upgrade")]);
        assert_eq!(
            r.redact(r"backup at D:\Upgrade\miis.bak, copies in D:\Upgrade"),
            r"backup at D:\Upgrade\miis.bak, copies in D:\Upgrade"
        );
        assert_eq!(
            r.redact("UpgradeService and Upgrade.bak"),
            "UpgradeService and Upgrade.bak"
        );
    }

    #[test]
    fn a_secret_a_tool_echoes_as_a_word_or_a_value_is_masked() {
        let r = Redactor::new(vec![SecretString::new("Upgrade")]);
        for (echoed, masked) in [
            ("Upgrade", "***"),
            ("password: Upgrade\n", "password: ***\n"),
            ("/servicepassword:Upgrade /q", "/servicepassword:*** /q"),
            (
                "Property(S): SERVICEPASSWORD = Upgrade\r\n",
                "Property(S): SERVICEPASSWORD = ***\r\n",
            ),
            ("SERVICEPASSWORD=Upgrade", "SERVICEPASSWORD=***"),
            ("logon failed for 'Upgrade'.", "logon failed for '***'."),
            ("the password was Upgrade.", "the password was ***."),
        ] {
            assert_eq!(r.redact(echoed), masked, "{echoed:?}");
        }
    }

    #[test]
    fn an_argument_that_carried_a_secret_is_masked_whole_wherever_it_is_echoed() {
        let r = Redactor::new(vec![SecretString::new("Upgrade")])
            .with_argument(SecretString::new("/p:Upgrade/x"));
        assert_eq!(
            r.redact("Command line: setup /p:Upgrade/x /q (D:\\Upgrade)"),
            "Command line: setup *** /q (D:\\Upgrade)"
        );
    }

    #[test]
    fn a_secret_shorter_than_the_minimum_is_refused_saying_why_not_what() {
        std::env::set_var("UPGRADE_TEST_SECRET_ENV_SHORT", "pw123");
        let err = resolve(&Secret::Env("UPGRADE_TEST_SECRET_ENV_SHORT".into())).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, SecretError::TooShort { length: 5, .. }),
            "{text}"
        );
        assert!(text.contains("UPGRADE_TEST_SECRET_ENV_SHORT"), "{text}");
        assert!(text.contains("at least 6"), "{text}");
        assert!(!text.contains("pw123"), "{text}");
        std::env::set_var("UPGRADE_TEST_SECRET_ENV_SIX", "pw1234");
        assert!(resolve(&Secret::Env("UPGRADE_TEST_SECRET_ENV_SIX".into())).is_ok());
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

//! `install`: the plan's install of the new product and the answers to its installer.
//! Its spec, and what the plan language knows of it (`KindSpec`): the steps it names, the
//! secrets it holds, and its checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KindSpec, PathField, PathOn, Problems, SecretField, Where};
use crate::graph::Reference;
use crate::types::*;
use crate::validate::{
    check_exit_codes, check_remote_log, check_retry, check_timeout, TOOL_AT_ONCE,
};
use crate::values::*;
use crate::{graph, placeholders};
use std::collections::BTreeMap;

/// Install the new product and answer its installer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Install {
    /// The installer: a `.msi` (run through msiexec) or a setup `.exe`.
    pub installer: AbsPath,
    /// sha256 of the installer media; checked before running it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Hex>,
    /// The product that must be installed afterwards.
    pub detect: Detect,
    /// The installed product this install replaces, and the oldest version of it the new
    /// product's upgrade supports: while that product is installed at an older version, the step
    /// is refused (`!`) and nothing runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrades: Option<Upgrades>,
    /// What the installer asks, as typed answers.
    #[serde(default)]
    pub answers: Answers,
    /// How answers become installer properties for a known installer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<AnswerProfile>,
    /// Extra or overriding MSI properties; values may use `{answers.FIELD}` placeholders.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// MSI transforms (`TRANSFORMS=a.mst;b.mst`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<AbsPath>,
    /// For a setup `.exe`: the argument list, each item may use `{answers.FIELD}` placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Vec<String>>,
    /// Text written to the installer's standard input (placeholders allowed); the way to hand a
    /// secret to an installer that reads it there instead of from its command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Allow a secret on the installer's command line (msiexec takes properties only there).
    /// Without this, a secret placeholder in `properties`/`arguments` is an error.
    #[serde(default)]
    pub secrets_on_command_line: bool,
    /// Install over the existing database (`reuse_existing: true`) without a backup of it before.
    #[serde(default)]
    pub unprotected: bool,
    /// Exit codes that count as success (default 0, 1641, 3010).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_exit_codes: Option<Vec<i32>>,
    /// Verbose installer log. Default: in the state folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<AbsPath>,
    /// Retries while another installation is in progress (exit 1618).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// How long to wait for the installer (default `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// The old spelling of `timeout`, in whole seconds; still accepted, never with `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[deprecated = "read `wait_limit()`; `timeout` is the form"]
    pub timeout_secs: Option<u64>,
}

/// The product an install must leave behind.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Detect {
    pub product: ProductRef,
    /// Required `DisplayVersion` prefix, e.g. `3.` or `4.4.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The product an install replaces and the oldest version of it that can be upgraded.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Upgrades {
    /// The old product, by product code or display name.
    pub product: ProductRef,
    /// Its oldest supported `DisplayVersion`, compared number by number (e.g. `4.1.3419.0`, FIM
    /// 2010 R2 SP1, for MIM 2016).
    pub min_version: DottedVersion,
}

/// Known installers whose answers map to properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnswerProfile {
    /// MIM 2016 Synchronization Service MSI: STORESERVER, SQLINSTANCE, SQLDB, SERVICEACCOUNT,
    /// SERVICEPASSWORD, SERVICEDOMAIN, GROUP*, ACCEPT_EULA=1, FIREWALL_CONF=1, and
    /// SQLServerStore=RemoteMachine when the store's server is not this machine (anything but
    /// `(local)`, `.`, `localhost`, `127.0.0.1` or `::1`).
    Mim2016Sync,
}

/// The installer's questions, typed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_type: Option<SetupType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<Store>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Groups>,
    /// Key set to import when the server has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<KeyFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SetupType {
    Complete,
    Custom,
}

/// Where the existing sync database is.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Store {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub database: String,
    /// Answer "yes" to "use the existing database".
    pub reuse_existing: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccount {
    pub user: String,
    pub domain: String,
    pub password: Secret,
}

/// The five security groups.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Groups {
    pub admins: String,
    pub operators: String,
    pub joiners: String,
    pub browse: String,
    pub password_set: String,
}

/// A key file: the output of an `export_keys` step, or a path.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyFile {
    /// The id of an `export_keys` step.
    From(StepId),
    Path(AbsPath),
}

impl Install {
    /// The field that holds the service account's password.
    pub const SERVICE_PASSWORD: &'static str = "answers.service_account.password";
}

impl KindSpec for Install {
    fn references(&self) -> Vec<Reference<'_>> {
        match &self.answers.key_file {
            Some(KeyFile::From(id)) => vec![Reference {
                field: "install.answers.key_file.from",
                target: id,
                required_kind: "export_keys",
            }],
            Some(KeyFile::Path(_)) | None => Vec::new(),
        }
    }
    fn secrets(&self) -> Vec<SecretField<'_>> {
        self.answers
            .service_account
            .iter()
            .map(|a| SecretField {
                field: Self::SERVICE_PASSWORD,
                secret: &a.password,
            })
            .collect()
    }
    fn paths(&self) -> Vec<PathField<'_>> {
        let mut out = vec![PathField::new(
            "installer",
            &self.installer,
            PathOn::ServerOrShare,
        )];
        for (k, t) in self.transforms.iter().enumerate() {
            out.push(PathField::new(
                format!("transforms[{k}]"),
                t,
                PathOn::ServerOrShare,
            ));
        }
        if let Some(log) = &self.log {
            out.push(PathField::new("log", log, PathOn::Server));
        }
        if let Some(KeyFile::Path(key)) = &self.answers.key_file {
            out.push(PathField::new("answers.key_file.path", key, PathOn::Server));
        }
        out
    }
    fn validate(&self, w: &Where<'_>, p: &mut Problems) {
        check_install(self, w.at, p);
        check_remote_log(self.log.as_ref(), w, p);
        check_takeover(w.plan, w.index, self, w.at, p);
    }
}

/// An install that takes over the existing database (the in-place upgrade itself, or the new
/// product after an uninstall) must come after a backup of that database, unless waived.
pub(crate) fn check_takeover(
    plan: &Plan,
    index: usize,
    install: &Install,
    at: &str,
    p: &mut Problems,
) {
    let Some(store) = install.answers.store.as_ref().filter(|s| s.reuse_existing) else {
        return;
    };
    if install.unprotected {
        return;
    }
    let backs_up = |k: &StepKind| matches!(k, StepKind::BackupDatabase(b) if b.database.eq_ignore_ascii_case(&store.database));
    if graph::prerequisites(plan, index)
        .iter()
        .any(|&j| backs_up(&plan.steps[j].kind))
    {
        return;
    }
    let hint = match plan.steps.iter().find(|s| backs_up(&s.kind)) {
        Some(s) => format!(
            "; step `{}` backs it up, but the install does not come after it",
            s.id
        ),
        None => String::new(),
    };
    p.add(
        at,
        format!(
            "an install that reuses the existing database `{}` must come after a backup_database of it (list it in `after:`), or say `unprotected: true`{hint}",
            store.database
        ),
    );
}

#[derive(PartialEq)]
enum InstallerType {
    Msi,
    Exe,
}

pub(crate) fn check_install(install: &Install, at: &str, p: &mut Problems) {
    check_exit_codes(install.accept_exit_codes.as_deref(), at, p);
    check_retry(install.retry.as_ref(), at, p);
    check_timeout(install, at, TOOL_AT_ONCE, p);
    let lower = install.installer.as_str().to_ascii_lowercase();
    let kind = if lower.ends_with(".msi") {
        Some(InstallerType::Msi)
    } else if lower.ends_with(".exe") {
        Some(InstallerType::Exe)
    } else {
        p.add(
            format!("{at}.installer"),
            "the installer must be a .msi package or a setup .exe",
        );
        None
    };
    match kind {
        Some(InstallerType::Exe) => {
            let msi_only = [
                ("properties", !install.properties.is_empty()),
                ("transforms", !install.transforms.is_empty()),
                ("profile", install.profile.is_some()),
            ];
            for (field, used) in msi_only {
                if used {
                    p.add(
                        format!("{at}.{field}"),
                        format!("`{field}` applies only to a .msi installer; a setup .exe takes `arguments`"),
                    );
                }
            }
        }
        Some(InstallerType::Msi) if install.arguments.is_some() => p.add(
            format!("{at}.arguments"),
            "`arguments` is for a setup .exe; a .msi takes `properties`, `transforms` or a `profile`",
        ),
        _ => {}
    }
    if install.profile == Some(AnswerProfile::Mim2016Sync) {
        let a = &install.answers;
        let missing: Vec<&str> = [
            ("answers.store", a.store.is_none()),
            ("answers.service_account", a.service_account.is_none()),
            ("answers.groups", a.groups.is_none()),
        ]
        .into_iter()
        .filter(|(_, absent)| *absent)
        .map(|(name, _)| name)
        .collect();
        if !missing.is_empty() {
            p.add(
                format!("{at}.profile"),
                format!(
                    "profile `mim2016_sync` needs answers.store, answers.service_account and answers.groups; missing: {}",
                    missing.join(", ")
                ),
            );
        }
        if !install.secrets_on_command_line {
            p.add(
                format!("{at}.secrets_on_command_line"),
                "profile `mim2016_sync` passes SERVICEPASSWORD as an MSI property, and msiexec takes \
                 properties only on its command line; set `secrets_on_command_line: true` to accept that",
            );
        }
    }
    for (name, value) in &install.properties {
        let path = format!("{at}.properties.{name}");
        check_template(value, &path, true, install.secrets_on_command_line, p);
        if name.to_ascii_uppercase().contains("PASSWORD") && !is_placeholder_only(value) {
            p.add(path, LITERAL_SECRET);
        }
    }
    for (k, arg) in install.arguments.iter().flatten().enumerate() {
        let path = format!("{at}.arguments[{k}]");
        check_template(arg, &path, true, install.secrets_on_command_line, p);
        if literal_password_argument(arg) {
            p.add(path, LITERAL_SECRET);
        }
    }
    if let Some(stdin) = &install.stdin {
        check_template(stdin, &format!("{at}.stdin"), false, true, p);
    }
}

/// A value that is nothing but placeholders (or empty): `{answers.service_account.password}`.
fn is_placeholder_only(value: &str) -> bool {
    let mut rest = value.to_string();
    for occ in placeholders::find(value).iter().rev() {
        rest.replace_range(occ.start..occ.end, "");
    }
    rest.trim().is_empty()
}

/// `/servicepassword:Secret1` or `PASSWORD=Secret1`: a password switch with a literal value.
/// `*` (the tool prompts or reads stdin) and placeholders are fine.
fn literal_password_argument(arg: &str) -> bool {
    let lower = arg.to_ascii_lowercase();
    let Some(pos) = lower.find("password") else {
        return false;
    };
    let after = &arg[pos + "password".len()..];
    let Some(value) = after.strip_prefix([':', '=']) else {
        return false;
    };
    let value = value.trim_matches('"');
    !(value.is_empty() || value == "*" || is_placeholder_only(value))
}

fn check_template(
    text: &str,
    path: &str,
    on_command_line: bool,
    secrets_allowed: bool,
    p: &mut Problems,
) {
    for occ in placeholders::find(text) {
        match occ.known() {
            None => p.add(
                path,
                format!(
                    "unknown placeholder `{{{}}}`; known placeholders: {}",
                    occ.name,
                    placeholders::KNOWN
                        .iter()
                        .map(|k| format!("{{{}}}", k.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(known) if known.secret && on_command_line && !secrets_allowed => p.add(
                path,
                format!(
                    "`{{{}}}` is a secret and would appear on the installer's command line, where other \
                     users of the server can read it; give it through `stdin` if the installer reads it \
                     there, or set `secrets_on_command_line: true` if the installer takes it only on its \
                     command line (msiexec takes properties only there)",
                    occ.name
                ),
            ),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_switches_with_literal_values_are_recognised() {
        assert!(literal_password_argument("/servicepassword:Secret1"));
        assert!(!literal_password_argument("/servicepassword:*"));
        assert!(!literal_password_argument(
            "/servicepassword:{answers.service_account.password}"
        ));
        assert!(!literal_password_argument("/passwordset:MIISPasswordSet"));
    }
}

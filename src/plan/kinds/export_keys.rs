//! `export_keys`: the plan's export of the key set with the key tool (miiskmu).
//! Its spec, and what the plan language knows of it (`KindSpec`): the steps it names, the
//! secrets it holds, and its checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KindSpec, Problems, SecretField, Where};
use crate::graph::Reference;

use crate::validate::{check_timeout, TOOL_AT_ONCE};
use crate::values::*;

/// Export the encryption key set with `miiskmu /e FILE /u:ACCOUNT *`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportKeys {
    /// The key tool; default `tools.miiskmu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<AbsPath>,
    /// Key file to write. It is a secret: keep it off shared folders.
    pub to: AbsPath,
    /// The sync service account whose password protects the export.
    pub account: ServiceLogin,
    /// How long to wait for the tool (default `60s`: an export takes seconds, and a tool that
    /// waits at a prompt or a dialog box should fail fast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// The old spelling of `timeout`, in whole seconds; still accepted, never with `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[deprecated = "read `wait_limit()`; `timeout` is the form"]
    pub timeout_secs: Option<u64>,
    /// Pass the password as miiskmu's PASSWORD argument (the syntax Microsoft's own scripts use)
    /// instead of `*` and standard input. Whether `*` reads a redirected standard input on a real
    /// server is unconfirmed; this is the documented alternative, visible to anyone who can list
    /// the server's processes while the export runs.
    #[serde(default)]
    pub secrets_on_command_line: bool,
}

/// An account as the key tool names it: `[DOMAIN\]USER` and its password.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceLogin {
    /// `DOMAIN\user` or `user`.
    pub user: String,
    pub password: Secret,
}

impl ExportKeys {
    /// The field that holds the account's password.
    pub const PASSWORD: &'static str = "account.password";
}

impl KindSpec for ExportKeys {
    fn references(&self) -> Vec<Reference<'_>> {
        Vec::new()
    }
    fn secrets(&self) -> Vec<SecretField<'_>> {
        vec![SecretField {
            field: Self::PASSWORD,
            secret: &self.account.password,
        }]
    }
    fn validate(&self, w: &Where<'_>, p: &mut Problems) {
        check_timeout(self, w.at, TOOL_AT_ONCE, p);
    }
}

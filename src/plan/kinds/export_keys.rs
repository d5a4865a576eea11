//! `export_keys`: the plan's export of the key set with the key tool (miiskmu).
//! Its spec, and what the plan language knows of it (`KindSpec`): the steps it names, the
//! secrets it holds, and its checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KindSpec, PathField, PathOn, Problems, SecretField, Where};
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
    /// Key file to write, on the sync server (where the new product's installer imports it). It
    /// is a secret: keep it off shared folders.
    pub to: AbsPath,
    /// A copy of the key file on the machine `upgrade` runs on, fetched from the server after the
    /// export (readable by its owner only; its sha256 must equal the server's). Required with
    /// `server.connect: winrm`: the backup of the keys then lives off the server. A copy found
    /// missing or changed later is fetched again from the server's key file while that file is
    /// still the one exported; the keys are not exported again for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_to: Option<AbsPath>,
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
    fn paths(&self) -> Vec<PathField<'_>> {
        let mut out = vec![PathField::new("to", &self.to, PathOn::Server)];
        if let Some(tool) = &self.tool {
            out.push(PathField::new("tool", tool, PathOn::Server));
        }
        if let Some(copy) = &self.copy_to {
            out.push(PathField::new("copy_to", copy, PathOn::AdminHost));
        }
        out
    }
    fn validate(&self, w: &Where<'_>, p: &mut Problems) {
        check_timeout(self, w.at, TOOL_AT_ONCE, p);
        if self.copy_to.is_none() && !w.plan.server.connect.is_local() {
            p.add(
                format!("{}.copy_to", w.at),
                "with `server.connect: winrm` the key file is written on the sync server; add \
                 `copy_to: PATH`, a file on this admin host where a copy of it is kept off the \
                 server (e.g. `/srv/upgrade/miis-keys.bin` or `D:\\Upgrade\\miis-keys.bin`)",
            );
        }
        if self.copy_to.as_ref() == Some(&self.to) && w.plan.server.connect.is_local() {
            p.add(
                format!("{}.copy_to", w.at),
                "the copy must be another file than the key file `to`: here both are on this \
                 machine",
            );
        }
    }
}

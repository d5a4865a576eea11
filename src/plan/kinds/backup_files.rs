//! `backup_files`: the plan's copy of a folder (the rules extensions) with a manifest.
//! Its spec, and what the plan language knows of it (`KindSpec`): the steps it names, the
//! secrets it holds, and its checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KindSpec, PathField, PathOn, Problems, SecretField, Where};
use crate::graph::Reference;

use crate::values::*;

/// Copy a folder with a sha256 manifest.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupFiles {
    /// Folder to copy, e.g. the rules extensions folder: a folder on the sync server.
    pub from: AbsPath,
    /// Destination folder on the machine `upgrade` runs on (with `server.connect: winrm`, the
    /// admin host: the backup then lives off the server); a `SHA256SUMS` manifest is written into it.
    pub to: AbsPath,
}

impl KindSpec for BackupFiles {
    fn references(&self) -> Vec<Reference<'_>> {
        Vec::new()
    }
    fn secrets(&self) -> Vec<SecretField<'_>> {
        Vec::new()
    }
    fn paths(&self) -> Vec<PathField<'_>> {
        vec![
            PathField::new("from", &self.from, PathOn::Server),
            PathField::new("to", &self.to, PathOn::AdminHost),
        ]
    }
    fn validate(&self, _: &Where<'_>, _: &mut Problems) {}
}

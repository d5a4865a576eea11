//! `backup_files`: the plan's copy of a folder (the rules extensions) with a manifest.
//! Its spec, and what the plan language knows of it (`KindSpec`): the steps it names, the
//! secrets it holds, and its checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KindSpec, Problems, SecretField, Where};
use crate::graph::Reference;

use crate::values::*;

/// Copy a folder with a sha256 manifest.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupFiles {
    /// Folder to copy, e.g. the rules extensions folder.
    pub from: AbsPath,
    /// Destination folder; a `SHA256SUMS` manifest is written into it.
    pub to: AbsPath,
}

impl KindSpec for BackupFiles {
    fn references(&self) -> Vec<Reference<'_>> {
        Vec::new()
    }
    fn secrets(&self) -> Vec<SecretField<'_>> {
        Vec::new()
    }
    fn validate(&self, _: &Where<'_>, _: &mut Problems) {}
}

//! `backup_database`: the plan's backup of a database with SQL Server's own BACKUP DATABASE.
//! Its spec, and what the plan language knows of it (`KindSpec`): the steps it names, the
//! secrets it holds, and its checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KindSpec, PathField, PathOn, Problems, SecretField, Where};
use crate::graph::Reference;

use crate::values::*;

/// Back up a database with SQL Server's own BACKUP DATABASE, then verify the file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupDatabase {
    /// Database name, e.g. `MicrosoftIdentityIntegrationServer` or `FIMSynchronizationService`.
    pub database: String,
    /// Backup file, as a path on the SQL Server machine.
    pub to: AbsPath,
    /// Run RESTORE VERIFYONLY after the backup (default true).
    #[serde(default = "default_true")]
    pub verify: bool,
    /// A backup older than this does not count (e.g. `24h`, `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

fn default_true() -> bool {
    true
}

impl KindSpec for BackupDatabase {
    fn references(&self) -> Vec<Reference<'_>> {
        Vec::new()
    }
    fn secrets(&self) -> Vec<SecretField<'_>> {
        Vec::new()
    }
    fn paths(&self) -> Vec<PathField<'_>> {
        vec![PathField::new("to", &self.to, PathOn::SqlServer)]
    }
    fn validate(&self, _: &Where<'_>, _: &mut Problems) {}
}

//! What the plan language knows of each step kind, behind one trait, and the one registry of
//! kinds. `step_kinds!` lists every kind once, with its name (the YAML key, the name in output and
//! in the journal); the plan's `StepKind` enum, its names and its dispatch to `KindSpec` are
//! generated here from that list, and the executor generates its dispatch to the step
//! implementations from the same list (the executor's `steps::build`). Adding a kind is its spec type, its
//! `KindSpec` impl, its step implementation and one line in `step_kinds!`; a kind that does not say
//! which steps it names, which secrets it holds or on which machine each of its paths is does not
//! compile:
//!
//! ```compile_fail
//! use upgrade_plan::kinds::{KindSpec, Where, Problems, SecretField};
//! use upgrade_plan::graph::Reference;
//! struct Toy;
//! impl KindSpec for Toy {
//!     // `references`, `secrets` and `paths` are missing: error[E0046]
//!     fn validate(&self, _: &Where<'_>, _: &mut Problems) {}
//! }
//! ```
//!
//! ```
//! use upgrade_plan::kinds::{KindSpec, PathField, Where, Problems, SecretField};
//! use upgrade_plan::graph::Reference;
//! struct Toy;
//! impl KindSpec for Toy {
//!     fn references(&self) -> Vec<Reference<'_>> { Vec::new() }
//!     fn secrets(&self) -> Vec<SecretField<'_>> { Vec::new() }
//!     fn paths(&self) -> Vec<PathField<'_>> { Vec::new() }
//!     fn validate(&self, _: &Where<'_>, _: &mut Problems) {}
//! }
//! ```

use super::graph::Reference;
use super::types::Plan;
pub use super::validate::Problems;
use super::values::{AbsPath, Secret};

pub mod backup_database;
pub mod backup_files;
pub mod export_keys;
pub mod install;
pub mod service;
pub mod snapshot_connector_space;
pub mod uninstall;
pub mod verify;

/// The registry: every step kind, once, as `Variant(spec type) = "name"`. Invokes the macro named
/// by its argument with the list (the plan's enum below; the executor's dispatch).
#[macro_export]
macro_rules! step_kinds {
    ($then:ident) => {
        $then! {
            BackupDatabase($crate::BackupDatabase) = "backup_database",
            ExportKeys($crate::ExportKeys) = "export_keys",
            BackupFiles($crate::BackupFiles) = "backup_files",
            SnapshotConnectorSpace($crate::SnapshotConnectorSpace) = "snapshot_connector_space",
            Uninstall($crate::Uninstall) = "uninstall",
            Install($crate::Install) = "install",
            Verify($crate::Verify) = "verify",
            Service($crate::ServiceControl) = "service",
        }
    };
}

/// A secret a step kind holds, by its field path inside the kind (`account.password`). With the
/// step's id it names the one place the secret is asked for and looked up (`keys.account.password`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretField<'a> {
    pub field: &'static str,
    pub secret: &'a Secret,
}

/// Which machine a path in a step is on. With `server.connect: local` they are all this machine;
/// with `winrm`, `upgrade` runs on an admin host and the sync server is another (Windows) machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathOn {
    /// The sync server: a program it runs, a file one of its programs writes or reads (the key
    /// tool and its key file, the Extensions source, an installer's log, a key file to import).
    Server,
    /// The sync server, or a share it reads (installer media and transforms).
    ServerOrShare,
    /// The machine `upgrade` runs on (a backup's destination, the key file's copy).
    AdminHost,
    /// The SQL Server's machine (a database backup file): SQL Server reads and writes it.
    SqlServer,
}

/// A path a step kind names, by its field path inside the kind (`to`, `transforms[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathField<'a> {
    pub field: String,
    pub path: &'a AbsPath,
    pub on: PathOn,
}

impl<'a> PathField<'a> {
    pub fn new(field: impl Into<String>, path: &'a AbsPath, on: PathOn) -> Self {
        PathField {
            field: field.into(),
            path,
            on,
        }
    }
}

/// Where a step sits, for checks that look at the rest of the plan.
pub struct Where<'a> {
    pub plan: &'a Plan,
    /// The step's index in `plan.steps`.
    pub index: usize,
    /// Field path of the kind's settings, e.g. `steps[3].uninstall`.
    pub at: &'a str,
}

/// What the plan language knows of one kind. Every method is required: a kind says which steps it
/// names and which secrets it holds even when the answer is none.
pub trait KindSpec {
    /// The steps whose outputs this kind reads (and so must come after), with the kind each must be.
    fn references(&self) -> Vec<Reference<'_>>;
    /// The secrets this kind holds.
    fn secrets(&self) -> Vec<SecretField<'_>>;
    /// Every path this kind names, with the machine it is on (validation holds a remote plan's
    /// server paths to Windows paths).
    fn paths(&self) -> Vec<PathField<'_>>;
    /// Checks serde cannot express, reported by field path under `at.at`.
    fn validate(&self, at: &Where<'_>, p: &mut Problems);
}

/// Generates the plan's `StepKind` from the registry: the enum (the serde tag is the name), and
/// `name`, `NAMES` and the `KindSpec` dispatch, exhaustive by construction.
macro_rules! define_step_kind {
    ($($variant:ident($spec:path) = $name:literal),* $(,)?) => {
        /// Every kind of step. The serde tag is the kind's name everywhere (YAML key, output,
        /// journal); the list is `step_kinds!`.
        // A plan holds a handful of steps, built once; boxing `Install` would buy nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub enum StepKind {
            $(#[serde(rename = $name)] $variant($spec),)*
        }

        impl StepKind {
            /// Every kind's name, in registry order.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The kind's name as the plan spells it: `backup_database`, `uninstall`, ...
            pub fn name(&self) -> &'static str {
                match self {
                    $(StepKind::$variant(_) => $name,)*
                }
            }

            /// This kind's settings, as what the plan language knows of every kind.
            pub fn spec(&self) -> &dyn KindSpec {
                match self {
                    $(StepKind::$variant(s) => s,)*
                }
            }
        }
    };
}

step_kinds!(define_step_kind);

#[cfg(test)]
mod tests {
    use super::*;

    /// The name each kind answers to is the serde tag the plan is read with.
    #[test]
    fn every_kind_is_read_by_its_registry_name() {
        for name in StepKind::NAMES {
            let yaml = format!("{name}: {{}}");
            let err = serde_yaml::from_str::<StepKind>(&yaml)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                !err.contains("unknown variant"),
                "`{name}` is not a variant: {err}"
            );
        }
        let names: Vec<&str> = crate::node_de::enum_variants::<StepKind>().to_vec();
        assert_eq!(names, StepKind::NAMES);
    }
}

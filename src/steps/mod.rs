//! Step kinds, one file each, all behind one trait (observe / diff / apply).
//! `build` is the one place that maps a plan's step kind to its implementation; steps reach the
//! world only through `crate::adapters`, handed to them in a `StepContext`.

pub mod backup_database;
pub mod backup_files;
pub mod context;
pub mod export_keys;
pub mod install;
pub mod installer;
pub mod kind;
pub mod progress;
pub mod record;
pub mod service;
pub mod snapshot_connector_space;
pub mod sqlrow;
pub mod uninstall;
pub mod verify;

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use kind::{Change, Finished, Kind, Planned};

use crate::plan::{StepKind, StepSpec};

pub use context::{StepContext, World};

/// What a step found on the server: typed for the step that made it, and the sha256 of it written
/// as JSON (saved plans compare it). The JSON itself is never held: it streams into the hash, so a
/// folder of 50,000 files is not kept twice (issue 11).
#[derive(Clone)]
pub struct Observation {
    typed: Option<Arc<dyn Any + Send + Sync>>,
    fingerprint: [u8; 32],
}

impl Observation {
    /// A step's typed observation, fingerprinted. An observation that cannot be written as JSON
    /// (a path that is not UTF-8) is an error: saved plans fingerprint it.
    pub fn typed<T: Serialize + Send + Sync + 'static>(typed: T) -> Result<Self, StepError> {
        Ok(Observation {
            fingerprint: fingerprint(&typed)?,
            typed: Some(Arc::new(typed)),
        })
    }

    /// What the engine itself observed of a step (a sealed step's recheck): data only.
    pub fn data(data: serde_json::Value) -> Self {
        Observation {
            // A JSON value always writes as JSON.
            fingerprint: fingerprint(&data).unwrap_or_default(),
            typed: None,
        }
    }

    /// The typed observation, when it is of type `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.typed.as_ref().and_then(|t| t.downcast_ref::<T>())
    }

    /// The sha256 (hex) of what was observed, written as compact JSON; of `null` for `None`
    /// (a step that could not be observed).
    pub fn fingerprint_of(observation: Option<&Observation>) -> String {
        match observation {
            Some(o) => hex::encode(o.fingerprint),
            None => hex::encode(Sha256::digest(b"null")),
        }
    }
}

/// The sha256 of `value` written as compact JSON (`serde_json::to_vec`'s bytes), fed to the hash
/// piece by piece as serde_json writes them.
fn fingerprint<T: Serialize>(value: &T) -> Result<[u8; 32], StepError> {
    let mut hash = Sha256::new();
    serde_json::to_writer(&mut hash, value).map_err(|e| {
        StepError::Internal(format!("what was observed cannot be written down: {e}"))
    })?;
    Ok(hash.finalize().into())
}

impl fmt::Debug for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Observation(sha256 {})", hex::encode(self.fingerprint))
    }
}

/// One primitive operation a step would perform, shown by `upgrade plan` and carried out by apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    /// A SQL statement (only read-only ones run during `plan`).
    Sql { statement: String },
    /// A child process, its command line with secrets shown as `***`.
    Run { command: String },
    /// Files copied from one folder to another.
    Copy {
        from: String,
        to: String,
        files: u64,
        bytes: u64,
    },
    /// A file written (a manifest, a renamed artifact).
    Write { path: String },
    /// A check that verify performs.
    Check { what: String },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Sql { statement } => write!(f, "sql: {statement}"),
            Op::Run { command } => write!(f, "run: {command}"),
            Op::Copy {
                from,
                to,
                files,
                bytes,
            } => {
                write!(f, "copy: {files} file(s), {bytes} bytes, {from} -> {to}")
            }
            Op::Write { path } => write!(f, "write: {path}"),
            Op::Check { what } => write!(f, "check: {what}"),
        }
    }
}

/// The comparison of wanted and observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Diff {
    /// `=`: nothing to do; the evidence says why. `details` is what the journal records when the
    /// engine adopts a result it did not produce (a backup taken by hand), for later rechecks.
    Done {
        evidence: String,
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        details: serde_json::Value,
    },
    /// `+`: will be done, with the operations it takes; `change` is what apply carries out.
    Change {
        reason: String,
        ops: Vec<Op>,
        #[serde(skip)]
        change: Change,
    },
    /// `?`: checks that run at apply (verify steps).
    Check {
        reason: String,
        ops: Vec<Op>,
        #[serde(skip)]
        change: Change,
    },
    /// `!`: cannot converge, and why.
    Blocked { why: String },
}

impl Diff {
    pub fn is_pending(&self) -> bool {
        !matches!(self, Diff::Done { .. })
    }
}

/// What a finished step leaves in the journal: a line for people and data for the next run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub summary: String,
    #[serde(default)]
    pub details: serde_json::Value,
    /// Windows Installer asked for a reboot (3010 / 1641); reported, never acted on.
    #[serde(default)]
    pub reboot_required: bool,
    /// The installer started a restart itself (1641): the run stops after this step.
    #[serde(default)]
    pub restart_started: bool,
}

/// Why a step failed; carries what a user needs to act.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("SQL Server: {0}")]
    Sql(#[from] crate::adapters::sql::SqlError),
    #[error("{0}")]
    Process(#[from] crate::adapters::process::ProcessError),
    #[error("{0}")]
    Fs(#[from] crate::adapters::fs::FsError),
    #[error("{0}")]
    Products(#[from] crate::adapters::products::ProductError),
    #[error("{0}")]
    Services(#[from] crate::adapters::services::ServiceError),
    /// A tool ran and reported failure.
    #[error("{tool} exited with {exit_code}: {message}{}", log_tail.as_deref().map(|t| format!("\n--- tail of {} ---\n{t}", "log")).unwrap_or_default())]
    Tool {
        tool: String,
        exit_code: i32,
        message: String,
        log_tail: Option<String>,
    },
    /// The step ran but the world is not as it should be afterwards, or a check failed.
    #[error("{0}")]
    Failed(String),
    /// A prerequisite is not in place; the step refuses to run.
    #[error("refusing to run: {0}")]
    Refused(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A step as the engine holds it (`dyn Step`): every kind through `kind::Typed`.
#[async_trait]
pub trait Step: Send + Sync {
    /// Reads the live state. Must change nothing anywhere: `upgrade plan` relies on it.
    async fn observe(&self, cx: &StepContext<'_>) -> Result<Observation, StepError>;

    /// Compares the plan with what `observe` found (and with this step's journal record).
    fn diff(&self, observed: &Observation, cx: &StepContext<'_>) -> Diff;

    /// Carries out the change a `diff` of this step planned, and returns the evidence to record.
    async fn apply(&self, change: &Change, cx: &StepContext<'_>) -> Result<Evidence, StepError>;

    /// See `Kind::recheck`.
    async fn recheck(&self, cx: &StepContext<'_>) -> Result<String, StepError>;

    /// See `Kind::recheck_before_destruction`. A failure makes the engine observe the step again
    /// and redo it when it can, before the destruction.
    async fn recheck_before_destruction(&self, cx: &StepContext<'_>) -> Result<String, StepError>;

    /// See `Kind::again`.
    fn again(&self) -> Option<Change>;

    /// What the engine must know of this kind to order, gate and seal it; never its name.
    fn role(&self) -> Role;
}

/// What a step kind is to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Makes or checks something that protects (a backup, a copy) and can be redone any time
    /// before a destructive step.
    Normal,
    /// Records the old server as it was before the destructive steps that depend on it (a
    /// connector-space snapshot, the key set's export). Once the live server shows such a step
    /// done, it is never carried out for the first time: its result would describe the new server.
    RecordsOldServer,
    /// Destroys or takes over something (uninstall; an install on the existing database): runs
    /// only after every prerequisite passes `recheck_before_destruction`, and seals them.
    Destructive,
    /// Checks that run at apply (verify): pending again while anything else is.
    Check,
}

/// Which step implementation carries out a plan kind: one line beside each implementation.
pub trait CarriedOutBy {
    type Step: Kind<Spec = Self>;
}

/// The executor's dispatch, generated from the plan's registry of kinds (`step_kinds!`): a kind
/// in the registry without an implementation does not compile.
macro_rules! define_build {
    ($($variant:ident($spec:path) = $name:literal),* $(,)?) => {
        /// The step that carries out a plan step.
        pub fn build(spec: &StepSpec) -> Box<dyn Step> {
            match &spec.kind {
                $(StepKind::$variant(s) => Box::new(kind::Typed(
                    <<$spec as CarriedOutBy>::Step as Kind>::new(spec.id.clone(), s.clone()),
                )),)*
            }
        }
    };
}

crate::plan::step_kinds!(define_build);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Seen {
        present: bool,
        files: std::collections::BTreeMap<String, u64>,
    }

    fn seen(files: &[(&str, u64)]) -> Seen {
        Seen {
            present: true,
            files: files.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn an_observation_is_fingerprinted_as_its_json_without_keeping_the_json() {
        let found = seen(&[("b.dll", 2), ("a.dll", 1)]);
        let json = serde_json::to_vec(&found).unwrap();
        assert_eq!(json, br#"{"present":true,"files":{"a.dll":1,"b.dll":2}}"#);
        let obs = Observation::typed(found).unwrap();
        assert_eq!(
            Observation::fingerprint_of(Some(&obs)),
            hex::encode(Sha256::digest(&json))
        );
        // The step still gets its own type back.
        assert_eq!(obs.get::<Seen>().map(|s| s.files.len()), Some(2));
        // Any change of what was seen changes the fingerprint; nothing seen is `null`'s.
        let other = Observation::typed(seen(&[("b.dll", 2), ("a.dll", 3)])).unwrap();
        assert_ne!(
            Observation::fingerprint_of(Some(&other)),
            Observation::fingerprint_of(Some(&obs))
        );
        assert_eq!(
            Observation::fingerprint_of(None),
            hex::encode(Sha256::digest(b"null"))
        );
    }

    #[test]
    fn an_observation_that_cannot_be_written_as_json_is_an_error() {
        let mut by_path = std::collections::BTreeMap::new();
        by_path.insert(vec![1u8], 1u64); // a map key JSON cannot write
        let err = Observation::typed(by_path).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("cannot be written down")),
            "{err:?}"
        );
    }
}

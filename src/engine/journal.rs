//! The journal: per plan, what each step did and the evidence it left, written atomically
//! (temp file, fsync, rename) after every step. It holds hashes, ids and times, never secrets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::adapters::fs as afs;
use crate::steps::Evidence;

pub const JOURNAL_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read the journal {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the journal {path} is not a journal this version understands: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the journal {path} belongs to the plan `{found}`, not `{expected}`; give this plan its own state folder or --state")]
    OtherPlan {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("cannot write the journal {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// Outcome of a step's last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Done,
    Failed,
}

/// One step's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub kind: String,
    pub status: StepStatus,
    pub at: DateTime<Utc>,
    /// Evidence of a done step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// For a failed step: what went wrong (already redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// sha256 of the plan file that produced this record.
    pub plan_sha256: String,
}

/// One `apply` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub started: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<DateTime<Utc>>,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub plan: String,
    #[serde(default)]
    pub steps: BTreeMap<String, StepRecord>,
    #[serde(default)]
    pub runs: Vec<RunRecord>,
}

impl Journal {
    pub fn new(plan_name: &str) -> Self {
        Journal {
            version: JOURNAL_VERSION,
            plan: plan_name.to_string(),
            steps: BTreeMap::new(),
            runs: Vec::new(),
        }
    }

    /// Reads the journal, or an empty one when none exists yet.
    pub fn load(path: &Path, plan_name: &str) -> Result<Self, JournalError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let journal: Journal =
                    serde_json::from_slice(&bytes).map_err(|source| JournalError::Parse {
                        path: path.to_path_buf(),
                        source,
                    })?;
                if journal.plan != plan_name {
                    return Err(JournalError::OtherPlan {
                        path: path.to_path_buf(),
                        found: journal.plan,
                        expected: plan_name.to_string(),
                    });
                }
                Ok(journal)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Journal::new(plan_name)),
            Err(source) => Err(JournalError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the whole journal atomically.
    pub fn save(&self, path: &Path) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| JournalError::Write {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        afs::write_atomic(path, &bytes).map_err(|e| JournalError::Write {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    pub fn record(&self, id: &str) -> Option<&StepRecord> {
        self.steps.get(id)
    }

    /// The evidence of a step recorded as done.
    pub fn done(&self, id: &str) -> Option<&Evidence> {
        self.steps
            .get(id)
            .filter(|r| r.status == StepStatus::Done)
            .and_then(|r| r.evidence.as_ref())
    }
}

/// Where a plan's journal and lock live.
pub fn journal_path(state_dir: &Path, plan_name: &str) -> PathBuf {
    state_dir.join(format!("{}.journal.json", file_safe(plan_name)))
}

pub fn lock_path(state_dir: &Path, plan_name: &str) -> PathBuf {
    state_dir.join(format!("{}.lock", file_safe(plan_name)))
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_survives_a_round_trip_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_path(dir.path(), "iifp to miis");
        assert!(path.ends_with("iifp_to_miis.journal.json"));
        let mut j = Journal::load(&path, "iifp to miis").unwrap();
        assert!(j.steps.is_empty());
        j.steps.insert(
            "keys".into(),
            StepRecord {
                kind: "export_keys".into(),
                status: StepStatus::Done,
                at: Utc::now(),
                evidence: Some(Evidence {
                    summary: "sha256 ab".into(),
                    details: serde_json::json!({"sha256":"ab"}),
                    reboot_required: false,
                    restart_started: false,
                }),
                error: None,
                plan_sha256: "00".into(),
            },
        );
        j.save(&path).unwrap();
        let back = Journal::load(&path, "iifp to miis").unwrap();
        assert_eq!(back, j);
        assert_eq!(back.done("keys").unwrap().summary, "sha256 ab");
        assert!(back.done("other").is_none());
    }

    #[test]
    fn another_plans_journal_is_refused_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_path(dir.path(), "a b");
        Journal::new("a b").save(&path).unwrap();
        let err = Journal::load(&path, "a_b").unwrap_err();
        assert!(matches!(err, JournalError::OtherPlan { .. }), "{err}");
    }

    #[test]
    fn a_corrupt_journal_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.journal.json");
        std::fs::write(&path, b"{ half").unwrap();
        assert!(matches!(
            Journal::load(&path, "p"),
            Err(JournalError::Parse { .. })
        ));
    }
}

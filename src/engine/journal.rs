//! The journal file: per plan, what each step did and the evidence it left (the records are in
//! `steps::record`), read and written atomically (temp file, fsync, rename) after every step. It
//! holds hashes, ids and times, never secrets.

use std::path::{Path, PathBuf};

use crate::adapters::fs as afs;
use crate::plan::{graph, Plan};
pub use crate::steps::record::{Journal, RunRecord, StepRecord, StepStatus, JOURNAL_VERSION};
use crate::steps::Role;

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

impl Journal {
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
}

/// A plan's journal file and state folder: `state` (a journal file given with `--state`), else
/// `NAME.journal.json` in the plan's `state.dir`, else in `.upgrade/` beside the plan file.
pub fn locate(plan: &Plan, plan_file: &Path, state: Option<&Path>) -> (PathBuf, PathBuf) {
    match state {
        Some(file) => (
            file.to_path_buf(),
            file.parent().map(Path::to_path_buf).unwrap_or_default(),
        ),
        None => {
            let dir = plan
                .state
                .as_ref()
                .map(|s| s.dir.to_path_buf())
                .unwrap_or_else(|| {
                    let plan_dir = plan_file.parent().map(Path::to_path_buf);
                    plan_dir.unwrap_or_default().join(".upgrade")
                });
            (journal_path(&dir, &plan.name), dir)
        }
    }
}

/// The destructive step, recorded as begun or done, that step `i` was a prerequisite of (`roles`
/// is each step's role, in plan order). Such a step is sealed: it describes the server before the
/// destruction (the old Extensions folder, the old key set), so it is never compared with the
/// live server again, only rechecked.
pub fn sealed_by(plan: &Plan, roles: &[Role], journal: &Journal, i: usize) -> Option<usize> {
    (0..plan.steps.len()).find(|&d| {
        roles.get(d) == Some(&Role::Destructive)
            && journal
                .record(plan.steps[d].id.as_str())
                .is_some_and(|r| r.began || r.status == StepStatus::Done)
            && graph::prerequisites(plan, d).contains(&i)
    })
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
    use crate::steps::Evidence;
    use chrono::Utc;

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
                began: false,
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

//! Saved plans (`upgrade plan --out FILE`): the plan's text, its hash, and a fingerprint of what was
//! observed per step, so `upgrade apply FILE` applies exactly that plan and refuses it, naming the
//! steps, when the server changed since. It holds references to secrets, never their values.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::render::PlannedStep;

/// The marker that tells a saved plan from a plan file. Format 2: a step's fingerprint is the
/// sha256 of its observation written as JSON with the fields in the order the step declares them
/// (format 1 hashed them sorted by name, and held the whole observation as a JSON tree to do so).
pub const FORMAT: &str = "upgrade-saved-plan/2";

/// What every format's marker starts with.
const FORMAT_FAMILY: &str = "upgrade-saved-plan/";

#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    #[error("cannot read the saved plan {path}: {message}")]
    Read { path: String, message: String },
    #[error("the saved plan was made against the journal {saved}, not {given}; apply it without --state, or plan again")]
    OtherJournal { saved: String, given: String },
    #[error("cannot write the saved plan {path}: {message}")]
    Write { path: String, message: String },
    #[error("the saved plan {path} is of format `{format}`, which this upgrade does not apply (it writes `{FORMAT}`: its fingerprints of the server differ); run `upgrade plan --out` again")]
    OtherFormat { path: String, format: String },
}

/// One step as it was planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedStep {
    pub id: String,
    pub action: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    /// Where the plan file was, as an absolute path (journal and logs live relative to it).
    pub plan_file: String,
    /// The journal the plan was made against, absolute: apply uses the same journal and lock.
    pub journal: String,
    pub plan_sha256: String,
    /// The plan file's text, applied as saved even if the file changed since.
    pub plan_source: String,
    pub steps: Vec<SavedStep>,
}

impl SavedPlan {
    pub fn new(
        plan_file: &Path,
        journal: &Path,
        plan_sha256: &str,
        plan_source: &str,
        steps: &[PlannedStep],
    ) -> SavedPlan {
        SavedPlan {
            format: FORMAT.to_string(),
            plan_file: absolute(plan_file).display().to_string(),
            journal: absolute(journal).display().to_string(),
            plan_sha256: plan_sha256.to_string(),
            plan_source: plan_source.to_string(),
            steps: steps
                .iter()
                .map(|s| SavedStep {
                    id: s.id.clone(),
                    action: s.action.to_string(),
                    fingerprint: s.fingerprint.clone(),
                })
                .collect(),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), SavedError> {
        let err = |message: String| SavedError::Write {
            path: path.display().to_string(),
            message,
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| err(e.to_string()))?;
        crate::adapters::fs::write_atomic(path, &bytes).map_err(|e| err(e.to_string()))
    }

    /// Reads `path` if it is a saved plan; `Ok(None)` for anything else (a plan file).
    pub fn read_if_saved(path: &Path) -> Result<Option<SavedPlan>, SavedError> {
        let bytes = std::fs::read(path).map_err(|e| SavedError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return Ok(None);
        };
        match value.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            Some(other) if other.starts_with(FORMAT_FAMILY) => {
                return Err(SavedError::OtherFormat {
                    path: path.display().to_string(),
                    format: other.to_string(),
                })
            }
            _ => return Ok(None),
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| SavedError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            })
    }

    /// The steps whose observation or action differ now, with what changed.
    pub fn drift(&self, now: &[PlannedStep]) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.steps {
            match now.iter().find(|n| n.id == s.id) {
                None => out.push(format!("{}: no longer in the plan", s.id)),
                Some(n) if n.action.name() != s.action => out.push(format!(
                    "{}: was `{}`, now `{}` ({})",
                    s.id, s.action, n.action, n.reason
                )),
                Some(n) if n.fingerprint != s.fingerprint => out.push(format!(
                    "{}: the server changed since the plan was saved ({})",
                    s.id, n.reason
                )),
                Some(_) => {}
            }
        }
        out
    }
}

/// `path` made absolute against the current folder (without resolving links).
pub fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_saved_in_another_format_is_refused_with_what_to_do_not_read_as_a_plan_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("saved.json");
        std::fs::write(
            &path,
            r#"{"format":"upgrade-saved-plan/1","plan_file":"/p.yaml","journal":"/j.json","plan_sha256":"00","plan_source":"","steps":[]}"#,
        )
        .unwrap();
        let err = SavedPlan::read_if_saved(&path).unwrap_err().to_string();
        assert!(err.contains("`upgrade-saved-plan/1`"), "{err}");
        assert!(err.contains("run `upgrade plan --out` again"), "{err}");
        // A plan file (YAML, or JSON of something else) is still not a saved plan.
        std::fs::write(&path, "version: 1\n").unwrap();
        assert!(SavedPlan::read_if_saved(&path).unwrap().is_none());
    }
}

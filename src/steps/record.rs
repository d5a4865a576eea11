//! What steps leave behind for the next run: each step's record and evidence, and the runs, as the
//! journal holds them. Data only: the engine reads and writes the journal file (`engine::journal`);
//! steps read their own records here, so the import arrows run engine -> steps, never back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::steps::Evidence;

pub const JOURNAL_VERSION: u32 = 1;

/// Outcome of a step's last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Done,
    Failed,
    /// A destructive step is under way (written right before it acts; a run killed then leaves it).
    Started,
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
    /// A destructive step that began to act (its installer ran, whatever came of it). From then on
    /// the steps before it describe a server that may be partly gone: they are sealed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub began: bool,
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

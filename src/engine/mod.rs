//! The engine: orders steps, observes concurrently, diffs, journals, locks, renders and applies.
//! It knows nothing about MIIS; every step kind is a `dyn Step` from `crate::steps`.

pub mod options;

pub use options::{ApplyOptions, PlanOptions};

/// Errors the engine reports to the command line.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotReady(String),
}

/// `upgrade plan`: returns the process exit code (0, or 2 with pending changes and `--detailed-exitcode`).
pub async fn run_plan(opts: PlanOptions) -> Result<u8, EngineError> {
    Err(EngineError::NotReady(format!("plan {:?}: engine under construction", opts.plan_file)))
}

/// `upgrade apply`: returns the process exit code.
pub async fn run_apply(opts: ApplyOptions) -> Result<u8, EngineError> {
    Err(EngineError::NotReady(format!("apply {:?}: engine under construction", opts.input)))
}

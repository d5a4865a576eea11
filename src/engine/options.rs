//! What the command line hands the engine for `upgrade plan` and `upgrade apply`.

use std::path::PathBuf;

use crate::engine::render::Display;

/// `upgrade plan PLAN [--out FILE] [--json] [--detailed-exitcode] [--state FILE]`
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub plan_file: PathBuf,
    pub out: Option<PathBuf>,
    pub json: bool,
    pub detailed_exitcode: bool,
    /// Journal file override (default: the plan's `state.dir`, else `.upgrade/` beside the plan).
    pub state: Option<PathBuf>,
    /// Colour and quiet, as the command line decided.
    pub display: Display,
}

/// `upgrade apply PLAN|SAVED_PLAN [--auto-approve] [--json] [--state FILE]`
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// A plan file, or a plan saved by `upgrade plan --out`.
    pub input: PathBuf,
    pub auto_approve: bool,
    pub json: bool,
    pub state: Option<PathBuf>,
    /// Colour and quiet, as the command line decided.
    pub display: Display,
}

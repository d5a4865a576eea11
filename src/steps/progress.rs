//! How a step says, while it applies, how far it has got: a `Progress` the engine hands it in
//! its `StepContext`. Steps send facts (files and bytes copied so far), never text or output;
//! the engine decides whether and how people see them (a spinner line on a terminal, nothing in
//! `--json`).

/// How far a step has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// A copy: `files` of `of_files` files and `bytes` of `of_bytes` bytes done.
    Copied {
        files: u64,
        of_files: u64,
        bytes: u64,
        of_bytes: u64,
    },
}

/// Where a step's updates go. Called from the step's own task; must not block.
pub trait Progress: Send + Sync {
    fn update(&self, update: Update);
}

/// Updates go nowhere (a step observed or checked outside an apply, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn update(&self, _update: Update) {}
}

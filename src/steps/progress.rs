//! How a step says, while it applies, how far it has got and what the server told it: a
//! `Progress` the engine hands it in its `StepContext`. Steps send facts (files and bytes copied
//! so far, a backup's percentage, SQL Server's own messages), never formatted output; the engine
//! decides whether and how people see them (a spinner line on a terminal, the step's detail under
//! `-v` and in `--json`).

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

    /// How far a database backup has got: SQL Server's `WITH STATS` "n percent processed.".
    /// (A method rather than an `Update`: sinks that only follow copies need not know it.)
    fn percent(&self, _percent: u8) {}

    /// A message the server gave about the step's work while it ran (SQL Server's 3014 "BACKUP
    /// DATABASE successfully processed 138 pages ...", 3262 "The backup set on file 1 is
    /// valid."): the step's detail, not a log line. Dropped unless the sink keeps it.
    fn detail(&self, _message: &str) {}
}

/// Updates go nowhere (a step observed or checked outside an apply, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn update(&self, _update: Update) {}
}

//! The engine: orders steps, observes concurrently, diffs, journals, locks, renders and applies.
//! It knows nothing about MIIS; every step kind is a `dyn Step` from `crate::steps`.

pub mod connect;
pub mod fit;
pub mod inspect;
pub mod journal;
pub mod lock;
pub mod options;
pub mod progress;
pub mod render;
pub mod run;
pub mod saved;

pub use options::{ApplyOptions, PlanOptions};

/// Errors the engine reports to the command line (exit 1), each saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the plan is not valid:\n{0}")]
    Invalid(String),
    #[error("{0}")]
    Secret(String),
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Saved(#[from] saved::SavedError),
    #[error("the saved plan no longer matches the server; run `upgrade plan` again:\n  {0}")]
    Stale(String),
    #[error("some steps cannot converge; nothing was applied:\n  {0}")]
    Blocked(String),
    #[error("the plan was not saved to {path}: these steps cannot converge: {steps} (see `!` above); fix them and plan again")]
    NotSaved { path: String, steps: String },
    #[error("not applied: {0}")]
    NotConfirmed(String),
    #[error("cannot write output: {0}")]
    Output(String),
    #[error("wrong user or password for {endpoint}: WinRM refused the logon of `{user}` (HTTP 401). Check server.connect.winrm.user (a local account is `user` or `COMPUTER\\user`, a domain account `DOMAIN\\user`) and its password; nothing was run")]
    WinrmLogon { endpoint: String, user: String },
    #[error("WinRM is not listening on {endpoint}: run `winrm quickconfig` on the server (Windows Server 2003 SP2 / 2008: install Windows Management Framework 2.0, KB968930, first; the default ports are 5985 for HTTP and 5986 for HTTPS); nothing was run")]
    WinrmNotListening { endpoint: String },
    /// The server answered the logon but not a question asked before any step (its
    /// `%SystemRoot%`).
    #[error("{0}; nothing was run")]
    Server(String),
    #[error("cannot reach the sync server over WinRM at {endpoint}: {source}; nothing was run")]
    Winrm {
        endpoint: String,
        source: Box<crate::adapters::winrm::WinrmError>,
    },
}

/// `upgrade plan`: returns the process exit code (0, or 2 with pending changes and `--detailed-exitcode`).
pub async fn run_plan(opts: PlanOptions) -> Result<u8, EngineError> {
    run::plan(opts).await
}

/// `upgrade apply`: returns the process exit code.
pub async fn run_apply(opts: ApplyOptions) -> Result<u8, EngineError> {
    run::apply(opts).await
}

//! upgrade-lab: a simulated MIIS server for testing and rehearsing `upgrade` plans.
//! TEST DOUBLE: nothing here is shipped in the `upgrade` binary. `layout` lays a lab out, `tools`
//! are the stand-in executables, `serve` runs the TDS double, `status` reports, `rehearse` runs a plan.
pub mod sqlmodel;
pub mod tds;

pub mod cli;
pub mod faults;
pub mod kdc;
pub mod layout;
pub mod listener;
pub mod rehearse;
pub mod serve;
pub mod state;
pub mod status;
pub mod tools;
pub mod winrm;
pub mod workspace_bin;

use std::path::{Path, PathBuf};

pub use faults::{Faults, SqlFaults};
pub use layout::{Flavour, InitOptions, Lab, ToolPaths};
pub use serve::{RunningLab, SqlHost, StartOptions};
pub use status::Status;

/// Everything that can go wrong in the lab's commands and library API.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0}")]
    Usage(String),
    #[error("{0} is already a lab (lab.json exists); pick an empty folder")]
    AlreadyALab(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Fault(#[from] faults::FaultError),
    #[error(transparent)]
    Model(#[from] sqlmodel::ModelError),
    #[error("TDS server: {0}")]
    Server(String),
    #[error("cannot find or build the upgrade-lab binary: {0}")]
    Binary(String),
    #[error("rehearse: {0}")]
    Rehearse(String),
    /// A plan that `upgrade validate` refuses, with the same diagnostics.
    #[error(
        "{} does not validate, so nothing was rehearsed; `upgrade validate` says:\n{}",
        .path.display(),
        .diagnostics.to_string().trim_end()
    )]
    Plan {
        path: PathBuf,
        diagnostics: upgrade_plan::Diagnostics,
    },
}

impl LabError {
    /// `map_err` helper: an I/O error about `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
        move |source| LabError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The upgrade-lab executable, for tests of other packages: `$UPGRADE_LAB_BIN`, else
/// `upgrade-lab` in the running executable's target folder (`target/debug/`, also from
/// `target/debug/deps/`), else built there with `$CARGO build -p upgrade-lab --bin upgrade-lab`.
pub fn try_lab_binary() -> Result<PathBuf, LabError> {
    if let Some(p) = std::env::var_os("UPGRADE_LAB_BIN") {
        return Ok(PathBuf::from(p));
    }
    let place = workspace_bin::BuildPlace::of_this_executable().ok_or_else(|| {
        LabError::Binary(
            "the running executable is not in a cargo target folder; set UPGRADE_LAB_BIN".into(),
        )
    })?;
    let candidate = place.binary("upgrade-lab");
    if candidate.is_file() {
        return Ok(candidate);
    }
    workspace_bin::build(&place, "upgrade-lab", "upgrade-lab").map_err(LabError::Binary)
}

/// `try_lab_binary` for tests: panics with the reason when the binary cannot be found or built.
pub fn lab_binary() -> PathBuf {
    match try_lab_binary() {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

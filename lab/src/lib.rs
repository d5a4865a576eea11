//! upgrade-lab: a simulated MIIS server for testing and rehearsing `upgrade` plans.
//! TEST DOUBLE: nothing here is shipped in the `upgrade` binary. `layout` lays a lab out, `tools`
//! are the stand-in executables, `serve` runs the TDS double, `status` reports, `rehearse` runs a plan.
pub mod sqlmodel;
pub mod tds;

pub mod cli;
pub mod faults;
pub mod layout;
pub mod listener;
pub mod rehearse;
pub mod serve;
pub mod state;
pub mod status;
pub mod tools;
pub mod winrm;

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
    let me = std::env::current_exe().map_err(|e| LabError::Binary(e.to_string()))?;
    let mut dir = me
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| LabError::Binary("no parent folder".into()))?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let candidate = dir.join("upgrade-lab");
    if candidate.is_file() {
        return Ok(candidate);
    }
    // target/<profile>/ -> build into the same target folder and profile.
    let profile = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = dir
        .parent()
        .ok_or_else(|| LabError::Binary(format!("{} has no target folder", dir.display())))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut cmd = std::process::Command::new(cargo);
    cmd.args([
        "build",
        "-p",
        "upgrade-lab",
        "--bin",
        "upgrade-lab",
        "--manifest-path",
    ])
    .arg(&manifest)
    .env("CARGO_TARGET_DIR", target);
    if profile == "release" {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .map_err(|e| LabError::Binary(format!("running cargo: {e}")))?;
    if status.success() && candidate.is_file() {
        Ok(candidate)
    } else {
        Err(LabError::Binary(format!(
            "`cargo build -p upgrade-lab` ended with {status}; expected {}",
            candidate.display()
        )))
    }
}

/// `try_lab_binary` for tests: panics with the reason when the binary cannot be found or built.
pub fn lab_binary() -> PathBuf {
    match try_lab_binary() {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

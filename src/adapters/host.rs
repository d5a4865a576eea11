//! The sync server as the steps reach it: its programs (the key tool, msiexec, setup, reg, sc,
//! verify commands) and its files (the Extensions source, the key file, installer media, installer
//! logs, msi.dll). Steps hold a `dyn Host` and never know whether the server is this machine or
//! another one. `Local` is this machine; a remote host implements the same trait. Files a step
//! keeps for itself (a backup's destination and its manifest, the journal) are this machine's,
//! through `adapters::fs`. The SQL connection is not the host's: it goes to SQL Server directly.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::adapters::fs::{self as afs, FileStat, FsError};
use crate::adapters::installer_mutex;
use crate::adapters::process::{ProcessError, ProcessOutcome, ProcessSpec};
use crate::adapters::secrets::Redactor;

/// The sync server's programs and files.
#[async_trait]
pub trait Host: Send + Sync {
    /// Runs a program on the server to its end or its timeout; its output redacted.
    async fn run(
        &self,
        spec: &ProcessSpec,
        redactor: &Redactor,
    ) -> Result<ProcessOutcome, ProcessError>;

    /// Whether anything is at `path`. A path that cannot be looked at (access denied, a host
    /// that does not answer) is an error, never "absent": absent lets steps overwrite.
    async fn exists(&self, path: &Path) -> Result<bool, FsError>;

    /// Whether `path` is a folder (an error as for `exists`).
    async fn is_dir(&self, path: &Path) -> Result<bool, FsError>;

    async fn file_size(&self, path: &Path) -> Result<u64, FsError>;

    /// sha256 of a file, in lowercase hex, computed where the file is.
    async fn sha256_file(&self, path: &Path) -> Result<String, FsError>;

    /// A small file's bytes (an installer log, msi.dll's version resource).
    async fn read_file(&self, path: &Path) -> Result<Vec<u8>, FsError>;

    /// Every file under `dir`, as relative paths with `/`, sorted.
    async fn walk_files(&self, dir: &Path) -> Result<Vec<String>, FsError>;

    /// Every file under `dir` with its size, times and inode (what a quick check compares), as
    /// `walk_files` names and sorts them: one listing, not a call per file.
    async fn walk_stats(&self, dir: &Path) -> Result<Vec<(String, FileStat)>, FsError>;

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), FsError>;

    async fn remove_if_exists(&self, path: &Path) -> Result<(), FsError>;

    async fn create_parent_dirs(&self, path: &Path) -> Result<(), FsError>;

    /// Leaves a file readable by its owner only (a key file).
    async fn restrict_permissions(&self, path: &Path) -> Result<(), FsError>;

    /// Whether a Windows Installer installation is in progress on the server now: its
    /// `_MSIExecute` mutex exists (`adapters::installer_mutex`). `msiexec` is the plan's msiexec
    /// (beside which the lab keeps its stand-in for the mutex). An answer that cannot be had is an
    /// error, never "none": none lets an installer start.
    async fn installation_in_progress(&self, msiexec: &Path) -> Result<bool, FsError>;

    /// The server's `%SystemRoot%` (`C:\WINDOWS`; `C:\WINNT` on a server upgraded from Windows
    /// 2000), where its System32 tools are; `None` when the server is this machine and this
    /// machine is not Windows (the lab on Linux, whose plans name their tools).
    async fn system_root(&self) -> Result<Option<String>, FsError>;

    /// Copies a file of the server to `local` on this machine, whose folder exists (through a
    /// temporary name renamed into place), hashing what was copied; returns its sha256. Not yet
    /// durable: the caller flushes what it fetched at once (`adapters::flush::Batch`).
    async fn fetch(&self, remote: &Path, local: &Path) -> Result<String, FsError>;
}

/// This machine as the sync server: `upgrade` runs on the server itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

/// Runs file work that reads whole files or folders off the async workers.
async fn blocking<T: Send + 'static>(
    what: &Path,
    f: impl FnOnce() -> Result<T, FsError> + Send + 'static,
) -> Result<T, FsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FsError::Io {
            op: "finish reading",
            path: what.to_path_buf(),
            source: std::io::Error::other(format!("stopped: {e}")),
        })?
}

#[async_trait]
impl Host for Local {
    async fn run(
        &self,
        spec: &ProcessSpec,
        redactor: &Redactor,
    ) -> Result<ProcessOutcome, ProcessError> {
        spec.run(redactor).await
    }

    async fn exists(&self, path: &Path) -> Result<bool, FsError> {
        path.try_exists().map_err(|source| FsError::Io {
            op: "look at",
            path: path.to_path_buf(),
            source,
        })
    }

    async fn is_dir(&self, path: &Path) -> Result<bool, FsError> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(m.is_dir()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(FsError::Io {
                op: "look at",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    async fn file_size(&self, path: &Path) -> Result<u64, FsError> {
        afs::file_size(path)
    }

    async fn sha256_file(&self, path: &Path) -> Result<String, FsError> {
        let p = path.to_path_buf();
        blocking(path, move || afs::sha256_file(&p)).await
    }

    async fn read_file(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        afs::read_file(path)
    }

    async fn walk_files(&self, dir: &Path) -> Result<Vec<String>, FsError> {
        let d = dir.to_path_buf();
        blocking(dir, move || afs::walk_files(&d)).await
    }

    async fn walk_stats(&self, dir: &Path) -> Result<Vec<(String, FileStat)>, FsError> {
        let d = dir.to_path_buf();
        blocking(dir, move || afs::walk_stats(&d)).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), FsError> {
        afs::rename(from, to)
    }

    async fn remove_if_exists(&self, path: &Path) -> Result<(), FsError> {
        afs::remove_if_exists(path)
    }

    async fn create_parent_dirs(&self, path: &Path) -> Result<(), FsError> {
        afs::create_parent_dirs(path)
    }

    async fn restrict_permissions(&self, path: &Path) -> Result<(), FsError> {
        afs::restrict_permissions(path)
    }

    async fn installation_in_progress(&self, msiexec: &Path) -> Result<bool, FsError> {
        installer_mutex::in_progress(msiexec).map_err(|source| FsError::Io {
            op: "look for an installation in progress:",
            path: PathBuf::from(installer_mutex::NAME),
            source,
        })
    }

    async fn system_root(&self) -> Result<Option<String>, FsError> {
        Ok(if cfg!(windows) {
            std::env::var("SystemRoot").ok().filter(|s| !s.is_empty())
        } else {
            None
        })
    }

    async fn fetch(&self, remote: &Path, local: &Path) -> Result<String, FsError> {
        let (src, dst): (PathBuf, PathBuf) = (remote.to_path_buf(), local.to_path_buf());
        blocking(remote, move || afs::copy_hashing(&src, &dst)).await
    }
}

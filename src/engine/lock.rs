//! The apply lock: one `upgrade apply` per plan and state folder at a time. It is an OS file lock
//! (flock / LockFileEx), so a holder killed with kill -9 releases it with its death; a sibling
//! `.holder.json` says who holds it. Nothing here reads or writes the journal.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another `upgrade apply` holds the lock {path}: {holder}; wait for it to finish (or, if that process is gone, run again: the operating system released its lock)")]
    Held { path: PathBuf, holder: String },
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Who holds the lock, for the message a second apply prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub since: DateTime<Utc>,
}

/// Held while alive; the OS lock goes with the file handle.
#[derive(Debug)]
pub struct ApplyLock {
    _file: File,
    holder_path: PathBuf,
}

impl ApplyLock {
    /// Takes the lock or says who has it. Never waits.
    pub fn acquire(path: &Path) -> Result<ApplyLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io)?;
        let holder_path = holder_path(path);
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read(&holder_path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Holder>(&b).ok())
                    .map(|h| format!("pid {} on {} since {}", h.pid, h.host, h.since.to_rfc3339()))
                    .unwrap_or_else(|| "a process that has not yet said who it is".to_string());
                return Err(LockError::Held {
                    path: path.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let holder = Holder {
            pid: std::process::id(),
            host: host_name(),
            since: Utc::now(),
        };
        // A holder file left by a killed process is simply overwritten: the OS lock is the truth.
        let bytes = serde_json::to_vec(&holder).map_err(|e| io(std::io::Error::other(e)))?;
        crate::adapters::fs::write_atomic(&holder_path, &bytes)
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        Ok(ApplyLock {
            _file: file,
            holder_path,
        })
    }
}

impl Drop for ApplyLock {
    fn drop(&mut self) {
        // Best effort: a leftover holder file is harmless because the OS lock decides.
        let _ = std::fs::remove_file(&self.holder_path);
    }
}

fn holder_path(lock: &Path) -> PathBuf {
    let mut name = lock
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".holder.json");
    lock.with_file_name(name)
}

fn host_name() -> String {
    std::env::var("COMPUTERNAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "this machine".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lock");
        let first = ApplyLock::acquire(&path).unwrap();
        let err = ApplyLock::acquire(&path).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        ApplyLock::acquire(&path).expect("released lock can be taken again");
    }

    #[test]
    fn a_holder_file_left_by_a_killed_process_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lock");
        std::fs::write(&path, b"").unwrap();
        std::fs::write(
            holder_path(&path),
            br#"{"pid":999999,"host":"x","since":"2020-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        ApplyLock::acquire(&path)
            .expect("no live OS lock, so the stale holder file is overwritten");
    }
}

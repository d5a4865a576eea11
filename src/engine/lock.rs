//! The apply lock: one `upgrade apply` per plan and state folder at a time. It is an OS file lock
//! (flock / LockFileEx) on `NAME.lock`, so a holder killed with kill -9 releases it with its death.
//! `NAME.lock.holder.json` names the holder (pid, host, start time), and is itself locked around
//! every use, so that a refused apply always names the live holder:
//! - taking: lock the holder file (waiting at most `HOLDER_FILE_WAIT`), try the apply lock; when
//!   it is ours, write our name into the holder file; unlock the holder file.
//! - refused: the apply lock was already taken when we tried it with the holder file locked, so
//!   its holder wrote its name there before it let the holder file go: read it, unlock, report.
//! - releasing: lock the holder file, let the apply lock go, empty the holder file, unlock.
//!
//! So whenever the holder file is unlocked, "the apply lock is held" and "the holder file names
//! the holder" are true together. A name left by a killed process is never read: its apply lock
//! died with it, so the next contender takes the lock and overwrites the name instead of reading
//! it. Neither file is ever deleted (a deleted locked file lets a second one be locked beside
//! it). The holder file is only locked for a few small reads and writes, never while steps run.
//! Nothing here reads or writes the journal.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How long a contender waits for another one to finish with the holder file.
const HOLDER_FILE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another `upgrade apply` holds the lock {path}: {holder}; wait for it to finish (or, if that process is gone, run again: the operating system released its lock)")]
    Held { path: PathBuf, holder: String },
    #[error("the lock's holder file {path} stayed locked for {secs} s: another `upgrade` is stuck taking or releasing the lock (stopped in a debugger?); run again when it has gone on", secs = HOLDER_FILE_WAIT.as_secs())]
    HolderFileBusy { path: PathBuf },
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
    file: File,
    holder_path: PathBuf,
}

impl ApplyLock {
    /// Takes the lock or says who has it. Waits only for other contenders to finish with the
    /// holder file (at most `HOLDER_FILE_WAIT`), never for the apply lock.
    pub fn acquire(path: &Path) -> Result<ApplyLock, LockError> {
        let io = |p: &Path, source| LockError::Io {
            path: p.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(path, e))?;
        }
        let holder_path = holder_path(path);
        let mut holder_file = lock_holder_file(&holder_path)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut holder_file)
                    .map(|h| format!("pid {} on {} since {}", h.pid, h.host, h.since.to_rfc3339()))
                    .unwrap_or_else(|| {
                        "a process that did not write its name (an `upgrade` older than this one?)"
                            .to_string()
                    });
                return Err(LockError::Held {
                    path: path.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(path, e)),
        }
        let holder = Holder {
            pid: std::process::id(),
            host: host_name(),
            since: Utc::now(),
        };
        // A name left by a killed process is overwritten here, before anyone can read it.
        let bytes = serde_json::to_vec(&holder).map_err(|e| io(&holder_path, e.into()))?;
        overwrite(&mut holder_file, &bytes).map_err(|e| io(&holder_path, e))?;
        Ok(ApplyLock { file, holder_path })
        // `holder_file` closes here, which unlocks it.
    }
}

impl Drop for ApplyLock {
    fn drop(&mut self) {
        // Best effort: if the holder file cannot be had, the name stays behind, which is harmless
        // because no one reads it while the apply lock is free.
        let holder_file = lock_holder_file(&self.holder_path);
        let _ = self.file.unlock();
        if let Ok(mut holder_file) = holder_file {
            let _ = overwrite(&mut holder_file, b"");
        }
    }
}

/// Opens and locks the holder file, waiting for other contenders for at most `HOLDER_FILE_WAIT`.
fn lock_holder_file(path: &Path) -> Result<File, LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let deadline = Instant::now() + HOLDER_FILE_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::HolderFileBusy {
                    path: path.to_path_buf(),
                })
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn overwrite(file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(bytes)
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
    fn a_contender_waits_for_the_holder_to_write_its_name_instead_of_reporting_no_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lock");
        // A winner caught between taking the apply lock and writing its name: it has the holder
        // file locked and the apply lock taken, and the holder file still names a dead process.
        let mut holder_file = lock_holder_file(&holder_path(&path)).unwrap();
        overwrite(
            &mut holder_file,
            br#"{"pid":999999,"host":"gone","since":"2020-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let apply_lock = File::create(&path).unwrap();
        apply_lock.try_lock().unwrap();
        let contender = std::thread::spawn(move || ApplyLock::acquire(&path));
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !contender.is_finished(),
            "the contender answered before the winner wrote its name"
        );
        overwrite(
            &mut holder_file,
            br#"{"pid":4242,"host":"winner","since":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        drop(holder_file);
        let text = contender.join().unwrap().unwrap_err().to_string();
        assert!(
            text.contains(": pid 4242 on winner since 2026-01-01T00:00:00+00:00;"),
            "{text}"
        );
    }

    #[test]
    fn releasing_empties_the_holder_file_but_keeps_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lock");
        let held = ApplyLock::acquire(&path).unwrap();
        let name: Holder =
            serde_json::from_slice(&std::fs::read(holder_path(&path)).unwrap()).unwrap();
        assert_eq!(name.pid, std::process::id());
        drop(held);
        assert_eq!(std::fs::read(holder_path(&path)).unwrap(), b"");
        assert!(path.exists());
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

//! Making many freshly written files durable at once, before what commits them (a manifest) is
//! written: on Linux one `syncfs(2)` of the destination's file system, as `cp -r && sync` does,
//! else each file and each folder flushed. Touches only the files and folders it is given.

use std::path::{Path, PathBuf};

use crate::adapters::fs::{self as afs, FsError};

/// How a batch was made durable (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// One `syncfs` of the destination's file system (every file, folder and rename on it).
    FileSystem,
    /// Each file flushed, then each folder from the files up to the destination and the folder
    /// that holds it.
    EachFile,
}

/// A batch of files about to be written under `root`. Opened BEFORE the first file is written:
/// `syncfs` reports a write-back error of the file system only when it happened after the folder
/// was opened (Linux 5.8 and later record them per file system; see [`syncfs_reports_errors`]).
pub struct Batch {
    root: PathBuf,
    #[cfg(target_os = "linux")]
    fs: Option<(std::fs::File, u64)>,
}

impl Batch {
    /// Creates `root` (and the folders above it) and opens it for the final flush.
    pub fn begin(root: &Path) -> Result<Batch, FsError> {
        std::fs::create_dir_all(root).map_err(|source| FsError::Io {
            op: "create the folder",
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Batch {
            root: root.to_path_buf(),
            #[cfg(target_os = "linux")]
            fs: open_file_system(root)?,
        })
    }

    /// Makes every one of `files` (all under the root, written and renamed into place) durable,
    /// with the folders that name them. A file on another file system than the root (a folder
    /// mounted below it) is flushed by itself.
    pub fn finish(self, files: &[PathBuf]) -> Result<Flushed, FsError> {
        #[cfg(target_os = "linux")]
        if let Some((root, dev)) = &self.fs {
            use std::os::unix::fs::MetadataExt;
            let mut elsewhere = Vec::new();
            for f in files {
                let m = std::fs::metadata(f).map_err(|source| FsError::Io {
                    op: "read the device of",
                    path: f.clone(),
                    source,
                })?;
                if m.dev() != *dev {
                    elsewhere.push(f.clone());
                }
            }
            syncfs(root, &self.root)?;
            if !elsewhere.is_empty() {
                self.each_file(&elsewhere)?;
            }
            tracing::debug!(
                files = files.len(),
                elsewhere = elsewhere.len(),
                "flushed by syncfs"
            );
            return Ok(Flushed::FileSystem);
        }
        self.each_file(files)?;
        Ok(Flushed::EachFile)
    }

    /// Each file, then each folder between the files and the root (inclusive, so that a folder
    /// created for them is named durably in its parent), then the root's parent.
    fn each_file(&self, files: &[PathBuf]) -> Result<(), FsError> {
        afs::sync_files(files)?;
        let mut folders = std::collections::BTreeSet::new();
        for f in files {
            let mut at = f.parent();
            while let Some(dir) = at {
                if !dir.starts_with(&self.root) || !folders.insert(dir.to_path_buf()) {
                    break;
                }
                at = dir.parent();
            }
        }
        if let Some(parent) = self.root.parent() {
            folders.insert(parent.to_path_buf());
        }
        for dir in &folders {
            afs::sync_dir(dir)?;
        }
        Ok(())
    }
}

/// The root folder opened, with its device, when `syncfs` reports write-back errors here.
#[cfg(target_os = "linux")]
fn open_file_system(root: &Path) -> Result<Option<(std::fs::File, u64)>, FsError> {
    use std::os::unix::fs::MetadataExt;
    if !syncfs_reports_errors() {
        return Ok(None);
    }
    let io = |op| {
        move |source| FsError::Io {
            op,
            path: root.to_path_buf(),
            source,
        }
    };
    let dir = std::fs::File::open(root).map_err(io("open the folder"))?;
    let dev = dir.metadata().map_err(io("read the device of"))?.dev();
    Ok(Some((dir, dev)))
}

/// Whether this kernel's `syncfs` returns the write-back errors of the file system: Linux 5.8 and
/// later (before, it returned 0 after a failed write-back, and only each file's `fsync` said so).
#[cfg(target_os = "linux")]
pub fn syncfs_reports_errors() -> bool {
    // SAFETY: an all-zero utsname is a valid value of this plain C struct, filled by uname.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes within the struct it is given.
    if unsafe { libc::uname(&mut name) } != 0 {
        return false;
    }
    let release: String = name
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8 as char)
        .collect();
    kernel_at_least(&release, (5, 8))
}

/// Whether a kernel release (`6.18.44-fc`, `5.8.0-63-generic`) is `at_least` (major, minor).
pub fn kernel_at_least(release: &str, at_least: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= at_least,
        _ => false,
    }
}

#[cfg(target_os = "linux")]
fn syncfs(dir: &std::fs::File, path: &Path) -> Result<(), FsError> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a descriptor borrowed for its duration.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(FsError::Io {
            op: "flush the file system (syncfs) of",
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_compare_by_major_then_minor() {
        assert!(kernel_at_least("6.18.44-fc-v595", (5, 8)));
        assert!(kernel_at_least("5.8.0-63-generic", (5, 8)));
        assert!(kernel_at_least("5.10.0", (5, 8)));
        assert!(!kernel_at_least("5.4.0-150-generic", (5, 8)));
        assert!(!kernel_at_least("4.19.0", (5, 8)));
        assert!(!kernel_at_least("weird", (5, 8)));
    }

    #[test]
    fn a_batch_flushes_files_in_folders_it_created_and_says_how() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("copy/of/Extensions");
        let batch = Batch::begin(&root).unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let files = vec![root.join("a.dll"), root.join("sub/b.dll")];
        for f in &files {
            std::fs::write(f, "x").unwrap();
        }
        let how = batch.finish(&files).unwrap();
        #[cfg(target_os = "linux")]
        assert_eq!(how, Flushed::FileSystem);
        #[cfg(not(target_os = "linux"))]
        assert_eq!(how, Flushed::EachFile);
    }

    #[test]
    fn a_file_that_is_not_there_is_an_error_not_a_flushed_file() {
        let dir = tempfile::tempdir().unwrap();
        let batch = Batch::begin(dir.path()).unwrap();
        let err = batch.finish(&[dir.path().join("gone.dll")]).unwrap_err();
        assert!(err.to_string().contains("gone.dll"), "{err}");
    }
}

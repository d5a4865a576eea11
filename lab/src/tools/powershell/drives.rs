//! Windows paths over the lab's drives: a full drive path (`C:\X\Y`, `/` taken as `\`, `.` and
//! `..` resolved as .NET's GetFullPath does) is found in DIR/drives without regard to case, as
//! NTFS finds it (`layout::win_to_lab` maps the drive). FileInfo / DirectoryInfo are read here.
//! Relative and UNC paths are outside the subset: the executor sends full drive paths.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::value::Item;
use crate::layout::win_to_lab;

/// DateTime ticks of 1970-01-01T00:00:00Z (100 ns units since 0001-01-01).
pub const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;

/// A Windows path and where it lives in the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The full Windows path: the drive letter upper-case, `\` separators, no trailing `\`
    /// except at a drive's root.
    pub full_name: String,
    pub path: PathBuf,
}

/// Finds `win` in the lab; `Err` says why it is not a path the lab takes.
pub fn locate(lab: &Path, win: &str) -> Result<Located, String> {
    let b = win.as_bytes();
    if b.len() < 2 || !b[0].is_ascii_alphabetic() || b[1] != b':' {
        return Err(format!(
            "the path `{win}` (only full drive paths such as C:\\X are taken)"
        ));
    }
    if b.len() > 2 && b[2] != b'\\' && b[2] != b'/' {
        return Err(format!("the drive-relative path `{win}`"));
    }
    let drive = (b[0] as char).to_ascii_uppercase();
    let mut parts: Vec<&str> = Vec::new();
    for part in win[2..].split(['\\', '/']) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let root = win_to_lab(lab, &format!("{drive}:\\"))
        .ok_or_else(|| format!("the path `{win}` (no such drive in the lab)"))?;
    let mut path = root;
    for p in &parts {
        path = match entry_ignoring_case(&path, p) {
            Some(found) => found,
            None => path.join(p),
        };
    }
    let full_name = if parts.is_empty() {
        format!("{drive}:\\")
    } else {
        format!("{drive}:\\{}", parts.join("\\"))
    };
    Ok(Located { full_name, path })
}

/// `name` in `folder`: the exact entry if there is one, else one that differs only in case.
fn entry_ignoring_case(folder: &Path, name: &str) -> Option<PathBuf> {
    let exact = folder.join(name);
    if exact.symlink_metadata().is_ok() {
        return Some(exact);
    }
    std::fs::read_dir(folder)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(name))
        .map(|e| e.path())
}

/// The FileInfo / DirectoryInfo of an existing item.
pub fn item(at: &Located) -> std::io::Result<Item> {
    let meta = std::fs::metadata(&at.path)?;
    let name = match at.full_name.rsplit_once('\\') {
        Some((_, n)) if !n.is_empty() => n.to_string(),
        _ => at.full_name.clone(),
    };
    let modified = meta.modified().map(ticks)?;
    // Linux may not record a birth time: then the lab reports the last write (lab/README.md).
    let created = meta.created().map(ticks).unwrap_or(modified);
    Ok(Item {
        full_name: at.full_name.clone(),
        name,
        path: at.path.clone(),
        is_dir: meta.is_dir(),
        length: if meta.is_dir() {
            0
        } else {
            i64::try_from(meta.len()).unwrap_or(i64::MAX)
        },
        last_write_ticks: modified,
        creation_ticks: created,
    })
}

/// The items directly in folder `at`: folders first, then files, each by name ignoring case
/// (the order of PowerShell 2.0's listing of an NTFS folder).
pub fn children(at: &Located) -> std::io::Result<Vec<Item>> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(&at.path)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let child = Located {
            full_name: if at.full_name.ends_with('\\') {
                format!("{}{name}", at.full_name)
            } else {
                format!("{}\\{name}", at.full_name)
            },
            path: e.path(),
        };
        entries.push(item(&child)?);
    }
    entries.sort_by_key(|i| (!i.is_dir, i.name.to_lowercase()));
    Ok(entries)
}

/// A file time as DateTime ticks (UTC).
pub fn ticks(t: SystemTime) -> i64 {
    let hundred_ns = |d: std::time::Duration| {
        i64::try_from(d.as_secs())
            .unwrap_or(i64::MAX / 20_000_000)
            .saturating_mul(10_000_000)
            .saturating_add(i64::from(d.subsec_nanos() / 100))
    };
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => UNIX_EPOCH_TICKS.saturating_add(hundred_ns(after)),
        Err(before) => UNIX_EPOCH_TICKS.saturating_sub(hundred_ns(before.duration())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_windows_path_is_found_in_the_drives_without_regard_to_case() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("drives/C/Program Files/App")).unwrap();
        let at = locate(dir.path(), r"c:/PROGRAM FILES\app\.\x\..\").unwrap();
        assert_eq!(at.full_name, r"C:\PROGRAM FILES\app");
        assert_eq!(at.path, dir.path().join("drives/C/Program Files/App"));
        assert!(locate(dir.path(), r"Program Files\App").is_err());
        assert!(locate(dir.path(), r"C:relative").is_err());
        assert_eq!(locate(dir.path(), "d:").unwrap().full_name, r"D:\");
    }

    #[test]
    fn ticks_count_100_ns_from_year_one() {
        assert_eq!(ticks(UNIX_EPOCH), 621_355_968_000_000_000);
        let t = UNIX_EPOCH + std::time::Duration::new(1, 500);
        assert_eq!(ticks(t), 621_355_968_010_000_005);
    }
}

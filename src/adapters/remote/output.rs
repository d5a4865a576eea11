//! Reading what the remote host's scripts print (`script.rs`): one answer per script, checked
//! strictly. A stream cut short, a line that is not what the script prints, a bad base64 or hash
//! line is an error naming the line, never a shorter file or a shorter listing.

use base64::Engine;

use crate::adapters::fs::{is_partial_name, FileStat};

/// Output that is not what the script prints.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BadOutput {
    #[error("line {line} of its output: {why}")]
    Line { line: usize, why: String },
    #[error("its output ended early: {0}")]
    Truncated(&'static str),
    #[error("writing what arrived failed: {0}")]
    Write(String),
}

pub(super) fn bad(line: usize, why: impl Into<String>) -> BadOutput {
    BadOutput::Line {
        line,
        why: why.into(),
    }
}

/// The lines of powershell.exe's output (CRLF or LF), numbered from 1, blank ones left out.
fn lines(stdout: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    stdout
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.is_empty())
}

fn text(line: usize, bytes: &[u8]) -> Result<&str, BadOutput> {
    std::str::from_utf8(bytes).map_err(|_| bad(line, "not UTF-8"))
}

/// The one line a script answers with.
fn single(stdout: &[u8]) -> Result<(usize, &str), BadOutput> {
    let mut all = lines(stdout);
    let (n, first) = all.next().ok_or(BadOutput::Truncated("no answer"))?;
    if let Some((m, _)) = all.next() {
        return Err(bad(m, "more than the one line expected"));
    }
    Ok((n, text(n, first)?))
}

/// What is at a path (the `stat` script).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Absent,
    Dir,
    File(u64),
}

pub fn stat(stdout: &[u8]) -> Result<Stat, BadOutput> {
    let (n, line) = single(stdout)?;
    match line.split_once(' ') {
        None if line == "absent" => Ok(Stat::Absent),
        None if line == "dir" => Ok(Stat::Dir),
        Some(("file", bytes)) => bytes
            .parse()
            .map(Stat::File)
            .map_err(|_| bad(n, format!("`{bytes}` is not a size in bytes"))),
        _ => Err(bad(
            n,
            format!("expected absent, dir or file BYTES, got `{line}`"),
        )),
    }
}

/// A `sha256 HEX` line's hash, lowercase.
pub(super) fn hash_line(n: usize, line: &str) -> Result<String, BadOutput> {
    match line.strip_prefix("sha256 ") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(hex.to_ascii_lowercase())
        }
        _ => Err(bad(
            n,
            format!("expected `sha256` and 64 hex digits, got `{line}`"),
        )),
    }
}

/// The `sha256` script's answer: the file's hash, or `None` when it is absent.
pub fn sha256(stdout: &[u8]) -> Result<Option<String>, BadOutput> {
    let (n, line) = single(stdout)?;
    if line == "absent" {
        return Ok(None);
    }
    hash_line(n, line).map(Some)
}

/// What a `walk` script's output held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Walked {
    Absent,
    NotDir,
    /// Relative paths with `/`, sorted as `adapters::fs::walk_files` sorts them, without
    /// half-written artifacts; inode and ctime are `None` (NTFS gives neither through this).
    Files(Vec<(String, FileStat)>),
}

/// .NET ticks (100 ns since 0001-01-01 UTC) of 1970-01-01.
const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;

/// Nanoseconds since 1970 of a .NET tick count, clamped to what an i64 holds.
pub fn ticks_to_unix_ns(ticks: i64) -> i64 {
    let ns = (i128::from(ticks) - i128::from(UNIX_EPOCH_TICKS)) * 100;
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

pub fn walk(stdout: &[u8]) -> Result<Walked, BadOutput> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut files = Vec::new();
    let mut ended = false;
    for (n, raw) in lines(stdout) {
        let line = text(n, raw)?;
        if ended {
            return Err(bad(n, "output after the end of the listing"));
        }
        match line {
            "absent" if n == 1 => return Ok(Walked::Absent),
            "notdir" if n == 1 => return Ok(Walked::NotDir),
            "end" => {
                ended = true;
                continue;
            }
            _ => {}
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let [tag, name, size, ticks] = fields[..] else {
            return Err(bad(
                n,
                format!("expected `f NAME BYTES TICKS`, got `{line}`"),
            ));
        };
        if tag != "f" {
            return Err(bad(
                n,
                format!("expected `f NAME BYTES TICKS`, got `{line}`"),
            ));
        }
        let name = b64
            .decode(name)
            .map_err(|e| bad(n, format!("the name is not base64: {e}")))
            .and_then(|b| String::from_utf8(b).map_err(|_| bad(n, "the name is not UTF-8")))?;
        let bytes = size
            .parse()
            .map_err(|_| bad(n, format!("`{size}` is not a size in bytes")))?;
        let ticks: i64 = ticks
            .parse()
            .map_err(|_| bad(n, format!("`{ticks}` is not a tick count")))?;
        // Joined onto a folder on the admin host: a name that climbs out of it (`..`), names a
        // drive or stream (`:`) or hides a separator (`\\`) is refused, whatever the server sent.
        if name.is_empty()
            || name
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".." || s.contains(['\\', ':', '\0']))
        {
            return Err(bad(
                n,
                format!("`{name}` is not a relative path below the folder"),
            ));
        }
        let leaf = name.rsplit('/').next().unwrap_or(&name);
        if is_partial_name(leaf) {
            continue;
        }
        let stat = FileStat {
            bytes,
            mtime_ns: ticks_to_unix_ns(ticks),
            inode: None,
            ctime_ns: None,
        };
        files.push((name, stat));
    }
    if !ended {
        return Err(BadOutput::Truncated("no `end` line after the listing"));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Walked::Files(files))
}

/// The `ok` a script prints when it got to its end.
pub fn ok(stdout: &[u8]) -> Result<(), BadOutput> {
    match single(stdout)? {
        (_, "ok") => Ok(()),
        (n, other) => Err(bad(n, format!("expected `ok`, got `{other}`"))),
    }
}

/// The `installation_in_progress` script's answer: true for `busy`, false for `idle`.
pub fn in_progress(stdout: &[u8]) -> Result<bool, BadOutput> {
    match single(stdout)? {
        (_, "busy") => Ok(true),
        (_, "idle") => Ok(false),
        (n, other) => Err(bad(n, format!("expected `busy` or `idle`, got `{other}`"))),
    }
}

/// The `system_root` script's answer (`root B64`): the folder, `None` when it is not set.
pub fn system_root(stdout: &[u8]) -> Result<Option<String>, BadOutput> {
    let (n, line) = single(stdout)?;
    let b64 = match line.strip_prefix("root") {
        Some(rest) => rest.trim(),
        None => return Err(bad(n, format!("expected `root BASE64`, got `{line}`"))),
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| bad(n, format!("not base64: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| bad(n, "not UTF-8"))?;
    Ok(Some(text).filter(|t| !t.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn the_probes_answers_are_read_and_anything_else_is_refused() {
        assert!(in_progress(b"busy\r\n").unwrap());
        assert!(!in_progress(b"idle\r\n").unwrap());
        assert!(in_progress(b"maybe\r\n").is_err());
        assert!(in_progress(b"").is_err());
        let root = format!("root {}\r\n", b64(r"C:\WINNT".as_bytes()));
        assert_eq!(
            system_root(root.as_bytes()).unwrap().as_deref(),
            Some(r"C:\WINNT")
        );
        assert_eq!(system_root(b"root \r\n").unwrap(), None, "not set");
        assert!(system_root(b"C:\\WINNT\r\n").is_err());
    }

    #[test]
    fn a_stat_answer_is_absent_a_folder_or_a_file_with_its_size() {
        assert_eq!(stat(b"absent\r\n"), Ok(Stat::Absent));
        assert_eq!(stat(b"dir\r\n"), Ok(Stat::Dir));
        assert_eq!(stat(b"file 5242880\r\n"), Ok(Stat::File(5_242_880)));
        assert!(matches!(stat(b""), Err(BadOutput::Truncated(_))));
        assert!(stat(b"file many\r\n").is_err());
        assert!(stat(b"dir\r\ndir\r\n").is_err());
        assert!(stat(b"Absent-ish\r\n").is_err());
    }

    #[test]
    fn a_listing_decodes_names_sorts_them_and_leaves_out_half_written_files() {
        let line = |name: &str, size: u64, ticks: i64| {
            format!("f {} {size} {ticks}\r\n", b64(name.as_bytes()))
        };
        let out = [
            line("sub/Zürich.dll", 3, UNIX_EPOCH_TICKS + 10),
            line("a b.dll", 1, UNIX_EPOCH_TICKS),
            line("sub/.x.dll.upgrade-partial", 9, 0),
            "end\r\n".to_string(),
        ]
        .concat();
        let Walked::Files(files) = walk(out.as_bytes()).unwrap() else {
            panic!("not a listing");
        };
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a b.dll", "sub/Zürich.dll"]);
        assert_eq!(files[1].1.bytes, 3);
        assert_eq!(files[1].1.mtime_ns, 1_000);
        assert_eq!((files[0].1.inode, files[0].1.ctime_ns), (None, None));
        assert_eq!(walk(b"absent\r\n"), Ok(Walked::Absent));
        assert_eq!(walk(b"notdir\r\n"), Ok(Walked::NotDir));
        assert_eq!(walk(b"end\r\n"), Ok(Walked::Files(vec![])));
    }

    #[test]
    fn a_listing_cut_short_or_with_a_bad_name_is_an_error() {
        let one = format!("f {} 1 {UNIX_EPOCH_TICKS}\r\n", b64(b"a.dll"));
        assert!(matches!(walk(one.as_bytes()), Err(BadOutput::Truncated(_))));
        let err = walk(b"f not*base64 1 2\r\nend\r\n").unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
        let err = walk(format!("f {} 1 2\r\nend\r\n", b64(b"a//b")).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("relative path"), "{err}");
        assert!(walk(b"f x 1\r\nend\r\n").is_err());
    }

    #[test]
    fn a_listed_name_that_would_leave_the_folder_is_refused() {
        for name in [
            "../outside.dll",
            "sub/../../x",
            "./a",
            "..",
            r"sub\..\..\x",
            "C:/Windows/x.dll",
            "a:stream",
            "nul\0byte",
        ] {
            let out = format!("f {} 1 {UNIX_EPOCH_TICKS}\r\nend\r\n", b64(name.as_bytes()));
            let err = walk(out.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("relative path"), "{name}: {err}");
        }
        // A dot inside a name is only a name.
        let out = format!("f {} 1 0\r\nend\r\n", b64(b"a..b/.hidden.dll"));
        assert!(walk(out.as_bytes()).is_ok());
    }

    #[test]
    fn ticks_become_nanoseconds_since_1970() {
        // 2026-01-01T00:00:00Z: 1767225600 s after 1970.
        let ticks = UNIX_EPOCH_TICKS + 17_672_256_000_000_000;
        assert_eq!(ticks_to_unix_ns(ticks), 1_767_225_600_000_000_000);
        // Year 1 is further from 1970 than an i64 of nanoseconds reaches: clamped.
        assert_eq!(ticks_to_unix_ns(0), i64::MIN);
        assert_eq!(ticks_to_unix_ns(i64::MAX), i64::MAX);
    }
}

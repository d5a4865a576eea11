//! Reading what the remote host's scripts print (`script.rs`): one answer per script, checked
//! strictly. A stream cut short, a line that is not what the script prints, a bad base64 or hash
//! line is an error naming the line, never a shorter file or a shorter listing.

use std::io::Write;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::adapters::fs::{is_partial_name, FileStat};

/// Output that is not what the script prints.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadOutput {
    #[error("line {line} of its output: {why}")]
    Line { line: usize, why: String },
    #[error("its output ended early: {0}")]
    Truncated(&'static str),
    #[error("writing what arrived failed: {0}")]
    Write(String),
}

fn bad(line: usize, why: impl Into<String>) -> BadOutput {
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
fn hash_line(n: usize, line: &str) -> Result<String, BadOutput> {
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

/// What a `stream` script's output held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Streamed {
    Absent,
    Done {
        /// What the server hashed as it read.
        server_sha256: String,
        /// What arrived here, hashed as it was decoded.
        local_sha256: String,
        bytes: u64,
    },
}

/// Decodes a `stream` script's output into `sink`, hashing what it writes. The base64 is taken
/// without regard to where the lines break (a console host may wrap a long line anywhere): the
/// text is decoded in 4-character quads as it arrives, each chunk's padding ending a piece. The
/// last line must be the server's `sha256 HEX` line (base64 has no space, so `sha256 ` cannot
/// start a data line): without it the stream was cut short. Whether the two hashes agree is the
/// caller's to judge (it names the file).
pub fn stream(stdout: &[u8], sink: &mut impl Write) -> Result<Streamed, BadOutput> {
    let mut decoder = QuadDecoder::default();
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut server = None;
    let mut first = true;
    for (n, line) in lines(stdout) {
        if server.is_some() {
            return Err(bad(n, "output after the sha256 line"));
        }
        if line == b"absent" && first {
            return match lines(stdout).nth(1) {
                None => Ok(Streamed::Absent),
                Some((m, _)) => Err(bad(m, "output after `absent`")),
            };
        }
        first = false;
        if line.starts_with(b"sha256 ") {
            if !decoder.pending.is_empty() {
                return Err(bad(n, "the base64 before it ends inside a quad"));
            }
            server = Some(hash_line(n, text(n, line)?)?);
            continue;
        }
        let decoded = decoder
            .push(line)
            .map_err(|e| bad(n, format!("not base64: {e}")))?;
        hasher.update(&decoded);
        sink.write_all(&decoded)
            .map_err(|e| BadOutput::Write(e.to_string()))?;
        bytes += decoded.len() as u64;
    }
    let server_sha256 = server.ok_or(BadOutput::Truncated("no sha256 line after the data"))?;
    sink.flush().map_err(|e| BadOutput::Write(e.to_string()))?;
    Ok(Streamed::Done {
        server_sha256,
        local_sha256: hex::encode(hasher.finalize()),
        bytes,
    })
}

/// Base64 text fed in pieces that may break anywhere: decodes every whole quad (4 characters)
/// as it comes, keeping the rest for the next piece. A quad with padding ends one chunk's base64
/// (each line the script prints is a whole `ToBase64String`), so it is decoded on its own.
#[derive(Default)]
struct QuadDecoder {
    pending: Vec<u8>,
}

impl QuadDecoder {
    fn push(&mut self, text: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.pending.extend_from_slice(text);
        let whole = self.pending.len() / 4 * 4;
        let mut out = Vec::with_capacity(whole / 4 * 3);
        let mut from = 0;
        while from < whole {
            // Up to the end of the first quad holding padding, or all the whole quads.
            let to = self.pending[from..whole]
                .iter()
                .position(|b| *b == b'=')
                .map_or(whole, |at| (from + at) / 4 * 4 + 4);
            b64.decode_vec(&self.pending[from..to], &mut out)?;
            from = to;
        }
        self.pending.drain(..whole);
        Ok(out)
    }
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

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
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
    fn a_streamed_file_is_decoded_and_hashed_as_it_arrives() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let (a, b) = data.split_at(60_000);
        let out = format!(
            "{}\r\n{}\r\nsha256 {}\r\n",
            b64(a),
            b64(b),
            sha(&data).to_uppercase()
        );
        let mut got = Vec::new();
        let streamed = stream(out.as_bytes(), &mut got).unwrap();
        assert_eq!(got, data);
        assert_eq!(
            streamed,
            Streamed::Done {
                server_sha256: sha(&data),
                local_sha256: sha(&data),
                bytes: 100_000
            }
        );
        // An empty file: the hash line alone.
        let empty = format!("sha256 {}\r\n", sha(b""));
        assert!(matches!(
            stream(empty.as_bytes(), &mut Vec::new()),
            Ok(Streamed::Done { bytes: 0, .. })
        ));
        assert_eq!(stream(b"absent\r\n", &mut Vec::new()), Ok(Streamed::Absent));
    }

    #[test]
    fn a_stream_cut_short_is_an_error_not_a_shorter_file() {
        let out = format!("{}\r\n{}\r\n", b64(b"first chunk"), b64(b"second"));
        assert_eq!(
            stream(out.as_bytes(), &mut Vec::new()),
            Err(BadOutput::Truncated("no sha256 line after the data"))
        );
        // Cut inside a quad, then the hash line: the base64 does not end where it should.
        let cut = &b64(b"a chunk of bytes")[..7];
        let out = format!("{cut}\r\nsha256 {}\r\n", sha(b"a chunk of bytes"));
        let err = stream(out.as_bytes(), &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("line 2") && err.to_string().contains("quad"),
            "{err}"
        );
        // A character base64 does not have names its line.
        let err = stream(b"QUJD\r\nnot*base64\r\n", &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("line 2") && err.to_string().contains("base64"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_hash_line_or_a_line_after_it_is_an_error() {
        let data = b64(b"x");
        for out in [
            format!("{data}\r\nsha256 abc\r\n"),
            format!("{data}\r\nsha256 {}\r\n", "g".repeat(64)),
            format!("{data}\r\nsha256 \r\n"),
            format!("{data}\r\nsha256 {}\r\n{data}\r\n", sha(b"x")),
        ] {
            let err = stream(out.as_bytes(), &mut Vec::new()).unwrap_err();
            assert!(
                matches!(err, BadOutput::Line { line: 2 | 3, .. }),
                "{out}: {err}"
            );
        }
        assert!(sha256(b"sha256 12\r\n").is_err());
        assert_eq!(sha256(b"absent\r\n"), Ok(None));
        assert_eq!(
            sha256(format!("sha256 {}\r\n", sha(b"k")).as_bytes()),
            Ok(Some(sha(b"k")))
        );
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
    fn a_stream_rewrapped_at_79_columns_decodes_to_the_same_bytes_and_hash() {
        // Two chunks as the script prints them (the first ends in padding), then a console host
        // that wraps every line at 79 columns.
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (a, b) = data.split_at(40_001);
        let wrap = |text: String| {
            let chars: Vec<char> = text.chars().collect();
            chars
                .chunks(79)
                .map(|c| c.iter().collect::<String>() + "\r\n")
                .collect::<String>()
        };
        assert!(b64(a).ends_with('='), "the first chunk's base64 is padded");
        let out = format!("{}{}sha256 {}\r\n", wrap(b64(a)), wrap(b64(b)), sha(&data));
        let mut got = Vec::new();
        let streamed = stream(out.as_bytes(), &mut got).unwrap();
        assert_eq!(got, data);
        assert_eq!(
            streamed,
            Streamed::Done {
                server_sha256: sha(&data),
                local_sha256: sha(&data),
                bytes: 70_000
            }
        );
        // Cut inside a quad before the hash line: an error, not a shorter file.
        let cut = format!("{}\r\nsha256 {}\r\n", &b64(b"abcdef")[..6], sha(b"abcdef"));
        assert!(stream(cut.as_bytes(), &mut Vec::new()).is_err());
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

//! Files: atomic writes, one-pass copy-and-hash, sha256 manifests compatible with `sha256sum -c`,
//! and the `.NAME.upgrade-partial` naming of half-written artifacts. Synchronous (call from
//! `spawn_blocking` for big trees); removes only what the caller names (half-written artifacts).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Name of the manifest a file backup writes into its destination folder.
pub const MANIFEST_NAME: &str = "SHA256SUMS";

/// Suffix of every half-written artifact (see [`temp_sibling`]).
pub const PARTIAL_SUFFIX: &str = ".upgrade-partial";

/// A file-system operation that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: not a sha256sum line: {message}", path.display())]
    Manifest {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{} has no file name", path.display())]
    NoFileName { path: PathBuf },
    /// A file operation on a remote server (`adapters::remote`): `cause` starts with what failed
    /// (`WinRM: ...`, `PowerShell: ...`).
    #[error("cannot {op} {path} on {server}: {cause}")]
    Remote {
        op: &'static str,
        /// The Windows path on the server.
        path: String,
        /// The server's WinRM endpoint.
        server: String,
        cause: String,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FsError + 'a {
    move |source| FsError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The temporary name an artifact is written under before it is renamed to `path`:
/// `DIR/.NAME.upgrade-partial`. A file with this name is never complete. The name is fixed, not
/// random as `tempfile`'s: a tool is told to write there (miiskmu), and a resumed run finds and
/// removes what a killed run left. A path that already has a partial name is its own temporary
/// name: a caller that writes to a temporary name and hands it to code that writes through a
/// temporary name (a key file's copy fetched to its staging name) gets one half-written file that
/// the next run finds, never `..NAME.upgrade-partial.upgrade-partial`, which no run looks for.
pub fn temp_sibling(path: &Path) -> PathBuf {
    renamed(path, |name| {
        if is_partial_name(name) {
            name.to_string()
        } else {
            format!(".{name}{PARTIAL_SUFFIX}")
        }
    })
}

/// Renames the temporary file `temp` to `path` (nothing to do when `path` is itself the
/// temporary name, see [`temp_sibling`]). Not yet durable (see [`commit_temp`]).
pub fn into_place(temp: &Path, path: &Path) -> Result<(), FsError> {
    if temp == path {
        return Ok(());
    }
    std::fs::rename(temp, path).map_err(io("rename into place", path))
}

/// `path` with its file name replaced by `name(old name)`. A Windows server's path (`C:\...`,
/// `\\server\share\...`) is split at its last `\` or `/` on any machine: on a Linux admin host,
/// where `\` is no separator, `D:\Upgrade\keys.bin` is still the file `keys.bin` in `D:\Upgrade`.
pub fn renamed(path: &Path, name: impl FnOnce(&str) -> String) -> PathBuf {
    let text = path.to_string_lossy();
    let b = text.as_bytes();
    let windows = (b.len() >= 3
        && b[0].is_ascii_alphabetic()
        && b[1] == b':'
        && (b[2] == b'\\' || b[2] == b'/'))
        || text.starts_with(r"\\");
    if windows {
        let at = text.rfind(['\\', '/']).map_or(0, |i| i + 1);
        return PathBuf::from(format!("{}{}", &text[..at], name(&text[at..])));
    }
    let old = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(name(&old))
}

/// Whether a file name is a half-written artifact's (see [`temp_sibling`]).
pub fn is_partial_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(PARTIAL_SUFFIX)
}

/// Creates (or empties) `path` for writing, readable by its owner only from its first byte on: a
/// fetched copy may be a key file, which must never sit readable by others under its temporary
/// name while it is written (unix: mode 0600 also when a leftover file had another mode; Windows:
/// the owner-only DACL of [`restrict_permissions`], set while the file is still empty).
pub fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(file)
    }
    #[cfg(windows)]
    {
        let file = options.open(path)?;
        crate::adapters::windows_acl::owner_only(path)?;
        Ok(file)
    }
}

/// Writes `bytes` to `path` so that a reader sees the old content or the new, never a mix:
/// temp sibling, fsync, rename, fsync of the folder (unix). Not `tempfile`'s `persist`: that is the
/// rename alone (its documentation: neither the content nor the folder is synchronised), so both
/// fsyncs would stay here, and its temp names are not the `.NAME.upgrade-partial` that marks a
/// half-written artifact.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let temp = temp_sibling(path);
    let result = (|| {
        let mut file = File::create(&temp).map_err(io("create", &temp))?;
        file.write_all(bytes).map_err(io("write", &temp))?;
        file.sync_all().map_err(io("flush to disk", &temp))?;
        drop(file);
        std::fs::rename(&temp, path).map_err(io("rename into place", path))?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    tracing::debug!(path = %path.display(), bytes = bytes.len(), ok = result.is_ok(), "atomic write");
    result
}

/// Renames a finished temp file into place and makes the rename durable.
pub fn commit_temp(temp: &Path, path: &Path) -> Result<(), FsError> {
    std::fs::rename(temp, path).map_err(io("rename into place", path))?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<(), FsError> {
    sync_dir(path.parent().unwrap_or(Path::new("")))
}

/// Flushes a folder, so that the names in it (renames, new files) last.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> Result<(), FsError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("flush folder", dir))
}

/// Windows: a rename is made durable by the file system journal; folders cannot be opened to fsync.
#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> Result<(), FsError> {
    Ok(())
}

/// sha256 of a file, hex, streaming.
pub fn sha256_file(path: &Path) -> Result<String, FsError> {
    let mut file = File::open(path).map_err(io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// sha256 of a file, or `None` when nothing is there. Any other failure to read it (access
/// denied) is an error, never "absent".
pub fn sha256_if_exists(path: &Path) -> Result<Option<String>, FsError> {
    match File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("open", path)(e)),
        Ok(_) => sha256_file(path).map(Some),
    }
}

/// Copies `src` to `dst` reading it once (copy and hash in one pass) through a temp sibling of
/// `dst`, then renames. Creates `dst`'s folder. Returns the sha256 (hex) of what was written.
/// Durable: the file and its folder are flushed to disk before it returns.
pub fn copy_with_sha256(src: &Path, dst: &Path) -> Result<String, FsError> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(io("create folder", parent))?;
    }
    let sha = copy_hashing(src, dst)?;
    sync_files(&[dst.to_path_buf()])?;
    Ok(sha)
}

/// Copies `src` to `dst` (whose folder exists) reading it once, hashing what it copies, through a
/// temp sibling of `dst` renamed into place. NOT yet durable: a caller copying many files flushes
/// them all at once with [`sync_files`] before it writes what commits them (a manifest).
pub fn copy_hashing(src: &Path, dst: &Path) -> Result<String, FsError> {
    let temp = temp_sibling(dst);
    let result = (|| {
        let mut input = File::open(src).map_err(io("open", src))?;
        let mut output = create_private(&temp).map_err(io("create", &temp))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = input.read(&mut buf).map_err(io("read", src))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            output.write_all(&buf[..n]).map_err(io("write", &temp))?;
        }
        start_writeback(&output);
        drop(output);
        into_place(&temp, dst)?;
        Ok(hex::encode(hasher.finalize()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    tracing::trace!(src = %src.display(), dst = %dst.display(), ok = result.is_ok(), "copied");
    result
}

/// Linux: starts writing a file's data to disk now, without waiting (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`), so that the `fsync` that makes it durable later finds little left to
/// do. It makes nothing durable by itself (no metadata, no disk cache flush).
#[cfg(target_os = "linux")]
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a descriptor this function borrows; a failure only means
    // the later fsync does all the work.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File) {}

/// How many files are flushed at once: waits on the disk, not on the CPU, and a journaling file
/// system commits concurrent flushes together.
const FLUSHERS: usize = 8;

/// Flushes each file to disk, then each of their folders once (so their renames last).
pub fn sync_files(files: &[PathBuf]) -> Result<(), FsError> {
    let flush = |f: &PathBuf| {
        // Write access: Windows flushes (FlushFileBuffers) only a handle that may write.
        std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .and_then(|file| file.sync_all())
            .map_err(io("flush to disk", f))
    };
    let chunk = files.len().div_ceil(FLUSHERS).max(1);
    std::thread::scope(|scope| {
        let flushers: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().try_for_each(flush)))
            .collect();
        flushers
            .into_iter()
            .try_for_each(|f| f.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })?;
    let folders: std::collections::BTreeSet<&Path> =
        files.iter().filter_map(|f| f.parent()).collect();
    for folder in folders {
        sync_dir(folder)?;
    }
    tracing::debug!(files = files.len(), "flushed to disk");
    Ok(())
}

/// What a quick check compares (as rsync's: size and modification time; with the inode and the
/// status-change time where the platform has them), read before a file is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStat {
    pub bytes: u64,
    /// Modification time, nanoseconds since 1970.
    pub mtime_ns: i64,
    /// The inode number (unix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// The status-change time, nanoseconds since 1970 (unix: any write, rename or `touch -r`
    /// moves it, and no user can set it back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_ns: Option<i64>,
}

impl FileStat {
    fn of(m: &std::fs::Metadata) -> FileStat {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
            FileStat {
                bytes: m.len(),
                mtime_ns: ns(m.mtime(), m.mtime_nsec()),
                inode: Some(m.ino()),
                ctime_ns: Some(ns(m.ctime(), m.ctime_nsec())),
            }
        }
        #[cfg(not(unix))]
        {
            let mtime_ns =
                m.modified()
                    .ok()
                    .map_or(0, |t| match t.duration_since(std::time::UNIX_EPOCH) {
                        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
                        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
                    });
            FileStat {
                bytes: m.len(),
                mtime_ns,
                inode: None,
                ctime_ns: None,
            }
        }
    }

    /// Whether the file changed at `at` or later (or in the future): a write within the same clock
    /// tick may then leave every field as it was, so a hash taken now cannot be trusted for it
    /// later (git calls this "racy"). `at` in nanoseconds since 1970.
    pub fn changed_since(&self, at_ns: i64) -> bool {
        self.mtime_ns >= at_ns || self.ctime_ns.is_some_and(|c| c >= at_ns)
    }
}

/// The size, times and inode of a file (following a symbolic link).
pub fn stat(path: &Path) -> Result<FileStat, FsError> {
    Ok(FileStat::of(
        &std::fs::metadata(path).map_err(io("read the size and times of", path))?,
    ))
}

/// Nanoseconds since 1970 on this machine's clock.
pub fn now_ns() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Every regular file under `dir` with its [`FileStat`], sorted as [`walk_files`] sorts them.
pub fn walk_stats(dir: &Path) -> Result<Vec<(String, FileStat)>, FsError> {
    walk_files(dir)?
        .into_iter()
        .map(|rel| {
            let s = stat(&dir.join(&rel))?;
            Ok((rel, s))
        })
        .collect()
}

/// Every regular file under `dir`, as sorted relative paths with `/`. Half-written artifacts
/// (`.NAME.upgrade-partial`) are left out; symbolic links to folders are not followed.
pub fn walk_files(dir: &Path) -> Result<Vec<String>, FsError> {
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), FsError> {
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let file_type = entry.file_type().map_err(io("inspect", &path))?;
        let rel = format!("{prefix}{name}");
        if file_type.is_dir() {
            walk(&path, &format!("{rel}/"), out)?;
        } else if is_partial_name(&name) {
            continue;
        } else if file_type.is_file() || (file_type.is_symlink() && path.is_file()) {
            out.push(rel);
        }
    }
    Ok(())
}

/// Half-written artifacts left under `dir` by an interrupted run (for cleaning up).
pub fn partial_files(dir: &Path) -> Result<Vec<PathBuf>, FsError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io("list", &d))? {
            let entry = entry.map_err(io("list", &d))?;
            let file_type = entry.file_type().map_err(io("inspect", &entry.path()))?;
            if file_type.is_dir() {
                stack.push(entry.path());
            } else if is_partial_name(&entry.file_name().to_string_lossy()) {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Makes a file readable and writable by its owner only (unix: mode 0600).
#[cfg(unix)]
pub fn restrict_permissions(path: &Path) -> Result<(), FsError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io("restrict permissions of", path))
}

/// Windows: a protected DACL granting full control to the file's owner, SYSTEM and
/// Administrators only (`adapters::windows_acl`): nothing inherited from the folder lets others in.
#[cfg(windows)]
pub fn restrict_permissions(path: &Path) -> Result<(), FsError> {
    crate::adapters::windows_acl::owner_only(path).map_err(io("restrict permissions of", path))
}

/// A sha256sum-compatible manifest: `HEX  RELATIVE/PATH` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// (relative path with `/`, sha256 hex), sorted by path when built by [`Manifest::of_dir`].
    pub entries: Vec<(String, String)>,
}

/// A manifest entry that does not match the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    Missing {
        path: String,
    },
    Different {
        path: String,
        expected: String,
        found: String,
    },
    Unreadable {
        path: String,
        error: String,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Missing { path } => write!(f, "{path}: missing"),
            Mismatch::Different {
                path,
                expected,
                found,
            } => {
                write!(f, "{path}: sha256 {found}, expected {expected}")
            }
            Mismatch::Unreadable { path, error } => write!(f, "{path}: unreadable: {error}"),
        }
    }
}

impl Manifest {
    /// Hashes every file under `dir` (except a manifest at its top) into a manifest.
    pub fn of_dir(dir: &Path) -> Result<Manifest, FsError> {
        let mut entries = Vec::new();
        for rel in walk_files(dir)? {
            if rel == MANIFEST_NAME {
                continue;
            }
            let hash = sha256_file(&dir.join(&rel))?;
            entries.push((rel, hash));
        }
        Ok(Manifest { entries })
    }

    /// The recorded hash of a relative path.
    pub fn get(&self, rel: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(p, _)| p == rel)
            .map(|(_, h)| h.as_str())
    }

    /// The text, as `sha256sum` writes it (names with `\` or newlines escaped like GNU sha256sum).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (path, hash) in &self.entries {
            if path.contains(['\\', '\n', '\r']) {
                let escaped = path
                    .replace('\\', "\\\\")
                    .replace('\n', "\\n")
                    .replace('\r', "\\r");
                out.push_str(&format!("\\{hash}  {escaped}\n"));
            } else {
                out.push_str(&format!("{hash}  {path}\n"));
            }
        }
        out
    }

    pub fn parse(text: &str, origin: &Path) -> Result<Manifest, FsError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            let bad = |message: &str| FsError::Manifest {
                path: origin.to_path_buf(),
                line: i + 1,
                message: message.to_string(),
            };
            let (escaped, line) = match line.strip_prefix('\\') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            if line.len() < 66 || !line.is_char_boundary(64) {
                return Err(bad(
                    "expected 64 hex digits, two spaces (or space and `*`) and a path",
                ));
            }
            let (hash, rest) = line.split_at(64);
            if !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad("the hash is not 64 hex digits"));
            }
            let path = rest
                .strip_prefix("  ")
                .or_else(|| rest.strip_prefix(" *"))
                .ok_or_else(|| bad("expected two spaces (or ` *`) after the hash"))?;
            let path = if escaped {
                unescape(path)
            } else {
                path.to_string()
            };
            if path.is_empty() {
                return Err(bad("the path is empty"));
            }
            entries.push((path, hash.to_ascii_lowercase()));
        }
        Ok(Manifest { entries })
    }

    /// Writes the manifest atomically.
    pub fn write(&self, path: &Path) -> Result<(), FsError> {
        write_atomic(path, self.to_text().as_bytes())
    }

    pub fn read(path: &Path) -> Result<Manifest, FsError> {
        let text = std::fs::read_to_string(path).map_err(io("read", path))?;
        Manifest::parse(&text, path)
    }

    /// Every entry whose file under `dir` is missing, unreadable or different. Files not in the
    /// manifest are not reported (as `sha256sum -c`).
    pub fn verify_dir(&self, dir: &Path) -> Vec<Mismatch> {
        let mut out = Vec::new();
        for (rel, expected) in &self.entries {
            let path = dir.join(rel);
            if !path.is_file() {
                out.push(Mismatch::Missing { path: rel.clone() });
                continue;
            }
            match sha256_file(&path) {
                Ok(found) if found.eq_ignore_ascii_case(expected) => {}
                Ok(found) => out.push(Mismatch::Different {
                    path: rel.clone(),
                    expected: expected.clone(),
                    found,
                }),
                Err(e) => out.push(Mismatch::Unreadable {
                    path: rel.clone(),
                    error: e.to_string(),
                }),
            }
        }
        out
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether anything exists at `path` (a file, folder, or link).
pub fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// Whether `path` is a folder.
pub fn is_dir(path: &Path) -> bool {
    path.is_dir()
}

/// Size of a file in bytes.
pub fn file_size(path: &Path) -> Result<u64, FsError> {
    Ok(std::fs::metadata(path)
        .map_err(io("read the size of", path))?
        .len())
}

/// Reads a whole file (installer logs, for their tail).
pub fn read_file(path: &Path) -> Result<Vec<u8>, FsError> {
    std::fs::read(path).map_err(io("read", path))
}

/// Renames `from` to `to` durably (an artifact's temp name to its final name).
pub fn rename(from: &Path, to: &Path) -> Result<(), FsError> {
    commit_temp(from, to)
}

/// Removes a file if it is there (a half-written artifact from a killed run).
pub fn remove_if_exists(path: &Path) -> Result<(), FsError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Creates the folders above `path`.
pub fn create_parent_dirs(path: &Path) -> Result<(), FsError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(io("create the folder", parent))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_windows_servers_path_keeps_its_folder_on_any_machine() {
        assert_eq!(
            temp_sibling(Path::new(r"D:\Upgrade\miis-keys.bin")),
            Path::new(r"D:\Upgrade\.miis-keys.bin.upgrade-partial")
        );
        assert_eq!(
            renamed(Path::new(r"\\srv\share\k.bin"), |n| format!("{n}.x")),
            Path::new(r"\\srv\share\k.bin.x")
        );
        assert_eq!(
            renamed(Path::new("C:/Upgrade/k.bin"), |n| format!("{n}.x")),
            Path::new("C:/Upgrade/k.bin.x")
        );
    }

    #[test]
    fn the_partial_name_of_an_artifact_is_a_hidden_sibling() {
        let t = temp_sibling(Path::new("/backups/keys.bin"));
        assert_eq!(t, Path::new("/backups/.keys.bin.upgrade-partial"));
        assert!(is_partial_name(".keys.bin.upgrade-partial"));
        assert!(!is_partial_name("keys.bin"));
    }

    /// A key copy is fetched to its staging name through the fetch's temporary name: that must be
    /// the staging name itself, which the next run removes, not a partial of a partial.
    #[test]
    fn the_temporary_name_of_a_partial_name_is_itself() {
        let staging = temp_sibling(Path::new("/admin/keys/k.bin"));
        assert_eq!(temp_sibling(&staging), staging);
        let remote = temp_sibling(Path::new(r"D:\Upgrade\k.bin"));
        assert_eq!(temp_sibling(&remote), remote);
    }

    #[test]
    fn a_copy_to_a_partial_name_writes_that_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("k.bin");
        std::fs::write(&src, "key set").unwrap();
        std::fs::create_dir(dir.path().join("copy")).unwrap();
        let staging = temp_sibling(&dir.path().join("copy/k.bin"));
        copy_hashing(&src, &staging).unwrap();
        assert_eq!(std::fs::read(&staging).unwrap(), b"key set");
        assert_eq!(
            partial_files(&dir.path().join("copy")).unwrap(),
            vec![staging]
        );
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("journal.json")]);
    }

    #[test]
    fn an_atomic_write_into_a_missing_folder_fails_naming_the_path() {
        let err = write_atomic(Path::new("/nonexistent-dir/x.json"), b"x").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/"), "{err}");
    }

    #[test]
    fn a_copy_returns_the_sha256_of_the_source_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("Rules.dll");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let dst = dir.path().join("copy/sub/Rules.dll");
        let hash = copy_with_sha256(&src, &dst).unwrap();
        assert_eq!(hash, hex::encode(Sha256::digest(&data)));
        assert_eq!(hash, sha256_file(&src).unwrap());
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        assert!(partial_files(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn walking_lists_files_sorted_with_slashes_and_skips_partial_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::write(dir.path().join("b/c/z.dll"), "z").unwrap();
        std::fs::write(dir.path().join("a.dll"), "a").unwrap();
        std::fs::write(dir.path().join("b/.y.dll.upgrade-partial"), "half").unwrap();
        assert_eq!(walk_files(dir.path()).unwrap(), vec!["a.dll", "b/c/z.dll"]);
        assert_eq!(
            partial_files(dir.path()).unwrap(),
            vec![dir.path().join("b/.y.dll.upgrade-partial")]
        );
    }

    #[cfg(unix)]
    #[test]
    fn restricted_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.bin");
        std::fs::write(&path, "k").unwrap();
        restrict_permissions(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_manifest_round_trips_and_finds_missing_and_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("one.dll"), "1").unwrap();
        std::fs::write(dir.path().join("sub/two.dll"), "2").unwrap();
        std::fs::write(dir.path().join("sub/back\\slash.dll"), "3").unwrap();
        let manifest = Manifest::of_dir(dir.path()).unwrap();
        assert_eq!(manifest.entries.len(), 3);
        let path = dir.path().join(MANIFEST_NAME);
        manifest.write(&path).unwrap();
        assert_eq!(Manifest::read(&path).unwrap(), manifest);
        assert_eq!(
            Manifest::of_dir(dir.path()).unwrap(),
            manifest,
            "the manifest itself is not listed"
        );
        assert!(manifest.verify_dir(dir.path()).is_empty());

        std::fs::write(dir.path().join("one.dll"), "changed").unwrap();
        std::fs::remove_file(dir.path().join("sub/two.dll")).unwrap();
        let problems = manifest.verify_dir(dir.path());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(matches!(&problems[0], Mismatch::Different { path, .. } if path == "one.dll"));
        assert_eq!(
            problems[1],
            Mismatch::Missing {
                path: "sub/two.dll".into()
            }
        );
    }

    #[test]
    fn a_manifest_written_here_passes_the_real_sha256sum() {
        let Ok(status) = std::process::Command::new("sha256sum")
            .arg("--version")
            .output()
        else {
            panic!("sha256sum (coreutils) is needed for this test");
        };
        assert!(status.status.success());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("Extensions/sub dir")).unwrap();
        std::fs::write(dir.path().join("Extensions/a.dll"), "aaa").unwrap();
        std::fs::write(dir.path().join("Extensions/sub dir/b c.dll"), "bbb").unwrap();
        std::fs::write(dir.path().join("Extensions/we\\ird.dll"), "ccc").unwrap();
        let manifest = Manifest::of_dir(dir.path()).unwrap();
        manifest.write(&dir.path().join(MANIFEST_NAME)).unwrap();
        let check = std::process::Command::new("sha256sum")
            .args(["-c", "--strict", MANIFEST_NAME])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stdout)
        );

        // And a manifest written by sha256sum reads back the same.
        let made = std::process::Command::new("sh")
            .args(["-c", "find . -type f ! -name SHA256SUMS | sed 's|^./||' | sort | xargs -d '\\n' sha256sum"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let theirs =
            Manifest::parse(&String::from_utf8(made.stdout).unwrap(), Path::new("-")).unwrap();
        let mut ours = manifest.entries.clone();
        let mut theirs = theirs.entries;
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);

        // A tampered file is caught by sha256sum too: the format really is theirs.
        std::fs::write(dir.path().join("Extensions/a.dll"), "tampered").unwrap();
        let check = std::process::Command::new("sha256sum")
            .args(["-c", MANIFEST_NAME])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(!check.status.success());
    }

    #[test]
    fn a_malformed_manifest_line_is_reported_with_its_number() {
        let text = format!("{}  ok.dll\nnot a line\n", "a".repeat(64));
        let err = Manifest::parse(&text, Path::new("/b/SHA256SUMS")).unwrap_err();
        assert!(err.to_string().starts_with("/b/SHA256SUMS:2:"), "{err}");
    }
    #[cfg(unix)]
    #[test]
    fn a_private_file_is_owner_only_from_the_start_even_over_a_leftover_readable_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".keys.bin.upgrade-partial");
        std::fs::write(&path, "left by a killed run").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let file = create_private(&path).unwrap();
        let mode = file.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "not emptied");
        let fresh = dir.path().join("fresh");
        create_private(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

//! The server's Windows Installer version, read the way Microsoft documents it ("Determining the
//! Windows Installer Version": the file version of Msi.dll in the system folder, where msiexec.exe
//! also is). Read-only; what a version means for a command line is the steps' business.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fs::FsError;
use super::host::Host;

/// `major.minor.build.revision`, e.g. 2.0.3790.0 (Windows Server 2003 as released).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version(pub [u16; 4]);

impl Version {
    pub fn major(self) -> u16 {
        self.0[0]
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("{0}")]
    Fs(#[from] FsError),
    #[error("{} has no version resource (VS_VERSION_INFO)", path.display())]
    NoVersion { path: PathBuf },
}

/// msi.dll beside the msiexec the plan runs (both live in the system folder). A Windows server's
/// path keeps its `\` separators on a Linux admin host (`adapters::fs::renamed`).
pub fn msi_dll_beside(msiexec: &Path) -> PathBuf {
    crate::adapters::fs::renamed(msiexec, |_| "msi.dll".to_string())
}

/// The file version of `msi_dll` on the server.
pub async fn read(host: &dyn Host, msi_dll: &Path) -> Result<Version, VersionError> {
    let bytes = host.read_file(msi_dll).await?;
    file_version(&bytes).ok_or_else(|| VersionError::NoVersion {
        path: msi_dll.to_path_buf(),
    })
}

/// The version in a file's VS_VERSIONINFO resource: the UTF-16 key `VS_VERSION_INFO`, padding to
/// a 32-bit boundary, then VS_FIXEDFILEINFO (signature 0xFEEF04BD, structure version,
/// dwFileVersionMS, dwFileVersionLS, ...). Found by its key and signature, not by walking the PE
/// resource tree.
pub fn file_version(bytes: &[u8]) -> Option<Version> {
    let key: Vec<u8> = "VS_VERSION_INFO\0"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let dword = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut from = 0;
    while let Some(pos) = find(&bytes[from..], &key) {
        let end = from + pos + key.len();
        from = end;
        for value in [end, end + 2] {
            if dword(value) == Some(0xFEEF_04BD) {
                let (ms, ls) = (dword(value + 8)?, dword(value + 12)?);
                return Some(Version([
                    (ms >> 16) as u16,
                    ms as u16,
                    (ls >> 16) as u16,
                    ls as u16,
                ]));
            }
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use upgrade_lab::layout::msi_dll_bytes;

    #[test]
    fn msi_dll_is_found_beside_a_windows_servers_msiexec_on_any_admin_host() {
        assert_eq!(
            msi_dll_beside(Path::new(r"C:\Windows\System32\msiexec.exe")),
            PathBuf::from(r"C:\Windows\System32\msi.dll")
        );
        assert_eq!(
            msi_dll_beside(Path::new("/lab/bin/msiexec")),
            PathBuf::from("/lab/bin/msi.dll")
        );
    }

    #[test]
    fn the_file_version_is_read_from_the_version_resource() {
        let dll = msi_dll_bytes([2, 0, 3790, 0]);
        let v = file_version(&dll).unwrap();
        assert_eq!(v, Version([2, 0, 3790, 0]));
        assert_eq!(v.to_string(), "2.0.3790.0");
        assert_eq!(v.major(), 2);
        // A block whose key ends on a 32-bit boundary has no padding before VS_FIXEDFILEINFO.
        let key: Vec<u8> = "VS_VERSION_INFO\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut unpadded = msi_dll_bytes([5, 0, 7600, 16385]);
        let end = find(&unpadded, &key).unwrap() + key.len();
        unpadded.drain(end..end + 2);
        assert_eq!(file_version(&unpadded), Some(Version([5, 0, 7600, 16385])));
    }

    #[tokio::test]
    async fn a_file_without_a_version_resource_has_no_version() {
        assert_eq!(file_version(b"MZ not a dll"), None);
        let mut cut = msi_dll_bytes([3, 1, 4000, 1830]);
        cut.truncate(cut.len() - 40);
        assert_eq!(file_version(&cut), None, "cut inside VS_FIXEDFILEINFO");
        let err = read(
            &crate::adapters::host::Local,
            Path::new("/nonexistent/msi.dll"),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/msi.dll"), "{err}");
    }
}

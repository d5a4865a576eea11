//! The lab server's persistent state (DIR/lab.json): installed products as Uninstall entries, the
//! key set, the sync database's key set id, services, the service account and the SQL login.
//! TEST DOUBLE. Every update holds DIR/lab.lock and replaces lab.json by atomic rename; nothing
//! here touches the SQL model (DIR/sql/, owned by the TDS double).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::layout::Flavour;

/// Errors reading or writing lab.json.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source} (is this a lab made by `upgrade-lab init`?)")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid lab state file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A product as the Uninstall registry key describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Windows Installer product code, `{GUID}` in upper case.
    pub code: String,
    pub name: String,
    pub version: String,
    pub publisher: String,
    /// Windows path ending in `\`, e.g. `C:\Program Files\Microsoft Identity Integration Server\`.
    pub install_location: String,
    /// Listed under `WOW6432Node` (a 32-bit product on 64-bit Windows).
    pub wow6432: bool,
    /// The sync service the product installs.
    pub service: String,
}

/// The engine's encryption key set as the server holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    pub id: String,
    /// The key material, hex.
    pub secret_hex: String,
}

/// A sync database and the key set its encrypted data needs. Survives every uninstall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    pub name: String,
    pub key_set_id: String,
}

/// A Windows service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub display_name: String,
    pub running: bool,
}

/// The sync service account (`DOMAIN\user` and its password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub domain: String,
    pub user: String,
    pub password: String,
}

impl Account {
    /// Does `[DOMAIN\]USER` name this account (case-insensitive, domain optional)?
    pub fn matches(&self, name: &str) -> bool {
        match name.split_once('\\') {
            Some((domain, user)) => {
                domain.eq_ignore_ascii_case(&self.domain) && user.eq_ignore_ascii_case(&self.user)
            }
            None => name.eq_ignore_ascii_case(&self.user),
        }
    }
}

/// The SQL login the TDS double accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlLogin {
    pub login: String,
    pub password: String,
}

/// The server's local administrator that the WinRM listener accepts (NTLM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinrmLogin {
    pub user: String,
    pub password: String,
}

/// What an installer run received (msiexec /i or the setup stand-in), as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallRecord {
    pub tool: String,
    pub package: String,
    /// `NAME=VALUE` properties (msiexec) or `/switch:value` pairs (setup), in order.
    pub properties: Vec<(String, String)>,
    pub exit: i32,
    pub at: String,
}

/// A key file written by miiskmu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyExport {
    pub path: String,
    pub key_set_id: String,
    pub at: String,
}

/// The whole of lab.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    pub flavour: Flavour,
    pub products: Vec<Product>,
    pub key_set: Option<KeySet>,
    pub databases: Vec<Database>,
    pub services: Vec<Service>,
    pub account: Account,
    pub sql: SqlLogin,
    /// The upgrade-lab executable the wrappers run (installers write new wrappers with it).
    pub exe: PathBuf,
    #[serde(default)]
    pub installs: Vec<InstallRecord>,
    #[serde(default)]
    pub key_exports: Vec<KeyExport>,
    /// Absent in labs made before the WinRM listener: `serve` adds it.
    #[serde(default)]
    pub winrm: Option<WinrmLogin>,
    /// The server's `%SystemRoot%` (its Windows folder: `C:\WINDOWS`, or `C:\WINNT` on a
    /// Windows Server 2003 upgraded from Windows 2000), which the lab's powershell and cmd.exe
    /// report and whose System32 holds the stand-ins. Absent in older labs: `C:\Windows`.
    #[serde(default = "default_system_root")]
    pub system_root: String,
    /// The server's architecture; absent in labs made before it was recorded: the flavour's
    /// (`LabState::arch`).
    #[serde(default)]
    pub arch: Option<crate::layout::Arch>,
}

/// The Windows folder of a lab made before `system_root` existed.
pub fn default_system_root() -> String {
    crate::layout::DEFAULT_SYSTEM_ROOT.to_string()
}

impl LabState {
    /// The server's architecture: as recorded, else the flavour's.
    pub fn arch(&self) -> crate::layout::Arch {
        self.arch.unwrap_or(self.flavour.default_arch())
    }

    /// The server's System32 folder, a Windows path (`%SystemRoot%\System32`).
    pub fn system32(&self) -> String {
        format!(r"{}\System32", self.system_root.trim_end_matches('\\'))
    }

    pub fn product(&self, code: &str) -> Option<&Product> {
        self.products
            .iter()
            .find(|p| p.code.eq_ignore_ascii_case(code))
    }

    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }
}

/// Path of lab.json in a lab folder.
pub fn state_path(lab: &Path) -> PathBuf {
    lab.join("lab.json")
}

/// Reads lab.json (no lock: a reader sees either the old or the new file, never half of one).
pub fn load(lab: &Path) -> Result<LabState, StateError> {
    let path = state_path(lab);
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|source| StateError::Parse { path, source })
}

/// Writes lab.json through a temporary file and a rename. Callers that read-modify-write use `update`.
pub fn store(lab: &Path, state: &LabState) -> Result<(), StateError> {
    let path = state_path(lab);
    // Serialising plain data structures cannot fail.
    let text = serde_json::to_string_pretty(state).map_err(|source| StateError::Parse {
        path: path.clone(),
        source,
    })?;
    write_atomic(&path, text.as_bytes()).map_err(io_err(&path))
}

/// Read-modify-write of lab.json under DIR/lab.lock. The closure's result is returned.
pub fn update<T>(lab: &Path, f: impl FnOnce(&mut LabState) -> T) -> Result<T, StateError> {
    let _lock = lock(lab)?;
    let mut state = load(lab)?;
    let out = f(&mut state);
    store(lab, &state)?;
    Ok(out)
}

/// An exclusive lock on DIR/lab.lock, held until dropped.
pub struct LabLock {
    _file: File,
}

/// Blocks until DIR/lab.lock is ours.
pub fn lock(lab: &Path) -> Result<LabLock, StateError> {
    let path = lab.join("lab.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    file.lock().map_err(io_err(&path))?;
    Ok(LabLock { _file: file })
}

/// Writes `bytes` to `path` via `path.tmp-PID` and a rename, with fsync. The executor has its own
/// (with an fsync of the folder); the two crates share only the plan language, which touches no
/// file, and `tempfile`'s `persist` is the rename alone (no fsync), so it would replace neither.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// `n` random bytes from the kernel, for key material and lab passwords.
pub fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// Now, as RFC 3339 UTC text.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_matches_with_or_without_its_domain_ignoring_case() {
        let a = Account {
            domain: "CONTOSO".into(),
            user: "svc-miis".into(),
            password: "x".into(),
        };
        assert!(a.matches(r"contoso\SVC-MIIS"));
        assert!(a.matches("svc-miis"));
        assert!(!a.matches(r"FABRIKAM\svc-miis"));
        assert!(!a.matches("other"));
    }
}

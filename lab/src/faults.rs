//! Fault injection for the lab: parses the fault spec strings (`backup-3201=N`, `msiexec-1618=K`, ...)
//! into one `Faults` value and keeps it in DIR/faults.json, which every stand-in and `serve` read.
//! TEST DOUBLE. The SQL faults are only handed to the TDS double here; it applies them itself.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::sqlmodel::SqlFaults;
use crate::state::write_atomic;

/// A fault spec that does not parse, or faults.json that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("unknown fault `{0}`; known: backup-3201=N, backup-drop=N, disk-cap=BYTES, slow-backup=MS, miiskmu-fail, msiexec-1618=K, msiexec-1603, msiexec-3010, slow-execute=MS, hold-execute, hold-setup, slow-tools=MS, winrm-drop=N, winrm-drop-answered=N, winrm-drop-of=PROGRAM, winrm-slow=MS, kerberos-no-ap-rep, kerberos-bad-ap-rep, kerberos-plain-answer, kerberos-sign-only, kerberos-stale-key, kerberos-expired")]
    Unknown(String),
    #[error("fault `{spec}`: {why}")]
    BadValue { spec: String, why: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid faults file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Every active fault. `msiexec_1618_remaining` is a counter the msiexec stand-in decrements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// The spec strings as given, for status output.
    pub specs: Vec<String>,
    /// Handed to the TDS double (which counts backups from the moment it adopts them).
    pub sql: SqlFaults,
    pub miiskmu_fail: bool,
    pub msiexec_1618_remaining: u32,
    pub msiexec_1603: bool,
    pub msiexec_3010: bool,
    pub slow_tools_ms: Option<u64>,
    /// The lab's installers (msiexec, setup) spend MS milliseconds in their execute phase, holding
    /// the lab's `_MSIExecute`, before they make their change.
    #[serde(default)]
    pub slow_execute_ms: Option<u64>,
    /// The lab's installers stay in their execute phase, holding the lab's `_MSIExecute`, for as
    /// long as this fault is set: lifting it lets them make their change and end.
    #[serde(default)]
    pub hold_execute: bool,
    /// As `hold_execute`, for the MIIS setup stand-in only (an uninstall before it goes through).
    #[serde(default)]
    pub hold_setup: bool,
    /// The WinRM listener drops the connection during the Nth Receive since it saw this value.
    #[serde(default)]
    pub winrm_drop_at: Option<u32>,
    /// The WinRM listener takes the Nth Receive's answer from the command (as the server does
    /// once it has sent it) and then drops the connection instead of sending it: the answer,
    /// and whatever output it held, is lost in transit.
    #[serde(default)]
    pub winrm_drop_answered_at: Option<u32>,
    /// `winrm-drop-answered` counts only the Receives of commands whose program's file name is
    /// this (e.g. `miiskmu.exe`).
    #[serde(default)]
    pub winrm_drop_of: Option<String>,
    /// The WinRM listener answers every shell operation MS milliseconds late.
    #[serde(default)]
    pub winrm_slow_ms: Option<u64>,
    /// The WinRM listener's Kerberos side misbehaves this way (a server that is not who it says,
    /// or a path that strips the protection), for the client's refusals to be tested.
    #[serde(default)]
    pub kerberos: Option<KerberosFault>,
}

/// How the listener's Kerberos side misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KerberosFault {
    /// `kerberos-no-ap-rep`: the logon's 200 carries no AP-REP (no mutual authentication).
    NoApRep,
    /// `kerberos-bad-ap-rep`: the logon's 200 carries bytes that are not this logon's AP-REP.
    BadApRep,
    /// `kerberos-plain-answer`: answers after a Kerberos logon over HTTP come as plain SOAP.
    PlainAnswer,
    /// `kerberos-sign-only`: answers are wrapped with integrity only (conf_state 0).
    SignOnly,
    /// `kerberos-stale-key`: the listener holds the service's previous key (a server whose
    /// account's key changed without it), so the client's ticket does not decrypt.
    StaleKey,
    /// `kerberos-expired`: the first encrypted request after the logon gets 401 and the logon
    /// is forgotten, as when the session's ticket or context expires.
    Expired,
}

impl Faults {
    /// Parses every spec; the first bad one is the error. An empty list means no faults.
    pub fn from_specs<S: AsRef<str>>(specs: &[S]) -> Result<Faults, FaultError> {
        let mut f = Faults::default();
        for spec in specs {
            f.add(spec.as_ref())?;
        }
        Ok(f)
    }

    /// Adds one fault spec to this set.
    pub fn add(&mut self, spec: &str) -> Result<(), FaultError> {
        let spec = spec.trim();
        let (name, value) = match spec.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (spec, None),
        };
        let number = |what: &str| -> Result<u64, FaultError> {
            let bad = |why: String| FaultError::BadValue {
                spec: spec.to_string(),
                why,
            };
            let v = value.ok_or_else(|| bad(format!("expected `{name}={what}`")))?;
            v.parse::<u64>()
                .map_err(|_| bad(format!("expected {what} as a whole number, found `{v}`")))
        };
        let positive = |what: &str| -> Result<u32, FaultError> {
            let n = number(what)?;
            u32::try_from(n)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| FaultError::BadValue {
                    spec: spec.to_string(),
                    why: format!("{what} counts from 1, found `{n}`"),
                })
        };
        let flag = || -> Result<(), FaultError> {
            match value {
                None => Ok(()),
                Some(_) => Err(FaultError::BadValue {
                    spec: spec.to_string(),
                    why: format!("`{name}` takes no value"),
                }),
            }
        };
        match name {
            "backup-3201" => self.sql.backup_3201_at = Some(positive("N")?),
            "backup-drop" => self.sql.backup_drop_at = Some(positive("N")?),
            "disk-cap" => self.sql.disk_cap = Some(number("BYTES")?),
            "slow-backup" => self.sql.slow_backup_ms = Some(number("MS")?),
            "miiskmu-fail" => {
                flag()?;
                self.miiskmu_fail = true
            }
            "msiexec-1618" => self.msiexec_1618_remaining = positive("K")?,
            "msiexec-1603" => {
                flag()?;
                self.msiexec_1603 = true
            }
            "msiexec-3010" => {
                flag()?;
                self.msiexec_3010 = true
            }
            "slow-tools" => self.slow_tools_ms = Some(number("MS")?),
            "slow-execute" => self.slow_execute_ms = Some(number("MS")?),
            "hold-execute" => {
                flag()?;
                self.hold_execute = true
            }
            "hold-setup" => {
                flag()?;
                self.hold_setup = true
            }
            "winrm-drop" => self.winrm_drop_at = Some(positive("N")?),
            "winrm-drop-answered" => self.winrm_drop_answered_at = Some(positive("N")?),
            "winrm-drop-of" => match value.filter(|v| !v.is_empty()) {
                Some(program) => self.winrm_drop_of = Some(program.to_string()),
                None => {
                    return Err(FaultError::BadValue {
                        spec: spec.to_string(),
                        why: "expected `winrm-drop-of=PROGRAM`".into(),
                    })
                }
            },
            "winrm-slow" => self.winrm_slow_ms = Some(number("MS")?),
            "kerberos-no-ap-rep"
            | "kerberos-bad-ap-rep"
            | "kerberos-plain-answer"
            | "kerberos-sign-only"
            | "kerberos-stale-key"
            | "kerberos-expired" => {
                flag()?;
                self.kerberos = Some(match name {
                    "kerberos-no-ap-rep" => KerberosFault::NoApRep,
                    "kerberos-bad-ap-rep" => KerberosFault::BadApRep,
                    "kerberos-plain-answer" => KerberosFault::PlainAnswer,
                    "kerberos-stale-key" => KerberosFault::StaleKey,
                    "kerberos-expired" => KerberosFault::Expired,
                    _ => KerberosFault::SignOnly,
                })
            }
            _ => return Err(FaultError::Unknown(spec.to_string())),
        }
        self.specs.push(spec.to_string());
        Ok(())
    }
}

/// Path of faults.json in a lab folder.
pub fn faults_path(lab: &Path) -> PathBuf {
    lab.join("faults.json")
}

/// The active faults; none when faults.json does not exist.
pub fn load(lab: &Path) -> Result<Faults, FaultError> {
    let path = faults_path(lab);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).map_err(|source| FaultError::Parse { path, source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Faults::default()),
        Err(source) => Err(FaultError::Io { path, source }),
    }
}

/// Replaces the active faults.
pub fn store(lab: &Path, faults: &Faults) -> Result<(), FaultError> {
    let path = faults_path(lab);
    let text = serde_json::to_string_pretty(faults).map_err(|source| FaultError::Parse {
        path: path.clone(),
        source,
    })?;
    write_atomic(&path, text.as_bytes()).map_err(|source| FaultError::Io { path, source })
}

/// Read-modify-write of faults.json under DIR/faults.lock (used for the 1618 counter).
pub fn update<T>(lab: &Path, f: impl FnOnce(&mut Faults) -> T) -> Result<T, FaultError> {
    let lock_path = lab.join("faults.lock");
    let io = |source| FaultError::Io {
        path: lock_path.clone(),
        source,
    };
    let lock: File = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    lock.lock().map_err(io)?;
    let mut faults = load(lab)?;
    let out = f(&mut faults);
    store(lab, &faults)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_of_the_contract_parses() {
        let f = Faults::from_specs(&[
            "backup-3201=2",
            "backup-drop=1",
            "disk-cap=1048576",
            "slow-backup=250",
            "miiskmu-fail",
            "msiexec-1618=3",
            "msiexec-1603",
            "msiexec-3010",
            "slow-tools=40",
            "slow-execute=300",
            "hold-execute",
            "hold-setup",
            "winrm-drop=2",
            "winrm-drop-answered=3",
            "winrm-drop-of=miiskmu.exe",
            "winrm-slow=30",
            "kerberos-sign-only",
        ])
        .unwrap();
        assert_eq!(
            f.sql,
            SqlFaults {
                backup_3201_at: Some(2),
                backup_drop_at: Some(1),
                disk_cap: Some(1_048_576),
                slow_backup_ms: Some(250)
            }
        );
        assert!(f.miiskmu_fail && f.msiexec_1603 && f.msiexec_3010);
        assert_eq!(f.msiexec_1618_remaining, 3);
        assert_eq!(f.slow_tools_ms, Some(40));
        assert_eq!(f.slow_execute_ms, Some(300));
        assert!(f.hold_execute && f.hold_setup);
        assert_eq!(f.winrm_drop_at, Some(2));
        assert_eq!(f.winrm_drop_answered_at, Some(3));
        assert_eq!(f.winrm_drop_of.as_deref(), Some("miiskmu.exe"));
        assert_eq!(f.winrm_slow_ms, Some(30));
        assert_eq!(f.kerberos, Some(KerberosFault::SignOnly));
        assert_eq!(f.specs.len(), 17);
    }

    #[test]
    fn a_bad_spec_is_rejected_with_what_was_expected() {
        let msg = |s: &str| Faults::from_specs(&[s]).unwrap_err().to_string();
        assert!(msg("backup-3201").contains("expected `backup-3201=N`"));
        assert!(msg("backup-3201=0").contains("counts from 1"));
        assert!(msg("disk-cap=lots").contains("expected BYTES as a whole number, found `lots`"));
        assert!(msg("msiexec-1603=2").contains("takes no value"));
        assert!(msg("winrm-drop=0").contains("counts from 1"));
        assert!(msg("winrm-drop-answered=0").contains("counts from 1"));
        assert!(msg("winrm-slow").contains("expected `winrm-slow=MS`"));
        assert!(msg("explode").starts_with("unknown fault `explode`"));
    }

    #[test]
    fn no_faults_file_means_no_faults_and_the_1618_counter_persists() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Faults::default());
        store(
            dir.path(),
            &Faults::from_specs(&["msiexec-1618=2"]).unwrap(),
        )
        .unwrap();
        let left = update(dir.path(), |f| {
            f.msiexec_1618_remaining -= 1;
            f.msiexec_1618_remaining
        })
        .unwrap();
        assert_eq!(left, 1);
        assert_eq!(load(dir.path()).unwrap().msiexec_1618_remaining, 1);
    }
}

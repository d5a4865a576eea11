//! `upgrade-lab status`: what the lab server looks like now — installed products, services, the key
//! set, backups taken (the SQL model's msdb history), key files exported, the last stand-in runs.
//! Read-only: it never changes lab.json, faults.json or DIR/sql/, and prints no password.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::layout::{Flavour, Lab};
use crate::state::{KeyExport, Product, Service};
use crate::tools::{read_argv_log, ArgvRecord};
use crate::LabError;

/// How many argv.log records `status` shows.
pub const LAST_ARGV: usize = 10;

/// A backup set from msdb.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupTaken {
    pub backup_set_id: i32,
    pub database: String,
    pub file: String,
    pub finished: String,
    pub size: i64,
}

/// One installer run the lab recorded (without its properties, which may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallRun {
    pub tool: String,
    pub package: String,
    pub exit: i32,
    pub at: String,
}

/// The lab's state, for people (Display) and programs (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub dir: PathBuf,
    pub flavour: Flavour,
    pub products: Vec<Product>,
    pub services: Vec<Service>,
    pub key_set_present: bool,
    pub databases: Vec<String>,
    pub backups: Vec<BackupTaken>,
    pub key_exports: Vec<KeyExport>,
    pub installs: Vec<InstallRun>,
    pub faults: Vec<String>,
    pub argv_records: usize,
    pub last_argv: Vec<ArgvRecord>,
}

impl Lab {
    /// The lab's status now.
    pub fn status(&self) -> Result<Status, LabError> {
        status(self.dir())
    }
}

/// The status of the lab in `dir`.
pub fn status(dir: &Path) -> Result<Status, LabError> {
    let st = crate::state::load(dir)?;
    let sql = crate::sqlmodel::state::load(dir)?;
    let backups = sql
        .backupset
        .iter()
        .map(|b| BackupTaken {
            backup_set_id: b.backup_set_id,
            database: b.database_name.clone(),
            file: sql
                .backupmediafamily
                .iter()
                .find(|m| m.media_set_id == b.media_set_id)
                .map(|m| m.physical_device_name.clone())
                .unwrap_or_default(),
            finished: b.backup_finish_date.format("%Y-%m-%d %H:%M:%S").to_string(),
            size: b.backup_size,
        })
        .collect();
    let argv = read_argv_log(dir).map_err(LabError::io(&dir.join("argv.log")))?;
    let faults = crate::faults::load(dir)?;
    Ok(Status {
        dir: dir.to_path_buf(),
        flavour: st.flavour,
        products: st.products,
        services: st.services,
        key_set_present: st.key_set.is_some(),
        databases: sql.databases.iter().map(|d| d.name.clone()).collect(),
        backups,
        key_exports: st.key_exports,
        installs: st
            .installs
            .iter()
            .map(|i| InstallRun {
                tool: i.tool.clone(),
                package: i.package.clone(),
                exit: i.exit,
                at: i.at.clone(),
            })
            .collect(),
        faults: faults.specs,
        argv_records: argv.len(),
        last_argv: argv.iter().rev().take(LAST_ARGV).rev().cloned().collect(),
    })
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "lab {} ({})", self.dir.display(), self.flavour.name())?;
        writeln!(f, "installed products:")?;
        if self.products.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for p in &self.products {
            let view = if p.wow6432 { " [WOW6432Node]" } else { "" };
            writeln!(
                f,
                "  {} {} {} at {}{view}",
                p.code, p.name, p.version, p.install_location
            )?;
        }
        writeln!(f, "services:")?;
        if self.services.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for s in &self.services {
            writeln!(
                f,
                "  {} {}",
                s.name,
                if s.running { "RUNNING" } else { "STOPPED" }
            )?;
        }
        writeln!(
            f,
            "key set on the server: {}",
            if self.key_set_present {
                "present"
            } else {
                "absent"
            }
        )?;
        writeln!(f, "databases: {}", self.databases.join(", "))?;
        writeln!(f, "backups taken: {}", self.backups.len())?;
        for b in &self.backups {
            writeln!(
                f,
                "  #{} {} -> {} at {} ({} bytes)",
                b.backup_set_id, b.database, b.file, b.finished, b.size
            )?;
        }
        writeln!(f, "key files exported: {}", self.key_exports.len())?;
        for k in &self.key_exports {
            writeln!(f, "  {} (key set {}) at {}", k.path, k.key_set_id, k.at)?;
        }
        writeln!(f, "installer runs: {}", self.installs.len())?;
        for i in &self.installs {
            writeln!(f, "  {} {} exit {} at {}", i.tool, i.package, i.exit, i.at)?;
        }
        writeln!(
            f,
            "faults: {}",
            if self.faults.is_empty() {
                "none".into()
            } else {
                self.faults.join(" ")
            }
        )?;
        writeln!(
            f,
            "stand-in runs: {} (last {} shown)",
            self.argv_records,
            self.last_argv.len()
        )?;
        for r in &self.last_argv {
            writeln!(f, "  {} {:?} exit {}", r.tool, r.argv, r.exit)?;
        }
        Ok(())
    }
}

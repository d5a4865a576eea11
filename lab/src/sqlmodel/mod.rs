//! A stateful model of the SQL Server that holds the sync database: databases, msdb backup history,
//! the engine's tables, and the statements the executor sends, answered from state (not canned text).
//! TEST DOUBLE: it recognises the shapes of the statements the executor sends, from any client, and
//! rejects the rest as SQL Server would (208 / 102); it must never be used as or grow into a general
//! SQL engine.

pub mod backup;
mod exec;
pub mod fixture;
pub mod lexer;
pub mod state;
pub mod value;

use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

pub use backup::{BackupFault, BackupJob};
pub use fixture::{Fixture, MaFixture, MaShape};
pub use state::{RequestKind, State};
pub use value::{Column, Message, Outcome, Reply, ResultSet, SqlType, Value};

/// Which SQL Server the double answers as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TdsVersion {
    /// TDS 7.4: SQL Server 2016 (13.0).
    #[default]
    V74,
    /// TDS 7.1: SQL Server 2000 SP4 (8.00.2039).
    V71,
}

/// The SQL faults (see shared contracts). The model counts BACKUP DATABASE statements from the
/// moment a fault set is installed (`Model::set_faults`, or a changed `sql` member in DIR/faults.json).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlFaults {
    /// The Nth BACKUP DATABASE fails with error 3201.
    #[serde(default)]
    pub backup_3201_at: Option<u32>,
    /// The Nth BACKUP DATABASE writes half its file, then the connection drops.
    #[serde(default)]
    pub backup_drop_at: Option<u32>,
    /// A backup that would make its destination folder exceed this many bytes fails with 3202.
    #[serde(default)]
    pub disk_cap: Option<u64>,
    /// Every BACKUP DATABASE takes this many milliseconds longer.
    #[serde(default)]
    pub slow_backup_ms: Option<u64>,
}

/// The model's own failures (storage), as opposed to SQL errors, which are answers.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("SQL model state {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("SQL model state {path} is not valid JSON of the expected shape: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// What a statement turned into: a finished answer, or a backup the TDS layer must carry out
/// (write the file, maybe slowly or faultily) and then hand back to `finish_backup`.
#[derive(Debug, Clone)]
pub enum Execution {
    Finished(Outcome),
    Backup(Box<BackupJob>),
}

/// The SQL Server model. Every change is written to DIR/sql/state.json before it is answered.
#[derive(Debug)]
pub struct Model {
    dir: PathBuf,
    state: State,
    version: TdsVersion,
    sql_host: crate::serve::SqlHost,
}

/// A path on a separate SQL Server machine: `X:\A\B` is DIR/sqlhost/drives/X/A/B. Anything else
/// (a POSIX path, a UNC path) maps under DIR/sqlhost/unreachable, which is never created, so the
/// server answers "path not found" as a Windows SQL Server would for a path it does not have.
pub fn separate_host_path(dir: &Path, device: &str) -> PathBuf {
    let root = dir.join("sqlhost");
    match crate::layout::win_to_lab(&root, device) {
        Some(p) if !device.starts_with(['Z', 'z']) => p,
        _ => root
            .join("unreachable")
            .join(device.replace(['/', '\\', ':'], "_")),
    }
}

/// The server's clock (local time, as SQL Server's GETDATE()), to the millisecond.
pub fn now() -> NaiveDateTime {
    let t = chrono::Local::now().naive_local();
    t.with_nanosecond((t.and_utc().timestamp_subsec_millis()) * 1_000_000)
        .unwrap_or(t)
}

use chrono::Timelike;

impl Model {
    /// Creates DIR/sql/ with master, tempdb, model, msdb and the fixture's sync database.
    pub fn seed(dir: &Path, fixture: &Fixture) -> Result<Model, ModelError> {
        let created = NaiveDateTime::parse_from_str("2006-03-14 09:30:00", "%Y-%m-%d %H:%M:%S")
            .unwrap_or_default();
        let databases = [
            "master",
            "tempdb",
            "model",
            "msdb",
            fixture.sync_database.as_str(),
        ]
        .iter()
        .enumerate()
        .map(|(i, name)| state::DatabaseRow {
            dbid: i as i32 + 1,
            name: name.to_string(),
            crdate: created,
        })
        .collect();
        let state = State {
            server_name: fixture.server_name.clone(),
            sync_database: fixture.sync_database.clone(),
            databases,
            sync: fixture.generate(),
            backupset: Vec::new(),
            backupmediafamily: Vec::new(),
            next_backup_set_id: 1,
            next_media_set_id: 1,
            faults: state::FaultCounters::default(),
        };
        state::save(dir, &state)?;
        Model::open(dir)
    }

    /// Loads DIR/sql/state.json (written by `seed`), answering as SQL Server 2016 until told otherwise.
    pub fn open(dir: &Path) -> Result<Model, ModelError> {
        let mut state = state::load(dir)?;
        // Whatever faults.json says now is the baseline: only a later change to it replaces faults.
        state.faults.last_seen_file = state::read_fault_file(dir);
        Ok(Model {
            dir: dir.to_path_buf(),
            state,
            version: TdsVersion::V74,
            sql_host: crate::serve::SqlHost::SyncServer,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn version(&self) -> TdsVersion {
        self.version
    }

    pub fn set_version(&mut self, version: TdsVersion) {
        self.version = version;
    }

    pub fn server_name(&self) -> &str {
        &self.state.server_name
    }

    pub fn sync_database(&self) -> &str {
        &self.state.sync_database
    }

    /// The database's name as the server spells it, if it exists (names compare case-insensitively).
    pub fn database(&self, name: &str) -> Option<&str> {
        self.state
            .databases
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
            .map(|d| d.name.as_str())
    }

    pub fn faults(&self) -> SqlFaults {
        self.state.faults.active
    }

    /// Installs a fault set and restarts the BACKUP count ("the Nth backup since the fault was set").
    pub fn set_faults(&mut self, faults: SqlFaults) -> Result<(), ModelError> {
        self.state.faults.active = faults;
        self.state.faults.backups_since_set = 0;
        state::save(&self.dir, &self.state)
    }

    /// Adopts DIR/faults.json's `sql` member if it changed since it was last read.
    fn refresh_faults_from_file(&mut self) {
        let seen = state::read_fault_file(&self.dir);
        if seen != self.state.faults.last_seen_file {
            self.state.faults.last_seen_file = seen;
            self.state.faults.active = seen.unwrap_or_default();
            self.state.faults.backups_since_set = 0;
        }
    }

    /// Puts the server on the sync server or on a machine of its own (creating that machine's
    /// C: and D: drives).
    pub fn set_sql_host(&mut self, sql_host: crate::serve::SqlHost) -> Result<(), ModelError> {
        if sql_host == crate::serve::SqlHost::Separate {
            for drive in ["C:\\", "D:\\"] {
                let root = separate_host_path(&self.dir, drive);
                std::fs::create_dir_all(&root).map_err(|e| ModelError::Io {
                    path: root.clone(),
                    source: e,
                })?;
            }
        }
        self.sql_host = sql_host;
        Ok(())
    }

    /// Maps a device path to the lab's file system: on the sync server `C:\X\Y` is
    /// DIR/drives/C/X/Y and others stay as given; on a separate host see [`separate_host_path`].
    pub fn resolve_path(&self, device: &str) -> PathBuf {
        match self.sql_host {
            crate::serve::SqlHost::SyncServer => crate::layout::resolve(&self.dir, device),
            crate::serve::SqlHost::Separate => separate_host_path(&self.dir, device),
        }
    }

    fn persist(&self) -> Result<(), Message> {
        state::save(&self.dir, &self.state).map_err(|e| {
            tracing::error!("{e}");
            Message::error(
                50000,
                16,
                format!("lab SQL model could not save its state: {e}"),
            )
        })
    }
}

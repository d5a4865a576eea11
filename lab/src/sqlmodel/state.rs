//! The SQL model's persisted state (DIR/sql/state.json) and the statement log
//! (DIR/sql/statements.log). TEST DOUBLE storage: plain JSON, rewritten atomically after every change.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use super::{ModelError, SqlFaults};

/// dbo.mms_management_agent
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaRow {
    pub ma_id: String,
    pub ma_name: String,
}

/// dbo.mms_connectorspace
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsRow {
    pub object_id: String,
    pub ma_id: String,
    pub rdn: String,
    pub pobject_id: Option<String>,
    /// Binary, as MIIS and FIM keep anchors (DESIGN.md: "anchors are binary"); hex in state.json.
    #[serde(with = "hex")]
    pub anchor: Vec<u8>,
    /// FIM and later: NULL for a placeholder (a parent kept only to hold the tree, never imported).
    /// Only read when the table has the column (`SyncData::fim_columns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_type: Option<String>,
    /// FIM and later: 1 for an object the agent saw deleted, kept until the next sync deletes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_obsoletion: bool,
}

/// dbo.mms_csmv_link
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRow {
    pub cs_object_id: String,
    pub mv_object_id: String,
}

/// dbo.mms_metaverse
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MvRow {
    pub object_id: String,
}

/// The sync database's tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncData {
    /// mms_connectorspace has `object_type` and `is_obsoletion` (FIM's schema; DESIGN.md: "rows with
    /// object_type IS NULL are placeholders and is_obsoletion = 1 marks obsoleted rows").
    #[serde(default)]
    pub fim_columns: bool,
    pub management_agents: Vec<MaRow>,
    pub connector_space: Vec<CsRow>,
    pub csmv_links: Vec<LinkRow>,
    pub metaverse: Vec<MvRow>,
}

impl SyncData {
    /// The first connector-space object with this rdn (`CN=Administrator`, `E00001`).
    pub fn object(&self, rdn: &str) -> Option<&CsRow> {
        self.connector_space.iter().find(|r| r.rdn == rdn)
    }
}

/// msdb.dbo.backupset (the columns the lab keeps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSetRow {
    pub backup_set_id: i32,
    pub backup_set_uuid: String,
    pub media_set_id: i32,
    pub name: String,
    pub database_name: String,
    /// 'D' full database.
    pub r#type: String,
    pub backup_start_date: NaiveDateTime,
    pub backup_finish_date: NaiveDateTime,
    pub backup_size: i64,
    pub server_name: String,
}

/// msdb.dbo.backupmediafamily
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaFamilyRow {
    pub media_set_id: i32,
    pub family_sequence_number: i32,
    /// The path exactly as the BACKUP statement gave it.
    pub physical_device_name: String,
}

/// A database of the server (master.dbo.sysdatabases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseRow {
    pub dbid: i32,
    pub name: String,
    pub crdate: NaiveDateTime,
}

/// The SQL faults in force and how many BACKUP DATABASE statements ran since they were set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounters {
    pub active: SqlFaults,
    pub backups_since_set: u32,
    /// The `sql` part of DIR/faults.json when last read (a change there replaces `active`).
    pub last_seen_file: Option<SqlFaults>,
}

/// Everything the model keeps between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub server_name: String,
    pub sync_database: String,
    pub databases: Vec<DatabaseRow>,
    pub sync: SyncData,
    pub backupset: Vec<BackupSetRow>,
    pub backupmediafamily: Vec<MediaFamilyRow>,
    pub next_backup_set_id: i32,
    pub next_media_set_id: i32,
    pub faults: FaultCounters,
}

pub fn sql_dir(lab: &Path) -> PathBuf {
    lab.join("sql")
}

pub fn state_path(lab: &Path) -> PathBuf {
    sql_dir(lab).join("state.json")
}

pub fn log_path(lab: &Path) -> PathBuf {
    sql_dir(lab).join("statements.log")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads DIR/sql/state.json.
pub fn load(lab: &Path) -> Result<State, ModelError> {
    let path = state_path(lab);
    let text = fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(|source| ModelError::Corrupt { path, source })
}

/// Writes DIR/sql/state.json through a temporary file and a rename, so a reader never sees half.
pub fn save(lab: &Path, state: &State) -> Result<(), ModelError> {
    let dir = sql_dir(lab);
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let path = state_path(lab);
    let tmp = dir.join("state.json.tmp");
    let text = serde_json::to_vec(state).map_err(|source| ModelError::Corrupt {
        path: path.clone(),
        source,
    })?;
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&text).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))
}

/// The kind of request a statement arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    /// A SQL batch (TDS packet type 1): tiberius `simple_query`, ODBC.
    Batch,
    /// An RPC (packet type 3), `sp_executesql`: tiberius `query`.
    Rpc,
}

/// Appends one line to DIR/sql/connections.log for each PRELOGIN and each LOGIN7 a client sends
/// (`prelogin`, `login7`), so that tests can count the connections that only asked the server's
/// version. TEST DOUBLE bookkeeping: SQL Server keeps no such log.
pub fn log_handshake(lab: &Path, packet: &str) -> Result<(), ModelError> {
    let path = sql_dir(lab).join("connections.log");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    f.write_all(format!("{packet}\n").as_bytes())
        .map_err(io(&path))
}

/// Appends `{"kind":..,"sql":..}` to DIR/sql/statements.log.
pub fn log_statement(lab: &Path, kind: RequestKind, sql: &str) -> Result<(), ModelError> {
    #[derive(Serialize)]
    struct Line<'a> {
        kind: RequestKind,
        sql: &'a str,
    }
    let path = log_path(lab);
    let mut line =
        serde_json::to_string(&Line { kind, sql }).map_err(|source| ModelError::Corrupt {
            path: path.clone(),
            source,
        })?;
    line.push('\n');
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    f.write_all(line.as_bytes()).map_err(io(&path))
}

/// Reads DIR/faults.json's `sql` member, if the file exists and has one.
pub fn read_fault_file(lab: &Path) -> Option<SqlFaults> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        sql: Option<SqlFaults>,
    }
    let text = fs::read_to_string(lab.join("faults.json")).ok()?;
    match serde_json::from_str::<File>(&text) {
        Ok(f) => f.sql,
        Err(e) => {
            tracing::warn!("faults.json unreadable, keeping the current SQL faults: {e}");
            None
        }
    }
}

//! `backup_database`: SQL Server's own BACKUP DATABASE, RESTORE VERIFYONLY, and msdb's history,
//! all on the server: the backup path is a path on the SQL Server's machine (MIIS 2003 and MIM can
//! keep their database on another server), so the executor never looks for the file itself.
//! Done means: the file's header names the database, msdb records that backup as complete (or this
//! plan recorded it), it is fresh enough, and it verifies. Observation runs only read-only statements.
//! While it applies, the backup's `WITH STATS` percentages are its progress, and SQL Server's other
//! messages (pages processed, the backup set is valid) its detail.

use async_trait::async_trait;
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::adapters::sql::{statements as q, InfoMessage, SqlClient, SqlError};
use crate::plan::{BackupDatabase, StepId};
use crate::steps::progress::Progress;
use crate::steps::sqlrow::{int, text, time};
use crate::steps::{CarriedOutBy, Finished, Kind, Op, Planned, Role, StepContext, StepError};

pub struct BackupDatabaseStep {
    id: StepId,
    spec: BackupDatabase,
}

impl CarriedOutBy for BackupDatabase {
    type Step = BackupDatabaseStep;
}

/// What apply runs, as plan showed it: the BACKUP statement and, when the plan verifies, the
/// RESTORE VERIFYONLY after it, each built once, in `diff`.
#[derive(Debug, Clone)]
pub struct Statements {
    backup: String,
    verify: Option<String>,
    checksum: bool,
}

impl Statements {
    fn ops(&self) -> Vec<Op> {
        std::iter::once(&self.backup)
            .chain(&self.verify)
            .map(|statement| Op::Sql {
                statement: statement.clone(),
            })
            .collect()
    }
}

impl BackupDatabaseStep {
    fn path(&self) -> String {
        self.spec.to.to_string()
    }
}

/// What the server and the backup file say.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observed {
    server_version: String,
    /// The backup is older than `max_age` by the server's clock (backup dates are in the server's
    /// local time, not ours). A flag, not the clock, so that observations stay comparable.
    #[serde(default)]
    too_old: bool,
    database_exists: bool,
    /// The header of the backup file at the destination, when it reads.
    header: Option<Header>,
    /// Why the header could not be read (missing, corrupt, foreign file).
    header_error: Option<String>,
    /// msdb's newest full backup of the database to this file.
    backup_set_id: Option<i64>,
    /// When that backup finished, by msdb: a backup set only gets there once it is complete.
    #[serde(default)]
    history_finish: Option<NaiveDateTime>,
    /// RESTORE VERIFYONLY of an unrecorded backup found on the server (taken by hand).
    verified_now: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    database: String,
    backup_type: i64,
    finish: NaiveDateTime,
}

/// The evidence details recorded in the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recorded {
    database: String,
    path: String,
    finish: NaiveDateTime,
    backup_set_id: Option<i64>,
    verified: bool,
    /// Taken WITH CHECKSUM (so it can be verified WITH CHECKSUM).
    #[serde(default)]
    checksum: bool,
}

/// SQL Server 2005 (9.x) and later know `WITH CHECKSUM`.
fn supports_checksum(version: &str) -> bool {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| m >= 9)
}

async fn server_version(sql: &mut dyn SqlClient) -> Result<String, SqlError> {
    let rows = sql.query(q::SERVER_PROPERTIES).await?;
    Ok(rows
        .first()
        .and_then(|r| r.get("product_version"))
        .and_then(text)
        .unwrap_or_default())
}

async fn server_now(sql: &mut dyn SqlClient) -> Result<NaiveDateTime, SqlError> {
    let rows = sql.query(q::SERVER_TIME).await?;
    rows.first()
        .and_then(|r| r.get("now"))
        .and_then(time)
        .ok_or_else(|| SqlError::Protocol {
            message: "SELECT GETDATE() returned no time".into(),
        })
}

async fn read_header(sql: &mut dyn SqlClient, path: &str) -> Result<Header, SqlError> {
    let rows = sql.query(&q::restore_headeronly(path)).await?;
    let row = rows.first().ok_or_else(|| SqlError::Protocol {
        message: "RESTORE HEADERONLY returned no backup set".into(),
    })?;
    Ok(Header {
        database: row.get("DatabaseName").and_then(text).unwrap_or_default(),
        backup_type: row.get("BackupType").and_then(int).unwrap_or_default(),
        finish: row
            .get("BackupFinishDate")
            .and_then(time)
            .ok_or_else(|| SqlError::Protocol {
                message: "RESTORE HEADERONLY gave no BackupFinishDate".into(),
            })?,
    })
}

/// msdb's newest complete full backup of `database` to `path`: its backup set id and finish.
async fn history(
    sql: &mut dyn SqlClient,
    database: &str,
    path: &str,
) -> Result<Option<(i64, Option<NaiveDateTime>)>, SqlError> {
    let rows = sql.query(&q::latest_backup_to(database, path)).await?;
    Ok(rows.first().and_then(|r| {
        let id = r.get("backup_set_id").and_then(int)?;
        Some((id, r.get("backup_finish_date").and_then(time)))
    }))
}

/// Whether RESTORE HEADERONLY failed because there is no file there at all: error 3201 with
/// operating system error 2 (file not found) or 3 (path not found).
fn no_file(e: &SqlError) -> bool {
    match e {
        SqlError::Server { messages, .. } => messages.iter().any(|m| {
            m.number == 3201 && (m.message.contains("error 2(") || m.message.contains("error 3("))
        }),
        _ => false,
    }
}

impl BackupDatabaseStep {
    fn recorded(&self, cx: &StepContext<'_>) -> Option<Recorded> {
        cx.recorded::<Recorded>()
            .filter(|r| r.path == self.path() && r.database == self.spec.database)
    }

    /// Why an observed backup does not count, if it does not.
    fn shortfall(&self, o: &Observed, cx: &StepContext<'_>) -> Option<String> {
        let Some(h) = &o.header else {
            return Some(match &o.header_error {
                Some(e) => format!("no readable backup at {} ({e})", self.path()),
                None => format!("no backup at {}", self.path()),
            });
        };
        if !h.database.eq_ignore_ascii_case(&self.spec.database) {
            return Some(format!(
                "{} holds a backup of `{}`, not `{}`",
                self.path(),
                h.database,
                self.spec.database
            ));
        }
        let recorded = self.recorded(cx).is_some_and(|r| r.finish == h.finish);
        if !recorded && o.history_finish != Some(h.finish) {
            return Some(format!(
                "msdb has no record of a complete backup of `{}` to {} finishing {} (a backup \
                 interrupted halfway, or history cleared), so it is not trusted",
                self.spec.database,
                self.path(),
                h.finish
            ));
        }
        if h.backup_type != 1 {
            return Some(format!(
                "{} holds a backup of type {}, not a full database backup",
                self.path(),
                h.backup_type
            ));
        }
        if let Some(max) = self.spec.max_age {
            if o.too_old {
                return Some(format!(
                    "the backup finished {} is older than max_age {max}",
                    h.finish
                ));
            }
        }
        if self.spec.verify {
            let recorded_verified = self
                .recorded(cx)
                .is_some_and(|r| r.verified && r.finish == h.finish);
            if !recorded_verified && o.verified_now != Some(true) {
                return Some(format!(
                    "the backup at {} does not verify (RESTORE VERIFYONLY failed)",
                    self.path()
                ));
            }
        }
        None
    }

    async fn verify_file(
        &self,
        sql: &mut dyn SqlClient,
        path: &str,
        checksum: bool,
    ) -> Result<(), SqlError> {
        sql.execute(&q::restore_verifyonly(path, checksum))
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Kind for BackupDatabaseStep {
    type Spec = BackupDatabase;
    type Observed = Observed;
    type Change = Statements;
    type Record = Recorded;
    const ROLE: Role = Role::Normal;

    /// Not a check: done is done.
    fn again(&self) -> Option<Self::Change> {
        None
    }

    fn new(id: StepId, spec: BackupDatabase) -> Self {
        BackupDatabaseStep { id, spec }
    }

    async fn observe(&self, cx: &StepContext<'_>) -> Result<Observed, StepError> {
        let mut sql = cx.world.sql().await?;
        let server_version = server_version(sql.as_mut()).await?;
        let database_exists = !sql
            .query(&q::database_exists(&self.spec.database))
            .await?
            .is_empty();
        // The file is on the SQL Server's machine: only the server can say whether it is there.
        let (header, header_error) = match read_header(sql.as_mut(), &self.path()).await {
            Ok(h) => (Some(h), None),
            Err(e) if no_file(&e) => (None, None),
            Err(e @ (SqlError::Server { .. } | SqlError::Protocol { .. })) => (
                None,
                Some(format!("RESTORE HEADERONLY cannot read it: {e}")),
            ),
            Err(e) => return Err(e.into()),
        };
        let found = history(sql.as_mut(), &self.spec.database, &self.path()).await?;
        let (backup_set_id, history_finish) = match found {
            Some((id, finish)) => (Some(id), finish),
            None => (None, None),
        };
        // A backup nobody recorded (taken by hand) is verified now; VERIFYONLY only reads the file.
        // Without CHECKSUM: a backup taken by hand may have been taken without checksums.
        let needs_verify = self.spec.verify
            && header
                .as_ref()
                .is_some_and(|h| self.recorded(cx).is_none_or(|r| r.finish != h.finish));
        let verified_now = if needs_verify {
            Some(
                self.verify_file(sql.as_mut(), &self.path(), false)
                    .await
                    .is_ok(),
            )
        } else {
            None
        };
        let too_old = match (self.spec.max_age, &header) {
            (Some(max), Some(h)) => {
                let now = server_now(sql.as_mut()).await?;
                (now - h.finish).to_std().is_ok_and(|age| age > max.get())
            }
            _ => false,
        };
        Ok(Observed {
            server_version,
            too_old,
            database_exists,
            header,
            header_error,
            backup_set_id,
            history_finish,
            verified_now,
        })
    }

    fn diff(&self, o: &Observed, cx: &StepContext<'_>) -> Planned<Self> {
        if !o.database_exists {
            return Planned::blocked(format!(
                "database `{}` does not exist on the server",
                self.spec.database
            ));
        }
        // A backup of another database at this path is someone else's artifact: BACKUP ... WITH
        // INIT would overwrite it, so it is never planned over.
        if let Some(h) = o
            .header
            .as_ref()
            .filter(|h| !h.database.eq_ignore_ascii_case(&self.spec.database))
        {
            return Planned::blocked(format!(
                "{} holds a backup of `{}` (finished {}), not of `{}`; a backup here would \
                 overwrite it: move it elsewhere or choose another `to`",
                self.path(),
                h.database,
                h.finish,
                self.spec.database
            ));
        }
        match self.shortfall(o, cx) {
            None => {
                let h = o
                    .header
                    .as_ref()
                    .map(|h| h.finish.to_string())
                    .unwrap_or_default();
                let set_id = o
                    .backup_set_id
                    .or_else(|| self.recorded(cx).and_then(|r| r.backup_set_id));
                let set = set_id
                    .map(|i| format!("backup set {i}, "))
                    .unwrap_or_default();
                let record = o.header.as_ref().map(|h| Recorded {
                    database: self.spec.database.clone(),
                    path: self.path(),
                    finish: h.finish,
                    backup_set_id: set_id,
                    verified: self.spec.verify,
                    checksum: self
                        .recorded(cx)
                        .is_some_and(|r| r.checksum && r.finish == h.finish),
                });
                Planned::Done {
                    evidence: format!(
                        "{set}finished {h}, {}at {}",
                        if self.spec.verify { "verified, " } else { "" },
                        self.path()
                    ),
                    record,
                }
            }
            Some(reason) => {
                let checksum = supports_checksum(&o.server_version);
                let change = Statements {
                    backup: q::backup_database(
                        &self.spec.database,
                        &self.path(),
                        &backup_name(&self.id),
                        checksum,
                    ),
                    verify: self
                        .spec
                        .verify
                        .then(|| q::restore_verifyonly(&self.path(), checksum)),
                    checksum,
                };
                Planned::Change {
                    reason,
                    ops: change.ops(),
                    change,
                }
            }
        }
    }

    async fn apply(
        &self,
        change: &Statements,
        cx: &StepContext<'_>,
    ) -> Result<Finished<Recorded>, StepError> {
        let mut sql = cx.world.sql().await?;
        let path = self.path();
        // Straight to the final name, on the server (no rename exists in T-SQL, and the file may be
        // on another machine). A backup cut short there is never trusted: msdb records a backup set
        // only once it is complete, and it would not verify.
        run_telling(sql.as_mut(), &change.backup, cx.progress).await?;
        if let Some(verify) = &change.verify {
            run_telling(sql.as_mut(), verify, cx.progress).await?;
        }
        let header = read_header(sql.as_mut(), &path).await?;
        let set_id = history(sql.as_mut(), &self.spec.database, &path)
            .await?
            .map(|(id, _)| id);
        let recorded = Recorded {
            database: self.spec.database.clone(),
            path: self.path(),
            finish: header.finish,
            backup_set_id: set_id,
            verified: self.spec.verify,
            checksum: change.checksum,
        };
        let set = set_id
            .map(|i| format!("backup set {i}, "))
            .unwrap_or_default();
        Ok(Finished::new(
            format!(
                "{set}finished {}, {}at {}",
                header.finish,
                if self.spec.verify { "verified, " } else { "" },
                self.path()
            ),
            recorded,
        ))
    }

    async fn recheck(&self, cx: &StepContext<'_>) -> Result<String, StepError> {
        let mut sql = cx.world.sql().await?;
        let recorded = self.recorded(cx);
        let header = read_header(sql.as_mut(), &self.path()).await.map_err(|e| {
            StepError::Refused(format!("the backup {} no longer reads: {e}", self.path()))
        })?;
        if let Some(r) = &recorded {
            if r.finish != header.finish {
                return Err(StepError::Refused(format!(
                    "the backup {} is not the one recorded (finished {} instead of {})",
                    self.path(),
                    header.finish,
                    r.finish
                )));
            }
        }
        if !header.database.eq_ignore_ascii_case(&self.spec.database) {
            return Err(StepError::Refused(format!(
                "{} is a backup of `{}`",
                self.path(),
                header.database
            )));
        }
        let checksum = recorded.is_some_and(|r| r.checksum);
        self.verify_file(sql.as_mut(), &self.path(), checksum)
            .await
            .map_err(|e| {
                StepError::Refused(format!("the backup {} does not verify: {e}", self.path()))
            })?;
        Ok(format!(
            "backup {} finished {} verifies",
            self.path(),
            header.finish
        ))
    }
}

/// Runs a BACKUP or RESTORE and tells `progress` what the server says as it says it: a
/// percentage (`WITH STATS`) as how far it has got, any other message as the step's detail.
async fn run_telling(
    sql: &mut dyn SqlClient,
    statement: &str,
    progress: &dyn Progress,
) -> Result<(), SqlError> {
    sql.execute_each(statement, &mut |m: InfoMessage| match m.percent() {
        Some(p) => progress.percent(p),
        None => progress.detail(&m.text),
    })
    .await
}

fn backup_name(id: &StepId) -> String {
    format!("upgrade {id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_used_from_sql_server_2005_on() {
        assert!(!supports_checksum("8.00.2039"));
        assert!(supports_checksum("9.00.1399.06"));
        assert!(supports_checksum("13.0.5026.0"));
        assert!(!supports_checksum(""));
    }
}

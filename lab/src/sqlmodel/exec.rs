//! Statement recognition and answers: a statement is matched by its token shape against `SHAPES`,
//! its literals extracted, then answered from the model's state. TEST DOUBLE: unknown shapes get
//! 208/102 like a real server, never a guessed answer.
//!
//! The shapes cover the statements the executor sends (src/adapters/sql/statements.rs; the test
//! lab/tests/sqlmodel_statements.rs runs each of them), but they are deliberately NOT that text:
//! the lab stands in for SQL Server and must answer any client that sends an equivalent statement
//! (FreeTDS `tsql`, pytds, tiberius), so keywords and names match in any case, names bracketed or
//! not, whitespace and a trailing `;` are free, and literals are captured whatever their value or
//! `N'...'` prefix. What it does not accept is a different statement for the same question (other
//! columns, aliases or clause order): that is a shape to add here, not text to copy.

use std::path::Path;
use std::time::Duration;

use chrono::NaiveDateTime;

use super::backup::{self, BackupFault, BackupHeader, BackupJob, BadBackup};
use super::fixture::guid;
use super::lexer::{match_shape, tokenize, Capture, Tok};
use super::state::{self, BackupSetRow, MediaFamilyRow, RequestKind};
use super::value::{Column, Message, Outcome, ResultSet, SqlType, Value};
use super::{Execution, Model, TdsVersion};

/// A BACKUP's `STATS` option: absent, `STATS` alone (every 10 percent), or `STATS = n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stats {
    No,
    Default,
    Every,
}

/// The statement shapes the double understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Version,
    ServerTime,
    ServerProperties,
    DatabaseExists,
    LatestBackup,
    HeaderOnly,
    VerifyOnly { checksum: bool },
    Backup { checksum: bool, stats: Stats },
    ConnectorSpaceCounts,
    ManagementAgents,
    Count,
    CountAs,
    ConnectorSpaceObjects,
    ConnectorSpaceParents,
    TableColumns,
    ConnectorSpaceBreakdown,
}

const SHAPES: &[(&str, Shape)] = &[
    ("SELECT @@VERSION", Shape::Version),
    ("SELECT GETDATE() AS now", Shape::ServerTime),
    (
        "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS product_version, \
         CAST(SERVERPROPERTY('ProductLevel') AS nvarchar(128)) AS product_level, \
         CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS edition",
        Shape::ServerProperties,
    ),
    ("SELECT name FROM master.dbo.sysdatabases WHERE name = $S", Shape::DatabaseExists),
    (
        "SELECT TOP 1 bs.backup_set_id, bs.database_name, bs.backup_start_date, bs.backup_finish_date, \
         bmf.physical_device_name FROM msdb.dbo.backupset bs JOIN msdb.dbo.backupmediafamily bmf \
         ON bs.media_set_id = bmf.media_set_id WHERE bs.database_name = $S AND bs.type = 'D' \
         AND bmf.physical_device_name = $S ORDER BY bs.backup_finish_date DESC",
        Shape::LatestBackup,
    ),
    ("RESTORE HEADERONLY FROM DISK = $S", Shape::HeaderOnly),
    ("RESTORE VERIFYONLY FROM DISK = $S", Shape::VerifyOnly { checksum: false }),
    ("RESTORE VERIFYONLY FROM DISK = $S WITH CHECKSUM", Shape::VerifyOnly { checksum: true }),
    ("BACKUP DATABASE $N TO DISK = $S WITH INIT, NAME = $S", Shape::Backup { checksum: false, stats: Stats::No }),
    ("BACKUP DATABASE $N TO DISK = $S WITH INIT, CHECKSUM, NAME = $S", Shape::Backup { checksum: true, stats: Stats::No }),
    ("BACKUP DATABASE $N TO DISK = $S WITH INIT, NAME = $S, STATS", Shape::Backup { checksum: false, stats: Stats::Default }),
    ("BACKUP DATABASE $N TO DISK = $S WITH INIT, CHECKSUM, NAME = $S, STATS", Shape::Backup { checksum: true, stats: Stats::Default }),
    ("BACKUP DATABASE $N TO DISK = $S WITH INIT, NAME = $S, STATS = $I", Shape::Backup { checksum: false, stats: Stats::Every }),
    ("BACKUP DATABASE $N TO DISK = $S WITH INIT, CHECKSUM, NAME = $S, STATS = $I", Shape::Backup { checksum: true, stats: Stats::Every }),
    (
        "SELECT ma.ma_name, COUNT(*) AS objects FROM $N.dbo.mms_connectorspace cs \
         JOIN $N.dbo.mms_management_agent ma ON cs.ma_id = ma.ma_id GROUP BY ma.ma_name",
        Shape::ConnectorSpaceCounts,
    ),
    ("SELECT ma_name FROM $N.dbo.mms_management_agent", Shape::ManagementAgents),
    (
        "SELECT COLUMN_NAME FROM $N.INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = $S",
        Shape::TableColumns,
    ),
    (
        "SELECT ma.ma_name, \
         SUM(CASE WHEN cs.object_type IS NULL THEN 1 ELSE 0 END) AS placeholders, \
         SUM(CASE WHEN cs.object_type IS NOT NULL AND cs.is_obsoletion = 1 THEN 1 ELSE 0 END) AS obsoletions \
         FROM $N.dbo.mms_connectorspace cs \
         JOIN $N.dbo.mms_management_agent ma ON cs.ma_id = ma.ma_id GROUP BY ma.ma_name",
        Shape::ConnectorSpaceBreakdown,
    ),
    ("SELECT COUNT(*) FROM $N.$N.$N", Shape::Count),
    ("SELECT COUNT(*) AS $N FROM $N.$N.$N", Shape::CountAs),
    (
        "SELECT cs.object_id, cs.pobject_id, cs.rdn, cs.anchor FROM $N.dbo.mms_connectorspace cs \
         JOIN $N.dbo.mms_management_agent ma ON cs.ma_id = ma.ma_id WHERE ma.ma_name = $S",
        Shape::ConnectorSpaceObjects,
    ),
    (
        "SELECT cs.object_id, cs.pobject_id, cs.rdn FROM $N.dbo.mms_connectorspace cs \
         JOIN $N.dbo.mms_management_agent ma ON cs.ma_id = ma.ma_id WHERE ma.ma_name = $S \
         AND cs.object_id IN (SELECT child.pobject_id FROM $N.dbo.mms_connectorspace child)",
        Shape::ConnectorSpaceParents,
    ),
];

fn nv(name: &str, chars: u16, nullable: bool) -> Column {
    Column::new(name, SqlType::NVarChar(chars), nullable)
}

fn os_error_text(code: u32) -> &'static str {
    match code {
        2 => "The system cannot find the file specified.",
        3 => "The system cannot find the path specified.",
        5 => "Access is denied.",
        _ => "Unknown error.",
    }
}

fn eq_ci(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

impl Model {
    /// Logs the statement to DIR/sql/statements.log, then answers it.
    pub fn execute(&mut self, kind: RequestKind, sql: &str) -> Execution {
        if let Err(e) = state::log_statement(&self.dir, kind, sql) {
            tracing::error!("{e}");
        }
        let tokens = match tokenize(sql) {
            Ok(t) => t,
            Err(e) => {
                return Execution::Finished(Outcome::error(Message::error(
                    105,
                    15,
                    format!(
                        "Unclosed quotation mark after the character string '{}'.",
                        e.near
                    ),
                )))
            }
        };
        let mut furthest = 0;
        for (text, shape) in SHAPES {
            // The shapes are constants written above; they always tokenize.
            let pattern = tokenize(text).unwrap_or_default();
            match match_shape(&pattern, &tokens) {
                Ok(caps) => return self.answer(*shape, &caps),
                Err(n) => furthest = furthest.max(n),
            }
        }
        Execution::Finished(Outcome::error(self.unknown_statement(&tokens, furthest)))
    }

    /// 208 when the statement names an object the server lacks, else 102 near where it diverged.
    fn unknown_statement(&self, tokens: &[Tok], furthest: usize) -> Message {
        for (i, t) in tokens.iter().enumerate() {
            let Tok::Word(w) = t else { continue };
            if !(w.eq_ignore_ascii_case("FROM") || w.eq_ignore_ascii_case("JOIN")) {
                continue;
            }
            let mut parts = Vec::new();
            let mut j = i + 1;
            while let Some(name) = tokens.get(j).and_then(Tok::name) {
                parts.push(name.to_string());
                if tokens.get(j + 1) != Some(&Tok::Sym('.')) {
                    break;
                }
                j += 2;
            }
            if parts.is_empty() {
                continue;
            }
            if !self.object_exists(&parts) {
                return Message::error(
                    208,
                    16,
                    format!("Invalid object name '{}'.", parts.join(".")),
                );
            }
        }
        let near = tokens
            .get(furthest)
            .or(tokens.last())
            .map(Tok::text)
            .unwrap_or_default();
        Message::error(102, 15, format!("Incorrect syntax near '{near}'."))
    }

    /// Whether `[db.][schema.]table` names something this server has (for error selection).
    fn object_exists(&self, parts: &[String]) -> bool {
        let (db, schema, table) = match parts {
            [t] => ("master", "dbo", t.as_str()),
            [s, t] => ("master", s.as_str(), t.as_str()),
            [d, s, t] => (d.as_str(), s.as_str(), t.as_str()),
            _ => return false,
        };
        if eq_ci(schema, "sys") {
            // SQL Server 2005+ has the sys catalog views; 2000 has none.
            return self.version == TdsVersion::V74;
        }
        self.table_rows(db, table).is_some() && (eq_ci(schema, "dbo") || schema.is_empty())
    }

    /// Row count of a modelled table, or None when the database or table does not exist.
    fn table_rows(&self, db: &str, table: &str) -> Option<usize> {
        let db = self.database(db)?;
        let t = table.to_lowercase();
        let s = &self.state;
        if db == "master" && t == "sysdatabases" {
            return Some(s.databases.len());
        }
        if db == "msdb" && t == "backupset" {
            return Some(s.backupset.len());
        }
        if db == "msdb" && t == "backupmediafamily" {
            return Some(s.backupmediafamily.len());
        }
        if db == s.sync_database {
            return match t.as_str() {
                "mms_management_agent" => Some(s.sync.management_agents.len()),
                "mms_connectorspace" => Some(s.sync.connector_space.len()),
                "mms_csmv_link" => Some(s.sync.csmv_links.len()),
                "mms_metaverse" => Some(s.sync.metaverse.len()),
                _ => None,
            };
        }
        None
    }

    fn no_database(&self, name: &str) -> Message {
        match self.version {
            TdsVersion::V74 => Message::error(
                911,
                16,
                format!("Database '{name}' does not exist. Make sure that the name is entered correctly."),
            ),
            TdsVersion::V71 => Message::error(
                911,
                16,
                format!(
                    "Could not locate entry in sysdatabases for database '{name}'. No entry found with that name. Make sure that the name is entered correctly."
                ),
            ),
        }
    }

    /// The sync database a query names, or the error a server gives for it.
    fn sync_db(&self, db: &str, table: &str) -> Result<(), Message> {
        match self.database(db) {
            None => Err(self.no_database(db)),
            Some(d) if d == self.state.sync_database => Ok(()),
            Some(_) => Err(Message::error(
                208,
                16,
                format!("Invalid object name '{db}.dbo.{table}'."),
            )),
        }
    }

    fn answer(&mut self, shape: Shape, caps: &[Capture]) -> Execution {
        let cap = |i: usize| {
            caps.get(i)
                .map(Capture::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let done = Execution::Finished;
        match shape {
            Shape::Version => done(Outcome::rows(ResultSet {
                columns: vec![nv("", 300, false)],
                rows: vec![vec![Value::Str(self.version_banner())]],
            })),
            Shape::ServerTime => done(Outcome::rows(ResultSet {
                columns: vec![Column::new("now", SqlType::DateTime, false)],
                rows: vec![vec![Value::DateTime(super::now())]],
            })),
            Shape::ServerProperties => {
                let (v, level, edition) = match self.version {
                    TdsVersion::V71 => ("8.00.2039", "SP4", "Standard Edition"),
                    TdsVersion::V74 => ("13.0.5026.0", "SP2", "Standard Edition (64-bit)"),
                };
                done(Outcome::rows(ResultSet {
                    columns: vec![
                        nv("product_version", 128, true),
                        nv("product_level", 128, true),
                        nv("edition", 128, true),
                    ],
                    rows: vec![vec![v.into(), level.into(), edition.into()]],
                }))
            }
            Shape::DatabaseExists => {
                let name = cap(0);
                let rows = self
                    .database(&name)
                    .map(|n| vec![Value::from(n)])
                    .into_iter()
                    .collect();
                done(Outcome::rows(ResultSet {
                    columns: vec![nv("name", 128, false)],
                    rows,
                }))
            }
            Shape::LatestBackup => done(Outcome::rows(self.latest_backup(&cap(0), &cap(1)))),
            Shape::HeaderOnly => done(self.header_only(&cap(0))),
            Shape::VerifyOnly { checksum } => done(self.verify_only(&cap(0), checksum)),
            Shape::Backup { checksum, stats } => {
                // STATS alone reports every 10 percent (SQL Server 2000 Books Online, BACKUP).
                let stats = match stats {
                    Stats::No => None,
                    Stats::Default => Some(10),
                    Stats::Every => Some(cap(3).parse().unwrap_or(10)),
                };
                self.backup(&cap(0), &cap(1), &cap(2), checksum, stats)
            }
            Shape::ConnectorSpaceCounts => {
                let (db, db2) = (cap(0), cap(1));
                if let Err(m) = self
                    .sync_db(&db, "mms_connectorspace")
                    .and(self.sync_db(&db2, "mms_management_agent"))
                {
                    return done(Outcome::error(m));
                }
                let s = &self.state.sync;
                let mut counts: Vec<(String, i32)> = s
                    .management_agents
                    .iter()
                    .map(|ma| {
                        let n = s
                            .connector_space
                            .iter()
                            .filter(|c| c.ma_id == ma.ma_id)
                            .count();
                        (ma.ma_name.clone(), n as i32)
                    })
                    .filter(|(_, n)| *n > 0)
                    .collect();
                counts.sort_by_key(|(name, _)| name.to_lowercase());
                done(Outcome::rows(ResultSet {
                    columns: vec![
                        nv("ma_name", 255, true),
                        Column::new("objects", SqlType::Int, false),
                    ],
                    rows: counts
                        .into_iter()
                        .map(|(n, c)| vec![Value::Str(n), Value::Int(c)])
                        .collect(),
                }))
            }
            Shape::TableColumns => done(self.table_columns(&cap(0), &cap(1))),
            Shape::ConnectorSpaceBreakdown => {
                done(self.connector_space_breakdown(&cap(0), &cap(1)))
            }
            Shape::ManagementAgents => {
                if let Err(m) = self.sync_db(&cap(0), "mms_management_agent") {
                    return done(Outcome::error(m));
                }
                let rows = self
                    .state
                    .sync
                    .management_agents
                    .iter()
                    .map(|m| vec![Value::from(m.ma_name.as_str())])
                    .collect();
                done(Outcome::rows(ResultSet {
                    columns: vec![nv("ma_name", 255, true)],
                    rows,
                }))
            }
            Shape::Count | Shape::CountAs => {
                let (alias, rest) = if shape == Shape::CountAs {
                    (cap(0), 1)
                } else {
                    (String::new(), 0)
                };
                let (db, schema, table) = (cap(rest), cap(rest + 1), cap(rest + 2));
                if self.database(&db).is_none() {
                    return done(Outcome::error(self.no_database(&db)));
                }
                match self
                    .table_rows(&db, &table)
                    .filter(|_| eq_ci(&schema, "dbo"))
                {
                    Some(n) => done(Outcome::rows(ResultSet {
                        columns: vec![Column::new(&alias, SqlType::Int, false)],
                        rows: vec![vec![Value::Int(n as i32)]],
                    })),
                    None => done(Outcome::error(Message::error(
                        208,
                        16,
                        format!("Invalid object name '{db}.{schema}.{table}'."),
                    ))),
                }
            }
            Shape::ConnectorSpaceParents => {
                let (db, db2, ma_name, db3) = (cap(0), cap(1), cap(2), cap(3));
                done(self.connector_space_parents(&db, &db2, &ma_name, &db3))
            }
            Shape::ConnectorSpaceObjects => {
                let (db, db2, ma_name) = (cap(0), cap(1), cap(2));
                if let Err(m) = self
                    .sync_db(&db, "mms_connectorspace")
                    .and(self.sync_db(&db2, "mms_management_agent"))
                {
                    return done(Outcome::error(m));
                }
                let s = &self.state.sync;
                let ids: Vec<&str> = s
                    .management_agents
                    .iter()
                    .filter(|m| eq_ci(&m.ma_name, &ma_name))
                    .map(|m| m.ma_id.as_str())
                    .collect();
                let rows = s
                    .connector_space
                    .iter()
                    .filter(|c| ids.contains(&c.ma_id.as_str()))
                    .map(|c| {
                        vec![
                            Value::from(c.object_id.as_str()),
                            Value::from(c.pobject_id.as_deref()),
                            Value::from(c.rdn.as_str()),
                            Value::Bin(c.anchor.clone()),
                        ]
                    })
                    .collect();
                done(Outcome::rows(ResultSet {
                    columns: vec![
                        nv("object_id", 38, false),
                        nv("pobject_id", 38, true),
                        nv("rdn", 448, true),
                        // Binary, as the engine keeps anchors; the length is the lab's.
                        Column::new("anchor", SqlType::VarBinary(400), true),
                    ],
                    rows,
                }))
            }
        }
    }

    fn version_banner(&self) -> String {
        match self.version {
            TdsVersion::V71 => "Microsoft SQL Server  2000 - 8.00.2039 (Intel X86) \n\tMay  3 2005 23:18:38 \n\tCopyright (c) 1988-2003 Microsoft Corporation\n\tStandard Edition on Windows NT 5.2 (Build 3790: Service Pack 2)\n".to_string(),
            TdsVersion::V74 => "Microsoft SQL Server 2016 (SP2) (KB4052908) - 13.0.5026.0 (X64) \n\tMar 18 2018 09:11:49 \n\tCopyright (c) Microsoft Corporation\n\tStandard Edition (64-bit) on Windows Server 2016 Standard 10.0 <X64> (Build 14393: ) (Hypervisor)\n".to_string(),
        }
    }

    fn latest_backup(&self, database: &str, device: &str) -> ResultSet {
        let s = &self.state;
        let mut sets: Vec<(&BackupSetRow, &MediaFamilyRow)> = s
            .backupset
            .iter()
            .filter(|b| eq_ci(&b.database_name, database) && b.r#type == "D")
            .flat_map(|b| {
                s.backupmediafamily
                    .iter()
                    .filter(move |m| {
                        m.media_set_id == b.media_set_id && eq_ci(&m.physical_device_name, device)
                    })
                    .map(move |m| (b, m))
            })
            .collect();
        sets.sort_by_key(|s| std::cmp::Reverse(s.0.backup_finish_date));
        ResultSet {
            columns: vec![
                Column::new("backup_set_id", SqlType::Int, false),
                nv("database_name", 128, true),
                Column::new("backup_start_date", SqlType::DateTime, true),
                Column::new("backup_finish_date", SqlType::DateTime, true),
                nv("physical_device_name", 260, true),
            ],
            rows: sets
                .into_iter()
                .take(1)
                .map(|(b, m)| {
                    vec![
                        Value::Int(b.backup_set_id),
                        Value::from(b.database_name.as_str()),
                        Value::DateTime(b.backup_start_date),
                        Value::DateTime(b.backup_finish_date),
                        Value::from(m.physical_device_name.as_str()),
                    ]
                })
                .collect(),
        }
    }

    /// INFORMATION_SCHEMA.COLUMNS of a sync table: the columns the lab keeps, FIM's two only when
    /// the fixture has them. Other tables of the sync database have no rows here (the lab does not
    /// describe them).
    fn table_columns(&self, db: &str, table: &str) -> Outcome {
        let mut rows: Vec<Vec<Value>> = Vec::new();
        if self.database(db).is_none() {
            return Outcome::error(self.no_database(db));
        }
        if self.database(db) == Some(self.state.sync_database.as_str())
            && table.eq_ignore_ascii_case("mms_connectorspace")
        {
            let mut names = vec!["object_id", "ma_id", "rdn", "pobject_id", "anchor"];
            if self.state.sync.fim_columns {
                names.extend(["object_type", "is_obsoletion"]);
            }
            rows = names.into_iter().map(|n| vec![Value::from(n)]).collect();
        }
        Outcome::rows(ResultSet {
            columns: vec![nv("COLUMN_NAME", 128, true)],
            rows,
        })
    }

    /// The agent's objects that some connector-space object names as its parent (`IN` over every
    /// row's pobject_id, whatever its agent, as the statement says).
    fn connector_space_parents(&self, db: &str, db2: &str, ma_name: &str, db3: &str) -> Outcome {
        if let Err(m) = self
            .sync_db(db, "mms_connectorspace")
            .and(self.sync_db(db2, "mms_management_agent"))
            .and(self.sync_db(db3, "mms_connectorspace"))
        {
            return Outcome::error(m);
        }
        let s = &self.state.sync;
        let parents: std::collections::HashSet<&str> = s
            .connector_space
            .iter()
            .filter_map(|c| c.pobject_id.as_deref())
            .collect();
        let ids: Vec<&str> = s
            .management_agents
            .iter()
            .filter(|m| eq_ci(&m.ma_name, ma_name))
            .map(|m| m.ma_id.as_str())
            .collect();
        let rows = s
            .connector_space
            .iter()
            .filter(|c| ids.contains(&c.ma_id.as_str()) && parents.contains(c.object_id.as_str()))
            .map(|c| {
                vec![
                    Value::from(c.object_id.as_str()),
                    Value::from(c.pobject_id.as_deref()),
                    Value::from(c.rdn.as_str()),
                ]
            })
            .collect();
        Outcome::rows(ResultSet {
            columns: vec![
                nv("object_id", 38, false),
                nv("pobject_id", 38, true),
                nv("rdn", 448, true),
            ],
            rows,
        })
    }

    /// Placeholders and obsoletions per management agent; 207 (invalid column) without FIM's columns,
    /// as a real MIIS database would answer.
    fn connector_space_breakdown(&self, db: &str, db2: &str) -> Outcome {
        if let Err(m) = self
            .sync_db(db, "mms_connectorspace")
            .and(self.sync_db(db2, "mms_management_agent"))
        {
            return Outcome::error(m);
        }
        let s = &self.state.sync;
        if !s.fim_columns {
            return Outcome::error(Message::error(
                207,
                16,
                "Invalid column name 'object_type'.",
            ));
        }
        let mut rows: Vec<(String, i32, i32)> = s
            .management_agents
            .iter()
            .filter_map(|ma| {
                let rows: Vec<_> = s
                    .connector_space
                    .iter()
                    .filter(|c| c.ma_id == ma.ma_id)
                    .collect();
                if rows.is_empty() {
                    return None;
                }
                let placeholders = rows.iter().filter(|c| c.object_type.is_none()).count();
                let obsoletions = rows
                    .iter()
                    .filter(|c| c.object_type.is_some() && c.is_obsoletion)
                    .count();
                Some((ma.ma_name.clone(), placeholders as i32, obsoletions as i32))
            })
            .collect();
        rows.sort_by_key(|(name, _, _)| name.to_lowercase());
        Outcome::rows(ResultSet {
            columns: vec![
                nv("ma_name", 255, true),
                Column::new("placeholders", SqlType::Int, true),
                Column::new("obsoletions", SqlType::Int, true),
            ],
            rows: rows
                .into_iter()
                .map(|(n, p, o)| vec![Value::Str(n), Value::Int(p), Value::Int(o)])
                .collect(),
        })
    }

    /// The error a RESTORE gives for a file that is not a good lab backup.
    fn bad_backup(&self, device: &str, bad: &BadBackup, what: &str) -> Outcome {
        let msg = match bad {
            BadBackup::Missing { os_error } => Message::error(
                3201,
                16,
                format!(
                    "Cannot open backup device '{device}'. Operating system error {os_error}({}).",
                    os_error_text(*os_error)
                ),
            ),
            BadBackup::Foreign => Message::error(
                3241,
                16,
                format!("The media family on device '{device}' is incorrectly formed. SQL Server cannot process this media family."),
            ),
            BadBackup::Truncated => Message::error(
                3203,
                16,
                format!("Read on \"{device}\" failed: 38(Reached the end of the file.)"),
            ),
            BadBackup::Damaged => Message::error(3189, 16, "Damage to the backup set was detected."),
        };
        Outcome::abnormal(msg, what)
    }

    fn unrecognized_option(&self, statement: &str) -> Outcome {
        Outcome::error(Message::error(
            155,
            15,
            format!("'CHECKSUM' is not a recognized {statement} option."),
        ))
    }

    fn verify_only(&self, device: &str, checksum: bool) -> Outcome {
        if checksum && self.version == TdsVersion::V71 {
            return self.unrecognized_option("RESTORE");
        }
        match backup::read(&self.resolve_path(device)) {
            Err(bad) => self.bad_backup(device, &bad, "VERIFY DATABASE"),
            Ok(file) if checksum && !file.header.checksum => Outcome::abnormal(
                Message::error(
                    3187,
                    16,
                    "RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain checksum information.",
                ),
                "VERIFY DATABASE",
            ),
            Ok(_) => Outcome {
                replies: vec![super::Reply::Info(Message::info(3262, "The backup set on file 1 is valid."))],
            },
        }
    }

    /// RESTORE HEADERONLY's result set: a subset of the real columns, in the real order.
    fn header_only(&self, device: &str) -> Outcome {
        let file = match backup::read(&self.resolve_path(device)) {
            Ok(f) => f,
            Err(bad) => return self.bad_backup(device, &bad, "RESTORE HEADERONLY"),
        };
        let h = &file.header;
        let created =
            NaiveDateTime::parse_from_str(&h.database_creation_date, "%Y-%m-%dT%H:%M:%S%.3f")
                .map(Value::DateTime)
                .unwrap_or(Value::Null);
        let mut columns = vec![
            nv("BackupName", 128, true),
            nv("BackupDescription", 255, true),
            Column::new("BackupType", SqlType::Int, true),
            Column::new("ExpirationDate", SqlType::DateTime, true),
        ];
        let mut row = vec![
            Value::from(h.backup_name.as_str()),
            Value::Null,
            Value::Int(1),
            Value::Null,
        ];
        if self.version == TdsVersion::V74 {
            // SQL Server 2000's HEADERONLY has no Compressed column.
            columns.push(Column::new("Compressed", SqlType::Bit, true));
            row.push(Value::Bit(false));
        }
        columns.extend([
            Column::new("Position", SqlType::Int, true),
            Column::new("DeviceType", SqlType::Int, true),
            nv("UserName", 128, true),
            nv("ServerName", 128, true),
            nv("DatabaseName", 128, true),
            Column::new("DatabaseVersion", SqlType::Int, true),
            Column::new("DatabaseCreationDate", SqlType::DateTime, true),
            Column::new("BackupSize", SqlType::BigInt, true),
            Column::new("BackupStartDate", SqlType::DateTime, true),
            Column::new("BackupFinishDate", SqlType::DateTime, true),
        ]);
        row.extend([
            Value::Int(1),
            Value::Int(2),
            Value::from(h.user_name.as_str()),
            Value::from(h.server_name.as_str()),
            Value::from(h.database_name.as_str()),
            Value::Int(h.database_version),
            created,
            Value::BigInt(file.size as i64),
            Value::DateTime(file.start),
            Value::DateTime(file.finish),
        ]);
        Outcome::rows(ResultSet {
            columns,
            rows: vec![row],
        })
    }

    fn backup(
        &mut self,
        database: &str,
        device: &str,
        name: &str,
        checksum: bool,
        stats: Option<u32>,
    ) -> Execution {
        let fail = |m: Message| Execution::Finished(Outcome::abnormal(m, "BACKUP DATABASE"));
        if checksum && self.version == TdsVersion::V71 {
            return Execution::Finished(self.unrecognized_option("BACKUP"));
        }
        let Some(db) = self.database(database).map(str::to_string) else {
            return fail(self.no_database(database));
        };
        if db == "tempdb" {
            return fail(Message::error(
                3147,
                16,
                "Backup and restore operations are not allowed on database tempdb.",
            ));
        }
        self.refresh_faults_from_file();
        self.state.faults.backups_since_set += 1;
        let n = self.state.faults.backups_since_set;
        let faults = self.state.faults.active;
        if let Err(m) = self.persist() {
            return fail(m);
        }
        if faults.backup_3201_at == Some(n) {
            tracing::info!("fault backup-3201={n}: failing this BACKUP");
            return fail(Message::error(
                3201,
                16,
                format!("Cannot open backup device '{device}'. Operating system error 5(Access is denied.)."),
            ));
        }
        let path = self.resolve_path(device);
        if !path.parent().is_some_and(Path::is_dir) || path.is_dir() {
            let code = if path.is_dir() { 5 } else { 3 };
            return fail(Message::error(
                3201,
                16,
                format!(
                    "Cannot open backup device '{device}'. Operating system error {code}({}).",
                    os_error_text(code)
                ),
            ));
        }
        let start = super::now();
        let backup_set_id = self.state.next_backup_set_id;
        let media_set_id = self.state.next_media_set_id;
        self.state.next_backup_set_id += 1;
        self.state.next_media_set_id += 1;
        let crdate = self
            .state
            .databases
            .iter()
            .find(|d| d.name == db)
            .map(|d| d.crdate)
            .unwrap_or_default();
        let header = BackupHeader {
            backup_name: name.to_string(),
            database_name: db.clone(),
            database_version: if self.version == TdsVersion::V71 {
                539
            } else {
                852
            },
            database_creation_date: backup::format_date(&crdate),
            server_name: self.state.server_name.clone(),
            user_name: "upgrade".to_string(),
            backup_set_uuid: guid(&format!("backupset/{db}/{backup_set_id}/{start}")),
            backup_set_id,
            media_set_id,
            start: backup::format_date(&start),
            checksum,
            content_length: 0,
        };
        let mut job = BackupJob::new(header, &self.database_content(&db), &db, device, path);
        job.delay = Duration::from_millis(faults.slow_backup_ms.unwrap_or(0));
        job.stats = stats;
        if faults.backup_drop_at == Some(n) {
            tracing::info!("fault backup-drop={n}: this BACKUP drops the connection halfway");
            job.fault = Some(BackupFault::DropHalfway);
        } else if let Some(cap) = faults.disk_cap {
            let parent = job.path.parent().map(Path::to_path_buf).unwrap_or_default();
            let used = folder_size(&parent, &job.path);
            let allowed = cap.saturating_sub(used);
            if job.total_len() > allowed {
                tracing::info!("fault disk-cap={cap}: {used} bytes used, room for {allowed}");
                job.fault = Some(BackupFault::DiskFull { allowed });
            }
        }
        if let Err(m) = self.persist() {
            return fail(m);
        }
        Execution::Backup(Box::new(job))
    }

    /// The rows a backup of `db` carries: JSON of its tables.
    fn database_content(&self, db: &str) -> Vec<u8> {
        let s = &self.state;
        let v = if db == s.sync_database {
            serde_json::to_vec(&s.sync)
        } else if db == "msdb" {
            serde_json::to_vec(&(&s.backupset, &s.backupmediafamily))
        } else {
            serde_json::to_vec(&s.databases)
        };
        v.unwrap_or_default()
    }

    /// Records a completed backup in msdb and answers as BACKUP DATABASE does.
    pub fn finish_backup(&mut self, job: &BackupJob, finish: NaiveDateTime) -> Outcome {
        let start = NaiveDateTime::parse_from_str(&job.header.start, "%Y-%m-%dT%H:%M:%S%.3f")
            .unwrap_or(finish);
        self.state.backupset.push(BackupSetRow {
            backup_set_id: job.header.backup_set_id,
            backup_set_uuid: job.header.backup_set_uuid.clone(),
            media_set_id: job.header.media_set_id,
            name: job.header.backup_name.clone(),
            database_name: job.database.clone(),
            r#type: "D".into(),
            backup_start_date: start,
            backup_finish_date: finish,
            backup_size: job.total_len() as i64,
            server_name: self.state.server_name.clone(),
        });
        self.state.backupmediafamily.push(MediaFamilyRow {
            media_set_id: job.header.media_set_id,
            family_sequence_number: 1,
            physical_device_name: job.device.clone(),
        });
        if let Err(m) = self.persist() {
            return Outcome::abnormal(m, "BACKUP DATABASE");
        }
        let db = &job.database;
        let pages = job.pages();
        let secs = ((finish - start).num_milliseconds().max(1) as f64) / 1000.0;
        let mb = (pages + 2) as f64 * 8192.0 / 1_048_576.0;
        Outcome {
            replies: vec![
                super::Reply::Info(Message::info(4035, format!("Processed {pages} pages for database '{db}', file '{db}' on file 1."))),
                super::Reply::Info(Message::info(4035, format!("Processed 2 pages for database '{db}', file '{db}_log' on file 1."))),
                super::Reply::Info(Message::info(
                    3014,
                    format!("BACKUP DATABASE successfully processed {} pages in {secs:.3} seconds ({:.3} MB/sec).", pages + 2, mb / secs),
                )),
            ],
        }
    }

    /// The answer to a backup that ran out of room (the partial file stays, as on a real server).
    pub fn backup_disk_full(&self, job: &BackupJob) -> Outcome {
        Outcome::abnormal(
            Message::error(
                3202,
                16,
                format!(
                    "Write on \"{}\" failed: 112(There is not enough space on the disk.)",
                    job.device
                ),
            ),
            "BACKUP DATABASE",
        )
    }

    /// The answer to a backup whose file could not be written at all.
    pub fn backup_write_failed(&self, job: &BackupJob, err: &std::io::Error) -> Outcome {
        let code = if err.kind() == std::io::ErrorKind::NotFound {
            3
        } else {
            5
        };
        Outcome::abnormal(
            Message::error(
                3201,
                16,
                format!(
                    "Cannot open backup device '{}'. Operating system error {code}({}).",
                    job.device,
                    os_error_text(code)
                ),
            ),
            "BACKUP DATABASE",
        )
    }
}

/// Bytes in `dir` (recursively), not counting `except` (the file a BACKUP WITH INIT overwrites).
fn folder_size(dir: &Path, except: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => folder_size(&p, except),
                Ok(m) if p != except => m.len(),
                _ => 0,
            }
        })
        .sum()
}

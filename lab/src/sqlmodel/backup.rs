//! The lab's backup file format and the BACKUP job the TDS layer carries out. TEST DOUBLE format
//! (not Microsoft Tape Format): magic line, JSON header, content derived from the database's rows,
//! JSON trailer with the finish date, then a SHA-256 line over everything before it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// First line of every lab backup file.
pub const MAGIC: &[u8] = b"UPGRADE-LAB SQL BACKUP 1\n";
/// Datetimes in headers and trailers, fixed width so the trailer length is known up front.
const DATE_FMT: &str = "%Y-%m-%dT%H:%M:%S%.3f";

/// What the header of a lab backup file says (everything RESTORE HEADERONLY needs but the finish date).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    pub backup_name: String,
    pub database_name: String,
    pub database_version: i32,
    pub database_creation_date: String,
    pub server_name: String,
    pub user_name: String,
    pub backup_set_uuid: String,
    pub backup_set_id: i32,
    pub media_set_id: i32,
    pub start: String,
    pub checksum: bool,
    pub content_length: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Trailer {
    finish: String,
}

/// A backup file read back completely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    pub header: BackupHeader,
    pub start: NaiveDateTime,
    pub finish: NaiveDateTime,
    pub size: u64,
}

/// Why a file is not a good lab backup; each maps to the error SQL Server gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadBackup {
    /// No such file (OS error 2) or folder (OS error 3).
    Missing { os_error: u32 },
    /// Not a lab backup at all (3241 "incorrectly formed").
    Foreign,
    /// Ends early (3203 "Read ... failed: 38(Reached the end of the file.)").
    Truncated,
    /// Complete but the checksum does not match (3189 "Damage to the backup set").
    Damaged,
}

pub fn format_date(d: &NaiveDateTime) -> String {
    d.format(DATE_FMT).to_string()
}

fn parse_date(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, DATE_FMT).ok()
}

/// Reads and checks a lab backup file completely.
pub fn read(path: &Path) -> Result<BackupFile, BadBackup> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let folder_exists = path.parent().is_some_and(|p| p.is_dir());
            return Err(BadBackup::Missing {
                os_error: if folder_exists { 2 } else { 3 },
            });
        }
        Err(_) => return Err(BadBackup::Missing { os_error: 5 }),
    };
    parse(&bytes)
}

fn line_at(bytes: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rest = bytes.get(from..)?;
    let end = rest.iter().position(|b| *b == b'\n')?;
    Some((&rest[..end], from + end + 1))
}

/// Checks a lab backup file's bytes.
pub fn parse(bytes: &[u8]) -> Result<BackupFile, BadBackup> {
    if !bytes.starts_with(MAGIC) {
        return Err(if MAGIC.starts_with(bytes) && !bytes.is_empty() {
            BadBackup::Truncated
        } else {
            BadBackup::Foreign
        });
    }
    let (head, after_head) = line_at(bytes, MAGIC.len()).ok_or(BadBackup::Truncated)?;
    let header: BackupHeader = serde_json::from_slice(head).map_err(|_| BadBackup::Foreign)?;
    let start = parse_date(&header.start).ok_or(BadBackup::Foreign)?;
    let content_end = after_head
        .checked_add(usize::try_from(header.content_length).map_err(|_| BadBackup::Foreign)?)
        .ok_or(BadBackup::Foreign)?;
    if bytes.len() < content_end {
        return Err(BadBackup::Truncated);
    }
    let (trailer, after_trailer) = line_at(bytes, content_end).ok_or(BadBackup::Truncated)?;
    let (sum, end) = line_at(bytes, after_trailer).ok_or(BadBackup::Truncated)?;
    let expected = format!(
        "SHA256 {}",
        hex::encode(Sha256::digest(&bytes[..after_trailer]))
    );
    if sum != expected.as_bytes() || end != bytes.len() {
        return Err(BadBackup::Damaged);
    }
    let trailer: Trailer = serde_json::from_slice(trailer).map_err(|_| BadBackup::Damaged)?;
    let finish = parse_date(&trailer.finish).ok_or(BadBackup::Damaged)?;
    Ok(BackupFile {
        header,
        start,
        finish,
        size: bytes.len() as u64,
    })
}

/// A fault that changes how the TDS layer carries out a backup job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupFault {
    /// Write half the file, then drop the client's connection (no answer).
    DropHalfway,
    /// The destination has room for `allowed` more bytes: write that much, then fail with 3202.
    DiskFull { allowed: u64 },
}

/// A BACKUP DATABASE the model accepted: the TDS layer writes `body`, waits `delay` halfway,
/// appends `trailer(finish)`, then calls `Model::finish_backup`. The file is written in place.
#[derive(Debug, Clone)]
pub struct BackupJob {
    pub database: String,
    /// The path as the statement gave it (recorded in msdb as physical_device_name).
    pub device: String,
    /// Where the file really goes (a Windows path `C:\..` maps to DIR/drives/C/..).
    pub path: PathBuf,
    pub header: BackupHeader,
    /// Magic, header line and content.
    pub body: Vec<u8>,
    pub delay: Duration,
    pub fault: Option<BackupFault>,
    /// `WITH STATS [= n]`: a "n percent processed." message (3211) each n percent of the file
    /// written, as SQL Server sends them while the backup runs (default 10: SQL Server 2000 Books
    /// Online, BACKUP, `STATS [= percentage]`).
    pub stats: Option<u32>,
}

impl BackupJob {
    pub fn new(
        header: BackupHeader,
        content: &[u8],
        database: &str,
        device: &str,
        path: PathBuf,
    ) -> BackupJob {
        let mut header = header;
        header.content_length = content.len() as u64;
        let mut body = MAGIC.to_vec();
        // Serialising a struct of strings and numbers cannot fail.
        body.extend(serde_json::to_vec(&header).unwrap_or_default());
        body.push(b'\n');
        body.extend_from_slice(content);
        BackupJob {
            database: database.to_string(),
            device: device.to_string(),
            path,
            header,
            body,
            delay: Duration::ZERO,
            fault: None,
            stats: None,
        }
    }

    /// The end of the file: the trailer line with the finish date and the checksum line.
    pub fn trailer(&self, finish: &NaiveDateTime) -> Vec<u8> {
        let mut t = serde_json::to_vec(&Trailer {
            finish: format_date(finish),
        })
        .unwrap_or_default();
        t.push(b'\n');
        let mut h = Sha256::new();
        h.update(&self.body);
        h.update(&t);
        t.extend_from_slice(format!("SHA256 {}\n", hex::encode(h.finalize())).as_bytes());
        t
    }

    /// The size of the complete file (the trailer has a fixed width).
    pub fn total_len(&self) -> u64 {
        (self.body.len() + self.trailer(&NaiveDateTime::default()).len()) as u64
    }

    /// Where the job stops to report, as percentages of the body written: each `stats` percent up
    /// to 100 with `WITH STATS`, else once, halfway (where `delay` is spent when there are no
    /// percentages to spread it over).
    pub fn stops(&self) -> Vec<u32> {
        match self.stats {
            Some(n) => {
                let n = n.clamp(1, 100);
                (1..=100 / n).map(|k| k * n).collect()
            }
            None => vec![50],
        }
    }

    /// The message SQL Server sends at each `STATS` step: 3211, "%d percent processed." (SQL
    /// Server 2000's text), class 0.
    pub fn percent_processed(percent: u32) -> crate::sqlmodel::Message {
        crate::sqlmodel::Message::info(3211, format!("{percent} percent processed."))
    }

    /// Data pages the "Processed N pages" message reports (8 KB pages).
    pub fn pages(&self) -> u64 {
        self.total_len().div_ceil(8192).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> BackupJob {
        let header = BackupHeader {
            backup_name: "b".into(),
            database_name: "db".into(),
            database_version: 852,
            database_creation_date: "2020-01-01T00:00:00.000".into(),
            server_name: "S".into(),
            user_name: "u".into(),
            backup_set_uuid: "{X}".into(),
            backup_set_id: 1,
            media_set_id: 1,
            start: "2024-05-01T10:00:00.000".into(),
            checksum: false,
            content_length: 0,
        };
        BackupJob::new(header, b"rows rows rows", "db", "/x.bak", "/x.bak".into())
    }

    #[test]
    fn a_complete_file_reads_back_and_any_cut_or_flip_is_detected() {
        let j = job();
        let finish = parse_date("2024-05-01T10:00:02.500").unwrap();
        let mut file = j.body.clone();
        file.extend(j.trailer(&finish));
        assert_eq!(file.len() as u64, j.total_len());
        let read = parse(&file).unwrap();
        assert_eq!(read.finish, finish);
        assert_eq!(read.header.database_name, "db");
        for cut in [10, j.body.len() / 2, j.body.len(), file.len() - 3] {
            assert_eq!(
                parse(&file[..cut]),
                Err(BadBackup::Truncated),
                "cut at {cut}"
            );
        }
        let mut flipped = file.clone();
        let at = j.body.len() - 2;
        flipped[at] ^= 1;
        assert_eq!(parse(&flipped), Err(BadBackup::Damaged));
        assert_eq!(parse(b"MZ\x90\x00 not a backup"), Err(BadBackup::Foreign));
    }
}

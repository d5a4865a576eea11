//! One client connection: handshake (prelogin, login7, password check), then batches, RPCs and
//! attentions answered from the shared model; BACKUP jobs are written to disk here, with faults.
//! TEST DOUBLE: must not hold the model lock while writing files or sleeping.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};

use super::login::{parse_login7, prelogin_answer};
use super::packet::{self, read_message, write_packets, Message as Packet};
use super::request::{decode_batch, decode_rpc, Request};
use super::tokens::{self, Tokens};
use crate::sqlmodel::{
    self, BackupFault, BackupJob, Execution, Message, Model, Outcome, Reply, RequestKind,
    TdsVersion,
};

/// What every session of one server shares.
pub(crate) struct Shared {
    pub login: String,
    pub password: String,
    pub version: TdsVersion,
    pub model: Arc<Mutex<Model>>,
}

const DEFAULT_PACKET: usize = 4096;
const SELECT_CMD: u16 = 0xC1;

struct Session {
    shared: Arc<Shared>,
    spid: u16,
    packet_size: usize,
    tds71: bool,
    server_name: String,
    wr: OwnedWriteHalf,
    rx: mpsc::Receiver<Packet>,
    /// The id of the next packet of an answer whose start was already sent (`send_early`).
    continuing: Option<u8>,
}

/// How a BACKUP job ended.
enum BackupEnd {
    Answer(Outcome),
    /// backup-drop fault: close the connection without an answer.
    Drop,
    Attention,
    ClientGone,
}

/// Serves one connection until the client leaves, a fault drops it, or the login fails.
pub(crate) async fn run(stream: TcpStream, shared: Arc<Shared>, spid: u16) {
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(16);
    // Reading runs on its own task so an attention (or a vanished client) is seen mid-request.
    let reader = tokio::spawn(async move {
        loop {
            match read_message(&mut rd).await {
                Ok(Some(m)) => {
                    if tx.send(m).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("TDS read: {e}");
                    break;
                }
            }
        }
    });
    let server_name = shared.model.lock().await.server_name().to_string();
    let mut s = Session {
        shared,
        spid,
        packet_size: DEFAULT_PACKET,
        tds71: false,
        server_name,
        wr,
        rx,
        continuing: None,
    };
    if let Err(e) = s.serve().await {
        tracing::debug!("TDS session {spid} ended: {e}");
    }
    reader.abort();
}

impl Session {
    /// Sends the (rest of the) answer to a request, ending it (EOM).
    async fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let first = self.continuing.take().unwrap_or(1);
        write_packets(
            &mut self.wr,
            packet::TABULAR_RESULT,
            payload,
            self.packet_size,
            self.spid,
            first,
            true,
        )
        .await
        .map(|_| ())
    }

    /// Sends the start of an answer now, while the statement still runs (a packet without EOM),
    /// as SQL Server flushes BACKUP's `STATS` messages to the client as they happen.
    async fn send_early(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let first = self.continuing.unwrap_or(1);
        let next = write_packets(
            &mut self.wr,
            packet::TABULAR_RESULT,
            payload,
            self.packet_size,
            self.spid,
            first,
            false,
        )
        .await?;
        self.continuing = Some(next);
        Ok(())
    }

    /// The product version in PRELOGIN's VERSION and LOGINACK's ProgVersion: major, minor, build
    /// (big-endian). SQL Server 2016 SP2 is 13.0.5026, SQL Server 2000 SP4 8.0.2039 (as their
    /// @@VERSION banners in the model say).
    fn prog_version(&self) -> [u8; 4] {
        match self.shared.version {
            TdsVersion::V74 => [13, 0, 0x13, 0xA2],
            TdsVersion::V71 => [8, 0, 0x07, 0xF7],
        }
    }

    async fn serve(&mut self) -> std::io::Result<()> {
        if !self.handshake().await? {
            return Ok(());
        }
        while let Some(msg) = self.rx.recv().await {
            match msg.ty {
                packet::SQL_BATCH => {
                    let Request::Batch(sql) = decode_batch(&msg.payload) else {
                        continue;
                    };
                    if !self.statement(RequestKind::Batch, &sql, false).await? {
                        return Ok(());
                    }
                }
                packet::RPC => match decode_rpc(&msg.payload) {
                    Ok(Request::ExecuteSql(sql)) => {
                        if !self.statement(RequestKind::Rpc, &sql, true).await? {
                            return Ok(());
                        }
                    }
                    Ok(Request::OtherProc(name)) => {
                        let o = Outcome::error(Message::error(
                            2812,
                            16,
                            format!("Could not find stored procedure '{name}'."),
                        ));
                        self.answer(&o, true).await?;
                    }
                    Ok(Request::Batch(_)) | Err(_) => {
                        tracing::warn!(
                            "malformed RPC request; closing the connection as SQL Server does"
                        );
                        return Ok(());
                    }
                },
                packet::ATTENTION => self.attention_ack().await?,
                other => {
                    tracing::warn!("unexpected TDS packet type {other}; closing the connection");
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Notes a handshake packet in DIR/sql/connections.log (see `sqlmodel::log_handshake`).
    async fn log_handshake(&self, packet: &str) {
        let dir = self.shared.model.lock().await.dir().to_path_buf();
        if let Err(e) = sqlmodel::state::log_handshake(&dir, packet) {
            tracing::warn!("{e}");
        }
    }

    /// PRELOGIN then LOGIN7. `Ok(false)` when the login was refused (the connection then closes).
    async fn handshake(&mut self) -> std::io::Result<bool> {
        let Some(mut msg) = self.rx.recv().await else {
            return Ok(false);
        };
        if msg.ty == packet::PRELOGIN {
            self.log_handshake("prelogin").await;
            self.send(&prelogin_answer(self.prog_version())).await?;
            let Some(next) = self.rx.recv().await else {
                return Ok(false);
            };
            msg = next;
        }
        if msg.ty != packet::LOGIN7 {
            tracing::warn!("expected LOGIN7, got packet type {}", msg.ty);
            return Ok(false);
        }
        self.log_handshake("login7").await;
        let Some(login) = parse_login7(&msg.payload) else {
            tracing::warn!("malformed LOGIN7");
            return Ok(false);
        };
        let tds_version = match self.shared.version {
            TdsVersion::V71 => 0x7100_0001,
            TdsVersion::V74 if login.tds_version < 0x7200_0000 => 0x7100_0001,
            TdsVersion::V74 => login.tds_version.min(0x7400_0004),
        };
        self.tds71 = tds_version < 0x7200_0000;
        let mut t = Tokens::new(self.tds71);
        let login_failed = Message {
            state: 1,
            ..Message::error(
                18456,
                14,
                format!("Login failed for user '{}'.", login.user),
            )
        };
        let good = login.user.eq_ignore_ascii_case(&self.shared.login)
            && login.password == self.shared.password;
        if !good {
            tracing::info!(
                "login refused for user '{}' (wrong user or password)",
                login.user
            );
            t.error(&login_failed, &self.server_name);
            t.done(tokens::DONE, tokens::DONE_ERROR, 0, 0);
            self.send(&t.buf).await?;
            return Ok(false);
        }
        let wanted = if login.database.is_empty() {
            "master"
        } else {
            login.database.as_str()
        };
        let database = self
            .shared
            .model
            .lock()
            .await
            .database(wanted)
            .map(str::to_string);
        let Some(database) = database else {
            t.error(
                &Message::error(4060, 11, format!("Cannot open database \"{wanted}\" requested by the login. The login failed.")),
                &self.server_name,
            );
            t.error(&login_failed, &self.server_name);
            t.done(tokens::DONE, tokens::DONE_ERROR, 0, 0);
            self.send(&t.buf).await?;
            return Ok(false);
        };
        let packet_size = match login.packet_size {
            0 => DEFAULT_PACKET,
            n => (n as usize).clamp(512, 32767),
        };
        // LOGINACK comes first under TDS 7.1 so that a client sees the version before any token
        // whose layout depends on it (INFO's line number is 2 bytes in 7.1, 4 in 7.2+); SQL Server
        // sends it after the ENVCHANGE/INFO tokens, which tiberius then misreads (DESIGN.md).
        if self.tds71 {
            t.login_ack(tds_version, self.prog_version());
        }
        t.env_change(1, &database, "master");
        t.info(
            &Message {
                state: 2,
                ..Message::info(5701, format!("Changed database context to '{database}'."))
            },
            &self.server_name,
        );
        t.env_collation();
        t.env_change(2, "us_english", "");
        t.info(
            &Message::info(5703, "Changed language setting to us_english."),
            &self.server_name,
        );
        if !self.tds71 {
            t.login_ack(tds_version, self.prog_version());
        }
        t.env_change(4, &packet_size.to_string(), &DEFAULT_PACKET.to_string());
        t.done(tokens::DONE, tokens::DONE_FINAL, 0, 0);
        self.send(&t.buf).await?;
        self.packet_size = packet_size;
        tracing::debug!(
            "session {} logged in as {} (TDS {tds_version:#x}, packets of {packet_size})",
            self.spid,
            login.user
        );
        Ok(true)
    }

    async fn attention_ack(&mut self) -> std::io::Result<()> {
        let mut t = Tokens::new(self.tds71);
        t.done(tokens::DONE, tokens::DONE_ATTN, 0, 0);
        self.send(&t.buf).await
    }

    /// Runs one statement. `Ok(false)` when the connection must close (a fault, or the client left).
    async fn statement(
        &mut self,
        kind: RequestKind,
        sql: &str,
        rpc: bool,
    ) -> std::io::Result<bool> {
        let exec = self.shared.model.lock().await.execute(kind, sql);
        match exec {
            Execution::Finished(o) => self.answer(&o, rpc).await.map(|_| true),
            Execution::Backup(job) => match self.run_backup(&job).await {
                BackupEnd::Answer(o) => self.answer(&o, rpc).await.map(|_| true),
                BackupEnd::Attention => self.attention_ack().await.map(|_| true),
                BackupEnd::Drop => {
                    tracing::info!("backup-drop fault: dropping the connection mid-backup");
                    Ok(false)
                }
                BackupEnd::ClientGone => Ok(false),
            },
        }
    }

    /// Waits `delay` unless the client sends an attention or goes away first.
    async fn wait(&mut self, delay: Duration) -> Option<BackupEnd> {
        if delay.is_zero() {
            return None;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => None,
            m = self.rx.recv() => Some(match m {
                Some(p) if p.ty == packet::ATTENTION => BackupEnd::Attention,
                _ => BackupEnd::ClientGone,
            }),
        }
    }

    /// Writes the backup file in place (like SQL Server: no temporary name), applying faults.
    /// The body goes out in steps (`BackupJob::stops`): with `WITH STATS`, each step ends with its
    /// "n percent processed." message sent to the client at once, as SQL Server sends them while
    /// the backup runs; `job.delay` is spread over the pauses between steps.
    async fn run_backup(&mut self, job: &BackupJob) -> BackupEnd {
        let model = self.shared.model.clone();
        let failed = |e: std::io::Error| async move {
            BackupEnd::Answer(model.lock().await.backup_write_failed(job, &e))
        };
        let mut file = match std::fs::File::create(&job.path) {
            Ok(f) => f,
            Err(e) => return failed(e).await,
        };
        let len = job.body.len();
        let cap = match job.fault {
            Some(BackupFault::DropHalfway) => len / 2,
            Some(BackupFault::DiskFull { allowed }) => {
                usize::try_from(allowed).unwrap_or(len).min(len)
            }
            None => len,
        };
        let stops = job.stops();
        let pause = job.delay / u32::try_from(stops.len()).unwrap_or(1).max(1);
        let mut written = 0;
        for percent in stops {
            let to = (len * percent as usize / 100).min(cap);
            if let Err(e) = file
                .write_all(&job.body[written..to])
                .and_then(|_| file.sync_all())
            {
                return failed(e).await;
            }
            written = to;
            if to < len * percent as usize / 100 {
                break;
            }
            if job.stats.is_some() {
                let mut t = Tokens::new(self.tds71);
                t.info(&BackupJob::percent_processed(percent), &self.server_name);
                if self.send_early(&t.buf).await.is_err() {
                    return BackupEnd::ClientGone;
                }
            }
            if let Some(end) = self.wait(pause).await {
                return end;
            }
        }
        match job.fault {
            Some(BackupFault::DropHalfway) => return BackupEnd::Drop,
            Some(BackupFault::DiskFull { .. }) => {
                return BackupEnd::Answer(self.shared.model.lock().await.backup_disk_full(job))
            }
            _ => {}
        }
        let finish = sqlmodel::now();
        let rest = file
            .write_all(&job.body[written..])
            .and_then(|_| file.write_all(&job.trailer(&finish)))
            .and_then(|_| file.sync_all());
        if let Err(e) = rest {
            return failed(e).await;
        }
        BackupEnd::Answer(self.shared.model.lock().await.finish_backup(job, finish))
    }

    /// Encodes an outcome: result sets (COLMETADATA, ROW, DONE/DONEINPROC), messages, final DONE.
    async fn answer(&mut self, outcome: &Outcome, rpc: bool) -> std::io::Result<()> {
        let mut t = Tokens::new(self.tds71);
        let failed = outcome.failed();
        let last = outcome.replies.len().saturating_sub(1);
        let mut closed = false;
        for (i, reply) in outcome.replies.iter().enumerate() {
            match reply {
                Reply::Rows(rs) => {
                    t.col_metadata(&rs.columns);
                    for row in &rs.rows {
                        t.row(&rs.columns, row);
                    }
                    let n = rs.rows.len() as u64;
                    if rpc {
                        t.done(
                            tokens::DONEINPROC,
                            tokens::DONE_COUNT | tokens::DONE_MORE,
                            SELECT_CMD,
                            n,
                        );
                    } else if i == last {
                        t.done(tokens::DONE, tokens::DONE_COUNT, SELECT_CMD, n);
                        closed = true;
                    } else {
                        t.done(
                            tokens::DONE,
                            tokens::DONE_COUNT | tokens::DONE_MORE,
                            SELECT_CMD,
                            n,
                        );
                    }
                }
                Reply::Info(m) => t.info(m, &self.server_name),
                Reply::Error(m) => t.error(m, &self.server_name),
            }
        }
        let status = if failed {
            tokens::DONE_ERROR
        } else {
            tokens::DONE_FINAL
        };
        if rpc {
            t.return_status(if failed { 1 } else { 0 });
            t.done(tokens::DONEPROC, status, 0xE0, 0);
        } else if !closed {
            t.done(tokens::DONE, status, 0, 0);
        }
        self.send(&t.buf).await
    }
}

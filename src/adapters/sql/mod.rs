//! SQL Server access: the statements `upgrade` sends (`statements`), the values and errors that
//! come back, and two clients behind one trait: `tds` (tiberius; SQL Server 2005 and later) and
//! `odbc` (SQL Server 2000 through an ODBC driver), chosen by `connect` from the plan's `driver`
//! and the server's version (`prelogin`). Clients send what they are given; what to send is
//! decided by the steps through `statements`.

pub mod endpoint;
pub mod odbc;
pub mod odbc_library;
pub mod prelogin;
pub mod statements;
pub mod tds;
mod tds_info;

use std::time::Duration;

use async_trait::async_trait;

use super::secrets::SecretString;
use crate::plan::{SqlAuth, SqlConnection, SqlDriver};

/// How long to wait for the TCP connection and the login (or the PRELOGIN answer).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    DateTime(chrono::NaiveDateTime),
    /// binary / varbinary (MIIS and FIM keep connector-space anchors so).
    Binary(Vec<u8>),
}

impl SqlValue {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Int(n) => Some(*n),
            SqlValue::Text(t) => t.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            SqlValue::Text(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            SqlValue::Binary(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_datetime(&self) -> Option<chrono::NaiveDateTime> {
        match self {
            SqlValue::DateTime(d) => Some(*d),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, SqlValue::Null)
    }
}

/// The value as text, as a check compares it: NULL is `NULL`, booleans `1`/`0` (SQL Server's bit),
/// datetimes `YYYY-MM-DD HH:MM:SS[.fff]`, binary `0x` and upper-case hex digits (as SQL Server's
/// own tools show it, and as T-SQL writes a binary constant).
impl std::fmt::Display for SqlValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlValue::Null => f.write_str("NULL"),
            SqlValue::Int(n) => write!(f, "{n}"),
            SqlValue::Bool(b) => f.write_str(if *b { "1" } else { "0" }),
            SqlValue::Text(t) => f.write_str(t),
            SqlValue::DateTime(d) => write!(f, "{}", d.format("%Y-%m-%d %H:%M:%S%.3f")),
            SqlValue::Binary(b) => write!(f, "0x{}", hex::encode_upper(b)),
        }
    }
}

/// One result row: column names and their values, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    pub columns: Vec<String>,
    pub values: Vec<SqlValue>,
}

impl Row {
    /// The value of a column by name (exact first, then ignoring case, as SQL Server does).
    pub fn get(&self, name: &str) -> Option<&SqlValue> {
        let idx = self.columns.iter().position(|c| c == name).or_else(|| {
            self.columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(name))
        })?;
        self.values.get(idx)
    }

    /// The value at a position (for unnamed columns such as `SELECT @@VERSION`).
    pub fn at(&self, index: usize) -> Option<&SqlValue> {
        self.values.get(index)
    }
}

/// One message the server sent (an ERROR token or an ODBC diagnostic record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    pub number: i32,
    /// Severity; 0 when the client could not tell (ODBC does not report it).
    pub class: u8,
    pub state: u8,
    pub message: String,
}

impl std::fmt::Display for ServerMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error {}", self.number)?;
        if self.class != 0 {
            write!(f, " (severity {}, state {})", self.class, self.state)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// An informational message the server sent while a statement ran (severity 10 or less: an INFO
/// token, an ODBC `SQL_SUCCESS_WITH_INFO` diagnostic), e.g. 3014 "BACKUP DATABASE successfully
/// processed 138 pages in 0.050 seconds (21.1 MB/sec)." or 3262 "The backup set on file 1 is
/// valid.".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoMessage {
    /// The message number; `None` where the client does not tell it (tiberius passes on only the
    /// text).
    pub number: Option<i32>,
    pub text: String,
}

/// The message of BACKUP and RESTORE `WITH STATS`: 3211, "%d percent processed." (SQL Server
/// 2000's text).
pub const PERCENT_PROCESSED: i32 = 3211;

impl InfoMessage {
    /// How far a BACKUP or RESTORE `WITH STATS` has got, when this is its progress message
    /// (3211 "42 percent processed."). Read from the text, which is all tiberius gives.
    pub fn percent(&self) -> Option<u8> {
        if self.number.is_some_and(|n| n != PERCENT_PROCESSED) {
            return None;
        }
        let n = self.text.trim().strip_suffix(" percent processed.")?;
        n.parse::<u8>().ok().filter(|p| *p <= 100)
    }
}

/// What went wrong talking to SQL Server. Nothing is retried automatically.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SqlError {
    /// The server refused the statement. `number`..`message` are the first (root-cause) error;
    /// `messages` all errors of the batch the client could read, e.g. 3201 then 3013
    /// (tiberius keeps only the first; ODBC gives all).
    #[error("SQL Server {}", messages.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("; "))]
    Server {
        number: i32,
        class: u8,
        state: u8,
        message: String,
        messages: Vec<ServerMessage>,
    },
    /// The server could not be reached, or the connection dropped or timed out.
    #[error("connection to SQL Server {server} failed: {message}")]
    Connection { server: String, message: String },
    /// The server rejected the login.
    #[error("login to SQL Server {server} failed: {message}")]
    Login { server: String, message: String },
    /// The conversation broke the protocol, or a value could not be read.
    #[error("SQL Server protocol error: {message}")]
    Protocol { message: String },
    /// The plan asks for something this platform or client cannot do.
    #[error("{message}")]
    Unsupported { message: String },
}

impl SqlError {
    /// A server error from its messages; the first is the root cause.
    pub fn server(messages: Vec<ServerMessage>) -> SqlError {
        let first = messages.first().cloned().unwrap_or(ServerMessage {
            number: 0,
            class: 0,
            state: 0,
            message: "unknown server error".into(),
        });
        SqlError::Server {
            number: first.number,
            class: first.class,
            state: first.state,
            message: first.message,
            messages,
        }
    }

    /// Whether the server reported error `number` anywhere in the batch.
    pub fn has_number(&self, number: i32) -> bool {
        matches!(self, SqlError::Server { messages, .. } if messages.iter().any(|m| m.number == number))
    }
}

/// A connection to SQL Server.
#[async_trait]
pub trait SqlClient: Send {
    /// Runs a query and returns the rows of its first result set.
    /// tds: an `sp_executesql` RPC; odbc: a batch.
    async fn query(&mut self, sql: &str) -> Result<Vec<Row>, SqlError> {
        let mut rows = Vec::new();
        self.query_each(sql, &mut |row| rows.push(row)).await?;
        Ok(rows)
    }
    /// Runs a query and hands the rows of its first result set to `each` one at a time as they
    /// arrive, holding only a few in memory (a whole connector space does not fit in the goal of
    /// issue 11); returns how many there were. Sent as `query` sends it.
    async fn query_each(
        &mut self,
        sql: &str,
        each: &mut (dyn FnMut(Row) + Send),
    ) -> Result<u64, SqlError>;
    /// Runs a batch (BACKUP, RESTORE VERIFYONLY) and returns the informational messages the
    /// server sent, in order.
    async fn execute(&mut self, sql: &str) -> Result<Vec<InfoMessage>, SqlError> {
        let mut messages = Vec::new();
        self.execute_each(sql, &mut |m| messages.push(m)).await?;
        Ok(messages)
    }
    /// Runs a batch and hands each informational message to `each` as soon as the client reads
    /// it, while the batch still runs (a backup's `WITH STATS` percentages). A plain SQL batch.
    async fn execute_each(
        &mut self,
        sql: &str,
        each: &mut (dyn FnMut(InfoMessage) + Send),
    ) -> Result<(), SqlError>;
}

/// Which client a server is reached with: decided once per server (a PRELOGIN exchange for
/// `auto` and `tds`), then used for every connection to it (see [`route`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The built-in client (tiberius), at this address.
    Tds(endpoint::Endpoint),
    /// ODBC (the plan says `driver: odbc`, or the server speaks only TDS 7.1).
    Odbc,
}

/// Connects with the plan's driver. `password` is required for SQL authentication.
pub async fn connect(
    conn: &SqlConnection,
    password: Option<&SecretString>,
) -> Result<Box<dyn SqlClient>, SqlError> {
    password_at_hand(conn, password)?;
    let way = route(conn).await?;
    connect_by(&way, conn, password).await
}

/// SQL authentication without a password is refused before anything goes out.
pub fn password_at_hand(
    conn: &SqlConnection,
    password: Option<&SecretString>,
) -> Result<(), SqlError> {
    match (&conn.auth, password) {
        (SqlAuth::Sql(login), None) => Err(SqlError::Unsupported {
            message: format!(
                "SQL authentication as {} needs a password, and none was resolved",
                login.user
            ),
        }),
        _ => Ok(()),
    }
}

/// Which client `conn`'s server takes. `odbc` connects through ODBC. `auto` and `tds` first read
/// the server's version (a PRELOGIN exchange, no login): SQL Server 2000 speaks only TDS 7.1,
/// whose result sets tiberius cannot read, so `auto` takes ODBC for it and `tds` refuses it before
/// any statement, saying why. The answer holds for every database of that server: a caller that
/// connects many times keeps it (`World` does, once per run).
pub async fn route(conn: &SqlConnection) -> Result<Route, SqlError> {
    if conn.driver == SqlDriver::Odbc {
        return Ok(Route::Odbc);
    }
    let server = server_label(conn);
    let at = endpoint::resolve(conn, &server).await?;
    let version = prelogin::server_version(&at, &server).await?;
    if !version.speaks_tds71_at_most() {
        tracing::debug!(%server, %version, "the built-in client (tiberius) for this server");
        return Ok(Route::Tds(at));
    }
    if conn.driver == SqlDriver::Tds {
        return Err(SqlError::Unsupported {
            message: format!(
                "the server {server} is {} (version {version}), which speaks only TDS 7.1, and \
                 the built-in client (`driver: tds`) cannot read TDS 7.1 result sets; set \
                 `driver: odbc` in server.sql, or `driver: auto` (the default), which uses ODBC \
                 for this server",
                version.product()
            ),
        });
    }
    tracing::debug!(%server, %version, "ODBC for this server (TDS 7.1)");
    Ok(Route::Odbc)
}

/// Connects to `conn` (any database of the server `way` was decided for) the way [`route`] said.
pub async fn connect_by(
    way: &Route,
    conn: &SqlConnection,
    password: Option<&SecretString>,
) -> Result<Box<dyn SqlClient>, SqlError> {
    password_at_hand(conn, password)?;
    match way {
        Route::Tds(at) => Ok(Box::new(tds::TdsClient::connect(conn, at, password).await?)),
        Route::Odbc => Ok(Box::new(odbc::OdbcClient::connect(conn, password).await?)),
    }
}

/// `(local)` and `.` mean this machine.
pub(crate) fn host_address(host: &str) -> &str {
    match host.trim() {
        "(local)" | "." | "(LOCAL)" => "127.0.0.1",
        other => other,
    }
}

/// `host[\instance][:port]` for messages.
pub(crate) fn server_label(conn: &SqlConnection) -> String {
    let mut s = conn.host.clone();
    if let Some(i) = &conn.instance {
        s.push('\\');
        s.push_str(i);
    }
    if let Some(p) = conn.port {
        s.push_str(&format!(":{p}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_finds_columns_by_name_ignoring_case() {
        let row = Row {
            columns: vec!["ma_name".into(), "objects".into()],
            values: vec![SqlValue::Text("AD MA".into()), SqlValue::Int(42)],
        };
        assert_eq!(row.get("OBJECTS").and_then(SqlValue::as_i64), Some(42));
        assert_eq!(row.get("ma_name").and_then(SqlValue::as_str), Some("AD MA"));
        assert_eq!(row.get("missing"), None);
    }

    #[test]
    fn a_failed_backup_keeps_every_message_with_the_root_cause_first() {
        let err = SqlError::server(vec![
            ServerMessage {
                number: 3201,
                class: 16,
                state: 1,
                message: "Cannot open backup device 'E:\\x.bak'.".into(),
            },
            ServerMessage {
                number: 3013,
                class: 16,
                state: 1,
                message: "BACKUP DATABASE is terminating abnormally.".into(),
            },
        ]);
        assert!(matches!(err, SqlError::Server { number: 3201, .. }));
        assert!(err.has_number(3013));
        let text = err.to_string();
        assert!(
            text.contains("3201") && text.contains("3013") && text.contains("severity 16"),
            "{text}"
        );
    }

    #[test]
    fn a_backups_progress_is_read_from_its_percent_message_only() {
        let message = |number, text: &str| InfoMessage {
            number,
            text: text.into(),
        };
        assert_eq!(
            message(Some(3211), "40 percent processed.").percent(),
            Some(40)
        );
        assert_eq!(message(None, "100 percent processed.").percent(), Some(100));
        assert_eq!(message(Some(3014), "40 percent processed.").percent(), None);
        assert_eq!(
            message(
                None,
                "Processed 138 pages for database 'x', file 'x' on file 1."
            )
            .percent(),
            None
        );
        assert_eq!(message(None, "140 percent processed.").percent(), None);
    }

    #[test]
    fn values_print_as_a_check_compares_them() {
        let d = chrono::NaiveDate::from_ymd_opt(2004, 5, 6)
            .unwrap()
            .and_hms_milli_opt(7, 8, 9, 10)
            .unwrap();
        assert_eq!(SqlValue::DateTime(d).to_string(), "2004-05-06 07:08:09.010");
        assert_eq!(SqlValue::Bool(true).to_string(), "1");
        assert_eq!(SqlValue::Null.to_string(), "NULL");
        assert_eq!(SqlValue::Text(" 12 ".into()).as_i64(), Some(12));
        assert_eq!(SqlValue::Binary(vec![0x0a, 0xff]).to_string(), "0x0AFF");
    }

    #[test]
    fn local_host_names_mean_loopback() {
        assert_eq!(host_address("(local)"), "127.0.0.1");
        assert_eq!(host_address("."), "127.0.0.1");
        assert_eq!(host_address("sql01"), "sql01");
    }
}

//! The ODBC SQL Server client: the path to SQL Server 2000 (TDS 7.1), through Windows' "SQL Server"
//! driver or, elsewhere, FreeTDS through the unixODBC built into `upgrade`. Every statement goes out
//! as a batch (SQLExecDirect) on a blocking thread. The connection string holds the password: it
//! is never logged or displayed.

use async_trait::async_trait;
use odbc_api::handles::{
    AsStatementRef, Diagnostics, SqlChar, SqlResult, SqlText, Statement, StatementRef,
};
use odbc_api::{Connection, ConnectionOptions, Cursor, DataType};
use std::borrow::Cow;

use super::{
    host_address, odbc_library, server_label, InfoMessage, Row, ServerMessage, SqlClient, SqlError,
    SqlValue,
};
use crate::adapters::secrets::SecretString;
use crate::plan::{SqlAuth, SqlConnection};

/// Seconds the driver waits for the login.
const LOGIN_TIMEOUT_SECS: u32 = 30;

/// The most diagnostic records read after one call.
const MAX_RECORDS: i16 = 50;

/// Rows read ahead of the caller of `query_each`.
const ROWS_IN_FLIGHT: usize = 256;

/// The default ODBC driver name on this platform.
pub fn default_driver() -> &'static str {
    if cfg!(windows) {
        "SQL Server"
    } else {
        "FreeTDS"
    }
}

/// An ODBC connection. Calls run on tokio's blocking pool; the connection moves there and back.
pub struct OdbcClient {
    conn: Option<Connection<'static>>,
    server: String,
}

impl std::fmt::Debug for OdbcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OdbcClient({})", self.server)
    }
}

impl OdbcClient {
    pub async fn connect(
        conn: &SqlConnection,
        password: Option<&SecretString>,
    ) -> Result<OdbcClient, SqlError> {
        let server = server_label(conn);
        // Checked before any thread starts: a value no connection string can carry.
        connection_string(conn, password)?;
        tracing::debug!(%server, driver = "odbc", odbc_driver = %driver_name(conn), "connecting");
        let label = server.clone();
        let conn = conn.clone();
        let password = password.cloned();
        let connection = tokio::task::spawn_blocking(move || {
            let env = odbc_api::environment().map_err(|e| SqlError::Unsupported {
                message: format!("the ODBC driver manager is not usable: {e}"),
            })?;
            let name = driver_name(&conn);
            let load = library_to_load(env, &name)?;
            if load != name {
                tracing::debug!(server = %label, odbc_driver = %name, library = %load, "registered driver found in the system's driver folder");
            }
            let conn_string = SecretString::new(connection_string_loading(
                &conn,
                &load,
                password.as_ref(),
            )?);
            let options = ConnectionOptions {
                login_timeout_sec: Some(LOGIN_TIMEOUT_SECS),
                ..Default::default()
            };
            env.connect_with_connection_string(conn_string.expose(), options)
                .map_err(|e| map_connect_error(e, &label))
        })
        .await
        .map_err(|e| SqlError::Protocol {
            message: format!("the ODBC connect task failed: {e}"),
        })??;
        tracing::debug!(%server, "connected");
        Ok(OdbcClient {
            conn: Some(connection),
            server,
        })
    }

    /// Runs `work` with the connection on the blocking pool.
    async fn with_conn<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&Connection<'static>, &str) -> Result<T, SqlError> + Send + 'static,
    ) -> Result<T, SqlError> {
        let conn = self.conn.take().ok_or_else(|| SqlError::Connection {
            server: self.server.clone(),
            message: "the connection was lost by an earlier failure".into(),
        })?;
        let server = self.server.clone();
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = work(&conn, &server);
            (conn, result)
        })
        .await
        .map_err(|e| SqlError::Protocol {
            message: format!("the ODBC task failed: {e}"),
        })?;
        self.conn = Some(conn);
        result
    }
}

#[async_trait]
impl SqlClient for OdbcClient {
    async fn query_each(
        &mut self,
        sql: &str,
        each: &mut (dyn FnMut(Row) + Send),
    ) -> Result<u64, SqlError> {
        tracing::debug!(server = %self.server, %sql, "query (odbc batch)");
        let sql = sql.to_string();
        // The driver's calls block: the rows cross from the blocking thread through a small
        // channel, so at most ROWS_IN_FLIGHT of them are held at once.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Row>(ROWS_IN_FLIGHT);
        let read = self.with_conn(move |conn, server| {
            run_query(conn, server, &sql, &mut |row| tx.blocking_send(row).is_ok())
        });
        let mut count = 0;
        let hand_on = async {
            while let Some(row) = rx.recv().await {
                each(row);
                count += 1;
            }
        };
        let (read, ()) = tokio::join!(read, hand_on);
        read.map(|()| count)
    }

    async fn execute_each(
        &mut self,
        sql: &str,
        each: &mut (dyn FnMut(InfoMessage) + Send),
    ) -> Result<(), SqlError> {
        tracing::debug!(server = %self.server, %sql, "execute (odbc batch)");
        let sql = sql.to_string();
        // The messages cross from the blocking thread as the driver hands them over.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<InfoMessage>();
        let run = self.with_conn(move |conn, server| {
            run_batch(conn, server, &sql, &mut |m| {
                // The reader is gone only once the batch ended.
                let _ = tx.send(m);
            })
        });
        let hand_on = async {
            while let Some(m) = rx.recv().await {
                each(m);
            }
        };
        let (run, ()) = tokio::join!(run, hand_on);
        run
    }
}

fn driver_name(conn: &SqlConnection) -> String {
    conn.odbc_driver
        .clone()
        .unwrap_or_else(|| default_driver().to_string())
}

fn is_freetds(driver: &str) -> bool {
    let d = driver.to_ascii_lowercase();
    d.contains("freetds") || d.contains("tdsodbc")
}

/// `{value}` with `}` doubled: any character may then appear in a connection-string value.
fn braced(value: &str) -> String {
    format!("{{{}}}", value.replace('}', "}}"))
}

/// A value for FreeTDS, which ends a braced value at the first `}` and does not undo `}}`:
/// braced unless it holds `}`, then bare unless it also holds `;` (which no form can carry).
fn freetds_value(value: &str, what: &str) -> Result<String, SqlError> {
    if !value.contains('}') {
        Ok(braced(value))
    } else if !value.contains(';') && !value.starts_with(['{', ' ']) && !value.ends_with(' ') {
        Ok(value.to_string())
    } else {
        Err(SqlError::Unsupported {
            message: format!(
                "the FreeTDS ODBC driver cannot take a {what} containing both `;` and `}}` (or starting with `{{` or a space); use another driver or change the {what}"
            ),
        })
    }
}

/// The ODBC connection string. Holds the password: never log it. Every value from the plan is
/// quoted (`{...}`), so none can end its value early and add keys of its own
/// (`x;Trusted_Connection=yes`); validation also refuses such host and instance names.
pub fn connection_string(
    conn: &SqlConnection,
    password: Option<&SecretString>,
) -> Result<String, SqlError> {
    connection_string_loading(conn, &driver_name(conn), password)
}

/// The driver to name in the connection string: on Unix, a driver registered by bare file name is
/// given as the file the system's unixODBC would load (`odbc_library`), since the driver manager
/// built into `upgrade` would not find it; a name registered nowhere is an error that says how to
/// register it; otherwise the plan's name (or path) as it is.
fn library_to_load(env: &odbc_api::Environment, name: &str) -> Result<String, SqlError> {
    if !cfg!(unix) {
        return Ok(name.to_string());
    }
    // A driver list that cannot be read leaves the name to the driver manager and its message.
    let Ok(registered) = env.drivers() else {
        return Ok(name.to_string());
    };
    match odbc_library::lookup(name, &registered, &odbc_library::driver_folders()) {
        odbc_library::Lookup::File(path) => Ok(path.to_string_lossy().into_owned()),
        odbc_library::Lookup::AsNamed => Ok(name.to_string()),
        odbc_library::Lookup::NotRegistered => Err(SqlError::Unsupported {
            message: format!(
                "the ODBC driver `{name}` is not registered with unixODBC (no [{name}] in {}){}",
                odbc_library::odbcinst_ini(),
                if is_freetds(name) {
                    "; install the FreeTDS ODBC driver, which registers itself (Debian, Ubuntu: \
                     `apt install tdsodbc`), or name its file in `server.sql.odbc_driver`"
                } else {
                    "; register it (`odbcinst -i -d -f TEMPLATE`) or name its file in \
                     `server.sql.odbc_driver`"
                }
            ),
        }),
    }
}

/// The connection string that loads `driver` (the plan's driver, or the file it is registered as).
fn connection_string_loading(
    conn: &SqlConnection,
    driver: &str,
    password: Option<&SecretString>,
) -> Result<String, SqlError> {
    let freetds = is_freetds(&driver_name(conn)) || is_freetds(driver);
    let quote = |value: &str, what: &str| {
        if freetds {
            freetds_value(value, what)
        } else {
            Ok(braced(value))
        }
    };
    let host = host_address(&conn.host);
    let is_path = driver.starts_with('/') || (driver.len() > 2 && driver.as_bytes()[1] == b':');
    let mut s = if is_path && !driver.contains([';', '{', '}']) {
        format!("Driver={driver};")
    } else {
        format!("Driver={};", braced(driver))
    };
    if freetds {
        let (server, port) = match (conn.port, &conn.instance) {
            (Some(port), _) => (host.to_string(), Some(port)),
            (None, Some(instance)) => (format!("{host}\\{instance}"), None),
            (None, None) => (host.to_string(), Some(1433)),
        };
        s.push_str(&format!("Server={};", quote(&server, "server name")?));
        if let Some(port) = port {
            s.push_str(&format!("Port={};", braced(&port.to_string())));
        }
        s.push_str("TDS_Version=7.1;ClientCharset=UTF-8;");
    } else {
        let mut server = host.to_string();
        if let Some(instance) = &conn.instance {
            server.push('\\');
            server.push_str(instance);
        }
        if let Some(port) = conn.port {
            server.push_str(&format!(",{port}"));
        }
        s.push_str(&format!("Server={};", braced(&server)));
    }
    if let Some(db) = &conn.database {
        s.push_str(&format!("Database={};", quote(db, "database name")?));
    }
    match &conn.auth {
        SqlAuth::Windows => s.push_str("Trusted_Connection=yes;"),
        SqlAuth::Sql(login) => {
            let password = password.ok_or_else(|| SqlError::Unsupported {
                message: format!("SQL authentication as {} needs a password", login.user),
            })?;
            let uid = quote(&login.user, "user name")?;
            let pwd = quote(password.expose(), "password")?;
            s.push_str(&format!("UID={uid};PWD={pwd};"));
        }
    }
    Ok(s)
}

/// Runs `sql` and hands each row of its first result set to `sink`, which answers whether to go
/// on (no: its reader is gone).
fn run_query(
    conn: &Connection<'static>,
    server: &str,
    sql: &str,
    sink: &mut dyn FnMut(Row) -> bool,
) -> Result<(), SqlError> {
    let mut stmt = conn.preallocate().map_err(|e| map_error(e, server))?;
    let failure = match stmt.execute(sql, ()) {
        Ok(None) => return Ok(()),
        Ok(Some(mut cursor)) => {
            if read_rows(&mut cursor, server, sink)? {
                drain(cursor, server)?;
            }
            return Ok(());
        }
        Err(e) => e,
    };
    Err(statement_error(&mut stmt, failure, server))
}

/// Reads past the remaining results so an error later in the batch is reported.
fn drain(cursor: impl Cursor, server: &str) -> Result<(), SqlError> {
    let mut next = cursor.more_results().map_err(|e| map_error(e, server))?;
    while let Some(c) = next {
        next = c.more_results().map_err(|e| map_error(e, server))?;
    }
    Ok(())
}

/// Runs a batch (BACKUP, RESTORE VERIFYONLY) to its end, handing each informational message to
/// `info` as the driver gives it. SQL Server's ODBC drivers return from SQLExecDirect with the
/// first messages (SQL_SUCCESS_WITH_INFO, the messages as the statement's diagnostic records);
/// the rest of the batch, its further messages and its errors (3202, 3013) come only through
/// SQLMoreResults, and freeing the statement before then cancels the batch. The calls are made
/// on the statement handle itself: odbc-api's own would log each message as a WARN line.
fn run_batch(
    conn: &Connection<'static>,
    server: &str,
    sql: &str,
    info: &mut dyn FnMut(InfoMessage),
) -> Result<(), SqlError> {
    let mut stmt = conn.preallocate().map_err(|e| map_error(e, server))?;
    let text = SqlText::new(sql);
    let mut handle = stmt.as_stmt_ref();
    // SAFETY: no parameters and no column buffers are bound to this freshly allocated statement,
    // so executing it cannot read or write through a stale binding.
    let mut result = unsafe { handle.exec_direct(&text) };
    while after_call(result, || records(&handle), info, server)? == Batch::Goes {
        // SAFETY: as above, nothing is bound: moving to the next result (which also discards any
        // rows of this one) cannot write through a stale binding.
        result = unsafe { handle.more_results() };
    }
    Ok(())
}

/// Whether a batch goes on to its next result after a call, or has ended.
#[derive(Debug, PartialEq, Eq)]
enum Batch {
    Goes,
    Ended,
}

/// What a call on a batch (SQLExecDirect, SQLMoreResults) returned, with the statement's
/// diagnostic records (`records`, read only when the call left some): the batch goes on, it
/// ended, or it failed. ODBC's rule (Microsoft, ODBC Appendix A "ODBC Error Codes"): a SQLSTATE of
/// class 01 is a warning, any other class an error. SQL Server's informational messages (severity
/// 10 or less: 3211 "N percent processed.", 4035, 3014) come as 01000 and go to `info`; an error
/// record fails the batch whatever the call returned: some drivers return SQL_SUCCESS_WITH_INFO
/// for a batch whose BACKUP failed among such messages, and SQL_ERROR comes with the messages
/// said before the error.
fn after_call(
    result: SqlResult<()>,
    records: impl FnOnce() -> Vec<Record>,
    info: &mut dyn FnMut(InfoMessage),
    server: &str,
) -> Result<Batch, SqlError> {
    match result {
        SqlResult::NoData => Ok(Batch::Ended),
        SqlResult::Success(()) => Ok(Batch::Goes),
        SqlResult::SuccessWithInfo(()) => {
            let errors = hand_on_warnings(records(), info);
            if errors.is_empty() {
                Ok(Batch::Goes)
            } else {
                Err(classify(errors, server))
            }
        }
        SqlResult::Error { function } => {
            let records = records();
            if records.is_empty() {
                let first = odbc_api::Error::NoDiagnostics { function };
                return Err(map_error(first, server));
            }
            Err(failure(records, info, server))
        }
        SqlResult::NeedData | SqlResult::StillExecuting => Err(SqlError::Protocol {
            message: format!("{server}: the driver asked for data or went asynchronous while reading a batch's results"),
        }),
    }
}

/// One diagnostic record: its SQLSTATE, the server's message number (0 for the driver's own
/// records) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    state: String,
    native: i32,
    text: String,
}

impl Record {
    /// SQLSTATE class 01: a warning (SQL Server's informational messages come as 01000).
    fn is_warning(&self) -> bool {
        self.state.starts_with("01")
    }
}

/// The diagnostic records a call left on the statement (SQLGetDiagRec numbers them from 1; a
/// driver keeps a bounded number of them).
fn records(handle: &StatementRef<'_>) -> Vec<Record> {
    let mut records = Vec::new();
    let mut buf: Vec<SqlChar> = Vec::with_capacity(512);
    for n in 1..=MAX_RECORDS {
        let Some(record) = handle.diagnostic_record_vec(n, &mut buf) else {
            break;
        };
        records.push(Record {
            state: record.state.as_str().to_string(),
            native: record.native_error,
            text: to_text(&buf).into_owned(),
        });
    }
    records
}

/// Hands the warnings among `records` to `info`, in the driver's order, and returns the errors.
fn hand_on_warnings(records: Vec<Record>, info: &mut dyn FnMut(InfoMessage)) -> Vec<Record> {
    let (warnings, errors): (Vec<Record>, Vec<Record>) =
        records.into_iter().partition(Record::is_warning);
    for w in warnings {
        info(InfoMessage {
            number: (w.native != 0).then_some(w.native),
            text: strip_vendor_prefix(&w.text),
        });
    }
    errors
}

/// The error of a call that failed, from the records it left (at least one). Warnings among them
/// (messages said before the failure) go to `info`, not into the error; a failure told only in
/// warnings is still a failure, and they are its reason.
fn failure(records: Vec<Record>, info: &mut dyn FnMut(InfoMessage), server: &str) -> SqlError {
    if records.iter().all(Record::is_warning) {
        return classify(records, server);
    }
    classify(hand_on_warnings(records, info), server)
}

/// The error a failed SQLExecDirect of a query left on the statement; the messages before it are
/// only logged (a query has no one to tell them to).
fn statement_error(
    stmt: &mut impl AsStatementRef,
    first: odbc_api::Error,
    server: &str,
) -> SqlError {
    let records = records(&stmt.as_stmt_ref());
    if records.is_empty() {
        return map_error(first, server);
    }
    failure(
        records,
        &mut |m| tracing::debug!(%server, number = ?m.number, text = %m.text, "said before the error"),
        server,
    )
}

/// Turns diagnostic records (at least one) into the right `SqlError`.
fn classify(records: Vec<Record>, server: &str) -> SqlError {
    let first = &records[0];
    let (state, native) = (first.state.as_str(), first.native);
    let text = records
        .iter()
        .map(|r| strip_vendor_prefix(&r.text))
        .collect::<Vec<_>>()
        .join("; ");
    if state == "28000" || native == 18456 || native == 4060 {
        return SqlError::Login {
            server: server.to_string(),
            message: text,
        };
    }
    // 08xxx: connection; HYT00/HYT01: timeouts; FreeTDS's own network errors are 20002..=20020.
    let net =
        state.starts_with("08") || state.starts_with("HYT") || (20002..=20020).contains(&native);
    let server_messages: Vec<ServerMessage> = records
        .iter()
        .filter(|r| r.native != 0 && !(20002..=20020).contains(&r.native))
        .map(|r| ServerMessage {
            number: r.native,
            class: 0,
            state: 0,
            message: strip_vendor_prefix(&r.text),
        })
        .collect();
    if net || server_messages.is_empty() {
        if net {
            return SqlError::Connection {
                server: server.to_string(),
                message: text,
            };
        }
        return SqlError::Protocol {
            message: format!("ODBC {state}: {text}"),
        };
    }
    SqlError::server(server_messages)
}

fn map_connect_error(e: odbc_api::Error, server: &str) -> SqlError {
    match map_error(e, server) {
        SqlError::Protocol { message } => SqlError::Connection {
            server: server.to_string(),
            message,
        },
        SqlError::Server { messages, .. } => SqlError::Login {
            server: server.to_string(),
            message: messages
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        },
        other => other,
    }
}

fn map_error(e: odbc_api::Error, server: &str) -> SqlError {
    match e {
        odbc_api::Error::Diagnostics { record, .. } => classify(
            vec![Record {
                state: record.state.as_str().to_string(),
                native: record.native_error,
                text: to_text(&record.message).into_owned(),
            }],
            server,
        ),
        other => SqlError::Protocol {
            message: other.to_string(),
        },
    }
}

/// `[FreeTDS][SQL Server]Cannot open ...` -> `Cannot open ...`.
fn strip_vendor_prefix(text: &str) -> String {
    let mut rest = text.trim();
    while rest.starts_with('[') {
        match rest.find(']') {
            Some(end) => rest = &rest[end + 1..],
            None => break,
        }
    }
    rest.trim().to_string()
}

/// Diagnostic text in the driver manager's character width (narrow on unix, wide on Windows).
trait DiagText {
    fn text(buf: &[Self]) -> Cow<'_, str>
    where
        Self: Sized;
}

impl DiagText for u8 {
    fn text(buf: &[u8]) -> Cow<'_, str> {
        String::from_utf8_lossy(buf)
    }
}

impl DiagText for u16 {
    fn text(buf: &[u16]) -> Cow<'_, str> {
        Cow::Owned(String::from_utf16_lossy(buf))
    }
}

fn to_text<C: DiagText>(buf: &[C]) -> Cow<'_, str> {
    C::text(buf)
}

/// Reads the cursor's rows into `sink`; false when the sink stopped taking them.
fn read_rows(
    cursor: &mut impl Cursor,
    server: &str,
    sink: &mut dyn FnMut(Row) -> bool,
) -> Result<bool, SqlError> {
    let count = cursor.num_result_cols().map_err(|e| map_error(e, server))?;
    let count = u16::try_from(count).unwrap_or(0);
    let mut columns = Vec::with_capacity(count.into());
    let mut types = Vec::with_capacity(count.into());
    for i in 1..=count {
        columns.push(cursor.col_name(i).map_err(|e| map_error(e, server))?);
        types.push(cursor.col_data_type(i).map_err(|e| map_error(e, server))?);
    }
    let mut buf: Vec<u16> = Vec::new();
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(mut row) = cursor.next_row().map_err(|e| map_error(e, server))? {
        let mut values = Vec::with_capacity(columns.len());
        for (i, ty) in (1..=count).zip(&types) {
            // Binary columns are read as bytes: as text, the driver would render them as hex
            // digits in a case of its own choosing.
            let value = if is_binary(ty) {
                let present = row
                    .get_binary(i, &mut bytes)
                    .map_err(|e| map_error(e, server))?;
                present.then(|| SqlValue::Binary(bytes.clone()))
            } else {
                let present = row
                    .get_wide_text(i, &mut buf)
                    .map_err(|e| map_error(e, server))?;
                present.then(|| convert(ty, &String::from_utf16_lossy(&buf)))
            };
            values.push(value.unwrap_or(SqlValue::Null));
        }
        let row = Row {
            columns: columns.clone(),
            values,
        };
        if !sink(row) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn is_binary(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::Binary { .. } | DataType::Varbinary { .. } | DataType::LongVarbinary { .. }
    )
}

/// A value read as text, typed by its column's SQL type.
fn convert(ty: &DataType, text: &str) -> SqlValue {
    match ty {
        DataType::Integer | DataType::SmallInt | DataType::TinyInt | DataType::BigInt => text
            .trim()
            .parse()
            .map(SqlValue::Int)
            .unwrap_or_else(|_| SqlValue::Text(text.to_string())),
        DataType::Bit => SqlValue::Bool(text.trim() == "1"),
        DataType::Timestamp { .. } | DataType::Date => parse_datetime(text)
            .map(SqlValue::DateTime)
            .unwrap_or_else(|| SqlValue::Text(text.to_string())),
        _ => SqlValue::Text(text.to_string()),
    }
}

fn parse_datetime(text: &str) -> Option<chrono::NaiveDateTime> {
    let t = text.trim();
    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S"))
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Encryption, Secret, SqlDriver, SqlLogin};

    fn conn(driver: Option<&str>, port: Option<u16>, instance: Option<&str>) -> SqlConnection {
        SqlConnection {
            host: "(local)".into(),
            instance: instance.map(String::from),
            port,
            auth: SqlAuth::Sql(SqlLogin {
                user: "upgrade".into(),
                password: Secret::Env("X".into()),
            }),
            driver: SqlDriver::Odbc,
            database: None,
            odbc_driver: driver.map(String::from),
            encryption: Encryption::NotSupported,
            trust_server_certificate: false,
        }
    }

    #[test]
    fn a_freetds_connection_string_names_port_version_and_a_braced_password() {
        let pw = SecretString::new("p;w=d");
        let s = connection_string(
            &conn(
                Some("/usr/lib/x86_64-linux-gnu/odbc/libtdsodbc.so"),
                Some(14330),
                None,
            ),
            Some(&pw),
        )
        .unwrap();
        assert_eq!(
            s,
            "Driver=/usr/lib/x86_64-linux-gnu/odbc/libtdsodbc.so;Server={127.0.0.1};Port={14330};TDS_Version=7.1;ClientCharset=UTF-8;UID={upgrade};PWD={p;w=d};"
        );
    }

    #[test]
    fn freetds_gets_a_closing_brace_bare_and_refuses_what_it_cannot_parse() {
        assert_eq!(freetds_value("pa}ss", "password").unwrap(), "pa}ss");
        assert_eq!(freetds_value("pa;ss", "password").unwrap(), "{pa;ss}");
        let err = freetds_value("p;a}ss", "password").unwrap_err();
        assert!(err.to_string().contains("FreeTDS"), "{err}");
        // The Microsoft drivers undo `}}`, so anything goes there.
        let pw = SecretString::new("p;a}ss");
        let s = connection_string(&conn(Some("SQL Server"), Some(1433), None), Some(&pw)).unwrap();
        assert!(s.ends_with("PWD={p;a}}ss};"), "{s}");
    }

    #[test]
    fn the_windows_driver_takes_instance_and_port_in_server() {
        let pw = SecretString::new("x");
        let s = connection_string(
            &conn(Some("SQL Server"), Some(1500), Some("MIIS")),
            Some(&pw),
        )
        .unwrap();
        assert!(
            s.starts_with("Driver={SQL Server};Server={127.0.0.1\\MIIS,1500};"),
            "{s}"
        );
        let mut windows = conn(Some("SQL Server"), None, None);
        windows.auth = SqlAuth::Windows;
        let mut in_db = windows.clone();
        in_db.database = Some("FIMSynchronizationService".into());
        let with_db = connection_string(&in_db, None).unwrap();
        assert!(
            with_db.contains("Database={FIMSynchronizationService};"),
            "{with_db}"
        );
        let s = connection_string(&windows, None).unwrap();
        assert!(
            s.ends_with("Trusted_Connection=yes;") && !s.contains("PWD"),
            "{s}"
        );
    }

    /// Splits a connection string into keys and values the way a driver does: a value in braces
    /// runs to its closing brace (Microsoft's drivers read `}}` as one `}`; FreeTDS ends the value
    /// at the first `}`), any other value to the next `;`.
    fn parse(s: &str, freetds: bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=').expect("key=value");
            let (value, after) = if let Some(braced) = after.strip_prefix('{') {
                let mut value = String::new();
                let mut chars = braced.char_indices().peekable();
                loop {
                    let (i, c) = chars.next().expect("a closing brace");
                    if c == '}' {
                        if !freetds && chars.peek().is_some_and(|(_, c)| *c == '}') {
                            chars.next();
                            value.push('}');
                            continue;
                        }
                        break (value, &braced[i + 1..]);
                    }
                    value.push(c);
                }
            } else {
                let end = after.find(';').unwrap_or(after.len());
                (after[..end].to_string(), &after[end..])
            };
            out.push((key.to_string(), value));
            rest = after.strip_prefix(';').unwrap_or(after);
        }
        out
    }

    #[test]
    fn a_hostile_host_user_or_database_stays_one_value_in_the_connection_string() {
        let pw = SecretString::new("pw");
        for driver in ["FreeTDS", "SQL Server"] {
            let freetds = driver == "FreeTDS";
            let mut c = conn(Some(driver), Some(1433), None);
            c.host = "x;Trusted_Connection=yes;Server=evil".into();
            c.database = Some("db;Database=master".into());
            c.auth = SqlAuth::Sql(SqlLogin {
                user: "sa;Trusted_Connection=yes".into(),
                password: Secret::Env("X".into()),
            });
            let parsed = parse(&connection_string(&c, Some(&pw)).unwrap(), freetds);
            let keys: Vec<&str> = parsed.iter().map(|(k, _)| k.as_str()).collect();
            let value = |key: &str| {
                parsed
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            };
            assert!(
                !keys.contains(&"Trusted_Connection"),
                "{driver}: {parsed:?}"
            );
            assert_eq!(
                keys.iter().filter(|k| **k == "Server").count(),
                1,
                "{driver}: {parsed:?}"
            );
            let server = if freetds {
                "x;Trusted_Connection=yes;Server=evil"
            } else {
                "x;Trusted_Connection=yes;Server=evil,1433"
            };
            assert_eq!(value("Server"), Some(server), "{driver}");
            assert_eq!(value("Database"), Some("db;Database=master"), "{driver}");
            assert_eq!(value("UID"), Some("sa;Trusted_Connection=yes"), "{driver}");
            assert_eq!(value("PWD"), Some("pw"), "{driver}");
        }
    }

    #[test]
    fn freetds_gets_a_closing_brace_in_a_name_bare_so_that_it_is_not_cut_short() {
        let pw = SecretString::new("pw");
        let mut c = conn(Some("FreeTDS"), None, Some("MI}IS"));
        c.database = Some("d}b".into());
        let parsed = parse(&connection_string(&c, Some(&pw)).unwrap(), true);
        let value = |key: &str| {
            parsed
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(value("Server").as_deref(), Some("127.0.0.1\\MI}IS"));
        assert_eq!(value("Database").as_deref(), Some("d}b"));
    }

    fn record(state: &str, native: i32, text: &str) -> Record {
        Record {
            state: state.into(),
            native,
            text: text.into(),
        }
    }

    #[test]
    fn diagnostics_become_server_login_or_connection_errors() {
        let backup = classify(
            vec![
                record(
                    "42000",
                    3201,
                    "[FreeTDS][SQL Server]Cannot open backup device 'E:\\x.bak'.",
                ),
                record(
                    "42000",
                    3013,
                    "[FreeTDS][SQL Server]BACKUP DATABASE is terminating abnormally.",
                ),
            ],
            "s",
        );
        match &backup {
            SqlError::Server {
                number,
                message,
                messages,
                ..
            } => {
                assert_eq!(*number, 3201);
                assert_eq!(message, "Cannot open backup device 'E:\\x.bak'.");
                assert_eq!(messages.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        let login = classify(
            vec![record("28000", 18456, "Login failed for user 'x'.")],
            "s",
        );
        assert!(matches!(login, SqlError::Login { .. }), "{login:?}");
        let dropped = classify(
            vec![record(
                "08S01",
                20004,
                "[FreeTDS]Read from the server failed",
            )],
            "s",
        );
        assert!(
            matches!(dropped, SqlError::Connection { .. }),
            "{dropped:?}"
        );
    }

    /// The records a driver may leave after SQL_SUCCESS_WITH_INFO for a batch whose BACKUP failed
    /// after its first percentages (SQL Server: info tokens, then error 3201 of severity 16).
    fn percentages_then_3201() -> Vec<Record> {
        vec![
            record("01000", 3211, "[Microsoft][ODBC SQL Server Driver][SQL Server]10 percent processed."),
            record("42000", 3201, "[Microsoft][ODBC SQL Server Driver][SQL Server]Cannot open backup device 'E:\\x.bak'. Operating system error 5(Access is denied.)."),
            record("01000", 3211, "[Microsoft][ODBC SQL Server Driver][SQL Server]20 percent processed."),
            record("42000", 3013, "[Microsoft][ODBC SQL Server Driver][SQL Server]BACKUP DATABASE is terminating abnormally."),
        ]
    }

    #[test]
    fn an_error_record_after_success_with_info_fails_the_batch_and_the_percentages_stay_messages() {
        let mut said = Vec::new();
        let err = after_call(
            SqlResult::SuccessWithInfo(()),
            percentages_then_3201,
            &mut |m| said.push(m),
            "s",
        )
        .unwrap_err();
        match &err {
            SqlError::Server {
                number, messages, ..
            } => {
                assert_eq!(*number, 3201, "{err}");
                let numbers: Vec<i32> = messages.iter().map(|m| m.number).collect();
                assert_eq!(numbers, [3201, 3013], "{err}");
            }
            other => panic!("{other:?}"),
        }
        let percents: Vec<Option<u8>> = said.iter().map(InfoMessage::percent).collect();
        assert_eq!(percents, [Some(10), Some(20)], "{said:?}");
    }

    #[test]
    fn success_with_info_of_warnings_only_goes_on_and_a_failure_told_in_warnings_is_still_one() {
        let warnings = || vec![record("01000", 4035, "Processed 2 pages for database 'x'.")];
        let mut said = Vec::new();
        let goes = after_call(
            SqlResult::SuccessWithInfo(()),
            warnings,
            &mut |m| said.push(m),
            "s",
        );
        assert_eq!(goes.unwrap(), Batch::Goes);
        assert_eq!(said.len(), 1);
        let failed = after_call(
            SqlResult::Error {
                function: "SQLMoreResults",
            },
            warnings,
            &mut |m| said.push(m),
            "s",
        );
        assert!(failed.unwrap_err().has_number(4035));
        assert_eq!(
            said.len(),
            1,
            "the reason of the failure is not also a message"
        );
    }

    #[test]
    fn odbc_datetime_text_is_parsed() {
        let d = parse_datetime("2004-05-06 07:08:09.010").unwrap();
        assert_eq!(d.format("%H:%M:%S%.3f").to_string(), "07:08:09.010");
        assert_eq!(convert(&DataType::Integer, "42"), SqlValue::Int(42));
        assert_eq!(convert(&DataType::Bit, "1"), SqlValue::Bool(true));
    }
}

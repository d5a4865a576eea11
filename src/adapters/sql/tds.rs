//! The built-in SQL Server client (tiberius): TDS 7.2+ servers, SQL Server 2005 and later.
//! `query` goes out as an `sp_executesql` RPC, `execute` as a plain SQL batch, whose INFO
//! messages `tds_info` catches. It cannot read
//! SQL Server 2000's (TDS 7.1) result sets: `connect` (mod.rs) sends that server to `odbc`.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use tiberius::{AuthMethod, Client, ColumnData, Config, EncryptionLevel, QueryItem};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use tracing::instrument::WithSubscriber;

use super::endpoint::Endpoint;
use super::tds_info::Collector;
use super::{
    server_label, InfoMessage, Row, ServerMessage, SqlClient, SqlError, SqlValue, CONNECT_TIMEOUT,
};
use crate::adapters::secrets::SecretString;
use crate::plan::{Encryption, SqlAuth, SqlConnection};

/// A tiberius connection.
pub struct TdsClient {
    client: Client<Compat<TcpStream>>,
    server: String,
}

impl TdsClient {
    /// Logs in to the server at `at` (resolved from `conn` by `endpoint::resolve`).
    pub async fn connect(
        conn: &SqlConnection,
        at: &Endpoint,
        password: Option<&SecretString>,
    ) -> Result<TdsClient, SqlError> {
        let server = server_label(conn);
        let (host, port) = (at.host.clone(), at.port);
        let mut config = Config::new();
        config.host(&host);
        config.port(port);
        config.application_name("upgrade");
        if let Some(db) = &conn.database {
            config.database(db);
        }
        config.encryption(match conn.encryption {
            Encryption::NotSupported => EncryptionLevel::NotSupported,
            Encryption::Off => EncryptionLevel::Off,
            Encryption::Required => EncryptionLevel::Required,
        });
        if conn.trust_server_certificate {
            config.trust_cert();
        }
        config.authentication(auth_method(conn, password, &server)?);

        tracing::debug!(%server, %host, port, driver = "tds", "connecting");
        let connect = async {
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| SqlError::Connection {
                    server: server.clone(),
                    message: e.to_string(),
                })?;
            let _ = tcp.set_nodelay(true);
            Client::connect(config, tcp.compat_write())
                .await
                .map_err(|e| map_connect_error(e, &server))
        };
        let client = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| SqlError::Connection {
                server: server.clone(),
                message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            })??;
        tracing::debug!(%server, "connected");
        Ok(TdsClient { client, server })
    }
}

fn auth_method(
    conn: &SqlConnection,
    password: Option<&SecretString>,
    server: &str,
) -> Result<AuthMethod, SqlError> {
    match &conn.auth {
        SqlAuth::Sql(login) => {
            let password = password.ok_or_else(|| SqlError::Unsupported {
                message: format!(
                    "SQL authentication as {} to {server} needs a password",
                    login.user
                ),
            })?;
            Ok(AuthMethod::sql_server(&login.user, password.expose()))
        }
        SqlAuth::Windows => windows_auth(server),
    }
}

#[cfg(windows)]
fn windows_auth(_server: &str) -> Result<AuthMethod, SqlError> {
    Ok(AuthMethod::Integrated)
}

#[cfg(not(windows))]
fn windows_auth(server: &str) -> Result<AuthMethod, SqlError> {
    Err(SqlError::Unsupported {
        message: format!(
            "Windows authentication to {server} needs `upgrade` running on Windows; use SQL authentication (auth: {{sql: ...}}) here"
        ),
    })
}

fn map_connect_error(e: tiberius::error::Error, server: &str) -> SqlError {
    match e {
        tiberius::error::Error::Server(token) => SqlError::Login {
            server: server.to_string(),
            message: format!("error {}: {}", token.code(), token.message()),
        },
        tiberius::error::Error::Io { message, .. } => {
            SqlError::Connection { server: server.to_string(), message }
        }
        tiberius::error::Error::Tls(message) => SqlError::Connection {
            server: server.to_string(),
            message: format!("TLS: {message} (SQL Server 2000 and servers without a certificate need `encryption: not_supported`; a self-signed certificate needs `trust_server_certificate: true`)"),
        },
        other => map_error(other, server),
    }
}

fn map_error(e: tiberius::error::Error, server: &str) -> SqlError {
    use tiberius::error::Error;
    match e {
        Error::Server(token) => SqlError::server(vec![ServerMessage {
            number: token.code() as i32,
            class: token.class(),
            state: token.state(),
            message: token.message().to_string(),
        }]),
        Error::Io { message, .. } => SqlError::Connection {
            server: server.to_string(),
            message,
        },
        Error::Tls(message) => SqlError::Connection {
            server: server.to_string(),
            message: format!("TLS: {message}"),
        },
        Error::Routing { host, port } => SqlError::Unsupported {
            message: format!("{server} redirects to {host}:{port}; put that server in the plan"),
        },
        other => SqlError::Protocol {
            message: other.to_string(),
        },
    }
}

#[async_trait]
impl SqlClient for TdsClient {
    async fn query_each(
        &mut self,
        sql: &str,
        each: &mut (dyn FnMut(Row) + Send),
    ) -> Result<u64, SqlError> {
        tracing::debug!(server = %self.server, %sql, "query (rpc)");
        let mut stream = self
            .client
            .query(sql, &[])
            .await
            .map_err(|e| map_error(e, &self.server))?;
        // Row by row as tiberius decodes them from the connection; later result sets are read
        // (so their errors surface) but not handed on.
        let mut count = 0;
        while let Some(item) = stream
            .try_next()
            .await
            .map_err(|e| map_error(e, &self.server))?
        {
            if let QueryItem::Row(row) = item {
                if row.result_index() == 0 {
                    each(convert_row(row)?);
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    async fn execute_each(
        &mut self,
        sql: &str,
        each: &mut (dyn FnMut(InfoMessage) + Send),
    ) -> Result<(), SqlError> {
        tracing::debug!(server = %self.server, %sql, "execute (batch)");
        let server = self.server.clone();
        let client = &mut self.client;
        // Drains every result so errors late in the batch surface.
        let batch = async move {
            let mut stream = client
                .simple_query(sql)
                .await
                .map_err(|e| map_error(e, &server))?;
            while stream
                .try_next()
                .await
                .map_err(|e| map_error(e, &server))?
                .is_some()
            {}
            Ok::<(), SqlError>(())
        };
        // tiberius reports each INFO token only as a tracing event, as it decodes it: the batch
        // runs under a subscriber that catches those (`tds_info`) and hands them on here as they
        // come, while the batch still runs.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let batch = batch.with_subscriber(Collector::new(tx));
        tokio::pin!(batch);
        let hand_on = |text| InfoMessage { number: None, text };
        let result = loop {
            tokio::select! {
                biased;
                Some(text) = rx.recv() => each(hand_on(text)),
                result = &mut batch => break result,
            }
        };
        while let Ok(text) = rx.try_recv() {
            each(hand_on(text));
        }
        result
    }
}

fn convert_row(row: tiberius::Row) -> Result<Row, SqlError> {
    let columns = row.columns().iter().map(|c| c.name().to_string()).collect();
    let values = row
        .cells()
        .map(|(_, data)| convert_value(data))
        .collect::<Result<_, _>>()?;
    Ok(Row { columns, values })
}

fn convert_value(data: &ColumnData<'static>) -> Result<SqlValue, SqlError> {
    let v = match data {
        ColumnData::U8(v) => v.map(|n| SqlValue::Int(n.into())),
        ColumnData::I16(v) => v.map(|n| SqlValue::Int(n.into())),
        ColumnData::I32(v) => v.map(|n| SqlValue::Int(n.into())),
        ColumnData::I64(v) => v.map(SqlValue::Int),
        ColumnData::F32(v) => v.map(|n| SqlValue::Text(n.to_string())),
        ColumnData::F64(v) => v.map(|n| SqlValue::Text(n.to_string())),
        ColumnData::Bit(v) => v.map(SqlValue::Bool),
        ColumnData::String(v) => v.as_ref().map(|s| SqlValue::Text(s.to_string())),
        ColumnData::Guid(v) => {
            v.map(|g| SqlValue::Text(format!("{{{}}}", g.to_string().to_uppercase())))
        }
        ColumnData::Binary(v) => v.as_ref().map(|b| SqlValue::Binary(b.to_vec())),
        ColumnData::Numeric(v) => v.map(|n| SqlValue::Text(n.to_string())),
        ColumnData::Xml(v) => v.as_ref().map(|x| SqlValue::Text(x.to_string())),
        ColumnData::DateTime(v) => match v {
            Some(d) => Some(SqlValue::DateTime(datetime(
                d.days().into(),
                d.seconds_fragments(),
            )?)),
            None => None,
        },
        ColumnData::SmallDateTime(v) => match v {
            Some(d) => Some(SqlValue::DateTime(
                day_1900(d.days().into())?
                    + chrono::Duration::minutes(d.seconds_fragments().into()),
            )),
            None => None,
        },
        ColumnData::Date(v) => match v {
            Some(d) => Some(SqlValue::DateTime(day_0001(d.days())?)),
            None => None,
        },
        ColumnData::Time(v) => {
            v.map(|t| SqlValue::Text(time_of_day(t).format("%H:%M:%S%.f").to_string()))
        }
        ColumnData::DateTime2(v) => match v {
            Some(d) => Some(SqlValue::DateTime(
                day_0001(d.date().days())? + since_midnight(d.time()),
            )),
            None => None,
        },
        ColumnData::DateTimeOffset(v) => match v {
            Some(d) => {
                let dt2 = d.datetime2();
                let utc = day_0001(dt2.date().days())? + since_midnight(dt2.time());
                Some(SqlValue::DateTime(
                    utc + chrono::Duration::minutes(d.offset().into()),
                ))
            }
            None => None,
        },
    };
    Ok(v.unwrap_or(SqlValue::Null))
}

fn bad_date() -> SqlError {
    SqlError::Protocol {
        message: "a date value out of range".into(),
    }
}

fn day_1900(days: i64) -> Result<chrono::NaiveDateTime, SqlError> {
    let base = chrono::NaiveDate::from_ymd_opt(1900, 1, 1).ok_or_else(bad_date)?;
    base.checked_add_signed(chrono::Duration::days(days))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(bad_date)
}

fn day_0001(days: u32) -> Result<chrono::NaiveDateTime, SqlError> {
    let base = chrono::NaiveDate::from_ymd_opt(1, 1, 1).ok_or_else(bad_date)?;
    base.checked_add_signed(chrono::Duration::days(days.into()))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(bad_date)
}

/// `datetime`: days since 1900-01-01 and 1/300 s since midnight.
fn datetime(days: i64, fragments: u32) -> Result<chrono::NaiveDateTime, SqlError> {
    let nanos = (i64::from(fragments) * 1_000_000_000 + 150) / 300;
    Ok(day_1900(days)? + chrono::Duration::nanoseconds(nanos))
}

fn since_midnight(t: tiberius::time::Time) -> chrono::Duration {
    let nanos = t.increments() as i128 * 10i128.pow(9u32.saturating_sub(t.scale().into()));
    chrono::Duration::nanoseconds(nanos as i64)
}

fn time_of_day(t: tiberius::time::Time) -> chrono::NaiveTime {
    chrono::NaiveTime::MIN + since_midnight(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_server_datetime_ticks_become_a_date_and_time() {
        // 2004-05-06 is day 38111 after 1900-01-01; 07:08:09.010 is 25689.01 s = 7706703 ticks.
        let d = datetime(38111, 7_706_703).unwrap();
        assert_eq!(
            d.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            "2004-05-06 07:08:09.010"
        );
    }

    #[cfg(not(windows))]
    #[test]
    fn windows_authentication_off_windows_says_why_it_cannot() {
        let err = windows_auth("sql01").unwrap_err();
        assert!(err.to_string().contains("Windows authentication"), "{err}");
    }
}

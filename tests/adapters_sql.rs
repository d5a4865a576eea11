//! The SQL adapters against the lab's TDS double over real TCP: tiberius speaking TDS 7.4 (SQL
//! Server 2016), ODBC through unixODBC + FreeTDS speaking TDS 7.1 (SQL Server 2000). The PRELOGIN
//! probe reads the server's version; server errors keep their numbers; a wrong password is a login
//! error; a dropped connection is a connection error; binary columns arrive as bytes.

mod common;

use std::sync::Arc;

use common::{require_freetds, FREETDS_DRIVER};

use upgrade::adapters::secrets::SecretString;
use upgrade::adapters::sql::endpoint::Endpoint;
use upgrade::adapters::sql::{self, prelogin, statements, SqlClient, SqlError, SqlValue};
use upgrade::plan::{Encryption, Secret, SqlAuth, SqlConnection, SqlDriver, SqlLogin};
use upgrade_lab::sqlmodel::{Fixture, Model};
use upgrade_lab::tds::{serve, SqlFaults, TdsConfig, TdsServer, TdsVersion};

const DB: &str = "MicrosoftIdentityIntegrationServer";
const PASSWORD: &str = "Lab-pa55}word";

struct Lab {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    server: TdsServer,
}

async fn lab(version: TdsVersion, faults: SqlFaults) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("drives/E/Backups")).unwrap();
    let model = Model::seed(&root, &Fixture::miis()).unwrap();
    let config = TdsConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        version,
        login: "upgrade".into(),
        password: PASSWORD.into(),
        faults,
    };
    let server = serve(config, Arc::new(tokio::sync::Mutex::new(model)))
        .await
        .unwrap();
    Lab {
        _dir: dir,
        root,
        server,
    }
}

fn connection(port: u16, driver: SqlDriver) -> SqlConnection {
    SqlConnection {
        host: "(local)".into(),
        instance: None,
        port: Some(port),
        auth: SqlAuth::Sql(SqlLogin {
            user: "upgrade".into(),
            password: Secret::Env("UNUSED".into()),
        }),
        driver,
        database: None,
        odbc_driver: (driver != SqlDriver::Tds).then(|| FREETDS_DRIVER.to_string()),
        encryption: Encryption::NotSupported,
        trust_server_certificate: false,
    }
}

async fn connect(lab: &Lab, driver: SqlDriver) -> Box<dyn SqlClient> {
    let conn = connection(lab.server.local_addr().port(), driver);
    sql::connect(&conn, Some(&SecretString::new(PASSWORD)))
        .await
        .unwrap()
}

/// The conversation every backup step has: version, existence, backup, history, header, verify.
async fn a_backup_conversation(client: &mut dyn SqlClient, lab: &Lab, expect_version: &str) {
    let props = client.query(statements::SERVER_PROPERTIES).await.unwrap();
    assert_eq!(
        props[0].get("product_version").and_then(SqlValue::as_str),
        Some(expect_version)
    );

    let exists = client
        .query(&statements::database_exists(DB))
        .await
        .unwrap();
    assert_eq!(exists.len(), 1);
    assert!(client
        .query(&statements::database_exists("NoSuchDb"))
        .await
        .unwrap()
        .is_empty());

    let path = r"E:\Backups\MIIS.bak";
    let checksum = expect_version.starts_with("13.");
    let said = client
        .execute(&statements::backup_database(DB, path, "upgrade", checksum))
        .await
        .unwrap();
    backup_messages_are_sql_servers(&said);
    assert!(
        lab.root.join("drives/E/Backups/MIIS.bak").is_file(),
        "the double wrote the backup file"
    );

    let history = client
        .query(&statements::latest_backup_to(DB, path))
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    let row = &history[0];
    assert!(
        row.get("backup_set_id")
            .and_then(SqlValue::as_i64)
            .is_some(),
        "{row:?}"
    );
    let finished = row
        .get("backup_finish_date")
        .and_then(SqlValue::as_datetime)
        .expect("a datetime");
    let age = chrono::Local::now().naive_local() - finished;
    assert!(
        age.num_seconds().abs() < 120,
        "finished {finished}, {age:?} ago"
    );

    let header = client
        .query(&statements::restore_headeronly(path))
        .await
        .unwrap();
    assert_eq!(
        header[0].get("DatabaseName").and_then(SqlValue::as_str),
        Some(DB)
    );
    assert_eq!(
        header[0].get("BackupType").and_then(SqlValue::as_i64),
        Some(1)
    );
    let said = client
        .execute(&statements::restore_verifyonly(path, checksum))
        .await
        .unwrap();
    let texts: Vec<&str> = said.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["The backup set on file 1 is valid."], "{said:?}");
    assert!(
        said.iter().all(|m| m.number.is_none_or(|n| n == 3262)),
        "{said:?}"
    );

    let counts = client
        .query(&statements::connector_space_counts(DB))
        .await
        .unwrap();
    let contoso = counts
        .iter()
        .find(|r| r.get("ma_name").and_then(SqlValue::as_str) == Some("Contoso AD"))
        .expect("Contoso AD counted");
    assert_eq!(
        contoso.get("objects").and_then(SqlValue::as_i64),
        Some(1800)
    );
}

/// What BACKUP DATABASE ... WITH STATS = 10 says, in order, as SQL Server 2000 words it: ten
/// percentages, a "Processed" line per file, then the total (3211, 4035, 3014). ODBC also gives
/// the numbers; tiberius gives only the text (read from its tracing events: this fails when a
/// tiberius release moves or reshapes the INFO event `adapters::sql::tds_info` listens for).
fn backup_messages_are_sql_servers(said: &[sql::InfoMessage]) {
    let texts: Vec<&str> = said.iter().map(|m| m.text.as_str()).collect();
    let percents: Vec<u8> = said.iter().filter_map(sql::InfoMessage::percent).collect();
    assert_eq!(
        percents,
        [10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
        "{texts:#?}"
    );
    assert_eq!(texts[..10].join(" "), "10 percent processed. 20 percent processed. 30 percent processed. 40 percent processed. 50 percent processed. 60 percent processed. 70 percent processed. 80 percent processed. 90 percent processed. 100 percent processed.");
    let rest = &said[10..];
    assert_eq!(rest.len(), 3, "{texts:#?}");
    assert!(
        rest[0].text.starts_with("Processed ")
            && rest[0].text.ends_with(&format!(
                " pages for database '{DB}', file '{DB}' on file 1."
            )),
        "{texts:#?}"
    );
    assert!(
        rest[1]
            .text
            .ends_with(&format!("file '{DB}_log' on file 1.")),
        "{texts:#?}"
    );
    assert!(
        rest[2]
            .text
            .starts_with("BACKUP DATABASE successfully processed ")
            && rest[2].text.ends_with(" MB/sec)."),
        "{texts:#?}"
    );
    let numbers: Vec<Option<i32>> = said.iter().map(|m| m.number).collect();
    let odbc = [
        vec![Some(3211); 10],
        vec![Some(4035), Some(4035), Some(3014)],
    ]
    .concat();
    assert!(
        numbers == odbc || numbers.iter().all(Option::is_none),
        "{numbers:?}"
    );
}

/// A slow backup's percentages reach the caller while it still runs, not all at its end. (Not
/// through FreeTDS's ODBC driver: its SQLExecDirect returns only at the batch's end, with every
/// message at once; see `odbc::run_batch`.)
async fn percentages_arrive_while_the_backup_runs(driver: SqlDriver, version: TdsVersion) {
    let lab = lab(
        version,
        SqlFaults {
            slow_backup_ms: Some(2000),
            ..SqlFaults::default()
        },
    )
    .await;
    let mut client = connect(&lab, driver).await;
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    client
        .execute_each(
            &statements::backup_database(DB, r"E:\Backups\MIIS.bak", "upgrade", false),
            &mut |m| {
                if let Some(p) = m.percent() {
                    seen.push((p, started.elapsed()));
                }
            },
        )
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(seen.len(), 10, "{seen:?}");
    let (first, at) = seen[0];
    assert_eq!(first, 10);
    assert!(
        at + std::time::Duration::from_millis(1000) < took,
        "10% came at {at:?}, the backup ended at {took:?}: {seen:?}"
    );
}

#[tokio::test]
async fn a_backups_percentages_arrive_while_it_runs_through_tiberius() {
    percentages_arrive_while_the_backup_runs(SqlDriver::Tds, TdsVersion::V74).await;
}

#[tokio::test]
async fn tiberius_backs_up_and_reads_history_from_a_sql_server_2016() {
    let lab = lab(TdsVersion::V74, SqlFaults::default()).await;
    let mut client = connect(&lab, SqlDriver::Tds).await;
    a_backup_conversation(client.as_mut(), &lab, "13.0.5026.0").await;
}

#[tokio::test]
async fn odbc_backs_up_and_reads_history_from_a_sql_server_2000() {
    require_freetds();
    let lab = lab(TdsVersion::V71, SqlFaults::default()).await;
    let mut client = connect(&lab, SqlDriver::Odbc).await;
    a_backup_conversation(client.as_mut(), &lab, "8.00.2039").await;
}

async fn expect_backup_error(driver: SqlDriver, version: TdsVersion) -> SqlError {
    let lab = lab(
        version,
        SqlFaults {
            backup_3201_at: Some(1),
            ..SqlFaults::default()
        },
    )
    .await;
    let mut client = connect(&lab, driver).await;
    let err = client
        .execute(&statements::backup_database(
            DB,
            r"E:\Backups\MIIS.bak",
            "upgrade",
            false,
        ))
        .await
        .unwrap_err();
    // The connection stays usable after a server error.
    let exists = client
        .query(&statements::database_exists(DB))
        .await
        .unwrap();
    assert_eq!(exists.len(), 1);
    err
}

#[tokio::test]
async fn a_failed_backup_keeps_its_error_number_through_tiberius() {
    let err = expect_backup_error(SqlDriver::Tds, TdsVersion::V74).await;
    assert!(
        matches!(
            err,
            SqlError::Server {
                number: 3201,
                class: 16,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_failed_backup_keeps_every_error_number_through_odbc() {
    require_freetds();
    let err = expect_backup_error(SqlDriver::Odbc, TdsVersion::V71).await;
    assert!(
        matches!(err, SqlError::Server { number: 3201, .. }),
        "{err:?}"
    );
    assert!(
        err.has_number(3013),
        "SQL Server follows 3201 with 3013: {err}"
    );
}

/// A backup that runs out of room after its first percentages: SQL Server sends the "N percent
/// processed." messages (3211, severity 0, SQLSTATE 01000 through the ODBC drivers) as it goes,
/// then error 3202 (severity 16) and 3013 in the same answer. FreeTDS returns SQL_ERROR with all
/// of them as the statement's records, errors first. By ODBC's rule (class 01 is a warning, any
/// other class an error) the percentages are messages, and the error is 3202 and 3013 alone.
#[tokio::test]
async fn percentages_before_a_failure_stay_messages_and_are_not_taken_into_the_error_through_odbc()
{
    require_freetds();
    let lab = lab(
        TdsVersion::V71,
        SqlFaults {
            // The lab's MIIS backup is about 1.1 MB: room for its first few percentages.
            disk_cap: Some(400_000),
            ..SqlFaults::default()
        },
    )
    .await;
    let mut client = connect(&lab, SqlDriver::Odbc).await;
    let mut said = Vec::new();
    let err = client
        .execute_each(
            &statements::backup_database(DB, r"E:\Backups\MIIS.bak", "upgrade", false),
            &mut |m| said.push(m),
        )
        .await
        .unwrap_err();
    let SqlError::Server {
        number, messages, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*number, 3202, "{err}");
    let numbers: Vec<i32> = messages.iter().map(|m| m.number).collect();
    assert_eq!(numbers, [3202, 3013], "{err}");
    assert!(!err.to_string().contains("percent processed"), "{err}");
    let mut percents: Vec<u8> = said.iter().filter_map(sql::InfoMessage::percent).collect();
    percents.sort_unstable();
    assert!(
        !percents.is_empty() && percents.len() < 10 && percents[0] == 10,
        "{said:?}"
    );
}

#[tokio::test]
async fn an_unknown_table_is_a_server_error_208() {
    let lab = lab(TdsVersion::V74, SqlFaults::default()).await;
    let mut client = connect(&lab, SqlDriver::Tds).await;
    let err = client
        .query("SELECT name FROM dbo.no_such_table")
        .await
        .unwrap_err();
    assert!(err.has_number(208), "{err:?}");
}

async fn expect_dropped(driver: SqlDriver, version: TdsVersion) {
    let lab = lab(
        version,
        SqlFaults {
            backup_drop_at: Some(1),
            ..SqlFaults::default()
        },
    )
    .await;
    let mut client = connect(&lab, driver).await;
    let err = client
        .execute(&statements::backup_database(
            DB,
            r"E:\Backups\MIIS.bak",
            "upgrade",
            false,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SqlError::Connection { .. }),
        "{driver:?}: {err:?}"
    );
}

#[tokio::test]
async fn a_connection_dropped_mid_backup_is_a_connection_error_through_tiberius() {
    expect_dropped(SqlDriver::Tds, TdsVersion::V74).await;
}

#[tokio::test]
async fn a_connection_dropped_mid_backup_is_a_connection_error_through_odbc() {
    require_freetds();
    expect_dropped(SqlDriver::Odbc, TdsVersion::V71).await;
}

async fn expect_login_failure(driver: SqlDriver, version: TdsVersion) {
    let lab = lab(version, SqlFaults::default()).await;
    let conn = connection(lab.server.local_addr().port(), driver);
    let err = match sql::connect(&conn, Some(&SecretString::new("wrong-canary"))).await {
        Err(e) => e,
        Ok(_) => panic!("{driver:?}: a wrong password logged in"),
    };
    assert!(matches!(err, SqlError::Login { .. }), "{driver:?}: {err:?}");
    assert!(!err.to_string().contains("wrong-canary"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_is_a_login_error_through_tiberius() {
    expect_login_failure(SqlDriver::Tds, TdsVersion::V74).await;
}

#[tokio::test]
async fn a_wrong_password_is_a_login_error_through_odbc() {
    require_freetds();
    expect_login_failure(SqlDriver::Odbc, TdsVersion::V71).await;
}

#[tokio::test]
async fn the_prelogin_probe_reads_the_product_version_each_server_sends() {
    for (version, expect) in [
        (TdsVersion::V71, "8.0.2039"),
        (TdsVersion::V74, "13.0.5026"),
    ] {
        let lab = lab(version, SqlFaults::default()).await;
        let at = Endpoint {
            host: "127.0.0.1".into(),
            port: lab.server.local_addr().port(),
        };
        let v = prelogin::server_version(&at, "lab").await.unwrap();
        assert_eq!(v.to_string(), expect);
        assert_eq!(v.speaks_tds71_at_most(), version == TdsVersion::V71);
    }
}

#[tokio::test]
async fn something_other_than_sql_server_answering_the_probe_is_a_connection_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
    });
    let conn = connection(port, SqlDriver::Auto);
    match sql::connect(&conn, Some(&SecretString::new(PASSWORD))).await {
        Err(e @ SqlError::Connection { .. }) => {
            assert!(e.to_string().contains("is this a SQL Server?"), "{e}")
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("connected to a web server"),
    }
}

#[tokio::test]
async fn auto_reads_sql_server_2000_through_odbc_and_2016_through_tiberius() {
    require_freetds();
    for (version, rpc_expected) in [(TdsVersion::V71, false), (TdsVersion::V74, true)] {
        let lab = lab(version, SqlFaults::default()).await;
        let mut client = connect(&lab, SqlDriver::Auto).await;
        let rows = client
            .query(&statements::database_exists(DB))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{version:?}");
        // tiberius sends queries as sp_executesql RPCs, ODBC as batches.
        let log = std::fs::read_to_string(lab.root.join("sql/statements.log")).unwrap();
        assert_eq!(
            log.contains("\"kind\":\"rpc\""),
            rpc_expected,
            "{version:?}: {log}"
        );
    }
}

#[tokio::test]
async fn driver_tds_is_refused_by_sql_server_2000_before_logging_in() {
    let lab = lab(TdsVersion::V71, SqlFaults::default()).await;
    let conn = connection(lab.server.local_addr().port(), SqlDriver::Tds);
    let err = match sql::connect(&conn, Some(&SecretString::new(PASSWORD))).await {
        Err(e) => e,
        Ok(_) => panic!("tiberius was let loose on TDS 7.1"),
    };
    assert!(matches!(err, SqlError::Unsupported { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("SQL Server 2000 (version 8.0.2039)") && text.contains("`driver: odbc`"),
        "{text}"
    );
    assert!(!lab.root.join("sql/statements.log").exists());
}

async fn anchors_read_as_bytes(driver: SqlDriver, version: TdsVersion) {
    let lab = lab(version, SqlFaults::default()).await;
    let mut client = connect(&lab, driver).await;
    let rows = client
        .query(&statements::connector_space_objects(DB, "Contoso AD"))
        .await
        .unwrap();
    let admin = rows
        .iter()
        .find(|r| r.get("rdn").and_then(SqlValue::as_str) == Some("CN=Administrator"))
        .expect("the Administrator");
    assert_eq!(
        admin.get("anchor").and_then(SqlValue::as_bytes),
        Fixture::miis()
            .generate()
            .object("CN=Administrator")
            .map(|o| o.anchor.as_slice()),
        "{driver:?}: {admin:?}"
    );
}

#[tokio::test]
async fn a_binary_anchor_arrives_as_its_bytes_through_tiberius() {
    anchors_read_as_bytes(SqlDriver::Tds, TdsVersion::V74).await;
}

#[tokio::test]
async fn a_binary_anchor_arrives_as_its_bytes_through_odbc() {
    require_freetds();
    anchors_read_as_bytes(SqlDriver::Odbc, TdsVersion::V71).await;
}

#[tokio::test]
async fn nobody_listening_is_a_connection_error() {
    // Bind and release a port so nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for driver in [SqlDriver::Auto, SqlDriver::Tds, SqlDriver::Odbc] {
        if driver == SqlDriver::Odbc {
            require_freetds();
        }
        let conn = connection(port, driver);
        match sql::connect(&conn, Some(&SecretString::new(PASSWORD))).await {
            Err(SqlError::Connection { .. }) => {}
            Err(other) => panic!("{driver:?}: {other:?}"),
            Ok(_) => panic!("{driver:?}: connected to nothing"),
        }
    }
}

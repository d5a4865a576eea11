//! BACKUP DATABASE / RESTORE VERIFYONLY / RESTORE HEADERONLY through the TDS double, the msdb
//! history they leave, and every SQL fault (3201, dropped connection, disk cap, slow backup).

mod tds_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tds_support::*;
use tiberius::Client;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::compat::Compat;
use upgrade_lab::sqlmodel::Model;
use upgrade_lab::tds::{self, SqlFaults, TdsConfig, TdsVersion};

type Conn = Client<Compat<TcpStream>>;

async fn exec(c: &mut Conn, sql: &str) -> tiberius::Result<()> {
    c.simple_query(sql).await?.into_results().await.map(|_| ())
}

fn backup_sql(device: &str, checksum: bool) -> String {
    let checksum = if checksum { ", CHECKSUM" } else { "" };
    format!(
        "BACKUP DATABASE [{DB}] TO DISK = {} WITH INIT{checksum}, NAME = N'pre-upgrade'",
        lit(device)
    )
}

fn verify_sql(device: &str) -> String {
    format!("RESTORE VERIFYONLY FROM DISK = {}", lit(device))
}

async fn code_of(c: &mut Conn, sql: &str) -> Option<u32> {
    exec(c, sql).await.err().as_ref().and_then(error_code)
}

async fn latest_backups(c: &mut Conn, device: &str) -> usize {
    let sql = format!("SELECT TOP 1 bs.backup_set_id, bs.database_name, bs.backup_start_date, bs.backup_finish_date, bmf.physical_device_name FROM msdb.dbo.backupset bs JOIN msdb.dbo.backupmediafamily bmf ON bs.media_set_id = bmf.media_set_id WHERE bs.database_name = {} AND bs.type = 'D' AND bmf.physical_device_name = {} ORDER BY bs.backup_finish_date DESC", lit(DB), lit(device));
    c.query(sql, &[])
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap()
        .len()
}

fn device(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_backup_writes_a_verifiable_file_and_any_damage_is_detected() {
    let lab = start(TdsVersion::V74, SqlFaults::default()).await;
    let file = lab.backup_dir().join("miis.bak");
    let d = device(&file);
    let mut c = connect(lab.addr()).await;
    exec(&mut c, &backup_sql(&d, false)).await.unwrap();
    exec(&mut c, &verify_sql(&d)).await.unwrap();
    assert_eq!(latest_backups(&mut c, &d).await, 1);
    // Asking for CHECKSUM verification of a backup taken without checksums fails (3187), as on 2005+.
    assert_eq!(
        code_of(&mut c, &format!("{} WITH CHECKSUM", verify_sql(&d))).await,
        Some(3187)
    );
    exec(&mut c, &backup_sql(&d, true)).await.unwrap();
    exec(&mut c, &format!("{} WITH CHECKSUM", verify_sql(&d)))
        .await
        .unwrap();

    let good = std::fs::read(&file).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x20;
    std::fs::write(&file, &flipped).unwrap();
    assert_eq!(
        code_of(&mut c, &verify_sql(&d)).await,
        Some(3189),
        "damaged"
    );
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    assert_eq!(
        code_of(&mut c, &verify_sql(&d)).await,
        Some(3203),
        "truncated"
    );
    assert_eq!(
        code_of(
            &mut c,
            &format!("RESTORE HEADERONLY FROM DISK = {}", lit(&d))
        )
        .await,
        Some(3203)
    );
    std::fs::write(&file, b"PK\x03\x04 a zip file, not a backup").unwrap();
    assert_eq!(
        code_of(&mut c, &verify_sql(&d)).await,
        Some(3241),
        "foreign"
    );
    std::fs::remove_file(&file).unwrap();
    let err = exec(&mut c, &verify_sql(&d)).await.unwrap_err();
    assert_eq!(error_code(&err), Some(3201), "missing");
    assert!(
        err.to_string()
            .contains("Operating system error 2(The system cannot find the file specified.)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_backup_to_a_missing_folder_or_of_an_unknown_database_fails_like_sql_server() {
    let lab = start(TdsVersion::V74, SqlFaults::default()).await;
    let mut c = connect(lab.addr()).await;
    let missing = lab.path().join("no-such-folder").join("x.bak");
    let err = exec(&mut c, &backup_sql(&device(&missing), false))
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), Some(3201));
    assert!(
        err.to_string()
            .contains("Operating system error 3(The system cannot find the path specified.)"),
        "{err}"
    );
    let other = format!(
        "BACKUP DATABASE [Nope] TO DISK = {} WITH INIT, NAME = N'x'",
        lit(&device(&lab.backup_dir().join("n.bak")))
    );
    assert_eq!(code_of(&mut c, &other).await, Some(911));
}

#[tokio::test]
async fn a_windows_path_lands_in_the_labs_drive_folders_and_msdb_keeps_the_path_as_given() {
    let lab = start(TdsVersion::V74, SqlFaults::default()).await;
    std::fs::create_dir_all(lab.path().join("drives/D/Backups")).unwrap();
    let mut c = connect(lab.addr()).await;
    exec(&mut c, &backup_sql("D:\\Backups\\MIIS.bak", false))
        .await
        .unwrap();
    assert!(lab.path().join("drives/D/Backups/MIIS.bak").is_file());
    assert_eq!(latest_backups(&mut c, "D:\\Backups\\MIIS.bak").await, 1);
    exec(&mut c, &verify_sql("D:\\Backups\\MIIS.bak"))
        .await
        .unwrap();
}

#[tokio::test]
async fn msdb_history_survives_a_server_restart() {
    let lab = start(TdsVersion::V74, SqlFaults::default()).await;
    let d = device(&lab.backup_dir().join("a.bak"));
    let mut c = connect(lab.addr()).await;
    exec(&mut c, &backup_sql(&d, false)).await.unwrap();
    drop(c);
    let Lab { dir, server, model } = lab;
    server.shutdown().await;
    drop(model);
    let model = Arc::new(Mutex::new(Model::open(dir.path()).unwrap()));
    let config = TdsConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        version: TdsVersion::V74,
        login: USER.into(),
        password: PASSWORD.into(),
        faults: SqlFaults::default(),
    };
    let server = tds::serve(config, model.clone()).await.unwrap();
    let mut c = connect(server.local_addr()).await;
    assert_eq!(latest_backups(&mut c, &d).await, 1);
    exec(&mut c, &backup_sql(&d, false)).await.unwrap();
    assert_eq!(
        model
            .lock()
            .await
            .state()
            .backupset
            .last()
            .unwrap()
            .backup_set_id,
        2
    );
    server.shutdown().await;
}

#[tokio::test]
async fn fault_backup_3201_fails_only_the_nth_backup() {
    let lab = start(
        TdsVersion::V74,
        SqlFaults {
            backup_3201_at: Some(2),
            ..SqlFaults::default()
        },
    )
    .await;
    let d = device(&lab.backup_dir().join("f.bak"));
    let mut c = connect(lab.addr()).await;
    exec(&mut c, &backup_sql(&d, false)).await.unwrap();
    assert_eq!(code_of(&mut c, &backup_sql(&d, false)).await, Some(3201));
    exec(&mut c, &backup_sql(&d, false)).await.unwrap();
    assert_eq!(lab.model.lock().await.state().backupset.len(), 2);
}

#[tokio::test]
async fn fault_backup_drop_leaves_half_a_file_no_history_and_a_dead_connection() {
    let lab = start(
        TdsVersion::V74,
        SqlFaults {
            backup_drop_at: Some(1),
            ..SqlFaults::default()
        },
    )
    .await;
    let file = lab.backup_dir().join("drop.bak");
    let d = device(&file);
    let mut c = connect(lab.addr()).await;
    let err = exec(&mut c, &backup_sql(&d, false)).await.unwrap_err();
    assert_eq!(
        error_code(&err),
        None,
        "a dropped connection, not a SQL error: {err}"
    );
    assert!(file.is_file(), "half the file was written in place");
    let mut c2 = connect(lab.addr()).await;
    assert_eq!(code_of(&mut c2, &verify_sql(&d)).await, Some(3203));
    assert_eq!(latest_backups(&mut c2, &d).await, 0);
    // The next backup (the 2nd) works.
    exec(&mut c2, &backup_sql(&d, false)).await.unwrap();
    exec(&mut c2, &verify_sql(&d)).await.unwrap();
}

#[tokio::test]
async fn fault_disk_cap_fails_with_3202_and_leaves_a_partial_file() {
    let lab = start(
        TdsVersion::V74,
        SqlFaults {
            disk_cap: Some(60_000),
            ..SqlFaults::default()
        },
    )
    .await;
    let dir = lab.backup_dir();
    std::fs::write(dir.join("other.dat"), vec![0u8; 20_000]).unwrap();
    let file = dir.join("cap.bak");
    let d = device(&file);
    let mut c = connect(lab.addr()).await;
    let err = exec(&mut c, &backup_sql(&d, false)).await.unwrap_err();
    assert_eq!(error_code(&err), Some(3202));
    assert!(
        err.to_string()
            .contains("112(There is not enough space on the disk.)"),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        40_000,
        "filled up to the cap"
    );
    assert_eq!(code_of(&mut c, &verify_sql(&d)).await, Some(3203));
    assert_eq!(latest_backups(&mut c, &d).await, 0);
}

#[tokio::test]
async fn fault_slow_backup_keeps_the_file_incomplete_while_it_runs() {
    let lab = start(
        TdsVersion::V74,
        SqlFaults {
            slow_backup_ms: Some(1500),
            ..SqlFaults::default()
        },
    )
    .await;
    let file = lab.backup_dir().join("slow.bak");
    let d = device(&file);
    let addr = lab.addr();
    let sql = backup_sql(&d, false);
    let started = Instant::now();
    let running = tokio::spawn(async move {
        let mut c = connect(addr).await;
        exec(&mut c, &sql).await
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut c2 = connect(addr).await;
    assert_eq!(
        code_of(&mut c2, &verify_sql(&d)).await,
        Some(3203),
        "half-written while the backup runs"
    );
    running.await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1500));
    exec(&mut c2, &verify_sql(&d)).await.unwrap();
}

#[tokio::test]
async fn faults_written_to_faults_json_apply_to_a_running_server() {
    let lab = start(TdsVersion::V74, SqlFaults::default()).await;
    let d = device(&lab.backup_dir().join("j.bak"));
    let mut c = connect(lab.addr()).await;
    exec(&mut c, &backup_sql(&d, false)).await.unwrap();
    std::fs::write(
        lab.path().join("faults.json"),
        r#"{"specs":["backup-3201=1"],"sql":{"backup_3201_at":1},"miiskmu_fail":false}"#,
    )
    .unwrap();
    assert_eq!(code_of(&mut c, &backup_sql(&d, false)).await, Some(3201));
    exec(&mut c, &backup_sql(&d, false)).await.unwrap();
}

#[tokio::test]
async fn sql_server_2000_rejects_backup_with_checksum_and_sys_views() {
    let lab = start(TdsVersion::V71, SqlFaults::default()).await;
    let d = device(&lab.backup_dir().join("2000.bak"));
    let mut c = connect(lab.addr()).await;
    assert_eq!(code_of(&mut c, &backup_sql(&d, true)).await, Some(155));
    assert_eq!(
        code_of(&mut c, "SELECT name FROM sys.databases").await,
        Some(208)
    );
    // Without CHECKSUM it works (messages only, no result set, so tiberius can follow under 7.1).
    exec(&mut c, &backup_sql(&d, false)).await.unwrap();
    exec(&mut c, &verify_sql(&d)).await.unwrap();
}

#[tokio::test]
async fn plan_style_reads_are_logged_as_rpc_and_backups_as_batches() {
    let lab = start(TdsVersion::V74, SqlFaults::default()).await;
    let d = device(&lab.backup_dir().join("log.bak"));
    let mut c = connect(lab.addr()).await;
    latest_backups(&mut c, &d).await;
    exec(&mut c, &backup_sql(&d, false)).await.unwrap();
    let log = statements(lab.path());
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].0, "rpc");
    assert_eq!(log[1], ("batch".to_string(), backup_sql(&d, false)));
}

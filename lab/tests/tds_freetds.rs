//! FreeTDS `tsql`, a client independent of tiberius, against the TDS double in 7.4 and 7.1 modes:
//! it must log in and read result sets. CI installs freetds-bin; without it these tests fail.

mod tds_support;

use std::io::Write;
use std::process::{Command, Stdio};

use tds_support::*;
use upgrade_lab::tds::{SqlFaults, TdsVersion};

/// Runs `tsql` with `input` on stdin at TDS version `tdsver`; returns (success, stdout, stderr).
fn tsql(port: u16, tdsver: &str, password: &str, input: &str) -> (bool, String, String) {
    tsql_dumping(port, tdsver, password, input, None)
}

/// `tsql`, writing FreeTDS's protocol log (TDSDUMP) to `dump` when given.
fn tsql_dumping(
    port: u16,
    tdsver: &str,
    password: &str,
    input: &str,
    dump: Option<&std::path::Path>,
) -> (bool, String, String) {
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("freetds.conf");
    std::fs::write(
        &conf,
        format!("[global]\n\ttds version = {tdsver}\n\tencryption = off\n"),
    )
    .unwrap();
    let mut command = Command::new("tsql");
    if let Some(dump) = dump {
        command.env("TDSDUMP", dump);
    }
    let child = command
        .args([
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            USER,
            "-P",
            password,
        ])
        .env("FREETDSCONF", &conf)
        .env("TDSVER", tdsver)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("FreeTDS `tsql` is not installed: install the Debian package freetds-bin (apt-get install freetds-bin; CI's .ci/run installs it)")
        }
        Err(e) => panic!("cannot run tsql: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn reads_result_sets(version: TdsVersion, tdsver: &'static str, banner: &str) {
    let lab = start(version, SqlFaults::default()).await;
    let port = lab.addr().port();
    let input = format!(
        "SELECT @@VERSION\ngo\nSELECT ma_name FROM [{DB}].dbo.mms_management_agent\ngo\nSELECT COUNT(*) AS objects FROM [{DB}].dbo.mms_metaverse\ngo\nSELECT name FROM master.dbo.sysdatabases WHERE name = N'msdb'\ngo\nexit\n"
    );
    let (_, out, err) = tokio::task::spawn_blocking(move || tsql(port, tdsver, PASSWORD, &input))
        .await
        .unwrap();
    assert!(
        out.contains(banner),
        "banner {banner:?} missing:\n{out}\n{err}"
    );
    for expected in [
        "Contoso AD",
        "HR Database",
        "Fabrikam GAL",
        "Legacy Notes",
        "1500",
        "msdb",
    ] {
        assert!(
            out.contains(expected),
            "{expected:?} missing:\n{out}\n{err}"
        );
    }
    assert!(
        out.contains("(4 rows affected)"),
        "row count from DONE missing:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tsql_reads_result_sets_from_the_sql_server_2016_double_over_tds_7_4() {
    reads_result_sets(TdsVersion::V74, "7.4", "Microsoft SQL Server 2016").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tsql_reads_result_sets_from_the_sql_server_2000_double_over_tds_7_1() {
    reads_result_sets(
        TdsVersion::V71,
        "7.1",
        "Microsoft SQL Server  2000 - 8.00.2039",
    )
    .await;
}

/// FreeTDS logs the LOGINACK it read: the TDS version and the product version, packed as
/// 0x80000000 | major << 24 | minor << 16 | build.
async fn freetds_sees_versions(version: TdsVersion, tdsver: &'static str, expect: [&str; 2]) {
    let lab = start(version, SqlFaults::default()).await;
    let port = lab.addr().port();
    let dump = lab.path().join("tdsdump.log");
    let dump2 = dump.clone();
    tokio::task::spawn_blocking(move || {
        tsql_dumping(port, tdsver, PASSWORD, "exit\n", Some(&dump2))
    })
    .await
    .unwrap();
    let log = std::fs::read_to_string(&dump).unwrap();
    for line in expect {
        assert!(
            log.contains(line),
            "{line:?} missing from FreeTDS's log:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn freetds_reads_sql_server_2000_sp4_s_versions_from_the_7_1_double() {
    freetds_sees_versions(
        TdsVersion::V71,
        "7.1",
        [
            "server reports TDS version 71.0.0.1",
            "Product version 880007F7", // 8.0.2039
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn freetds_reads_sql_server_2016_s_versions_from_the_7_4_double() {
    freetds_sees_versions(
        TdsVersion::V74,
        "7.4",
        [
            "server reports TDS version 74.0.0.4",
            "Product version 8D0013A2", // 13.0.5026
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tsql_reads_datetime_bigint_and_null_over_tds_7_1_after_a_backup() {
    let lab = start(TdsVersion::V71, SqlFaults::default()).await;
    let file = lab.backup_dir().join("full.bak");
    let device = file.to_str().unwrap().to_string();
    let port = lab.addr().port();
    let input = format!(
        "BACKUP DATABASE [{DB}] TO DISK = {} WITH INIT, NAME = N'pre-upgrade'\ngo\nRESTORE HEADERONLY FROM DISK = {}\ngo\nexit\n",
        lit(&device),
        lit(&device)
    );
    let (_, out, err) = tokio::task::spawn_blocking(move || tsql(port, "7.1", PASSWORD, &input))
        .await
        .unwrap();
    assert!(
        err.contains("BACKUP DATABASE successfully processed")
            || out.contains("BACKUP DATABASE successfully processed"),
        "{out}\n{err}"
    );
    let size = std::fs::metadata(&file).unwrap().len().to_string();
    assert!(out.contains(&size), "BackupSize {size} missing:\n{out}");
    assert!(out.contains("pre-upgrade") && out.contains("NULL"), "{out}");
    let year = upgrade_lab::sqlmodel::now().format("%Y").to_string();
    assert!(out.contains(&year), "dates missing:\n{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tsql_with_a_wrong_password_gets_login_failed() {
    let lab = start(TdsVersion::V74, SqlFaults::default()).await;
    let port = lab.addr().port();
    let (_, out, err) =
        tokio::task::spawn_blocking(move || tsql(port, "7.4", "wrong", "SELECT 1\ngo\nexit\n"))
            .await
            .unwrap();
    assert!(
        format!("{out}{err}").contains("Login failed for user 'upgrade'"),
        "{out}\n{err}"
    );
}

/// BACKUP ... WITH STATS through a client independent of `upgrade`: FreeTDS prints every INFO
/// message the double sends, with its number and severity. SQL Server 2000 sends 3211 "n percent
/// processed." each n percent while the backup is written, then 4035 "Processed ... pages" per
/// file and 3014 with the total; RESTORE VERIFYONLY sends 3262. All severity 0.
#[tokio::test(flavor = "multi_thread")]
async fn tsql_sees_a_backups_percentages_pages_and_verification_as_sql_server_2000_words_them() {
    let lab = start(TdsVersion::V71, SqlFaults::default()).await;
    let device = lab
        .backup_dir()
        .join("stats.bak")
        .to_str()
        .unwrap()
        .to_string();
    let port = lab.addr().port();
    let input = format!(
        "BACKUP DATABASE [{DB}] TO DISK = {} WITH INIT, NAME = N'stats', STATS = 25\ngo\nRESTORE VERIFYONLY FROM DISK = {}\ngo\nexit\n",
        lit(&device),
        lit(&device)
    );
    let (_, out, err) = tokio::task::spawn_blocking(move || tsql(port, "7.1", PASSWORD, &input))
        .await
        .unwrap();
    let said = format!("{out}\n{err}");
    let at = |text: &str| {
        said.find(text)
            .unwrap_or_else(|| panic!("{text:?} missing:\n{said}"))
    };
    let order = [
        at("25 percent processed."),
        at("50 percent processed."),
        at("75 percent processed."),
        at("100 percent processed."),
        at(&format!(
            "pages for database '{DB}', file '{DB}' on file 1."
        )),
        at(&format!("file '{DB}_log' on file 1.")),
        at("BACKUP DATABASE successfully processed "),
        at("The backup set on file 1 is valid."),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{said}");
    for number in ["3211", "4035", "3014", "3262"] {
        assert!(said.contains(&format!("Msg {number}")), "{number}:\n{said}");
    }
}

//! What SQL Server says while the backup step runs, as a person and a config-management tool see
//! it, against the rehearsal lab (TEST DOUBLE server speaking as SQL Server 2016 through tiberius
//! and as SQL Server 2000 through ODBC + FreeTDS): its messages ("Processed 138 pages ...", "The
//! backup set on file 1 is valid.") are the step's detail under `-v` and in `--json`, never log
//! lines; its `WITH STATS` percentages are the step's progress at a terminal, and nothing off one.

mod common;

use common::{require_freetds, screen, spinner_frames, stdout, text, Driver, Rig};

const DB: &str = "MicrosoftIdentityIntegrationServer";

/// `upgrade ARGS` as a person runs it: no RUST_LOG.
fn run(rig: &Rig, args: &[&str]) -> std::process::Output {
    let mut cmd = rig.command(args);
    cmd.env_remove("RUST_LOG");
    cmd.output().unwrap()
}

/// Whether `text` holds any of SQL Server's backup messages.
fn has_sql_messages(text: &str) -> bool {
    [
        "percent processed",
        "Processed ",
        "successfully processed",
        "The backup set on file 1 is valid",
    ]
    .iter()
    .any(|m| text.contains(m))
}

fn with_v_the_messages_are_the_backup_steps_detail_and_no_log_line(driver: Driver) {
    let rig = Rig::iifp(driver, &[]);
    let out = run(&rig, &["apply", rig.plan_str(), "--auto-approve", "-v"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = stdout(&out);
    let lines: Vec<&str> = shown.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("  + database: "))
        .expect("the backup's result line");
    // Under its line, in the order the server said them; the percentages are progress, not detail.
    let detail: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|l| l.starts_with("      "))
        .map(|l| l.trim_start())
        .collect();
    assert_eq!(detail.len(), 4, "{shown}");
    assert!(
        detail[0].starts_with("Processed ")
            && detail[0].ends_with(&format!(
                "pages for database '{DB}', file '{DB}' on file 1."
            )),
        "{shown}"
    );
    assert!(
        detail[1].ends_with(&format!("file '{DB}_log' on file 1.")),
        "{shown}"
    );
    assert!(
        detail[2].starts_with("BACKUP DATABASE successfully processed ")
            && detail[2].ends_with(" MB/sec)."),
        "{shown}"
    );
    assert_eq!(detail[3], "The backup set on file 1 is valid.", "{shown}");
    assert!(!shown.contains("percent processed"), "{shown}");
    // -v brings upgrade's own log lines, but the server's messages are not among them.
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(!has_sql_messages(&logs), "{logs}");
}

#[test]
fn with_v_sql_server_2016s_messages_are_the_backup_steps_detail_through_tiberius() {
    with_v_the_messages_are_the_backup_steps_detail_and_no_log_line(Driver::Tds);
}

#[test]
fn with_v_sql_server_2000s_messages_are_the_backup_steps_detail_through_odbc() {
    require_freetds();
    with_v_the_messages_are_the_backup_steps_detail_and_no_log_line(Driver::Odbc);
}

#[test]
fn without_v_the_servers_messages_are_neither_shown_nor_logged() {
    require_freetds();
    for driver in [Driver::Tds, Driver::Odbc] {
        let rig = Rig::iifp(driver, &[]);
        let out = run(&rig, &["apply", rig.plan_str(), "--auto-approve"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(!has_sql_messages(&text(&out)), "{}", text(&out));
        assert!(out.stderr.is_empty(), "no log line at all: {}", text(&out));
    }
}

#[test]
fn json_carries_each_steps_detail() {
    require_freetds();
    let rig = Rig::iifp(Driver::Odbc, &[]);
    let out = run(&rig, &["apply", rig.plan_str(), "--auto-approve", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let steps = doc["steps"].as_array().expect("steps");
    let database = steps
        .iter()
        .find(|s| s["id"] == "database")
        .expect("the backup step");
    let detail: Vec<&str> = database["detail"]
        .as_array()
        .expect("detail")
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert_eq!(detail.len(), 4, "{detail:#?}");
    assert!(
        detail[2].starts_with("BACKUP DATABASE successfully processed "),
        "{detail:#?}"
    );
    assert_eq!(detail[3], "The backup set on file 1 is valid.");
    // A step the server said nothing to has an empty detail.
    let keys = steps.iter().find(|s| s["id"] == "keys").expect("keys");
    assert_eq!(keys["detail"], serde_json::json!([]), "{keys}");
}

#[test]
fn at_a_terminal_a_running_backup_shows_how_many_percent_are_done() {
    // The lab's backup takes two seconds, as a real one of a big database takes minutes.
    let rig = Rig::iifp(Driver::Tds, &["slow-backup=2000"]);
    let mut cmd = rig.command(&["apply", rig.plan_str(), "--auto-approve"]);
    cmd.env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm");
    let (code, shown) = common::run_in_pty(cmd, "");
    assert_eq!(code, Some(0), "{shown}");
    let frames = spinner_frames(&shown, "database");
    let percents: Vec<u32> = frames
        .iter()
        .filter_map(|f| {
            let after = f.split("database: ").nth(1)?;
            after
                .split_whitespace()
                .next()?
                .strip_suffix('%')?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        percents.len() >= 3 && percents.windows(2).all(|w| w[0] <= w[1]),
        "the percentage grows as the backup goes: {percents:?}\n{frames:#?}"
    );
    assert!(
        percents.iter().any(|p| (10..100).contains(p)),
        "{percents:?}"
    );
    // What stays is the result; no percentage is left on the screen.
    let lines = screen(&shown);
    assert!(
        lines.iter().any(|l| l.starts_with("  + database: ")),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains('%')), "{lines:#?}");
}

#[test]
fn off_a_terminal_a_backup_has_its_two_lines_and_no_percentages() {
    let rig = Rig::iifp(Driver::Tds, &["slow-backup=500"]);
    let out = run(&rig, &["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = stdout(&out);
    let applying = shown.split("Applying:\n").nth(1).expect("Applying:");
    let database: Vec<&str> = applying
        .lines()
        .filter(|l| l.get(4..).is_some_and(|rest| rest.starts_with("database")))
        .collect();
    assert_eq!(database.len(), 2, "{shown}");
    assert_eq!(database[0], "  > database: backup_database started");
    assert!(database[1].starts_with("  + database: "), "{shown}");
    assert!(!shown.contains('%'), "{shown}");
}

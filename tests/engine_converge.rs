//! The seed procedure against the lab, end to end, through the real `upgrade` binary: plan shows
//! every step, apply converges, a second plan and apply find nothing to do; `plan` changes nothing;
//! saved plans; two applies at once; a password never leaks.

mod common;

use common::{stdout, text, tree, Driver, Rig};

#[test]
fn the_seed_plan_converges_on_a_fresh_lab_and_a_second_apply_does_nothing() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let plan = rig.upgrade(&["plan", rig.plan_str(), "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let out = stdout(&plan);
    for line in [
        "+ database",
        "+ keys",
        "+ extensions",
        "+ stop-sync",
        "+ before",
        "+ remove-iifp",
        "+ install-miis",
        "? verify",
    ] {
        assert!(out.contains(line), "missing `{line}` in\n{out}");
    }
    assert!(
        out.contains("BACKUP DATABASE [MicrosoftIdentityIntegrationServer]"),
        "{out}"
    );
    // The lab is Windows Server 2003 as released: Windows Installer 2.0, which has no /norestart.
    assert!(out.contains("/qn REBOOT=ReallySuppress /l*v"), "{out}");
    assert!(!out.contains("/qn /norestart"), "{out}");
    assert!(
        out.contains("Windows Installer 2.0.3790.0 has no /norestart"),
        "{out}"
    );

    let apply = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    assert!(
        stdout(&apply).contains("Apply complete: 8 step(s) done"),
        "{}",
        text(&apply)
    );
    assert_eq!(
        rig.installed(),
        ["Microsoft Identity Integration Server 2003"]
    );
    assert!(rig.path(r"D:\Upgrade\miis.bak").is_file());
    assert!(rig.path(r"D:\Upgrade\Extensions\SHA256SUMS").is_file());

    let again = rig.upgrade(&["plan", rig.plan_str(), "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(stdout(&again).contains("Nothing to do"), "{}", text(&again));

    let argv_before = rig.argv_log();
    let second = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert!(
        stdout(&second).contains("0 step(s) done, 8 already done"),
        "{}",
        text(&second)
    );
    let new_runs = &rig.argv_log()[argv_before.len()..];
    for tool in ["\"msiexec\"", "\"setup\"", "\"miiskmu\""] {
        assert!(
            !new_runs.contains(tool),
            "second apply ran {tool}: {new_runs}"
        );
    }
}

#[test]
fn plan_changes_nothing_anywhere() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let lab_dir = rig.lab.dir().to_path_buf();
    let before = tree(&lab_dir);
    let out = rig.upgrade(&[
        "plan",
        rig.plan_str(),
        "--out",
        rig.tmp.path().join("saved.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = tree(&lab_dir);
    let changed: Vec<_> = after
        .iter()
        .filter(|f| !before.contains(f))
        .filter(|(p, _)| p != "sql/statements.log" && p != "sql/connections.log" && p != "argv.log")
        .collect();
    assert!(changed.is_empty(), "plan wrote {changed:?}");
    let statements = rig.statements();
    assert!(!statements.is_empty(), "plan asked the server nothing");
    assert!(
        !statements.contains("BACKUP"),
        "plan sent a BACKUP: {statements}"
    );
    for line in rig.argv_log().lines() {
        assert!(
            line.contains("\"reg\"") || line.contains("\"sc\",\"argv\":[\"query\""),
            "plan ran a state-changing tool: {line}"
        );
    }
    assert!(
        !rig.state_dir()
            .join("lab-iifp-to-miis2003.journal.json")
            .exists(),
        "plan wrote a journal"
    );
}

#[test]
fn a_saved_plan_applies_as_saved_and_is_refused_once_the_server_changed() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let saved = rig.tmp.path().join("saved.json");
    let saved_s = saved.to_str().unwrap();
    let out = rig.upgrade(&["plan", rig.plan_str(), "--out", saved_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Someone removes a rules extension after the plan was saved.
    let dll = rig.path(r"C:\Program Files\Microsoft Identity Integration Server\Extensions\Contoso.MVExtension.dll");
    std::fs::remove_file(&dll).unwrap();
    let refused = rig.upgrade(&["apply", saved_s]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("extensions: the server changed since the plan was saved"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        rig.installed(),
        ["Identity Integration Feature Pack"],
        "nothing may run from a stale plan"
    );

    let out = rig.upgrade(&["plan", rig.plan_str(), "--out", saved_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let applied = rig.upgrade(&["apply", saved_s]);
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied));
}

#[test]
fn apply_without_a_terminal_refuses_unless_auto_approved() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let out = rig.upgrade(&["apply", rig.plan_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--auto-approve"), "{}", text(&out));
    assert!(!rig.path(r"D:\Upgrade\miis.bak").exists());
}

#[test]
fn json_output_is_one_document_for_config_management() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let plan = rig.upgrade(&["plan", rig.plan_str(), "--json"]);
    let doc: serde_json::Value =
        serde_json::from_slice(&plan.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&plan)));
    assert_eq!(doc["steps"][0]["id"], "database");
    assert_eq!(doc["steps"][0]["action"], "create");
    assert_eq!(doc["summary"]["to_do"], 7);
    let apply = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve", "--json"]);
    let doc: serde_json::Value =
        serde_json::from_slice(&apply.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&apply)));
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["steps"].as_array().unwrap().len(), 8);
}

#[test]
fn two_applies_at_once_never_both_run() {
    // Every stand-in sleeps, so the first apply holds the lock long enough.
    let rig = Rig::iifp(Driver::Tds, &["slow-tools=1500"]);
    let mut first = rig.spawn(&["apply", rig.plan_str(), "--auto-approve"]);
    let lock = rig
        .state_dir()
        .join("lab-iifp-to-miis2003.lock.holder.json");
    let t0 = std::time::Instant::now();
    // The holder file names the first apply once it holds the lock (it is empty otherwise).
    while std::fs::read(&lock).map_or(true, |b| b.is_empty())
        && t0.elapsed() < std::time::Duration::from_secs(30)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(
        text(&second).contains("holds the lock"),
        "{}",
        text(&second)
    );
    assert!(first.wait().unwrap().success());
}

#[test]
fn a_canary_password_appears_nowhere() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let canary = rig.service_password();
    assert!(canary.len() >= 8, "the lab's password should be a real one");
    let saved = rig.tmp.path().join("saved.json");
    let plan = rig.upgrade(&[
        "-v",
        "-v",
        "plan",
        rig.plan_str(),
        "--out",
        saved.to_str().unwrap(),
    ]);
    let apply = rig.upgrade(&["-v", "-v", "apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    for (what, o) in [("plan", &plan), ("apply", &apply)] {
        assert!(
            !text(o).contains(&canary),
            "{what} output shows the password"
        );
    }
    assert!(
        !std::fs::read_to_string(&saved).unwrap().contains(&canary),
        "saved plan holds the password"
    );
    for (file, _) in tree(&rig.state_dir()) {
        let bytes = std::fs::read(rig.state_dir().join(&file)).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&canary),
            "state file {file} holds the password"
        );
    }
    let argv = rig.argv_log();
    assert!(
        argv.contains("\"miiskmu\"") && argv.contains("\"setup\""),
        "the tools ran: {argv}"
    );
    assert!(
        !argv.contains(&canary),
        "a child's argv held the password: {argv}"
    );
}

#[test]
fn sql_checks_log_in_to_their_database_and_compare_the_scalar() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let db = "MicrosoftIdentityIntegrationServer";
    let count = rig.lab.lab().status().unwrap().databases.len();
    assert!(
        count >= 5,
        "the lab has master, msdb and the sync database at least"
    );
    let good = rig.plan_with_steps(
        "sql-checks",
        &format!(
            "  - id: check\n    verify:\n      sql:\n        - {{ database: {db}, query: \"SELECT COUNT(*) FROM master.dbo.sysdatabases\", expect: \"{count}\" }}\n"
        ),
    );
    let out = rig.upgrade(&["apply", good.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let wrong = rig.plan_with_steps(
        "sql-checks-wrong",
        &format!(
            "  - id: check\n    verify:\n      sql:\n        - {{ database: {db}, query: \"SELECT COUNT(*) FROM master.dbo.sysdatabases\", expect: \"{}\" }}\n",
            count + 1
        ),
    );
    let out = rig.upgrade(&["apply", wrong.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("1 of 1 check(s) failed"),
        "{}",
        text(&out)
    );

    let no_db = rig.plan_with_steps(
        "sql-checks-no-db",
        "  - id: check\n    verify:\n      sql:\n        - { database: NoSuchDatabase, query: \"SELECT COUNT(*) FROM master.dbo.sysdatabases\", expect: \"1\" }\n",
    );
    let out = rig.upgrade(&["apply", no_db.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("NoSuchDatabase"), "{}", text(&out));
}

/// MIIS 2003 and MIM can keep their database on another SQL Server: the backup path is then a path
/// on that machine. The backup is taken, proven and recognised there, through the server alone.
#[test]
fn a_database_on_a_separate_sql_server_is_backed_up_and_proven_on_that_server() {
    for driver in [Driver::Odbc, Driver::Tds] {
        let rig = Rig::iifp_separate_sql_host(driver);
        let out = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            rig.lab.sql_host_path(r"D:\Upgrade\miis.bak").is_file(),
            "the backup is not on the SQL Server's machine"
        );
        assert!(!rig.path(r"D:\Upgrade\miis.bak").exists());
        let again = rig.upgrade(&["plan", rig.plan_str(), "--detailed-exitcode"]);
        assert_eq!(again.status.code(), Some(0), "{}", text(&again));
        assert!(stdout(&again).contains("= database"), "{}", text(&again));
    }
}

/// Library log lines (tiberius's TLS notice, every SQL Server message the ODBC driver relays, a
/// RESTORE HEADERONLY of a backup not taken yet) are not output people read: without -v or
/// RUST_LOG, `plan` and `apply` print the steps, not the SQL clients' logs.
#[test]
fn without_v_the_sql_clients_log_lines_stay_out_of_the_output() {
    for driver in [Driver::Tds, Driver::Odbc] {
        let rig = Rig::iifp(driver, &[]);
        for args in [
            vec!["plan", rig.plan_str()],
            vec!["apply", rig.plan_str(), "--auto-approve"],
        ] {
            let out = rig.command(&args).env_remove("RUST_LOG").output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            let err = String::from_utf8_lossy(&out.stderr);
            for library in ["tiberius", "odbc_api"] {
                assert!(!err.contains(library), "{args:?}: {err}");
            }
        }
    }
}

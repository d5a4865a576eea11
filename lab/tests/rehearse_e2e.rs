//! `upgrade-lab rehearse` end to end with the real `upgrade` binary: a shipped plan, written for a
//! real server, runs validate, plan, apply and plan again on a fresh lab and converges.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `upgrade` binary beside upgrade-lab, built when missing.
fn upgrade_binary() -> PathBuf {
    let lab = Path::new(env!("CARGO_BIN_EXE_upgrade-lab"));
    let place = upgrade_lab::workspace_bin::BuildPlace::of(lab).expect("a cargo target folder");
    let upgrade = place.binary("upgrade");
    if upgrade.is_file() {
        upgrade
    } else {
        upgrade_lab::workspace_bin::build(&place, "upgrade", "upgrade").unwrap()
    }
}

fn rehearse(plan: &str, keep: &Path) -> (i32, String) {
    rehearse_with(plan, keep, &[])
}

fn rehearse_with(plan: &str, keep: &Path, extra: &[&str]) -> (i32, String) {
    let upgrade = upgrade_binary();
    let mut args = vec!["--upgrade", upgrade.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_rehearse(
        Command::new(env!("CARGO_BIN_EXE_upgrade-lab")),
        plan,
        keep,
        &args,
    )
}

/// `upgrade-lab rehearse PLAN --keep KEEP EXTRA...`, in the environment `cmd` already has.
fn run_rehearse(mut cmd: Command, plan: &str, keep: &Path, extra: &[&str]) -> (i32, String) {
    let o = cmd
        .arg("rehearse")
        .arg(workspace().join(plan))
        .arg("--keep")
        .arg(keep)
        .args(extra)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.code().unwrap_or(-1), out)
}

fn assert_converged(code: i32, out: &str, keep: &Path) {
    assert_eq!(code, 0, "{out}");
    for phase in [
        "validate    exit 0",
        "plan        exit 0",
        "apply       exit 0",
        "plan again  exit 0",
    ] {
        assert!(out.contains(phase), "missing `{phase}` in:\n{out}");
    }
    let rewritten = std::fs::read_to_string(keep.join("rehearsal-plan.yaml")).unwrap();
    assert!(
        !rewritten.contains(r"D:\"),
        "a Windows path survived:\n{rewritten}"
    );
    let status = upgrade_lab::Lab::open(keep).unwrap().status().unwrap();
    assert_eq!(status.backups.len(), 1, "one backup taken");
    assert_eq!(status.key_exports.len(), 1, "one key export");
    assert!(status.key_set_present);
}

#[test]
fn the_fim2010r2_plan_rehearses_end_to_end_and_converges() {
    let t = tempfile::tempdir().unwrap();
    let keep = t.path().join("lab");
    let (code, out) = rehearse("plans/fim2010r2-to-mim2016.yaml", &keep);
    assert_converged(code, &out, &keep);
    let st = upgrade_lab::Lab::open(&keep).unwrap().state().unwrap();
    assert_eq!(
        st.products[0].name,
        "Microsoft Identity Manager Synchronization Service"
    );
    assert_eq!(
        st.account.user, "svc-fimsync",
        "the lab took the plan's service account"
    );
    assert_eq!(
        msiexec_runs(&keep),
        [true],
        "Windows Installer 5.0 is told /norestart"
    );
}

#[test]
fn the_mim2016_sp2_plan_uninstalls_fim_and_installs_mim_on_the_database_with_the_keys() {
    let t = tempfile::tempdir().unwrap();
    let keep = t.path().join("lab");
    let (code, out) = rehearse("plans/fim2010r2-to-mim2016sp2.yaml", &keep);
    assert_converged(code, &out, &keep);
    let st = upgrade_lab::Lab::open(&keep).unwrap().state().unwrap();
    assert_eq!(st.products.len(), 1);
    assert_eq!(
        st.products[0].name,
        "Microsoft Identity Manager Synchronization Service"
    );
    assert!(st.products[0].version.starts_with("4.6."), "SP2 media");
    assert_eq!(
        st.key_set.as_ref().unwrap().id,
        st.databases[0].key_set_id,
        "the exported keys were imported"
    );
    let install = st.installs.last().unwrap();
    assert_eq!(install.exit, 0);
    assert!(
        install.properties.iter().any(|(k, _)| k == "KEYFILE"),
        "{:?}",
        install.properties
    );
    let argv = upgrade_lab::tools::read_argv_log(&keep).unwrap();
    let msiexec: Vec<&str> = argv
        .iter()
        .filter(|r| r.tool == "msiexec")
        .map(|r| r.argv[0].as_str())
        .collect();
    assert_eq!(
        msiexec,
        ["/x", "/i"],
        "FIM is uninstalled, then MIM installed"
    );
}

#[test]
fn a_fim_older_than_r2_sp1_is_refused_at_plan_with_why_and_nothing_runs() {
    let t = tempfile::tempdir().unwrap();
    let keep = t.path().join("lab");
    for plan in [
        "plans/fim2010r2-to-mim2016.yaml",
        "plans/fim2010r2-to-mim2016sp2.yaml",
    ] {
        let _ = std::fs::remove_dir_all(&keep);
        // FIM 2010 R2 as released, without SP1.
        let (code, out) = rehearse_with(plan, &keep, &["--installed-version", "4.1.2273.0"]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("plan        exit 1"), "{out}");
        assert!(
            out.contains("Forefront Identity Manager 2010 R2 Synchronization Service 4.1.2273.0")
                && out.contains("needs version 4.1.3419.0 or later"),
            "{plan}: {out}"
        );
        let status = upgrade_lab::Lab::open(&keep).unwrap().status().unwrap();
        assert!(status.backups.is_empty() && status.key_exports.is_empty());
        let argv = upgrade_lab::tools::read_argv_log(&keep).unwrap();
        assert!(
            argv.iter().all(|r| r.tool == "reg"
                || (r.tool == "sc" && r.argv.first().map(String::as_str) == Some("query"))),
            "{plan}: only reads ran: {argv:?}"
        );
    }
}

#[test]
fn a_store_on_another_server_gets_sqlserverstore_remotemachine_and_the_upgrade_converges() {
    let t = tempfile::tempdir().unwrap();
    let keep = t.path().join("lab");
    let text =
        std::fs::read_to_string(workspace().join("plans/fim2010r2-to-mim2016.yaml")).unwrap();
    let local = r#"server: "(local)"                            # FILL IN: as in server.sql.host"#;
    assert!(
        text.contains(local),
        "the shipped plan's store line changed"
    );
    let plan = t.path().join("remote-store.yaml");
    std::fs::write(&plan, text.replace(local, "server: sql01")).unwrap();
    let (code, out) = rehearse(plan.to_str().unwrap(), &keep);
    assert_converged(code, &out, &keep);
    assert!(out.contains("SQLServerStore=RemoteMachine"), "{out}");
    let st = upgrade_lab::Lab::open(&keep).unwrap().state().unwrap();
    let install = st.installs.last().unwrap();
    assert!(
        install
            .properties
            .contains(&("SQLSERVERSTORE".into(), "RemoteMachine".into()))
            && install
                .properties
                .contains(&("STORESERVER".into(), "sql01".into())),
        "{:?}",
        install.properties
    );
}

#[test]
fn a_plan_that_does_not_validate_is_refused_with_upgrade_validates_diagnostics_and_no_lab_is_made()
{
    let t = tempfile::tempdir().unwrap();
    let keep = t.path().join("lab");
    let plan = t.path().join("bad.yaml");
    // Two problems: an `after` naming no step, and an uninstall with nothing protected before it.
    std::fs::write(
        &plan,
        r#"version: 1
name: bad
server:
  sql: { host: "(local)", auth: windows }
steps:
  - id: database
    backup_database: { database: MicrosoftIdentityIntegrationServer, to: 'D:\Upgrade\miis.bak' }
    after: [nowhere]
  - id: remove
    uninstall: { product: { name: Identity Integration Feature Pack } }
"#,
    )
    .unwrap();
    let validate = Command::new(upgrade_binary())
        .arg("validate")
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(validate.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&validate.stderr).into_owned();
    let diagnostics: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            l.starts_with(&format!("{}:", plan.display())) && !l.contains("nothing was run")
        })
        .collect();
    assert!(diagnostics.len() >= 2, "{stderr}");

    let (code, out) = rehearse(plan.to_str().unwrap(), &keep);
    assert_eq!(code, 1, "{out}");
    for d in &diagnostics {
        assert!(
            out.lines().any(|l| l == *d),
            "missing `{d}` (as `upgrade validate` prints it) in:\n{out}"
        );
    }
    assert!(out.contains("nothing was rehearsed"), "{out}");
    assert!(
        !keep.exists(),
        "a lab was made for a plan that does not validate"
    );
}

/// For each msiexec run of the rehearsal: whether it was told `/norestart` (else it got
/// `REBOOT=ReallySuppress`).
fn msiexec_runs(lab: &Path) -> Vec<bool> {
    upgrade_lab::tools::read_argv_log(lab)
        .unwrap()
        .iter()
        .filter(|r| r.tool == "msiexec")
        .map(|r| {
            let norestart = r.argv.iter().any(|a| a == "/norestart");
            let suppress = r.argv.iter().any(|a| a == "REBOOT=ReallySuppress");
            assert!(norestart || suppress, "{:?}", r.argv);
            norestart
        })
        .collect()
}

#[test]
fn the_iifp_plan_rehearses_end_to_end_and_converges() {
    let t = tempfile::tempdir().unwrap();
    let keep = t.path().join("lab");
    let (code, out) = rehearse("plans/iifp-to-miis2003.yaml", &keep);
    assert_converged(code, &out, &keep);
    let st = upgrade_lab::Lab::open(&keep).unwrap().state().unwrap();
    assert_eq!(
        st.products[0].name,
        "Microsoft Identity Integration Server 2003"
    );
    let argv = upgrade_lab::tools::read_argv_log(&keep).unwrap();
    assert!(
        argv.iter()
            .all(|r| !r.argv.iter().any(|a| a.contains(&st.account.password))),
        "the service password reached a stand-in's argv"
    );
    assert_eq!(
        msiexec_runs(&keep),
        [false],
        "Windows Installer 2.0 of Windows Server 2003 is told REBOOT=ReallySuppress"
    );
}

#[test]
fn the_plan_written_for_the_lab_applies_on_a_lab_made_as_its_header_says() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("lab");
    let mut o = upgrade_lab::InitOptions::new(upgrade_lab::Flavour::Iifp);
    o.exe = Some(PathBuf::from(env!("CARGO_BIN_EXE_upgrade-lab")));
    let lab = upgrade_lab::Lab::init_with(&dir, &o).unwrap();
    let running = lab.start(upgrade_lab::StartOptions::default()).unwrap();
    let text = std::fs::read_to_string(workspace().join("examples/lab/iifp-to-miis2003.yaml"))
        .unwrap()
        .replace("/tmp/lab", dir.to_str().unwrap())
        .replace("port: 14330", &format!("port: {}", running.port));
    let plan = dir.join("plan.yaml");
    std::fs::write(&plan, text).unwrap();
    let st = lab.state().unwrap();
    let upgrade = |args: &[&str]| {
        let o = Command::new(upgrade_binary())
            .args(args)
            .arg(&plan)
            .env("UPGRADE_LAB_SQL_PASSWORD", &st.sql.password)
            .env("UPGRADE_LAB_SERVICE_PASSWORD", &st.account.password)
            .output()
            .unwrap();
        let out =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        (o.status.code().unwrap_or(-1), out)
    };
    for phase in [&["validate"][..], &["plan"], &["apply", "--auto-approve"]] {
        let (code, out) = upgrade(phase);
        assert_eq!(code, 0, "upgrade {phase:?}:\n{out}");
    }
    let status = lab.status().unwrap();
    assert_eq!(
        status.products[0].name,
        "Microsoft Identity Integration Server 2003"
    );
    assert_eq!(status.backups.len(), 1);
    running.stop();
}

/// The lines of cargo's that a rehearsal's output must not hold: its build is one line.
fn cargo_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("Compiling") || l.starts_with("Finished") || l.starts_with("Blocking")
        })
        .collect()
}

#[test]
fn the_readmes_first_command_builds_upgrade_from_the_same_source_in_one_line_and_converges() {
    let t = tempfile::tempdir().unwrap();
    let keep = t.path().join("lab");
    // `cargo run -p upgrade-lab -- rehearse plans/iifp-to-miis2003.yaml`: no --upgrade.
    let (code, out) = run_rehearse(
        Command::new(env!("CARGO_BIN_EXE_upgrade-lab")),
        "plans/iifp-to-miis2003.yaml",
        &keep,
        &[],
    );
    assert_converged(code, &out, &keep);
    let built: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("upgrade: built in ") || l.starts_with("upgrade: up to date ("))
        .collect();
    assert_eq!(built.len(), 1, "one line about building upgrade:\n{out}");
    assert!(cargo_lines(&out).is_empty(), "cargo's own lines:\n{out}");
    assert!(!out.contains("no `upgrade` binary"), "{out}");
}

#[test]
fn without_the_freetds_odbc_driver_sql_server_2000_is_rehearsed_by_the_nearest_path_and_one_line_says_so(
) {
    let t = tempfile::tempdir().unwrap();
    let keep = t.path().join("lab");
    // unixODBC reads the drivers registered in $ODBCSYSINI/odbcinst.ini: none here.
    let nothing_registered = t.path().join("odbc");
    std::fs::create_dir_all(&nothing_registered).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_upgrade-lab"));
    cmd.env("ODBCSYSINI", &nothing_registered);
    let upgrade = upgrade_binary();
    let (code, out) = run_rehearse(
        cmd,
        "plans/iifp-to-miis2003.yaml",
        &keep,
        &["--upgrade", upgrade.to_str().unwrap()],
    );
    assert_converged(code, &out, &keep);
    let notes: Vec<&str> = out.lines().filter(|l| l.starts_with("note: ")).collect();
    assert_eq!(notes.len(), 1, "{out}");
    for what in [
        "the FreeTDS ODBC driver is not registered",
        "built-in TDS client",
        "SQL Server 2016 (TDS 7.4)",
        "`apt install tdsodbc`",
    ] {
        assert!(
            notes[0].contains(what),
            "`{what}` missing from: {}",
            notes[0]
        );
    }
    let rewritten = std::fs::read_to_string(keep.join("rehearsal-plan.yaml")).unwrap();
    assert!(rewritten.contains("driver: tds"), "{rewritten}");
    assert!(!rewritten.contains("odbc_driver"), "{rewritten}");
    let statements = std::fs::read_to_string(keep.join("sql/statements.log")).unwrap();
    assert!(
        statements.contains("\"kind\":\"rpc\""),
        "the built-in client (sp_executesql RPCs) talked to the lab"
    );
}

#[test]
fn with_the_freetds_odbc_driver_registered_sql_server_2000_is_rehearsed_over_odbc_without_a_note() {
    let t = tempfile::tempdir().unwrap();
    let keep = t.path().join("lab");
    let (code, out) = rehearse("plans/iifp-to-miis2003.yaml", &keep);
    assert_converged(code, &out, &keep);
    assert!(out.contains("TDS 7.1"), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("note: ")), "{out}");
    let statements = std::fs::read_to_string(keep.join("sql/statements.log")).unwrap();
    assert!(
        !statements.contains("\"kind\":\"rpc\""),
        "ODBC sends batches only"
    );
}

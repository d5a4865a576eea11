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
    let lab = PathBuf::from(env!("CARGO_BIN_EXE_upgrade-lab"));
    let upgrade = lab.with_file_name("upgrade");
    if !upgrade.is_file() {
        let target = lab.parent().unwrap().parent().unwrap();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "-p",
                "upgrade",
                "--bin",
                "upgrade",
                "--manifest-path",
            ])
            .arg(workspace().join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", target)
            .status()
            .unwrap();
        assert!(status.success(), "building upgrade: {status}");
    }
    upgrade
}

fn rehearse(plan: &str, keep: &Path) -> (i32, String) {
    rehearse_with(plan, keep, &[])
}

fn rehearse_with(plan: &str, keep: &Path, extra: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_upgrade-lab"))
        .arg("rehearse")
        .arg(workspace().join(plan))
        .arg("--keep")
        .arg(keep)
        .arg("--upgrade")
        .arg(upgrade_binary())
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

//! The `service` step against the lab: the sync service is stopped (`sc stop`, then `sc query`
//! until STOPPED) before the connector-space snapshot reads the counts, a service already stopped
//! is left alone, the new product's setup starts it again and a re-plan finds nothing to do.

mod common;

use common::{edit_plan, stdout, text, wrap_tool, Driver, Rig};

fn miiserver_running(rig: &Rig) -> bool {
    rig.lab
        .lab()
        .state()
        .unwrap()
        .service("miiserver")
        .unwrap()
        .running
}

#[test]
fn the_running_sync_service_is_stopped_before_the_snapshot_reads_the_counts() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    assert!(miiserver_running(&rig), "the lab's IIFP service runs");
    // Every sc run leaves a line in the SQL server's statement log, so that one log shows the
    // order of the service controls and the snapshot's SELECTs.
    let real = rig.lab.lab().tools().unwrap().sc;
    let log = rig.lab.dir().join("sql").join("statements.log");
    wrap_tool(
        &rig,
        &real,
        "sc",
        &format!("echo \"sc $*\" >> '{}'", log.display()),
    );

    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert!(stdout(&plan).contains("+ stop-sync"), "{}", text(&plan));
    assert!(stdout(&plan).contains("stop miiserver"), "{}", text(&plan));
    assert!(miiserver_running(&rig), "plan stopped the service");

    let before_apply = rig.statements().len();
    let apply = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    // Apply: the stop, `sc query` until STOPPED, the snapshot's counts, then the proofs before
    // the uninstall (RESTORE HEADERONLY of the backup) with no count read in between.
    let log = rig.statements()[before_apply..].to_string();
    let stop = log.find("sc stop miiserver").expect("sc stop ran");
    let after_stop = &log[stop..];
    let queried = after_stop
        .find("sc query miiserver")
        .expect("sc query after the stop");
    let counted = after_stop
        .find(
            "COUNT(*) AS objects FROM [MicrosoftIdentityIntegrationServer].dbo.mms_connectorspace",
        )
        .expect("the snapshot read the counts after the stop");
    let proofs = after_stop
        .find("RESTORE HEADERONLY")
        .expect("proofs before the uninstall");
    assert!(
        queried < counted && counted < proofs,
        "the snapshot did not read the counts between the stop and the uninstall:\n{log}"
    );
    assert!(
        miiserver_running(&rig),
        "the MIIS 2003 setup starts its service and verify found it running"
    );

    let again = rig.upgrade(&["plan", rig.plan_str(), "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(stdout(&again).contains("= stop-sync"), "{}", text(&again));
}

#[test]
fn a_sync_service_already_stopped_is_left_alone() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let sc = rig.lab.lab().tools().unwrap().sc;
    let status = std::process::Command::new(&sc)
        .args(["stop", "miiserver"])
        .status()
        .unwrap();
    assert!(status.success());
    let argv_before = rig.argv_log().len();

    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    let out = stdout(&plan);
    let line = out
        .lines()
        .find(|l| l.contains("stop-sync"))
        .unwrap_or_else(|| panic!("no stop-sync line in\n{out}"));
    assert!(line.trim_start().starts_with("= stop-sync"), "{out}");
    assert!(out.contains("miiserver is stopped"), "{out}");
    assert!(
        !rig.argv_log()[argv_before..].contains("\"stop\""),
        "plan ran sc stop"
    );
}

#[test]
fn a_misspelt_service_name_cannot_converge_and_nothing_runs() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    edit_plan(
        &rig,
        "name: miiserver, state: stopped",
        "name: miisever, state: stopped",
    );
    let apply = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_ne!(apply.status.code(), Some(0), "{}", text(&apply));
    assert!(
        text(&apply).contains("there is no service named miisever"),
        "{}",
        text(&apply)
    );
    assert_eq!(rig.installed(), ["Identity Integration Feature Pack"]);
}

/// A sync service started again after the snapshot, before the uninstall has run, is stopped
/// again: the stop serves the uninstall too, which comes after it only through the snapshot.
#[test]
fn a_sync_service_started_again_before_the_uninstall_is_stopped_again() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let full = std::fs::read_to_string(&rig.plan).unwrap();
    let cut = full
        .find("  - id: remove-iifp")
        .expect("the seed plan has remove-iifp");
    // First the steps up to the snapshot (same plan name, same journal), then the service is
    // started again by hand.
    std::fs::write(&rig.plan, &full[..cut]).unwrap();
    let first = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let sc = rig.lab.lab().tools().unwrap().sc;
    let started = std::process::Command::new(&sc)
        .args(["start", "miiserver"])
        .output()
        .unwrap();
    assert!(started.status.success(), "{}", text(&started));

    std::fs::write(&rig.plan, &full).unwrap();
    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert!(stdout(&plan).contains("+ stop-sync"), "{}", text(&plan));
}

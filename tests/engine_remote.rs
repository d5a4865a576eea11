//! The seed upgrade run from an admin host against the sync server over WinRM (the lab's WinRM
//! listener and stand-ins: TEST DOUBLE server): it converges, a second apply does nothing, the
//! copies live on the admin host with the server's hashes, no secret reaches the server's side,
//! and a kill -9 or a dropped connection during each remote step converges on the next run.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{apply, converges, stdout, text, tree, Rig};
use upgrade_lab::kdc::Enctypes;

const IIFP: &str = "Identity Integration Feature Pack";
const MIIS: &str = "Microsoft Identity Integration Server 2003";

#[test]
fn the_remote_seed_plan_converges_and_a_second_apply_does_nothing() {
    let rig = Rig::iifp_remote(&[]);
    let winrm = rig.lab.winrm.password.clone();
    converges_once_and_stays(&rig, &winrm);
}

#[test]
fn the_remote_seed_plan_logging_on_with_kerberos_rc4_as_to_a_2003_server_converges_and_a_second_apply_does_nothing(
) {
    // The seed's server is Windows Server 2003, whose domain has RC4-HMAC keys only (AES came to
    // Kerberos with Vista/2008); AES is covered by the client's tests.
    let rig = Rig::iifp_remote_kerberos(Enctypes::Rc4);
    let plan = std::fs::read_to_string(&rig.plan).unwrap();
    assert!(plan.contains("auth: kerberos"), "{plan}");
    let krb = rig.lab.kerberos.clone().unwrap();
    converges_once_and_stays(&rig, &krb.password);
    let keys = upgrade_lab::kdc::service_session_enctypes(rig.lab.dir());
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k == "arcfour-hmac"),
        "{keys:?}"
    );
}

/// The remote seed plan converges in one apply with the copies on the admin host; a second apply
/// runs no tool that changes anything; no secret (the service password, `logon_password`) is in
/// the lab's files or the output.
fn converges_once_and_stays(rig: &Rig, logon_password: &str) {
    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let out = apply(rig);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(rig.installed(), [MIIS]);

    // The copies are on the admin host, with what the server had.
    let copy = tree(&rig.admin_dir().join("Extensions"));
    assert!(
        copy.iter().any(|(f, _)| f == "SHA256SUMS"),
        "no manifest in the admin host's copy: {copy:?}"
    );
    assert!(copy.len() > 1, "{copy:?}");
    assert!(rig.admin_dir().join("miis-keys.bin").is_file());
    assert_eq!(
        std::fs::read(rig.admin_dir().join("miis-keys.bin")).unwrap(),
        std::fs::read(rig.path(r"D:\Upgrade\miis-keys.bin")).unwrap(),
        "the key file's copy differs from the server's"
    );

    // A second apply changes nothing and runs no tool that changes anything.
    let before = rig.argv_log();
    let again = apply(rig);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let after = rig.argv_log();
    let new_runs = &after[before.len()..];
    for tool in ["miiskmu", "msiexec", "setup"] {
        assert!(
            !new_runs.contains(&format!("\"{tool}\"")),
            "the second apply ran {tool}: {new_runs}"
        );
    }
    let plan = rig.upgrade(&["plan", rig.plan_str(), "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    // No secret on the server's side: the service password went to miiskmu and setup over the
    // shell's stdin stream, the WinRM password only into the logon (NTLM or Kerberos).
    let service = rig.service_password();
    for (name, secret) in [
        ("service password", service.as_str()),
        ("WinRM password", logon_password),
    ] {
        let hits = rig.server_files_holding(secret);
        assert!(
            hits.is_empty(),
            "the {name} is in the lab's files: {hits:?}"
        );
        assert!(
            !stdout(&out).contains(secret),
            "the {name} is in the output"
        );
    }
}

/// Starts an apply; once `arm` says the run got that far, turns on `faults` (a slow tool, so the
/// step can be caught in the middle; the stand-ins read faults at each run); waits until `started`
/// says the step is under way; kills `upgrade` with SIGKILL; lets what the server still runs
/// finish; and checks that the next run converges and that no installer ran twice.
fn kill_during(arm: impl Fn(&Rig) -> bool, faults: &[&str], started: impl Fn(&Rig) -> bool) -> Rig {
    let rig = Rig::iifp_remote(&[]);
    let mut child = rig.spawn(&["apply", rig.plan_str(), "--auto-approve"]);
    let t0 = Instant::now();
    let mut armed = false;
    while !started(&rig) {
        if !armed && arm(&rig) {
            rig.faults(faults);
            armed = true;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the step never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "apply ended before the step started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // What the killed run started on the server goes on alone, as on Windows.
    std::thread::sleep(Duration::from_millis(2500));
    rig.faults(&[]);
    converges(&rig);
    assert!(rig.runs_of("setup") <= 1, "{}", rig.argv_log());
    rig
}

fn at_once(_: &Rig) -> bool {
    true
}

#[test]
fn kill_9_during_the_remote_key_export_is_resumed() {
    kill_during(at_once, &["slow-tools=2000"], |r| r.runs_of("miiskmu") > 0);
}

#[test]
fn kill_9_during_the_extensions_copy_over_winrm_is_resumed() {
    // Every WinRM operation 40 ms late: the copy takes long enough to be killed in the middle.
    let rig = kill_during(at_once, &["winrm-slow=40"], |r| {
        let dir = r.admin_dir().join("Extensions");
        dir.is_dir() && !tree(&dir).is_empty()
    });
    let copy = tree(&rig.admin_dir().join("Extensions"));
    assert!(copy.iter().any(|(f, _)| f == "SHA256SUMS"), "{copy:?}");
}

/// Whether the sync service was stopped (the last step before the uninstall that runs a tool).
fn service_stopped(r: &Rig) -> bool {
    r.argv_log().contains(r#""stop","miiserver""#)
}

#[test]
fn kill_9_during_the_remote_uninstall_is_resumed() {
    kill_during(service_stopped, &["slow-tools=2000"], |r| {
        r.runs_of("msiexec") > 0
    });
    // (`converges` checked the product is gone and MIIS 2003 installed once.)
}

#[test]
fn kill_9_during_the_remote_setup_is_resumed() {
    kill_during(
        |r| r.runs_of("msiexec") > 0,
        &["slow-tools=2000"],
        |r| r.runs_of("setup") > 0,
    );
}

/// The WinRM listener drops the connection at the `n`th Receive, before answering it
/// (`winrm-drop`) or after taking its answer from the command (`winrm-drop-answered`): the
/// client logs on again and goes on receiving from the same command; either way the next run
/// converges without running an installer twice. Returns the first run's exit code and output.
fn drop_at(fault: &str, n: u32) -> (Option<i32>, String) {
    let rig = Rig::iifp_remote(&[&format!("{fault}={n}")]);
    let first = apply(&rig);
    std::thread::sleep(Duration::from_millis(500));
    rig.faults(&[]);
    converges(&rig);
    assert!(rig.runs_of("setup") <= 1, "{}", rig.argv_log());
    assert!(
        rig.runs_of("miiskmu") <= 2,
        "the keys were exported more than once after a drop: {}",
        rig.argv_log()
    );
    (first.status.code(), text(&first))
}

/// A drop every other Receive through the apply, the two kinds in turn, until a run no longer
/// meets one. Each run that met one logged on again and resumed the command it was receiving
/// from. A lost Receive may have held output, and the client cannot tell: a command that only
/// reads was run again and the apply went on; one that changes the server (the key export, a
/// service control, an installer) ran once and its step stopped saying its output was lost,
/// never "may still be running". The next run converged every time (`drop_at`).
#[test]
fn a_connection_dropped_during_the_remote_apply_is_resumed_and_the_next_run_converges() {
    // Where the apply's own work starts: the Receives of a `plan` (the survey apply repeats).
    let probe = Rig::iifp_remote(&[]);
    let before = probe.argv_log().lines().count();
    let plan = probe.upgrade(&["plan", probe.plan_str()]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let survey = probe.argv_log().lines().count() - before;
    let mut n = survey as u32 + 1;
    let (mut completed, mut stopped) = (0, 0);
    for fault in ["winrm-drop", "winrm-drop-answered"].iter().cycle() {
        let (code, out) = drop_at(fault, n);
        if !out.contains("connection to") || !out.contains("logging on again") {
            break; // past the run's last Receive
        }
        assert!(!out.contains("MAY STILL BE RUNNING"), "{fault}={n}: {out}");
        match code {
            Some(0) => completed += 1,
            // A program's step (`ProcessError`) or a file operation's (`WinrmError`).
            Some(1)
                if out.contains("part of its output was lost")
                    || out.contains("may have held some of it were lost") =>
            {
                stopped += 1
            }
            _ => panic!(
                "{fault}={n}: the apply neither completed nor stopped for the lost output: {out}"
            ),
        }
        n += 2;
        assert!(n < 400, "the drops never ran out");
    }
    eprintln!(
        "drops from Receive {} to {n}, stepped by 2: {completed} applies completed, {stopped} stopped for a lost output",
        survey + 1
    );
    assert!(
        completed >= 3 && stopped >= 1,
        "only {completed} completed and {stopped} stopped: the drops missed the apply"
    );
}

/// The key export's answer lost in transit: miiskmu's output decides nothing (success is its exit
/// code and the key file), so the step goes on from its exit code, protects and fetches the key
/// file, and the apply completes; miiskmu ran once. Before, the step failed and left the whole
/// exported key set on the server under its partial name, with the folder's permissions.
#[test]
fn the_key_exports_answer_lost_in_transit_still_completes_the_export_once() {
    let rig = Rig::iifp_remote(&["winrm-drop-of=miiskmu.exe", "winrm-drop-answered=1"]);
    let out = apply(&rig);
    let said = text(&out);
    assert!(
        said.contains("logging on again"),
        "the fault missed miiskmu: {said}"
    );
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(rig.runs_of("miiskmu"), 1, "{}", rig.argv_log());
    assert!(rig.admin_dir().join("miis-keys.bin").is_file());
    assert!(
        !rig.path(r"D:\Upgrade\.miis-keys.bin.upgrade-partial")
            .exists(),
        "the exported keys were left under their partial name"
    );
    rig.faults(&[]);
    converges(&rig);
}

/// A Receive's answer lost in transit (the server took the output into it, the connection
/// dropped before it arrived) at each Receive of `plan` in turn: whichever query it was (the
/// Uninstall listing, a service, a file's stat or hash), the plan shows exactly what it shows
/// without the loss. Before, a listing whose answer was lost read as empty: "nothing installed".
#[test]
fn an_answer_lost_in_transit_anywhere_in_the_survey_never_changes_the_plan() {
    let rig = Rig::iifp_remote(&[]);
    let plan = || rig.upgrade(&["plan", rig.plan_str()]);
    let clean = plan();
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    let mut lost = 0;
    for n in 1.. {
        rig.faults(&[&format!("winrm-drop-answered={n}")]);
        let out = plan();
        let said = text(&out);
        if !said.contains("logging on again") {
            break; // past the plan's last Receive
        }
        lost += 1;
        assert_eq!(out.status.code(), Some(0), "answer {n} lost: {said}");
        assert_eq!(
            stdout(&out),
            stdout(&clean),
            "the plan changed when Receive {n}'s answer was lost: {said}"
        );
        assert!(said.contains("it only reads, so it is run again"), "{said}");
        assert!(n < 200, "the Receives never ran out");
    }
    eprintln!("{lost} plans, each with one answer lost in transit");
    assert!(lost >= 5, "only {lost} answers were lost in the plan");
}

#[test]
fn the_remote_plan_never_runs_the_uninstall_before_the_copies_are_on_the_admin_host() {
    let rig = Rig::iifp_remote(&["miiskmu-fail"]);
    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(rig.installed(), [IIFP]);
    assert!(!Path::new(&rig.admin_dir().join("miis-keys.bin")).exists());
    rig.faults(&[]);
    converges(&rig);
}

#[test]
fn an_installer_of_a_killed_remote_run_still_executing_is_waited_for_and_never_run_twice() {
    // The same over WinRM: the next run asks the server for its _MSIExecute mutex (PowerShell's
    // Mutex.OpenExisting) before it starts msiexec, and starts none while it is set.
    let rig = Rig::iifp_remote(&["hold-execute"]);
    common::kill_while_the_uninstall_executes(&rig);
    common::the_next_apply_waits_for_that_installer_and_never_runs_it_twice(&rig);
}

#[test]
fn a_server_whose_windows_is_in_c_winnt_converges_with_a_plan_naming_no_tool_paths() {
    // A Windows Server 2003 upgraded in place from Windows 2000 keeps C:\WINNT: msiexec, reg and
    // sc are in C:\WINNT\System32, and there is no C:\Windows. The remote seed plan names no tool
    // paths; the server's %SystemRoot%, read once at logon, says where they are.
    let mut init = upgrade_lab::InitOptions::new(upgrade_lab::Flavour::Iifp);
    init.system_root = Some(r"C:\WINNT".into());
    let rig = Rig::iifp_remote_with(&[], &init);
    assert!(!std::fs::read_to_string(&rig.plan)
        .unwrap()
        .contains("\ntools:"));
    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        stdout(&plan).contains(r"C:\WINNT\System32\msiexec.exe /x"),
        "{}",
        text(&plan)
    );
    converges(&rig);
    assert_eq!(rig.runs_of("msiexec"), 1, "{}", rig.argv_log());
}

#[test]
fn a_reg_the_server_cannot_run_stops_the_run_and_never_reads_as_nothing_installed() {
    // Over WinRS, cmd.exe answers a reg it cannot find with exit 1 ("The system cannot find the
    // path specified."), reg's own code for a missing key: read as "no such key", every product
    // would look uninstalled and the uninstall "already done".
    let rig = Rig::iifp_remote(&[]);
    let plan = std::fs::read_to_string(&rig.plan).unwrap();
    let plan = plan.replacen(
        "\nsteps:\n",
        "\ntools:\n  reg: 'C:\\Windows\\System32\\missing\\reg.exe'\nsteps:\n",
        1,
    );
    std::fs::write(&rig.plan, plan).unwrap();

    let out = rig.upgrade(&["plan", rig.plan_str()]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    for step in ["remove-iifp", "install-miis"] {
        assert!(
            stdout(&out)
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("! {step} "))
                    && l.contains("cannot observe")),
            "{step} was read without a readable registry: {}",
            text(&out)
        );
    }
    assert!(
        text(&out).contains("The system cannot find the path specified."),
        "{}",
        text(&out)
    );
    let out = apply(&rig);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(rig.runs_of("msiexec"), 0, "{}", rig.argv_log());
    assert_eq!(rig.runs_of("setup"), 0, "{}", rig.argv_log());
    assert_eq!(rig.installed(), [IIFP]);
}

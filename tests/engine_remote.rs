//! The seed upgrade run from an admin host against the sync server over WinRM (the lab's WinRM
//! listener and stand-ins: TEST DOUBLE server): it converges, a second apply does nothing, the
//! copies live on the admin host with the server's hashes, no secret reaches the server's side,
//! and a kill -9 or a dropped connection during each remote step converges on the next run.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{stdout, text, tree, Rig};

const IIFP: &str = "Identity Integration Feature Pack";
const MIIS: &str = "Microsoft Identity Integration Server 2003";

fn apply(rig: &Rig) -> std::process::Output {
    rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"])
}

fn converges(rig: &Rig) {
    let out = apply(rig);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the next run must converge: {}",
        text(&out)
    );
    let plan = rig.upgrade(&["plan", rig.plan_str(), "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert_eq!(rig.installed(), [MIIS]);
}

/// How many times the lab ran stand-in `tool` (its argv records).
fn runs_of(rig: &Rig, tool: &str) -> usize {
    rig.argv_log()
        .lines()
        .filter(|l| l.contains(&format!("\"{tool}\"")))
        .count()
}

/// Every file of the lab (the server's side: drives, logs, argv records) holding `needle`, except
/// the lab's own bookkeeping of the account it made (its state file) and the key file (whose bytes
/// the lab derives from the password, as miiskmu encrypts the export with it).
fn server_files_holding(rig: &Rig, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for (rel, _) in tree(rig.lab.dir()) {
        if rel == "state.json" || rel.ends_with("miis-keys.bin") {
            continue;
        }
        let bytes = std::fs::read(rig.lab.dir().join(&rel)).unwrap_or_default();
        if String::from_utf8_lossy(&bytes).contains(needle) {
            hits.push(rel);
        }
    }
    hits
}

#[test]
fn the_remote_seed_plan_converges_and_a_second_apply_does_nothing() {
    let rig = Rig::iifp_remote(&[]);
    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let out = apply(&rig);
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
    let again = apply(&rig);
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
    // shell's stdin stream, the WinRM password only into NTLM.
    let service = rig.service_password();
    let winrm = rig.lab.winrm.password.clone();
    for (name, secret) in [("service password", &service), ("WinRM password", &winrm)] {
        let hits = server_files_holding(&rig, secret);
        assert!(
            hits.is_empty(),
            "the {name} is in the lab's files: {hits:?}"
        );
        assert!(
            !stdout(&out).contains(secret.as_str()),
            "the {name} is in the output"
        );
    }
}

/// Starts an apply, waits until `started` says the step is under way, kills it with SIGKILL,
/// lets what the server still runs finish, and checks that the next run converges and that no
/// installer ran twice.
fn kill_during(faults: &[&str], started: impl Fn(&Rig) -> bool) -> Rig {
    let rig = Rig::iifp_remote(faults);
    let mut child = rig.spawn(&["apply", rig.plan_str(), "--auto-approve"]);
    let t0 = Instant::now();
    while !started(&rig) {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the step never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "apply ended before the step started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // What the killed run started on the server goes on alone, as on Windows.
    std::thread::sleep(Duration::from_millis(2500));
    rig.faults(&[]);
    converges(&rig);
    assert!(runs_of(&rig, "setup") <= 1, "{}", rig.argv_log());
    rig
}

#[test]
fn kill_9_during_the_remote_key_export_is_resumed() {
    kill_during(&["slow-tools=2000"], |r| runs_of(r, "miiskmu") > 0);
}

#[test]
fn kill_9_during_the_extensions_copy_over_winrm_is_resumed() {
    // Every WinRM operation 40 ms late: the copy takes long enough to be killed in the middle.
    let rig = kill_during(&["winrm-slow=40"], |r| {
        let dir = r.admin_dir().join("Extensions");
        dir.is_dir() && !tree(&dir).is_empty()
    });
    let copy = tree(&rig.admin_dir().join("Extensions"));
    assert!(copy.iter().any(|(f, _)| f == "SHA256SUMS"), "{copy:?}");
}

#[test]
fn kill_9_during_the_remote_uninstall_is_resumed() {
    kill_during(&["slow-tools=2000"], |r| runs_of(r, "msiexec") > 0);
}

#[test]
fn kill_9_during_the_remote_setup_is_resumed() {
    kill_during(&["slow-tools=2000"], |r| runs_of(r, "setup") > 0);
}

/// The WinRM listener drops the connection at the `n`th Receive: the run stops (the command may
/// still be running on the server), and the next run converges without running an installer twice.
/// Returns the first run's output.
fn drop_at(n: u32) -> String {
    let rig = Rig::iifp_remote(&[&format!("winrm-drop={n}")]);
    let first = apply(&rig);
    std::thread::sleep(Duration::from_millis(500));
    rig.faults(&[]);
    converges(&rig);
    assert!(runs_of(&rig, "setup") <= 1, "{}", rig.argv_log());
    assert!(
        runs_of(&rig, "miiskmu") <= 2,
        "the keys were exported more than once after a drop: {}",
        rig.argv_log()
    );
    text(&first)
}

#[test]
fn a_connection_dropped_during_each_remote_step_converges_on_the_next_run() {
    // Drops spread over the run's Receives; each run's output names the step it stopped in.
    let mut hit: Vec<&str> = Vec::new();
    let steps = [
        "keys",
        "extensions",
        "stop-sync",
        "remove-iifp",
        "install-miis",
        "verify",
    ];
    for n in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144] {
        let out = drop_at(n);
        for s in steps {
            if out.contains(&format!("{s}:")) && out.contains("may still be running") {
                if !hit.contains(&s) {
                    hit.push(s);
                }
            }
        }
    }
    assert!(!hit.is_empty(), "no drop stopped a remote step");
    eprintln!("drops stopped: {hit:?}");
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

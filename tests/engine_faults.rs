//! Faults injected by the lab: the run stops cleanly or retries as it should, the uninstall never
//! runs after a failed prerequisite, and the next run converges with nothing lost. Includes kill -9
//! of `upgrade` in the middle of each slow step.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{
    apply, converges, kill_while_the_uninstall_executes, stdout, text,
    the_next_apply_waits_for_that_installer_and_never_runs_it_twice, tool_running, Driver, Rig,
    HANG_GUARD,
};

const IIFP: &str = "Identity Integration Feature Pack";
const MIIS: &str = "Microsoft Identity Integration Server 2003";

#[test]
fn a_failed_backup_3201_stops_before_the_uninstall_and_the_next_run_converges() {
    let rig = Rig::iifp(Driver::Tds, &["backup-3201=1"]);
    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("3201"), "{}", text(&out));
    assert!(stdout(&out).contains("not run"), "{}", text(&out));
    assert_eq!(
        rig.installed(),
        [IIFP],
        "the uninstall ran after a failed backup"
    );
    converges(&rig);
}

#[test]
fn a_connection_dropped_mid_backup_leaves_no_trusted_backup_and_the_next_run_converges() {
    let rig = Rig::iifp(Driver::Tds, &["backup-drop=1"]);
    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // SQL Server writes the backup in place; what the dropped connection left is never trusted.
    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert!(
        stdout(&plan).contains("+ database"),
        "a half-written backup was trusted: {}",
        text(&plan)
    );
    assert_eq!(rig.installed(), [IIFP]);
    converges(&rig);
}

#[test]
fn a_full_disk_fails_the_backup_cleanly() {
    let rig = Rig::iifp(Driver::Tds, &["disk-cap=4096"]);
    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("3202") || text(&out).contains("space"),
        "{}",
        text(&out)
    );
    assert_eq!(rig.installed(), [IIFP]);
    // The administrator makes room; the running server re-reads its faults before each BACKUP.
    rig.faults(&[]);
    converges(&rig);
}

#[test]
fn a_key_tool_failure_stops_before_the_uninstall() {
    let rig = Rig::iifp(Driver::Tds, &["miiskmu-fail"]);
    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("miiskmu exited with 1"),
        "{}",
        text(&out)
    );
    assert!(!rig.path(r"D:\Upgrade\miis-keys.bin").exists());
    assert_eq!(rig.installed(), [IIFP]);
    rig.faults(&[]);
    converges(&rig);
}

#[test]
fn another_installation_in_progress_1618_is_retried_with_backoff() {
    let rig = Rig::iifp(Driver::Tds, &["msiexec-1618=2"]);
    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("after 3 attempts"), "{}", text(&out));
    assert_eq!(rig.installed(), [MIIS]);
}

#[test]
fn a_fatal_1603_stops_with_the_log_tail_and_the_next_run_converges() {
    let rig = Rig::iifp(Driver::Tds, &["msiexec-1603"]);
    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("msiexec exited with 1603"), "{all}");
    assert!(all.contains("--- tail of log ---"), "{all}");
    assert_eq!(rig.installed(), [IIFP]);
    rig.faults(&[]);
    converges(&rig);
}

#[test]
fn reboot_required_3010_counts_as_done_and_is_reported() {
    let rig = Rig::iifp(Driver::Tds, &["msiexec-3010"]);
    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("A restart is required (remove-iifp"),
        "{}",
        text(&out)
    );
}

/// Starts an apply, waits until `started` says the step is under way, kills it with SIGKILL,
/// lets any orphaned stand-in finish, and checks the next run converges.
fn kill_during(faults: &[&str], started: impl Fn(&Rig) -> bool) {
    let rig = Rig::iifp(Driver::Tds, faults);
    let mut child = rig.spawn(&["apply", rig.plan_str(), "--auto-approve"]);
    let t0 = Instant::now();
    while !started(&rig) {
        assert!(
            t0.elapsed() < Duration::from_secs(180),
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
    // A stand-in started by the killed run goes on alone, as msiexec would on Windows.
    std::thread::sleep(Duration::from_millis(2500));
    rig.faults(&[]);
    converges(&rig);
}

#[test]
fn kill_9_during_the_backup_is_resumed() {
    kill_during(&["slow-backup=2000"], |r| {
        r.statements().contains("BACKUP DATABASE")
    });
}

#[test]
fn kill_9_during_the_key_export_is_resumed() {
    kill_during(&["slow-tools=2000"], |r| {
        tool_running(r.lab.dir(), "miiskmu")
    });
}

#[test]
fn kill_9_right_after_the_key_export_is_resumed() {
    // The copy and the snapshot take milliseconds, so this kills somewhere between the key
    // export's end and them: the journal write, the copy or the snapshot, whichever is running.
    kill_during(&[], |r| r.argv_log().contains("\"miiskmu\""));
}

#[test]
fn kill_9_during_the_uninstall_is_resumed() {
    kill_during(&["slow-tools=2000"], |r| {
        tool_running(r.lab.dir(), "msiexec") && r.argv_log().contains("\"miiskmu\"")
    });
}

#[test]
fn kill_9_during_the_install_is_resumed() {
    kill_during(&["slow-tools=2000"], |r| tool_running(r.lab.dir(), "setup"));
}

/// A miiskmu whose `*` reads the console, not the redirected standard input, waits for a password
/// nobody types (unconfirmed on a real server): the step fails fast and says what to check. The
/// old spelling `timeout_secs: 2` waits exactly as `timeout: 2s` does.
#[test]
fn a_key_tool_waiting_at_a_prompt_fails_fast_and_says_what_to_check() {
    for wait in ["timeout: 2s", "timeout_secs: 2"] {
        let rig = Rig::iifp(Driver::Tds, &[]);
        let real = rig.lab.lab().tools().unwrap().miiskmu;
        common::wrap_tool(&rig, &real, "miiskmu", "exec sleep 600 </dev/null");
        common::edit_plan(
            &rig,
            "  - id: keys\n    export_keys:\n",
            &format!("  - id: keys\n    export_keys:\n      {wait}\n"),
        );
        let started = Instant::now();
        let out = apply(&rig);
        assert_eq!(out.status.code(), Some(1), "{wait}: {}", text(&out));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{wait}: it waited"
        );
        let all = text(&out);
        assert!(all.contains("did not finish within 2s"), "{wait}: {all}");
        assert!(
            all.contains("secrets_on_command_line: true"),
            "{wait}: {all}"
        );
        assert_eq!(rig.installed(), [IIFP], "{wait}");
    }
}

/// The documented alternative: the password as miiskmu's own argument, allowed by the plan; it is
/// shown as *** and reaches no output.
#[test]
fn with_secrets_on_the_command_line_miiskmu_gets_the_password_as_its_argument() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    common::edit_plan(
        &rig,
        "  - id: keys\n    export_keys:\n",
        "  - id: keys\n    export_keys:\n      secrets_on_command_line: true\n",
    );
    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert!(
        stdout(&plan).contains(" *** /q (password on the command line"),
        "{}",
        text(&plan)
    );
    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(&rig.service_password()));
    let argv = rig.argv_log();
    let export = argv
        .lines()
        .find(|l| l.contains("\"miiskmu\""))
        .expect("miiskmu ran");
    assert!(export.contains(&rig.service_password()), "{export}");
    assert!(!export.contains("\"*\""), "{export}");
}

#[test]
fn an_installer_whose_change_another_installation_made_meanwhile_is_not_run_again_after_1618() {
    // The setup installs the product but answers 1618 (another installation in progress), as when
    // the installer of an earlier, killed run of this plan finishes while this one waits: before
    // its retry the step looks again, finds the product installed, and does not run setup twice.
    let rig = Rig::iifp(Driver::Tds, &[]);
    let setup = rig.lab.lab().tools().unwrap().installer;
    let once = rig.tmp.path().join("answered-1618");
    common::wrap_tool_around(
        &rig,
        &setup,
        "Setup.exe",
        "",
        &format!(
            "if [ ! -e '{0}' ]; then touch '{0}'; exit 1618; fi",
            once.display()
        ),
    );
    let out = apply(&rig);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        rig.runs_of("setup"),
        1,
        "setup ran again: {}",
        rig.argv_log()
    );
    assert_eq!(rig.installed(), [MIIS]);
    converges(&rig);
}

#[test]
fn an_installer_of_a_killed_run_still_executing_is_waited_for_and_never_run_twice() {
    // The uninstall's msiexec stays in its execute phase until the test lets it go. The run that
    // started it is killed; the next run finds the installation in progress, starts no second
    // msiexec, waits with the step's retry, sees the product removed once the installer is let
    // go, and goes on to converge.
    let rig = Rig::iifp(Driver::Tds, &["hold-execute"]);
    kill_while_the_uninstall_executes(&rig);
    the_next_apply_waits_for_that_installer_and_never_runs_it_twice(&rig);
}

#[test]
fn an_installation_in_progress_through_every_attempt_refuses_the_step_and_starts_nothing() {
    // Another installer holds the server through the uninstall's every attempt (4, 1 s doubling).
    let rig = Rig::iifp(Driver::Tds, &[]);
    let held = upgrade_lab::tools::msiexec::installer_lock(
        rig.lab.dir(),
        upgrade_lab::tools::msiexec::Installer::Msiexec,
    )
    .unwrap();
    let out = apply(&rig);
    drop(held);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("another Windows Installer installation is in progress on this machine")
            && all.contains("msiexec was not started")
            && all.contains("run again when it has finished"),
        "{all}"
    );
    assert!(
        !rig.argv_log().contains("\"msiexec\""),
        "{}",
        rig.argv_log()
    );
    assert_eq!(rig.installed(), [IIFP]);
    converges(&rig);
}

#[test]
fn a_product_a_cut_off_run_finished_installing_after_the_survey_is_not_installed_again() {
    // The first run is killed while MIIS's setup executes (held there by the lab until the test
    // lets it go); the next run surveys the server while that setup still works (MIIS not
    // installed yet) and asks at its prompt; only then is setup let go, and only once it has
    // finished is the prompt answered: at its turn the install step finds the server idle and
    // MIIS installed, and must not start setup a second time. Every wait is for a state that
    // lasts until the test acts, so a loaded machine cannot make the test miss one.
    let rig = Rig::iifp(Driver::Tds, &["hold-setup"]);
    let mut first = rig.spawn(&["apply", rig.plan_str(), "--auto-approve"]);
    let t0 = std::time::Instant::now();
    // IIFP gone (its removal made its change) and an installer in its execute phase: setup.
    let setup_executing = || {
        !rig.installed().iter().any(|p| p == IIFP)
            && upgrade_lab::tools::msiexec::installer_busy(rig.lab.dir()).unwrap()
    };
    while !setup_executing() {
        assert!(t0.elapsed() < HANG_GUARD, "setup never started");
        assert!(first.try_wait().unwrap().is_none(), "apply ended first");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    // `apply` asks only at a terminal: util-linux `script` gives it one, fed from our pipe; what
    // the terminal shows goes to a file the test reads as it grows.
    let asking = rig.command(&["apply", rig.plan_str()]);
    let line = format!(
        "'{}' apply '{}'",
        env!("CARGO_BIN_EXE_upgrade"),
        rig.plan_str()
    );
    let shown = rig.tmp.path().join("next-apply.out");
    let mut next = std::process::Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .envs(asking.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(&shown).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let terminal = || std::fs::read_to_string(&shown).unwrap_or_default();
    while !terminal().contains("Only 'yes' will be accepted") {
        assert!(t0.elapsed() < HANG_GUARD, "the next apply never asked");
        if let Some(status) = next.try_wait().unwrap() {
            panic!(
                "the next apply ended ({status}) without asking:\n{}",
                terminal()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        terminal().contains("the product is not installed"),
        "the survey did not see setup still at work: {}",
        terminal()
    );
    rig.faults(&[]);
    while upgrade_lab::tools::msiexec::installer_busy(rig.lab.dir()).unwrap() {
        assert!(t0.elapsed() < HANG_GUARD, "setup never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        rig.installed(),
        [MIIS],
        "the cut-off setup did not finish: {}",
        rig.argv_log()
    );
    let _ = next.stdin.take().unwrap().write_all(b"yes\n");
    let status = next.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", terminal());
    assert_eq!(
        rig.runs_of("setup"),
        1,
        "setup ran again: {}",
        rig.argv_log()
    );
    // The step says what happened, and claims no exit code of an installer it did not run.
    let said = terminal();
    assert!(
        said.contains("another installation finished it while this run waited")
            && !said.contains("1618"),
        "{said}"
    );
    converges(&rig);
}

//! What a person sees while an apply runs, against the rehearsal lab (TEST DOUBLE server and
//! stand-in tools): at a terminal, the running step as a spinner with its name and elapsed time
//! that gives way to its result; off a terminal, a line when a step starts and one when it ends;
//! with `--json` or `-q`, none of it. The wrapper written here around the lab's miiskmu makes the
//! key export take a while, as a real one on a busy server does.

mod common;

use common::{screen, spinner_frames, stdout, text, wrap_tool, Driver, Rig, SEED_STEPS};

/// The seed plan's rig whose key export takes `seconds`.
fn rig_with_slow_key_export(seconds: &str) -> Rig {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let real = rig.lab.lab().tools().unwrap().miiskmu;
    wrap_tool(&rig, &real, "miiskmu", &format!("sleep {seconds}"));
    rig
}

/// `upgrade ARGS` at a terminal 200 columns wide that indicatif draws on (TERM names one).
fn at_terminal(rig: &Rig, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = rig.command(args);
    cmd.env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm");
    common::run_in_pty(cmd, "")
}

#[test]
fn at_a_terminal_a_long_step_shows_a_spinner_with_its_name_and_elapsed_time_then_its_result() {
    let rig = rig_with_slow_key_export("2");
    let (code, shown) = at_terminal(&rig, &["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(code, Some(0), "{shown}");

    // While miiskmu runs, the step's line turns: its id, its kind, and the seconds it has taken.
    let frames = spinner_frames(&shown, "keys");
    assert!(
        frames.len() >= 5,
        "a spinner that turns: {frames:#?}\n{shown:?}"
    );
    assert!(
        frames.iter().all(|f| f.contains("keys: export_keys")),
        "{frames:#?}"
    );
    assert!(
        frames.iter().any(|f| f.trim_end().ends_with(" 1s")),
        "the time it has run: {frames:#?}"
    );

    // What stays on the screen is the result, in the spinner's place; no spinner is left behind.
    let lines = screen(&shown);
    let applying = lines
        .iter()
        .position(|l| l == "Applying:")
        .expect("Applying:");
    let results: Vec<&str> = lines[applying + 1..]
        .iter()
        .take_while(|l| !l.is_empty())
        .map(String::as_str)
        .collect();
    assert_eq!(results.len(), SEED_STEPS.len(), "{results:#?}");
    for (line, (id, _)) in results.iter().zip(SEED_STEPS) {
        assert!(line.starts_with(&format!("  + {id}: ")), "{results:#?}");
    }
    assert!(results[1].contains("key file"), "{results:#?}");
}

#[test]
fn off_a_terminal_each_step_carried_out_has_a_line_when_it_starts_and_one_when_it_ends() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let out = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = stdout(&out);
    let applying = shown.split("Applying:\n").nth(1).expect("Applying:");
    let lines: Vec<&str> = applying.lines().take_while(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2 * SEED_STEPS.len(), "{shown}");
    for (pair, (id, kind)) in lines.chunks(2).zip(SEED_STEPS) {
        assert_eq!(pair[0], format!("  > {id}: {kind} started"), "{shown}");
        assert!(pair[1].starts_with(&format!("  + {id}: ")), "{shown}");
    }
    // No spinner and no cursor movement in a log file.
    assert!(
        !shown.contains('\r') && !shown.contains('\x1b'),
        "{shown:?}"
    );

    // A step already done does not start: it has its one line.
    let again = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(!stdout(&again).contains("started"), "{}", text(&again));
}

#[test]
fn json_and_quiet_output_carry_no_progress_even_at_a_terminal() {
    let rig = rig_with_slow_key_export("1");
    let (code, json) = at_terminal(&rig, &["apply", rig.plan_str(), "--auto-approve", "--json"]);
    assert_eq!(code, Some(0), "{json}");
    let doc: serde_json::Value = serde_json::from_str(&json).expect("one JSON document, only");
    assert_eq!(doc["ok"], true, "{json}");

    let rig = rig_with_slow_key_export("1");
    let (code, quiet) = at_terminal(&rig, &["apply", rig.plan_str(), "--auto-approve", "-q"]);
    assert_eq!(code, Some(0), "{quiet}");
    assert!(spinner_frames(&quiet, "keys").is_empty(), "{quiet:?}");
    assert!(
        !quiet.contains("started") && !quiet.contains('\r'),
        "{quiet:?}"
    );
    assert!(
        screen(&quiet)
            .join("\n")
            .contains("Apply complete: 8 step(s) done"),
        "{quiet:?}"
    );
}

#[test]
fn log_lines_at_a_terminal_are_written_around_the_spinner_never_through_it() {
    let rig = rig_with_slow_key_export("1");
    let mut cmd = rig.command(&["apply", rig.plan_str(), "--auto-approve"]);
    cmd.env("RUST_LOG", "upgrade=info").env("TERM", "xterm");
    let (code, shown) = common::run_in_pty(cmd, "");
    assert_eq!(code, Some(0), "{shown}");
    assert!(!spinner_frames(&shown, "keys").is_empty(), "{shown:?}");
    let lines = screen(&shown);
    let logs: Vec<&String> = lines.iter().filter(|l| l.contains(" INFO ")).collect();
    assert!(
        logs.iter().any(|l| l.ends_with("applying step=keys")),
        "{lines:#?}"
    );
    // Each log line whole, on a line of its own: begun by its time stamp, not by a spinner.
    for l in &logs {
        assert!(l.starts_with("20"), "a log line garbled: {l:?}\n{lines:#?}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("  + keys: key file")),
        "{lines:#?}"
    );
}

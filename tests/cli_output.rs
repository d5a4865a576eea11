//! What `upgrade` prints for people and tools, against the rehearsal lab (TEST DOUBLE server and
//! stand-in tools): saved plans, the step graph, the journal, colour and quiet output.

mod common;

use common::{edit_plan, stdout, text, Driver, Rig, SEED_STEPS};

/// A lab whose plan names a key tool that is gone (removed with the old product?) while no key
/// file was exported: the `keys` step cannot converge.
fn rig_whose_key_export_cannot_converge() -> Rig {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let miiskmu = rig.lab.lab().tools().unwrap().miiskmu;
    edit_plan(
        &rig,
        &format!("miiskmu: '{}'", miiskmu.display()),
        &format!("miiskmu: '{}.gone'", miiskmu.display()),
    );
    rig
}

#[test]
fn a_plan_that_cannot_converge_is_shown_but_not_saved() {
    let rig = rig_whose_key_export_cannot_converge();
    let saved = rig.tmp.path().join("saved.json");
    let out = rig.upgrade(&["plan", rig.plan_str(), "--out", saved.to_str().unwrap()]);

    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!saved.exists(), "a plan with `!` was saved: {}", text(&out));
    assert!(stdout(&out).contains("  ! keys"), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: the plan was not saved to {}: these steps cannot converge: keys",
            saved.display()
        )),
        "{}",
        text(&out)
    );
    assert!(!stdout(&out).contains("Saved the plan"), "{}", text(&out));
}

/// `upgrade graph` of the rig's plan, as DOT text.
fn graph(rig: &Rig) -> String {
    let out = rig.upgrade(&["graph", rig.plan_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    stdout(&out)
}

#[test]
fn the_graph_is_dot_with_every_dependency_and_the_destructive_steps_marked() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let dot = graph(&rig);
    assert!(
        dot.starts_with("digraph \"lab-iifp-to-miis2003\" {\n"),
        "{dot}"
    );
    assert!(dot.ends_with("}\n"), "{dot}");
    let edges: Vec<&str> = dot.lines().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(
        edges,
        [
            r#"  "stop-sync" -> "before";"#,
            r#"  "database" -> "remove-iifp";"#,
            r#"  "keys" -> "remove-iifp";"#,
            r#"  "extensions" -> "remove-iifp";"#,
            r#"  "before" -> "remove-iifp";"#,
            r#"  "remove-iifp" -> "install-miis";"#,
            r#"  "keys" -> "install-miis" [label = "answers.key_file.from", style = "dashed"];"#,
            r#"  "install-miis" -> "verify";"#,
            r#"  "before" -> "verify" [label = "connector_space.same_as", style = "dashed"];"#,
        ]
    );
    let destructive: Vec<&str> = dot
        .lines()
        .filter(|l| l.contains("destructive\""))
        .map(|l| l.split('"').nth(1).unwrap())
        .collect();
    assert_eq!(destructive, ["remove-iifp", "install-miis"], "{dot}");
    assert!(
        !dot.contains("sealed"),
        "nothing ran, so nothing is sealed: {dot}"
    );
}

#[test]
fn after_an_apply_the_graph_shows_which_steps_the_uninstall_sealed_and_show_prints_the_journal() {
    let rig = Rig::iifp(Driver::Tds, &["msiexec-3010"]);
    let applied = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied));

    let dot = graph(&rig);
    let sealed: Vec<&str> = dot
        .lines()
        .filter(|l| l.contains("sealed by remove-iifp"))
        .map(|l| l.split('"').nth(1).unwrap())
        .collect();
    assert_eq!(
        sealed,
        ["database", "keys", "extensions", "stop-sync", "before"],
        "{dot}"
    );

    let out = rig.upgrade(&["show", rig.plan_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = stdout(&out);
    let journal = rig.state_dir().join("lab-iifp-to-miis2003.journal.json");
    assert!(
        shown.starts_with(&format!(
            "Journal of lab-iifp-to-miis2003 ({})\n\n",
            journal.display()
        )),
        "{shown}"
    );
    for (id, _) in SEED_STEPS {
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with("  done ") && l.split_whitespace().nth(1) == Some(id)),
            "{id} not shown done:\n{shown}"
        );
    }
    // The uninstall's installer exit code and the restart Windows Installer asked for (3010).
    let uninstall = shown.split("remove-iifp").nth(1).unwrap();
    assert!(uninstall.contains("exit code 3010"), "{shown}");
    assert!(uninstall.contains("restart required"), "{shown}");
    assert!(shown.contains("\nRuns:\n  "), "{shown}");
    assert!(shown.contains(": ok (pid "), "{shown}");

    let json = rig.upgrade(&["show", rig.plan_str(), "--json"]);
    assert_eq!(json.status.code(), Some(0), "{}", text(&json));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
    assert_eq!(doc["journal_exists"], true);
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 8);
    let remove = steps.iter().find(|s| s["id"] == "remove-iifp").unwrap();
    assert_eq!(remove["status"], "done");
    assert_eq!(remove["exit_code"], 3010);
    assert_eq!(remove["reboot_required"], true);
    assert!(remove["at"].is_string());
    assert_eq!(doc["runs"].as_array().unwrap().len(), 1);
    // Secrets never reach the journal, so they cannot reach `show`.
    assert!(!shown.contains(&rig.service_password()), "{shown}");
}

#[test]
fn show_before_any_apply_says_nothing_was_applied() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let out = rig.upgrade(&["show", rig.plan_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).starts_with("No journal for lab-iifp-to-miis2003 at ")
            && stdout(&out).ends_with(": nothing was applied yet.\n"),
        "{}",
        text(&out)
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _upgrade"),
        ("zsh", "#compdef upgrade"),
        ("fish", "complete -c upgrade"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_upgrade"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out));
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        for command in ["validate", "plan", "apply", "graph", "show"] {
            assert!(script.contains(command), "{shell} completes no `{command}`");
        }
    }
}

#[test]
fn the_readmes_graph_of_the_seed_plan_is_what_upgrade_graph_prints() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_upgrade"))
        .args(["graph", "plans/iifp-to-miis2003.yaml"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let checked_in = std::fs::read_to_string(root.join("docs/iifp-to-miis2003.dot")).unwrap();
    assert!(
        stdout(&out) == checked_in,
        "docs/iifp-to-miis2003.dot is stale; regenerate it and the picture with:\n    \
         cargo run -q -- graph plans/iifp-to-miis2003.yaml > docs/iifp-to-miis2003.dot\n    \
         dot -Tsvg docs/iifp-to-miis2003.dot > docs/iifp-to-miis2003.svg"
    );
}

const GREEN_PLUS: &str = "\x1b[32m+\x1b[0m";
const RED_BANG: &str = "\x1b[1m\x1b[31m!\x1b[0m";

/// `upgrade ARGS` at a terminal (a pty), with the lab's secrets and without RUST_LOG.
fn at_terminal(rig: &Rig, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = rig.command(args);
    cmd.env_remove("RUST_LOG").env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::run_in_pty(cmd, "")
}

#[test]
fn at_a_terminal_marks_are_coloured_and_never_with_no_color_or_off_a_terminal() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let (code, shown) = at_terminal(&rig, &["plan", rig.plan_str()], &[]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains(&format!("  {GREEN_PLUS} database ")),
        "{shown:?}"
    );

    for (args, env) in [
        (vec!["plan", rig.plan_str(), "--no-color"], vec![]),
        (vec!["plan", rig.plan_str()], vec![("NO_COLOR", "1")]),
    ] {
        let (code, shown) = at_terminal(&rig, &args, &env);
        assert_eq!(code, Some(0), "{shown}");
        assert!(shown.contains("  + database "), "{shown}");
        assert!(
            !shown.contains('\x1b'),
            "colour despite {args:?} {env:?}: {shown:?}"
        );
    }
    // Off a terminal, and in JSON, never.
    let piped = rig.upgrade(&["plan", rig.plan_str()]);
    assert!(
        !piped.stdout.contains(&0x1b) && !piped.stderr.contains(&0x1b),
        "{}",
        text(&piped)
    );
    let (code, json) = at_terminal(&rig, &["plan", rig.plan_str(), "--json"], &[]);
    assert_eq!(code, Some(0), "{json}");
    assert!(!json.contains('\x1b'), "{json:?}");
    serde_json::from_str::<serde_json::Value>(&json).expect("one JSON document");
}

#[test]
fn at_a_terminal_a_step_that_cannot_converge_is_red() {
    let rig = rig_whose_key_export_cannot_converge();
    let (code, shown) = at_terminal(&rig, &["plan", rig.plan_str()], &[]);
    assert_eq!(code, Some(1), "{shown}");
    assert!(shown.contains(&format!("  {RED_BANG} keys ")), "{shown:?}");
}

#[test]
fn library_logs_off_a_terminal_carry_no_escape_codes() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    // RUST_LOG=upgrade=debug (the harness's) writes log lines to stderr, which is a pipe here.
    let out = rig.upgrade(&["plan", rig.plan_str()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DEBUG"),
        "{}",
        text(&out)
    );
    assert!(!out.stderr.contains(&0x1b), "{}", text(&out));
}

#[test]
fn a_failed_installer_is_reported_once_with_its_log_tail() {
    let rig = Rig::iifp(Driver::Tds, &["msiexec-1603"]);
    let mut cmd = rig.command(&["apply", rig.plan_str(), "--auto-approve"]);
    cmd.env_remove("RUST_LOG");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert_eq!(all.matches("--- tail of log ---").count(), 1, "{all}");
    assert_eq!(all.matches("msiexec exited with 1603").count(), 1, "{all}");
    assert!(
        stdout(&out).contains("  \u{2717} remove-iifp: failed (the error is below)\n"),
        "{all}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("error: step `remove-iifp` failed: msiexec exited with 1603"),
        "{all}"
    );
}

#[test]
fn quiet_prints_only_the_summary_and_errors() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let plan = rig.upgrade(&["plan", rig.plan_str(), "-q"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert_eq!(
        stdout(&plan),
        "7 to do, 0 already done, 1 to check, 0 cannot converge.\n"
    );
    let mut cmd = rig.command(&["apply", rig.plan_str(), "--auto-approve", "-q"]);
    cmd.env_remove("RUST_LOG");
    let apply = cmd.output().unwrap();
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    assert_eq!(
        stdout(&apply),
        "\nApply complete: 8 step(s) done, 0 already done.\n"
    );
    assert!(apply.stderr.is_empty(), "{}", text(&apply));
}

#[test]
fn quiet_shows_a_failure_as_its_summary_and_its_error() {
    let rig = Rig::iifp(Driver::Tds, &["msiexec-1603"]);
    let mut cmd = rig.command(&["apply", rig.plan_str(), "--auto-approve", "-q"]);
    cmd.env_remove("RUST_LOG");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        stdout(&out),
        "\nApply stopped: 5 step(s) done before the failure; run `upgrade apply` again after fixing it.\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: step `remove-iifp` failed: msiexec exited with 1603"),
        "{}",
        text(&out)
    );
    assert_eq!(
        stderr.matches("--- tail of log ---").count(),
        1,
        "{}",
        text(&out)
    );
}

#[test]
fn a_service_password_that_is_also_a_folder_name_does_not_garble_paths() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    // The service account's password is `Upgrade`, the name of the folder the backups go to.
    upgrade_lab::state::update(rig.lab.dir(), |s| s.account.password = "Upgrade".into()).unwrap();
    let backup = rig.path(r"D:\Upgrade\miis.bak").display().to_string();
    assert!(backup.contains("/Upgrade/"), "{backup}");

    let plan = rig.upgrade(&["plan", rig.plan_str()]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        stdout(&plan).contains(&format!("no backup at {backup}")),
        "{}",
        text(&plan)
    );
    assert!(!stdout(&plan).contains("***"), "{}", text(&plan));

    let apply = rig.upgrade(&["apply", rig.plan_str(), "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    assert!(
        stdout(&apply).contains(&format!("at {backup}")),
        "{}",
        text(&apply)
    );
    assert!(!stdout(&apply).contains("/***/"), "{}", text(&apply));
}

#[test]
fn a_secret_too_short_to_mask_safely_is_refused_before_anything_runs() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let mut cmd = rig.command(&["plan", rig.plan_str()]);
    cmd.env(common::SERVICE_PASSWORD_ENV, "pw1");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: the secret from environment variable {} has 3 character(s); upgrade needs at least 6",
            common::SERVICE_PASSWORD_ENV
        )),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("pw1"), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert!(
        rig.statements().is_empty(),
        "the server was asked: {}",
        rig.statements()
    );
}

#[test]
fn quiet_still_shows_the_plan_it_asks_a_person_to_approve() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let mut cmd = rig.command(&["apply", rig.plan_str(), "-q"]);
    cmd.env_remove("RUST_LOG");
    // At a terminal, answering `no`: the plan is shown, then the question, then the refusal.
    let (code, shown) = common::run_in_pty(cmd, "no\n");
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains(&format!("{GREEN_PLUS} database ")),
        "{shown}"
    );
    assert!(
        shown.contains("Do you want to apply these steps?"),
        "{shown}"
    );
    assert_eq!(rig.installed(), ["Identity Integration Feature Pack"]);
}

#[test]
fn at_a_terminal_every_line_fits_its_width_and_long_paths_lose_their_middle_not_their_end() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let extensions = rig.path(r"C:\Program Files\Microsoft Identity Integration Server\Extensions");
    let copy = rig.path(r"D:\Upgrade\Extensions");

    // Off a terminal and in JSON, every path whole; the manifest is named once, in the copy.
    let piped = rig.upgrade(&["plan", rig.plan_str()]);
    let shown = stdout(&piped);
    assert!(
        shown.contains(&format!(
            "copy: 3 file(s), 3234 bytes, {} -> {}\n      write: SHA256SUMS in the copy\n",
            extensions.display(),
            copy.display()
        )),
        "{shown}"
    );
    let json = rig.upgrade(&["plan", rig.plan_str(), "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let ops = &doc["steps"][2]["ops"];
    assert_eq!(
        ops[1]["path"],
        copy.join("SHA256SUMS").display().to_string(),
        "{ops}"
    );

    // At a terminal 80 columns wide, the plan and the apply fit.
    let mut cmd = rig.command(&["apply", rig.plan_str(), "--auto-approve"]);
    cmd.env_remove("RUST_LOG").env("TERM", "xterm");
    let (code, raw) = common::run_in_pty_of_width(cmd, "", 80);
    assert_eq!(code, Some(0), "{raw}");
    let lines = common::screen(&raw);
    for line in &lines {
        assert!(
            line.chars().count() <= 80,
            "wider than 80: {line:?}\n{lines:#?}"
        );
    }
    // The copy and the lines it goes on to, under it.
    let at = lines
        .iter()
        .position(|l| l.starts_with("      copy: 3 file(s)"))
        .expect("the copy operation");
    let copy_op: Vec<&str> = std::iter::once(lines[at].as_str())
        .chain(
            lines[at + 1..]
                .iter()
                .take_while(|l| l.starts_with("        "))
                .map(|l| l.trim_start()),
        )
        .collect();
    let copy_op = copy_op.join(" ");
    assert!(
        copy_op.contains("/.../Microsoft Identity Integration Server/Extensions -> /")
            && copy_op.ends_with("/.../Upgrade/Extensions"),
        "the middle of each path left out, its last two names kept: {copy_op}"
    );
    assert!(
        lines.contains(&"      write: SHA256SUMS in the copy".to_string()),
        "{lines:#?}"
    );
    // A result too long even with short paths goes on under its step.
    let removed = lines
        .iter()
        .position(|l| l.starts_with("  + remove-iifp: removed Identity Integration Feature Pack"))
        .expect("the uninstall's result");
    assert!(
        lines[removed + 1].starts_with("    {6A3C2F10-"),
        "{lines:#?}"
    );
}

#[test]
fn the_manual_page_is_generated_from_the_command_line_definitions() {
    use clap::CommandFactory;
    let man = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_upgrade"))
            .arg("man")
            .args(args)
            .output()
            .unwrap()
    };
    let out = man(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let page = stdout(&out);
    for part in [
        ".TH upgrade 1",
        ".SH NAME\nupgrade \\- Declarative upgrade\\-plan executor",
        ".SH SYNOPSIS",
        "\\fB\\-\\-no\\-color\\fR",
        "upgrade validate plans/iifp\\-to\\-miis2003.yaml",
    ] {
        assert!(page.contains(part), "no {part:?} in:\n{page}");
    }
    // Every command the parser knows has its line here and its own page.
    let cli = upgrade::cli::Cli::command();
    let commands: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
    assert!(
        commands.contains(&"apply") && commands.contains(&"man"),
        "{commands:?}"
    );
    for name in &commands {
        assert!(
            page.contains(&format!("upgrade\\-{name}(1)")),
            "{name}:\n{page}"
        );
        let own = man(&[name]);
        assert_eq!(own.status.code(), Some(0), "{}", text(&own));
        assert!(
            stdout(&own).contains(&format!(".TH upgrade-{name} 1")),
            "{}",
            stdout(&own)
        );
    }
    let unknown = man(&["aply"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("no manual page for `aply`; there is one for each of: validate,"),
        "{}",
        text(&unknown)
    );
}

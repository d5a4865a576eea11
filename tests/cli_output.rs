//! What `upgrade` prints for people and tools, against the rehearsal lab (TEST DOUBLE server and
//! stand-in tools): saved plans, the step graph, the journal, colour and quiet output.

mod common;

use common::{edit_plan, stdout, text, Driver, Rig};

#[test]
fn a_plan_that_cannot_converge_is_shown_but_not_saved() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    // The key tool is gone (removed with the old product?), and no key file was exported.
    let miiskmu = rig.lab.lab().tools().unwrap().miiskmu;
    edit_plan(
        &rig,
        &format!("miiskmu: '{}'", miiskmu.display()),
        &format!("miiskmu: '{}.gone'", miiskmu.display()),
    );
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
    for id in [
        "database",
        "keys",
        "extensions",
        "stop-sync",
        "before",
        "remove-iifp",
        "install-miis",
        "verify",
    ] {
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

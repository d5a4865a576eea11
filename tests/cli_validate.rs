//! The `upgrade` executable as an administrator runs it: validate, schema, help, version, exit codes.

use std::path::PathBuf;
use std::process::{Command, Output};

fn upgrade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upgrade"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .output()
        .expect("the upgrade binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_accepts_the_seed_plan_and_says_how_many_steps() {
    let out = upgrade(&["validate", "plans/iifp-to-miis2003.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "plans/iifp-to-miis2003.yaml is valid: 8 steps\n"
    );
}

#[test]
fn validate_rejects_a_bad_plan_with_every_diagnostic_on_stderr() {
    let out = upgrade(&["validate", "tests/bad_plans/many-errors-at-once.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    let diagnostics: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            l.starts_with("tests/bad_plans/many-errors-at-once.yaml:")
                && !l.contains("nothing was run")
        })
        .collect();
    assert_eq!(diagnostics.len(), 4, "{stderr}");
    assert!(stderr.contains(
        "many-errors-at-once.yaml:8:74: steps[0].backup_database.to: expected an absolute path"
    ));
    assert!(
        stderr.ends_with("4 problems; nothing was run\n"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"));
}

#[test]
fn validate_json_reports_the_same_diagnostics_as_data() {
    let out = upgrade(&[
        "validate",
        "--json",
        "tests/bad_plans/step-duplicate-ids.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(doc["valid"], false);
    let d = &doc["diagnostics"][0];
    assert_eq!(d["path"], "steps[1].id");
    assert_eq!(d["line"], 9);
    assert_eq!(d["column"], 9);

    let ok = upgrade(&["validate", "--json", "examples/minimal.yaml"]);
    assert_eq!(ok.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["steps"], 1);
    assert_eq!(doc["sha256"].as_str().map(str::len), Some(64));
}

#[test]
fn validate_of_a_missing_file_says_so_in_one_plain_line() {
    let out = upgrade(&["validate", "no-such-plan.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    // No `0:0: (plan)` position nor a problem count: the file is simply not there.
    assert_eq!(text(&out.stderr), "no-such-plan.yaml: no such file\n");
    assert!(out.stdout.is_empty());
}

#[test]
fn schema_prints_the_checked_in_schema() {
    let out = upgrade(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let checked_in = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/plan.schema.json"),
    )
    .unwrap();
    assert_eq!(text(&out.stdout), checked_in);
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let out = upgrade(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for needle in [
        "validate",
        "schema",
        "plan",
        "apply",
        "Examples:",
        "--detailed-exitcode",
        "Exit codes:",
        "RUST_LOG",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    let plan_help = text(&upgrade(&["plan", "--help"]).stdout);
    for flag in ["--out", "--json", "--detailed-exitcode", "--state"] {
        assert!(plan_help.contains(flag), "plan --help lacks {flag}");
    }
    let apply_help = text(&upgrade(&["apply", "--help"]).stdout);
    for flag in ["--auto-approve", "--json", "--state"] {
        assert!(apply_help.contains(flag), "apply --help lacks {flag}");
    }
}

#[test]
fn version_prints_the_package_version() {
    let out = upgrade(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("upgrade {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_usage_error_exits_1_not_2_which_means_changes_pending() {
    for args in [
        &["frobnicate"][..],
        &["apply"][..],
        &["plan", "x.yaml", "--no-such-flag"][..],
        &[][..],
    ] {
        let out = upgrade(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "upgrade {args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn quiet_validate_prints_nothing_on_success() {
    let out = upgrade(&["-q", "validate", "examples/minimal.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
}

#[test]
fn verbose_flags_raise_the_log_level_on_stderr_only() {
    let out = upgrade(&["-vvv", "validate", "examples/minimal.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "examples/minimal.yaml is valid: 1 step\n"
    );
}

#[test]
fn plan_and_apply_refuse_an_invalid_plan_with_its_diagnostics_and_exit_1() {
    for args in [
        &["plan", "tests/bad_plans/uninstall-unprotected.yaml"][..],
        &[
            "apply",
            "--auto-approve",
            "tests/bad_plans/uninstall-unprotected.yaml",
        ][..],
    ] {
        let out = upgrade(args);
        assert_eq!(out.status.code(), Some(1), "upgrade {args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(
                "uninstall-unprotected.yaml:8:5: steps[0].uninstall: an uninstall must come after"
            ),
            "upgrade {args:?}: {stderr}"
        );
    }
}

#[test]
fn validate_never_writes_a_control_character_from_the_plan_to_the_terminal() {
    // YAML's `\e` escape puts an escape sequence into a key and into a path; diagnostics that
    // repeat them (an unknown field, a path that is not absolute) must show them escaped.
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        concat!(
            "version: 1\n",
            "name: bad\n",
            "server: { sql: { host: sql01, auth: windows } }\n",
            "steps:\n",
            "  - id: database\n",
            "    backup_database: { database: MIIS, to: \"D:\\e[2J\\a\\u202ex.bak\" }\n",
            "\"extra\\e]0;pwned\\a\": 1\n",
        ),
    )
    .unwrap();
    let out = upgrade(&["validate", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains(['\x1b', '\x07', '\u{202e}']),
        "raw control characters on stderr: {stderr:?}"
    );
    assert!(
        stderr.contains("unknown field `extra\\u{1b}]0;pwned\\u{7}`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("found `D:\\u{1b}[2J\\u{7}\\u{202e}x.bak`"),
        "{stderr}"
    );
}

//! The `--json` documents of `upgrade plan` and `upgrade apply` have a published JSON Schema
//! (`schemas/plan-output.schema.json`, `schemas/apply-output.schema.json`), derived from the types
//! that print them: the checked-in copies are current, and real documents from the rehearsal lab
//! (TEST DOUBLE server and stand-in tools) pass them under a real JSON Schema validator.

mod common;

use std::path::PathBuf;

use common::{text, Driver, Rig};

fn checked_in(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name);
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn the_checked_in_output_schemas_are_what_upgrade_schema_prints() {
    for (output, file) in [
        ("plan", "plan-output.schema.json"),
        ("apply", "apply-output.schema.json"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_upgrade"))
            .args(["schema", "--output", output])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout) == checked_in(file),
            "schemas/{file} is stale; regenerate it with:\n    \
             cargo run -q -- schema --output {output} > schemas/{file}"
        );
    }
}

/// Every way `doc` breaks the checked-in schema `file`.
fn violations(file: &str, doc: &serde_json::Value) -> Vec<String> {
    let schema: serde_json::Value = serde_json::from_str(&checked_in(file)).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Runs `upgrade ARGS` and parses its standard output as one JSON document.
fn json_of(rig: &Rig, args: &[&str], code: i32) -> serde_json::Value {
    let out = rig.upgrade(args);
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

#[test]
fn plan_documents_pass_their_schema_before_and_after_an_apply() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let before = json_of(&rig, &["plan", rig.plan_str(), "--json"], 0);
    assert_eq!(before["summary"]["to_do"], 7);
    assert_eq!(before["format_version"], 1);
    assert_eq!(
        violations("plan-output.schema.json", &before),
        Vec::<String>::new()
    );

    let applied = json_of(
        &rig,
        &["apply", rig.plan_str(), "--json", "--auto-approve"],
        0,
    );
    assert_eq!(applied["ok"], true);
    assert_eq!(applied["format_version"], 1);
    assert_eq!(
        violations("apply-output.schema.json", &applied),
        Vec::<String>::new()
    );

    let after = json_of(&rig, &["plan", rig.plan_str(), "--json"], 0);
    assert_eq!(after["summary"]["done"], 8);
    assert_eq!(
        violations("plan-output.schema.json", &after),
        Vec::<String>::new()
    );
}

#[test]
fn a_failed_apply_and_a_blocked_plan_pass_their_schemas_too() {
    let rig = Rig::iifp(Driver::Tds, &["msiexec-1603"]);
    let failed = json_of(
        &rig,
        &["apply", rig.plan_str(), "--json", "--auto-approve"],
        1,
    );
    assert_eq!(failed["ok"], false);
    assert!(
        failed["error"].as_str().unwrap().contains("1603"),
        "{failed:#}"
    );
    assert_eq!(
        violations("apply-output.schema.json", &failed),
        Vec::<String>::new()
    );

    // The old product is still there, its key file exported: remove both and the key tool
    // with it, and the keys step cannot converge.
    let miiskmu = rig.lab.lab().tools().unwrap().miiskmu;
    std::fs::remove_file(&miiskmu).unwrap();
    std::fs::remove_file(rig.path(r"D:\Upgrade\miis-keys.bin")).unwrap();
    let blocked = json_of(&rig, &["plan", rig.plan_str(), "--json"], 1);
    assert!(
        blocked["summary"]["blocked"].as_u64().unwrap() >= 1,
        "{blocked:#}"
    );
    assert_eq!(
        violations("plan-output.schema.json", &blocked),
        Vec::<String>::new()
    );
}

#[test]
fn a_document_that_breaks_the_schema_is_caught() {
    // The check above can fail: a plan document without its summary does not pass.
    let rig = Rig::iifp(Driver::Tds, &[]);
    let mut doc = json_of(&rig, &["plan", rig.plan_str(), "--json"], 0);
    doc.as_object_mut().unwrap().remove("summary");
    doc["steps"][0]["action"] = "explode".into();
    assert_eq!(
        violations("plan-output.schema.json", &doc).len(),
        2,
        "{doc:#}"
    );
}

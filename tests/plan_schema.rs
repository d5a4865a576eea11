//! The checked-in JSON Schema is what `upgrade schema` prints, and it describes steps sensibly.

use std::path::PathBuf;

#[test]
fn the_checked_in_schema_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/plan.schema.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let current = upgrade::plan::schema::plan_schema_json();
    assert!(
        checked_in == current,
        "schemas/plan.schema.json is stale; regenerate it with:\n    cargo run -q -- schema > schemas/plan.schema.json"
    );
}

#[test]
fn each_step_kind_is_one_alternative_with_the_common_fields_and_nothing_else() {
    let schema: serde_json::Value =
        serde_json::from_str(&upgrade::plan::schema::plan_schema_json()).unwrap();
    let step = &schema["definitions"]["StepSpec"];
    let kinds = step["oneOf"].as_array().expect("oneOf of kinds");
    let names: Vec<&str> = kinds
        .iter()
        .map(|k| {
            assert_eq!(k["additionalProperties"], false);
            let required: Vec<&str> = k["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert!(required.contains(&"id"));
            for common in ["id", "after", "description"] {
                assert!(
                    k["properties"].get(common).is_some(),
                    "{common} missing in {k}"
                );
            }
            required.into_iter().find(|r| *r != "id").unwrap()
        })
        .collect();
    assert_eq!(names, upgrade::plan::load::kind_names());
}

#[test]
fn checked_values_carry_their_patterns() {
    let schema: serde_json::Value =
        serde_json::from_str(&upgrade::plan::schema::plan_schema_json()).unwrap();
    for def in [
        "AbsPath",
        "ProductCode",
        "Sha256Hex",
        "HexPrefix",
        "StepId",
        "DurationText",
    ] {
        assert!(
            schema["definitions"][def]["pattern"].is_string(),
            "{def} has no pattern"
        );
    }
}

#[test]
fn a_timeout_and_its_old_spelling_are_never_both_allowed() {
    let schema: serde_json::Value =
        serde_json::from_str(&upgrade::plan::schema::plan_schema_json()).unwrap();
    for def in ["ExportKeys", "ServiceControl", "Uninstall", "Install"] {
        let d = &schema["definitions"][def];
        assert_eq!(
            d["properties"]["timeout"]["anyOf"][0]["$ref"],
            "#/definitions/Duration"
        );
        assert_eq!(d["properties"]["timeout_secs"]["deprecated"], true, "{def}");
        assert_eq!(
            d["not"],
            serde_json::json!({ "required": ["timeout", "timeout_secs"] }),
            "{def}"
        );
    }
}

#[test]
fn a_search_has_exactly_one_of_its_three_ways_in_the_schema_too() {
    let schema: serde_json::Value =
        serde_json::from_str(&upgrade::plan::schema::plan_schema_json()).unwrap();
    let search = &schema["definitions"]["Search"];
    assert_eq!(search["additionalProperties"], false);
    for key in ["dn_prefix", "anchor_prefix", "subtree"] {
        assert!(search["properties"].get(key).is_some(), "{key} not allowed");
    }
    assert_eq!(
        search["oneOf"],
        serde_json::json!([
            { "required": ["dn_prefix"] },
            { "required": ["anchor_prefix"] },
            { "required": ["subtree"] },
        ])
    );
}

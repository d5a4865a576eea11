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

/// Every plan file a user is handed (shipped plans, examples, the lab's examples), found on disk.
fn shipped_plan_files() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["plans", "examples", "examples/lab"] {
        let entries = std::fs::read_dir(root.join(dir)).unwrap();
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// A YAML document as an editor's YAML language server reads it (YAML 1.2's core schema, where
/// an unquoted run of digits such as `000...0` is the number 0), turned into JSON. serde_yaml
/// is more lenient (digits with a leading zero stay text), so it would hide what editors flag.
fn yaml_1_2_as_json(yaml: &yaml_rust2::Yaml) -> serde_json::Value {
    use yaml_rust2::Yaml;
    match yaml {
        Yaml::Null => serde_json::Value::Null,
        Yaml::Boolean(b) => serde_json::Value::Bool(*b),
        Yaml::Integer(i) => serde_json::Value::from(*i),
        Yaml::Real(r) => serde_json::Value::from(r.parse::<f64>().unwrap()),
        Yaml::String(s) => serde_json::Value::String(s.clone()),
        Yaml::Array(items) => items.iter().map(yaml_1_2_as_json).collect(),
        Yaml::Hash(map) => map
            .iter()
            .map(|(k, v)| {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    other => panic!("a plan's keys are text, found {other:?}"),
                };
                (key, yaml_1_2_as_json(v))
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => panic!("no aliases or bad values in a shipped plan, found {other:?}"),
    }
}

#[test]
fn every_shipped_plan_and_example_passes_the_checked_in_schema_as_an_editor_reads_it() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/plan.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    let files = shipped_plan_files();
    assert!(
        files.len() >= 5,
        "expected the shipped plans and examples, found {files:?}"
    );
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let documents = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
        let instance = yaml_1_2_as_json(&documents[0]);
        for error in validator.iter_errors(&instance) {
            failures.push(format!(
                "{}: {}: {error}",
                file.display(),
                error.instance_path()
            ));
        }
        // And the loader agrees that it is a valid plan.
        if let Err(diags) = upgrade::plan::load(file) {
            failures.push(format!(
                "{}: the loader refuses it:\n{diags}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
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

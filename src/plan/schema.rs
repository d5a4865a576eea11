//! The plan language's JSON Schema, derived from the types in `types` (never written by hand).
//! `upgrade schema` prints it; `schemas/plan.schema.json` is a checked-in copy that a test keeps
//! current. Two adjustments: `StepSpec`, whose kind is flattened into the step mapping, and the
//! rule that an old spelling (`timeout_secs`) never stands beside the new one (`timeout`).

use schemars::schema::{RootSchema, Schema, SchemaObject};

use super::types::{requiring, Plan};

/// The JSON Schema of a plan file.
pub fn plan_schema() -> RootSchema {
    let mut root = schemars::schema_for!(Plan);
    if let Some(Schema::Object(step)) = root.definitions.get_mut("StepSpec") {
        merge_step_fields_into_kinds(step);
    }
    for definition in root.definitions.values_mut() {
        if let Schema::Object(definition) = definition {
            forbid_both_spellings(definition, "timeout", "timeout_secs");
        }
    }
    root
}

/// An object that has both `new` and its old spelling `old` may hold one of them, not both
/// (`not: {required: [new, old]}`), as validation says.
fn forbid_both_spellings(definition: &mut SchemaObject, new: &str, old: &str) {
    let has = |name: &str| {
        definition
            .object
            .as_ref()
            .is_some_and(|o| o.properties.contains_key(name))
    };
    if !(has(new) && has(old)) {
        return;
    }
    definition.subschemas().not = Some(Box::new(requiring(&[new, old])));
}

/// schemars renders `StepSpec` as the common fields (`id`, `after`, `description`) beside a
/// `oneOf` of kinds that each forbid every other key, so no step could match. Move the common
/// fields into each kind's alternative: each alternative then reads "id, after, description and
/// exactly this kind key, nothing else", which is what the loader enforces.
fn merge_step_fields_into_kinds(step: &mut SchemaObject) {
    let Some(common) = step.object.take() else {
        return;
    };
    let Some(kinds) = step.subschemas.as_mut().and_then(|s| s.one_of.as_mut()) else {
        step.object = Some(common);
        return;
    };
    for kind in kinds.iter_mut() {
        if let Schema::Object(kind) = kind {
            let object = kind.object();
            for (name, schema) in &common.properties {
                object.properties.insert(name.clone(), schema.clone());
            }
            object.required.extend(common.required.iter().cloned());
        }
    }
}

/// The schema as the pretty-printed JSON `upgrade schema` prints (with a final newline).
pub fn plan_schema_json() -> String {
    // Invariant: a schemars schema is plain JSON data and always serializes.
    let mut text = serde_json::to_string_pretty(&plan_schema()).expect("schema serializes");
    text.push('\n');
    text
}

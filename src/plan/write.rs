//! A plan written back as plan-language YAML, the text `load` reads: what a tool that rewrites a
//! plan (the lab's rehearse) saves. serde_yaml writes an enum's variant as a YAML tag (`!env NAME`),
//! which plans refuse; here it becomes the one-key mapping plans use (`{env: NAME}`). Writes no file.

use serde_yaml::{Mapping, Value};

use super::types::Plan;

/// The plan as YAML text that `load_str` reads back as the same plan.
pub fn to_yaml(plan: &Plan) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&untagged(serde_yaml::to_value(plan)?))
}

/// `!variant value` -> `{variant: value}`, everywhere in the tree.
fn untagged(value: Value) -> Value {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let mut one = Mapping::new();
            one.insert(
                Value::String(tag.trim_start_matches('!').to_string()),
                untagged(tagged.value),
            );
            Value::Mapping(one)
        }
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(untagged).collect()),
        Value::Mapping(map) => {
            Value::Mapping(map.into_iter().map(|(k, v)| (k, untagged(v))).collect())
        }
        scalar @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)) => scalar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_str;

    #[test]
    fn a_plan_written_back_reads_as_the_same_plan_without_yaml_tags() {
        // The example that names every field of the plan language at least once.
        let every = include_str!("../../examples/every-field.yaml");
        let plan = load_str("every-field.yaml", every).unwrap().plan;
        let text = to_yaml(&plan).unwrap();
        assert!(!text.contains('!'), "a YAML tag was written:\n{text}");
        let again = match load_str("written.yaml", &text) {
            Ok(loaded) => loaded.plan,
            Err(d) => panic!("the written plan does not load:\n{d}\n{text}"),
        };
        assert_eq!(to_yaml(&again).unwrap(), text);
        assert!(text.contains("env: MIIS_SERVICE_PASSWORD"), "{text}");
    }
}

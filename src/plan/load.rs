//! Reading a plan file: YAML into a node tree with positions, then each top-level field and each
//! step into its type separately (so one bad step does not hide another), then the semantic checks
//! of `validate`. Every problem comes back at once as `Diagnostics`; nothing here touches the server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Node};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::diagnostics::{Diagnostic, Diagnostics};
use super::node_de::{self, NodeError, Position};
use super::source;
use super::suggest;
use super::types::{Plan, StepKind, StepSpec};
use super::validate;

/// A plan that loaded and passed validation, with the text and hash it came from.
#[derive(Debug, Clone)]
pub struct LoadedPlan {
    /// The file as given (for `load_str`, the name given).
    pub path: PathBuf,
    /// The file's text.
    pub source: String,
    /// sha256 of the file's bytes, in lowercase hex.
    pub sha256: String,
    pub plan: Plan,
}

/// Reads, parses and validates the plan at `path`.
pub fn load(path: &Path) -> Result<LoadedPlan, Diagnostics> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: file.clone(),
            line: 0,
            column: 0,
            path: String::new(),
            message: unreadable(&e),
        }])
    })?;
    let text = source::decode(bytes).map_err(|p| text_diagnostics(&file, vec![p]))?;
    let mut loaded = load_str(&file, &text)?;
    loaded.path = path.to_path_buf();
    Ok(loaded)
}

/// Why a plan file cannot be read, in plain words for the common cases.
fn unreadable(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::IsADirectory => "is a folder, not a plan file".to_string(),
        std::io::ErrorKind::PermissionDenied => {
            "cannot read the plan file: permission denied".to_string()
        }
        _ => format!("cannot read the plan file: {e}"),
    }
}

/// Parses and validates plan text; `file_name` is used in diagnostics.
pub fn load_str(file_name: &str, text: &str) -> Result<LoadedPlan, Diagnostics> {
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    let yaml = source::yaml_text(text).map_err(|p| text_diagnostics(file_name, p))?;
    let root = marked_yaml::parse_yaml_with_options(0, yaml, options)
        .map_err(|e| Diagnostics(vec![syntax_diagnostic(file_name, &e)]))?;
    if let Some(p) = source::second_document(yaml) {
        return Err(text_diagnostics(file_name, vec![p]));
    }
    let mut out = Diagnostics(Vec::new());
    let mut report = |path: String, pos: Position, message: String| {
        out.0.push(Diagnostic {
            file: file_name.to_string(),
            line: pos.line,
            column: pos.column,
            path,
            message,
        })
    };
    // Structure first: the semantic checks need a whole plan.

    let plan = match read_plan(&root) {
        Ok(plan) => Some(plan),
        Err(errors) => {
            for e in errors {
                let (path, pos) = e.location.unwrap_or_default();
                report(path, pos, e.message);
            }
            None
        }
    };
    if let Some(plan) = &plan {
        let positions = PositionIndex::new(&root);
        for problem in validate::check(plan) {
            let pos = positions.find(&problem.path);
            report(problem.path, pos, problem.message);
        }
    }
    let plan = match plan {
        Some(plan) if out.is_empty() => plan,
        _ => {
            out.sort();
            return Err(out);
        }
    };
    Ok(LoadedPlan {
        path: PathBuf::from(file_name),
        source: text.to_string(),
        sha256: hex::encode(Sha256::digest(text.as_bytes())),
        plan,
    })
}

fn text_diagnostics(file: &str, problems: Vec<source::TextProblem>) -> Diagnostics {
    Diagnostics(
        problems
            .into_iter()
            .map(|p| Diagnostic {
                file: file.to_string(),
                line: p.line,
                column: p.column,
                path: String::new(),
                message: p.message,
            })
            .collect(),
    )
}

fn syntax_diagnostic(file: &str, e: &LoadError) -> Diagnostic {
    let at = |m: &marked_yaml::Marker| (m.line(), m.column());
    let ((line, column), message) = match e {
        LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => (
            at(m),
            "a plan is a YAML mapping (version:, name:, server:, steps:, ...)".to_string(),
        ),
        LoadError::UnexpectedAnchor(m) => (
            at(m),
            "YAML anchors and aliases are not supported in plans".to_string(),
        ),
        LoadError::MappingKeyMustBeScalar(m) => {
            (at(m), "a mapping key must be plain text".to_string())
        }
        LoadError::UnexpectedTag(m) => (
            at(m),
            "YAML tags (`!name`) are not supported in plans".to_string(),
        ),
        LoadError::ScanError(m, scan) => (at(m), format!("YAML syntax error: {}", scan.info())),
        LoadError::DuplicateKey(dup) => {
            let first = Position::of(dup.prev_key.span());
            (
                {
                    let p = Position::of(dup.key.span());
                    (p.line, p.column)
                },
                format!(
                    "duplicate key `{}` (first at line {}, column {})",
                    dup.key.as_str(),
                    first.line,
                    first.column
                ),
            )
        }
    };
    let path = match e {
        LoadError::DuplicateKey(dup) => dup.key.as_str().to_string(),
        _ => String::new(),
    };
    Diagnostic {
        file: file.to_string(),
        line,
        column,
        path,
        message,
    }
}

const TOP_LEVEL: &[&str] = &[
    "version",
    "name",
    "description",
    "server",
    "state",
    "tools",
    "steps",
];
const REQUIRED_TOP_LEVEL: &[&str] = &["version", "name", "server", "steps"];

/// Deserializes a field if present, recording its error otherwise.
fn field<T: DeserializeOwned>(
    map: &MarkedMappingNode,
    key: &str,
    parent: &str,
    errors: &mut Vec<NodeError>,
) -> Option<T> {
    let node = map.get_node(key)?;
    match node_de::from_node::<T>(node, &node_de::join(parent, key)) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

fn unknown_keys(
    map: &MarkedMappingNode,
    parent: &str,
    known: &[&str],
    expected: &str,
    errors: &mut Vec<NodeError>,
) {
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            errors.push(unknown_key(key, parent, known, expected));
        }
    }
}

/// "unknown field `x`; did you mean `y`?" when one known name is near, else the whole list.
fn unknown_key(key: &MarkedScalarNode, parent: &str, known: &[&str], expected: &str) -> NodeError {
    let message = match suggest::did_you_mean(key.as_str(), known) {
        Some(hint) => format!("unknown field `{}`; {hint}", key.as_str()),
        None => format!("unknown field `{}`, expected {expected}", key.as_str()),
    };
    NodeError {
        message,
        location: Some((
            node_de::join(parent, key.as_str()),
            Position::of(key.span()),
        )),
    }
}

fn first_key_or_start(map: &MarkedMappingNode) -> Position {
    match map.keys().next() {
        Some(first) => Position::of(first.span()),
        None => Position::of(map.span()),
    }
}

/// A required key that is absent, unless a key present is that key misspelt (the unknown key's
/// "did you mean" already says it: one problem, said once). `known` is every key the mapping
/// accepts.
fn missing(
    map: &MarkedMappingNode,
    parent: &str,
    required: &[&str],
    known: &[&str],
    errors: &mut Vec<NodeError>,
) {
    let misspelt: Vec<&str> = map
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .filter_map(|k| suggest::nearest(k.as_str(), known))
        .collect();
    for key in required {
        if map.get_node(key).is_none() && !misspelt.contains(key) {
            errors.push(NodeError {
                message: format!("missing field `{key}`"),
                location: Some((parent.to_string(), first_key_or_start(map))),
            });
        }
    }
}

fn read_plan(root: &Node) -> Result<Plan, Vec<NodeError>> {
    let mut errors = Vec::new();
    let Some(map) = root.as_mapping() else {
        return Err(vec![NodeError {
            message: "a plan is a YAML mapping (version:, name:, server:, steps:, ...)".to_string(),
            location: Some((String::new(), Position::of_node(root))),
        }]);
    };
    if map.is_empty() {
        return Err(vec![NodeError {
            message: "the plan is empty; a plan has version:, name:, server: and steps:"
                .to_string(),
            location: Some((String::new(), Position { line: 1, column: 1 })),
        }]);
    }
    unknown_keys(map, "", TOP_LEVEL, &node_de::one_of(TOP_LEVEL), &mut errors);
    missing(map, "", REQUIRED_TOP_LEVEL, TOP_LEVEL, &mut errors);
    let version = field(map, "version", "", &mut errors);
    let name = field(map, "name", "", &mut errors);
    let description = field(map, "description", "", &mut errors).flatten();
    let server = field(map, "server", "", &mut errors);
    let state = field(map, "state", "", &mut errors).flatten();
    let tools = field(map, "tools", "", &mut errors).unwrap_or_default();
    let steps = map
        .get_node("steps")
        .map(|node| read_steps(node, &mut errors));
    match (version, name, server, steps) {
        (Some(version), Some(name), Some(server), Some(Some(steps))) if errors.is_empty() => {
            Ok(Plan {
                version,
                name,
                description,
                server,
                state,
                tools,
                steps,
            })
        }
        _ => Err(errors),
    }
}

fn read_steps(node: &Node, errors: &mut Vec<NodeError>) -> Option<Vec<StepSpec>> {
    let Some(seq) = node.as_sequence() else {
        errors.push(NodeError {
            message: "expected a list of steps".to_string(),
            location: Some(("steps".to_string(), Position::of_node(node))),
        });
        return None;
    };
    let before = errors.len();
    let steps: Vec<StepSpec> = seq
        .iter()
        .enumerate()
        .filter_map(|(i, item)| read_step(item, &node_de::index("steps", i), errors))
        .collect();
    (errors.len() == before).then_some(steps)
}

const STEP_FIELDS: &[&str] = &["id", "after", "description"];

fn read_step(node: &Node, path: &str, errors: &mut Vec<NodeError>) -> Option<StepSpec> {
    let Some(map) = node.as_mapping() else {
        errors.push(NodeError {
            message: format!(
                "expected a step (a mapping with `id` and one kind: {})",
                kind_names().join(", ")
            ),
            location: Some((path.to_string(), Position::of_node(node))),
        });
        return None;
    };
    let before = errors.len();
    let kinds = kind_names();
    let mut known: Vec<&str> = STEP_FIELDS.to_vec();
    known.extend(kinds);
    let expected = format!(
        "one of id, after, description, or a step kind: {}",
        kinds.join(", ")
    );
    // An unknown key that is not a misspelt `id`, `after` or `description` is taken for the
    // step's kind, misspelt: the one problem reported for it (not also "a step needs a kind";
    // its message names the kinds).
    let mut kind_misspelt = false;
    for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
        let near = suggest::nearest(key.as_str(), &known);
        kind_misspelt |= !near.is_some_and(|n| STEP_FIELDS.contains(&n));
        errors.push(unknown_key(key, path, &known, &expected));
    }
    missing(map, path, &["id"], &known, errors);
    let id = field(map, "id", path, errors);
    let after = field::<Option<_>>(map, "after", path, errors)
        .flatten()
        .unwrap_or_default();
    let description = field(map, "description", path, errors).flatten();

    let kind_entries: Vec<_> = map
        .iter()
        .filter(|(k, _)| kinds.contains(&k.as_str()))
        .collect();
    let kind = match kind_entries.as_slice() {
        [] if kind_misspelt => None,
        [] => {
            errors.push(NodeError {
                message: format!("a step needs exactly one kind: {}", kinds.join(", ")),
                location: Some((path.to_string(), first_key_or_start(map))),
            });
            None
        }
        [(key, value)] => match node_de::from_enum_entry::<StepKind>(key, value, path) {
            Ok(kind) => Some(kind),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        [(first, _), rest @ ..] => {
            for (key, _) in rest {
                errors.push(NodeError {
                    message: format!(
                        "a step has exactly one kind; this one already is `{}`, so `{}` must be a step of its own",
                        first.as_str(),
                        key.as_str()
                    ),
                    location: Some((node_de::join(path, key.as_str()), Position::of(key.span()))),
                });
            }
            None
        }
    };
    match (id, kind) {
        (Some(id), Some(kind)) if errors.len() == before => Some(StepSpec {
            id,
            after,
            description,
            kind,
        }),
        _ => None,
    }
}

/// The YAML names of the step kinds, from serde's own list of `StepKind`'s variants.
pub fn kind_names() -> &'static [&'static str] {
    node_de::enum_variants::<StepKind>()
}

/// Field paths to positions: containers point at their key, scalars at their value.
struct PositionIndex {
    at: HashMap<String, Position>,
}

impl PositionIndex {
    fn new(root: &Node) -> Self {
        let mut at = HashMap::new();
        at.insert(String::new(), Position::of_node(root));
        Self::walk(root, "", &mut at);
        PositionIndex { at }
    }

    fn walk(node: &Node, path: &str, at: &mut HashMap<String, Position>) {
        match node {
            Node::Scalar(_) => {}
            Node::Mapping(m) => {
                for (k, v) in m.iter() {
                    let p = node_de::join(path, k.as_str());
                    let pos = match v {
                        Node::Scalar(_) => Position::of(v.span()),
                        _ => Position::of(k.span()),
                    };
                    at.insert(p.clone(), pos);
                    Self::walk(v, &p, at);
                }
            }
            Node::Sequence(s) => {
                for (i, v) in s.iter().enumerate() {
                    let p = node_de::index(path, i);
                    at.insert(p.clone(), Position::of_node(v));
                    Self::walk(v, &p, at);
                }
            }
        }
    }

    /// The position of `path`, or of its nearest ancestor present in the file.
    fn find(&self, path: &str) -> Position {
        let mut p = path;
        loop {
            if let Some(pos) = self.at.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(cut) => p = &p[..cut],
                None => return self.at.get("").copied().unwrap_or_default(),
            }
        }
    }
}

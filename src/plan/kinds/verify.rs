//! `verify`: the plan's checks after the upgrade.
//! Its spec, and what the plan language knows of it (`KindSpec`): the steps it names, the
//! secrets it holds, and its checks.

use schemars::schema::Schema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KindSpec, PathField, Problems, SecretField, Where};
use crate::graph::Reference;
use crate::types::*;

use crate::graph;
use crate::values::*;

/// Checks after the upgrade.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// Connector-space counts must equal a snapshot step's, per management agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector_space: Option<ConnectorSpaceCheck>,
    /// Searches like the GUI's "Search Connector Space".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<Search>,
    /// Windows services that must be running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceCheck>,
    /// Commands with expected exit code and output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandCheck>,
    /// SQL queries with an expected scalar.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sql: Vec<SqlCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSpaceCheck {
    /// The id of a `snapshot_connector_space` step.
    pub same_as: StepId,
}

/// A connector-space search: one management agent, and a DN prefix, an anchor prefix or a sub-tree.
/// In YAML the three ways are sibling keys of which exactly one is given (`SearchFields`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "SearchFields", into = "SearchFields")]
pub struct Search {
    /// Database to search; default: the snapshot step's database, else the first backup's.
    pub database: Option<String>,
    pub management_agent: String,
    /// Which objects count.
    pub by: SearchBy,
    /// At least this many objects must match (default 1).
    pub min_count: u64,
}

/// The one way a search picks objects; its YAML key is the variant's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchBy {
    /// `dn_prefix`: objects whose DN starts with this text (any case).
    DnPrefix(String),
    /// `anchor_prefix`: objects whose binary anchor starts with these hex digits.
    AnchorPrefix(HexPrefix),
    /// `subtree`: the object with this DN and every object under it.
    Subtree(String),
}

/// The YAML keys of `SearchBy`, in its order.
const SEARCH_BY: [&str; 3] = ["dn_prefix", "anchor_prefix", "subtree"];

/// A connector-space search as the plan file writes it: one management agent, and exactly one of
/// `dn_prefix`, `anchor_prefix` or `subtree` (sibling keys).
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchFields {
    /// Database to search; default: the snapshot step's database, else the first backup's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    database: Option<String>,
    management_agent: String,
    /// Objects whose DN starts with this text (any case), e.g. `CN=Administrator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dn_prefix: Option<String>,
    /// Hex digits the object's binary anchor starts with (any case, `0x` allowed), e.g. `0x0A1B`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    anchor_prefix: Option<HexPrefix>,
    /// The DN of a sub-tree: the object itself and every object under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subtree: Option<String>,
    /// At least this many objects must match (default 1).
    #[serde(default = "default_one")]
    min_count: u64,
}

impl TryFrom<SearchFields> for Search {
    type Error = String;

    fn try_from(f: SearchFields) -> Result<Search, String> {
        let by = match (f.dn_prefix, f.anchor_prefix, f.subtree) {
            (Some(dn), None, None) => SearchBy::DnPrefix(dn),
            (None, Some(anchor), None) => SearchBy::AnchorPrefix(anchor),
            (None, None, Some(tree)) => SearchBy::Subtree(tree),
            (dn, anchor, tree) => {
                let given: Vec<&str> = [dn.is_some(), anchor.is_some(), tree.is_some()]
                    .into_iter()
                    .zip(SEARCH_BY)
                    .filter_map(|(set, name)| set.then_some(name))
                    .collect();
                return Err(format!(
                    "a search needs exactly one of dn_prefix, anchor_prefix or subtree; found {}",
                    if given.is_empty() {
                        "none".to_string()
                    } else {
                        given.join(" and ")
                    }
                ));
            }
        };
        Ok(Search {
            database: f.database,
            management_agent: f.management_agent,
            by,
            min_count: f.min_count,
        })
    }
}

impl From<Search> for SearchFields {
    fn from(s: Search) -> SearchFields {
        let (mut dn_prefix, mut anchor_prefix, mut subtree) = (None, None, None);
        match s.by {
            SearchBy::DnPrefix(dn) => dn_prefix = Some(dn),
            SearchBy::AnchorPrefix(anchor) => anchor_prefix = Some(anchor),
            SearchBy::Subtree(tree) => subtree = Some(tree),
        }
        SearchFields {
            database: s.database,
            management_agent: s.management_agent,
            dn_prefix,
            anchor_prefix,
            subtree,
            min_count: s.min_count,
        }
    }
}

/// `SearchFields`' object with `oneOf` the three keys, each alternative requiring its own: exactly
/// one is given. (The keys stay in the object's `properties`, so `additionalProperties: false`
/// still admits them.)
impl JsonSchema for Search {
    fn schema_name() -> String {
        "Search".to_string()
    }

    fn json_schema(gen: &mut schemars::gen::SchemaGenerator) -> Schema {
        let mut schema = match SearchFields::json_schema(gen) {
            Schema::Object(object) => object,
            other => return other,
        };
        schema.subschemas().one_of = Some(SEARCH_BY.iter().map(|k| requiring(&[k])).collect());
        schema.into()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceCheck {
    /// Service name, e.g. `miiserver` or `FIMSynchronizationService`.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    /// Program and arguments.
    pub run: Vec<String>,
    /// Expected exit code (default 0).
    #[serde(default)]
    pub exit_code: i32,
    /// Regular expression the standard output must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_matches: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlCheck {
    pub database: String,
    /// A query returning one value.
    pub query: String,
    /// The value, as text.
    pub expect: String,
}

fn default_one() -> u64 {
    1
}

impl KindSpec for Verify {
    fn references(&self) -> Vec<Reference<'_>> {
        self.connector_space
            .iter()
            .map(|cs| Reference {
                field: "verify.connector_space.same_as",
                target: &cs.same_as,
                required_kind: "snapshot_connector_space",
            })
            .collect()
    }
    fn secrets(&self) -> Vec<SecretField<'_>> {
        Vec::new()
    }
    fn paths(&self) -> Vec<PathField<'_>> {
        Vec::new()
    }
    fn validate(&self, w: &Where<'_>, p: &mut Problems) {
        check_verify(self, w.at, p);
        check_snapshot_before_upgrade(w.plan, w.index, self, w.at, p);
    }
}

/// The snapshot a verify step compares with must be taken before every uninstall or install that
/// the verify comes after; otherwise, on a fresh state or a lost journal, it could be taken on the
/// upgraded server and verify would compare the new server with itself.
pub(crate) fn check_snapshot_before_upgrade(
    plan: &Plan,
    index: usize,
    v: &Verify,
    at: &str,
    p: &mut Problems,
) {
    let Some(cs) = &v.connector_space else {
        return;
    };
    let ids = graph::index_by_id(plan);
    let Some(&snapshot) = ids.get(&cs.same_as) else {
        return; // reported as an unknown reference
    };
    for j in graph::prerequisites(plan, index) {
        let upgrades = matches!(
            plan.steps[j].kind,
            StepKind::Uninstall(_) | StepKind::Install(_)
        );
        if upgrades && !graph::prerequisites(plan, j).contains(&snapshot) {
            p.add(
                format!("{at}.connector_space.same_as"),
                format!(
                    "snapshot `{}` must be taken before `{}` (list it in that step's `after:`): \
                     taken after it, it would describe the upgraded server and verify would \
                     compare the new server with itself",
                    cs.same_as, plan.steps[j].id
                ),
            );
        }
    }
}

pub(crate) fn check_verify(v: &Verify, at: &str, p: &mut Problems) {
    if v.connector_space.is_none()
        && v.search.is_empty()
        && v.services.is_empty()
        && v.commands.is_empty()
        && v.sql.is_empty()
    {
        p.add(
            at,
            "a verify step needs at least one check: connector_space, search, services, commands or sql",
        );
    }
    for (k, c) in v.commands.iter().enumerate() {
        if c.run.is_empty() {
            p.add(
                format!("{at}.commands[{k}].run"),
                "`run` needs at least the program to run",
            );
        }
        if let Some(pattern) = &c.output_matches {
            if let Err(e) = regex::Regex::new(pattern) {
                let first_line = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                p.add(
                    format!("{at}.commands[{k}].output_matches"),
                    format!("not a valid regular expression: {first_line}"),
                );
            }
        }
    }
    for (k, q) in v.sql.iter().enumerate() {
        let query = q.query.trim_start();
        let is_select = query.len() >= 6 && query[..6].eq_ignore_ascii_case("select");
        if !is_select || query.trim_end().trim_end_matches(';').contains(';') {
            p.add(
                format!("{at}.sql[{k}].query"),
                "a SQL check is one SELECT statement (checks must not change the server)",
            );
        }
    }
}

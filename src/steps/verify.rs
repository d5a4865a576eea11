//! `verify`: after the upgrade, checks connector-space counts against a snapshot, connector-space
//! searches (DN prefix, anchor prefix or sub-tree, like the GUI's "Search Connector Space"), services,
//! commands and SQL scalars. Every check runs; a failure reports a table of expected against found.
//! Only reads: SELECTs, `sc query`, and the plan's own check commands.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::adapters::process::ProcessSpec;
use crate::adapters::services::{self, ServiceState};
use crate::adapters::sql::{statements as q, Row, SqlClient, SqlError};
use crate::plan::{CommandCheck, Search, SearchBy, SqlCheck, StepId, Verify};
use crate::steps::snapshot_connector_space::{self as snapshot, Snapshot};
use crate::steps::sqlrow::{bytes, text};
use crate::steps::{CarriedOutBy, Finished, Kind, Op, Planned, Role, StepContext, StepError};

pub struct VerifyStep {
    spec: Verify,
}

/// One line of the result table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub check: String,
    pub expected: String,
    pub found: String,
    pub ok: bool,
    /// Shown for the record, never failing: placeholders and obsoleted rows are the engine's
    /// bookkeeping, which a sync run changes on its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reported_only: bool,
}

impl CarriedOutBy for Verify {
    type Step = VerifyStep;
}

/// What apply does: run the plan's checks, as plan listed them.
#[derive(Debug, Clone, Copy)]
pub struct RunChecks;

impl VerifyStep {
    fn planned_checks(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        if let Some(c) = &self.spec.connector_space {
            ops.push(Op::Check {
                what: format!("connector-space counts equal snapshot `{}`", c.same_as),
            });
        }
        for s in &self.spec.search {
            ops.push(Op::Check {
                what: format!("search {}: at least {}", search_name(s), s.min_count),
            });
        }
        for s in &self.spec.services {
            ops.push(Op::Check {
                what: format!("service {} running", s.name),
            });
        }
        for c in &self.spec.commands {
            ops.push(Op::Check {
                what: format!("command `{}` exits {}", c.run.join(" "), c.exit_code),
            });
        }
        for s in &self.spec.sql {
            ops.push(Op::Check {
                what: format!("SQL `{}` = {}", s.query, s.expect),
            });
        }
        ops
    }

    /// Runs every check at the same time, at most `CONCURRENT_CHECKS` at once, and gives their
    /// results in plan order; the first check (in plan order) that could not run stops the rest.
    /// Each check that reads SQL opens a connection of its own.
    async fn run_checks(&self, cx: &StepContext<'_>) -> Result<Vec<CheckResult>, StepError> {
        let mut checks: Vec<CheckRun<'_>> = Vec::new();
        if let Some(c) = &self.spec.connector_space {
            checks.push(Box::pin(connector_space_check(&c.same_as, cx)));
        }
        for s in &self.spec.search {
            checks.push(Box::pin(async move {
                search_check(s, cx).await.map(|r| vec![r])
            }));
        }
        for s in &self.spec.services {
            checks.push(Box::pin(async move {
                service_check(&s.name, cx).await.map(|r| vec![r])
            }));
        }
        for c in &self.spec.commands {
            checks.push(Box::pin(command_check(c, cx)));
        }
        for s in &self.spec.sql {
            checks.push(Box::pin(
                async move { sql_check(s, cx).await.map(|r| vec![r]) },
            ));
        }
        let results: Vec<Vec<CheckResult>> = futures_util::stream::iter(checks)
            .buffered(CONCURRENT_CHECKS)
            .try_collect()
            .await?;
        Ok(results.into_iter().flatten().collect())
    }
}

/// How many checks of one verify step run at once. 32 runs a step of 32 quick checks in one round
/// (issue 11: 32 checks of 50 ms within 2x one check; measured 3.62x with 8 and 2.06x with 16,
/// whose two rounds alone make 2x). A SQL check holds one connection while it reads, so a step asks
/// the sync server's SQL Server for at most 32 connections at once: SQL Server's `user connections`
/// option is 0 by default, "the maximum (32,767) user connections are allowed", allocated as needed
/// (SQL Server Books Online, "user connections Option", 2005; "about 28 KB" of overhead each), and
/// the lab double takes any number (one task per connection). A connector-space search is one
/// streamed SELECT, so 32 also bounds how many such scans run side by side. Over WinRM the client
/// runs one command at a time anyway (one NTLM session on one connection), and a command's timeout
/// starts when it is sent, not while it waits for its turn.
pub const CONCURRENT_CHECKS: usize = 32;

/// One check under way: the result lines it adds to the table.
type CheckRun<'a> = Pin<Box<dyn Future<Output = Result<Vec<CheckResult>, StepError>> + Send + 'a>>;

/// Connector-space counts and the metaverse's, against the snapshot taken before the upgrade.
async fn connector_space_check(
    same_as: &StepId,
    cx: &StepContext<'_>,
) -> Result<Vec<CheckResult>, StepError> {
    let before = cx.referenced_output::<Snapshot>(same_as).ok_or_else(|| {
        StepError::Failed(format!(
            "snapshot `{same_as}` is not recorded: it must run before the upgrade"
        ))
    })?;
    let mut sql = cx.world.sql().await?;
    let now = snapshot::take(sql.as_mut(), &before.database).await?;
    let mut results = compare_connector_space(&before, &now);
    results.push(CheckResult {
        check: "metaverse objects".into(),
        expected: before.metaverse.to_string(),
        found: now.metaverse.to_string(),
        ok: before.metaverse == now.metaverse,
        reported_only: false,
    });
    Ok(results)
}

async fn search_check(s: &Search, cx: &StepContext<'_>) -> Result<CheckResult, StepError> {
    let database = s
        .database
        .clone()
        .or_else(|| cx.world.default_database())
        .ok_or_else(|| {
            StepError::Failed(format!(
                "search {}: no database named and none in the plan",
                search_name(s)
            ))
        })?;
    let mut sql = cx.world.sql().await?;
    let found = count_search(sql.as_mut(), &database, s).await?;
    Ok(CheckResult {
        check: format!("search {}", search_name(s)),
        expected: format!(">= {}", s.min_count),
        found: found.to_string(),
        ok: found >= s.min_count,
        reported_only: false,
    })
}

async fn service_check(name: &str, cx: &StepContext<'_>) -> Result<CheckResult, StepError> {
    let state = services::service_state(
        cx.world.host(),
        &cx.world.sc(),
        name,
        &cx.world.secret_env_names(),
    )
    .await?;
    Ok(CheckResult {
        check: format!("service {name}"),
        expected: "running".into(),
        found: state.as_ref().map_or("not installed".into(), |st| {
            format!("{st:?}").to_lowercase()
        }),
        ok: state == Some(ServiceState::Running),
        reported_only: false,
    })
}

/// A plan's command: its exit code and, if asked, its output. An empty command is no check.
async fn command_check(
    c: &CommandCheck,
    cx: &StepContext<'_>,
) -> Result<Vec<CheckResult>, StepError> {
    let Some((program, args)) = c.run.split_first() else {
        return Ok(Vec::new());
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // A check must only read (README, `commands[]`): over WinRM it is run again when a dropped
    // connection cut its output.
    let spec = ProcessSpec::new(
        std::path::Path::new(program),
        &args,
        Duration::from_secs(300),
    )
    .read_only();
    let out = cx.world.run(&spec).await?;
    let pattern_ok = match &c.output_matches {
        Some(p) => regex::Regex::new(p)
            .map_err(|e| {
                StepError::Failed(format!(
                    "output_matches `{p}` is not a regular expression: {e}"
                ))
            })?
            .is_match(&out.stdout),
        None => true,
    };
    Ok(vec![CheckResult {
        check: format!("command `{}`", c.run.join(" ")),
        expected: match &c.output_matches {
            Some(p) => format!("exit {}, output matching /{p}/", c.exit_code),
            None => format!("exit {}", c.exit_code),
        },
        found: format!(
            "exit {}{}",
            out.exit_code,
            if pattern_ok {
                ""
            } else {
                ", output did not match"
            }
        ),
        ok: out.exit_code == c.exit_code && pattern_ok,
        reported_only: false,
    }])
}

/// A scalar from the plan's own query, in the database it names.
async fn sql_check(s: &SqlCheck, cx: &StepContext<'_>) -> Result<CheckResult, StepError> {
    let mut sql = cx.world.sql_in(&s.database).await?;
    let rows = sql.query(&s.query).await?;
    let found = rows
        .first()
        .and_then(|r| r.at(0))
        .and_then(text)
        .unwrap_or_else(|| "(no value)".into());
    Ok(CheckResult {
        check: format!("SQL on {}: {}", s.database, s.query),
        expected: s.expect.clone(),
        ok: found.trim() == s.expect.trim(),
        found,
        reported_only: false,
    })
}

/// Counts the objects a search matches without holding the connector space: the objects that are
/// parents of others (a directory's containers, few beside its leaves) are read first and kept;
/// then every object streams past once, its DN rebuilt from its rdn and its parent's chain.
/// An anchor search needs no DNs and reads no parents.
async fn count_search(
    sql: &mut dyn SqlClient,
    database: &str,
    s: &Search,
) -> Result<u64, SqlError> {
    let anchors = matches!(s.by, SearchBy::AnchorPrefix(_));
    let parents = if anchors {
        Parents::default()
    } else {
        let rows = sql
            .query(&q::connector_space_parents(database, &s.management_agent))
            .await?;
        Parents::new(rows.iter().map(|r| CsObject::from_row(r, false)))
    };
    let mut found = 0;
    let all = q::connector_space_objects(database, &s.management_agent);
    sql.query_each(&all, &mut |row| {
        if parents.matches(&CsObject::from_row(&row, anchors), s) {
            found += 1;
        }
    })
    .await?;
    Ok(found)
}

/// A connector-space object, enough to rebuild its DN.
#[derive(Debug, Clone)]
struct CsObject {
    id: String,
    parent: Option<String>,
    rdn: String,
    /// The anchor's bytes (binary in MIIS and FIM); read only for anchor searches.
    anchor: Vec<u8>,
}

impl CsObject {
    fn from_row(r: &Row, with_anchor: bool) -> CsObject {
        CsObject {
            id: r.get("object_id").and_then(text).unwrap_or_default(),
            parent: r.get("pobject_id").and_then(text),
            rdn: r.get("rdn").and_then(text).unwrap_or_default(),
            anchor: if with_anchor {
                r.get("anchor").and_then(bytes).unwrap_or_default()
            } else {
                Vec::new()
            },
        }
    }
}

/// The objects that are parents of others, by id, with their parent and rdn: all a DN needs.
#[derive(Default)]
struct Parents {
    by_id: HashMap<String, (Option<String>, String)>,
}

impl Parents {
    fn new(objects: impl Iterator<Item = CsObject>) -> Parents {
        Parents {
            by_id: objects.map(|o| (o.id, (o.parent, o.rdn))).collect(),
        }
    }

    /// The object's DN: its rdn, then its ancestors' as far as they are known (a parent loop in
    /// the data stops after 256; the DN so far is enough to compare).
    fn dn(&self, o: &CsObject) -> String {
        let mut dn = o.rdn.clone();
        let mut cur = o.parent.as_deref();
        let mut guard = 0;
        while let Some((parent, rdn)) = cur.and_then(|id| self.by_id.get(id)) {
            dn.push(',');
            dn.push_str(rdn);
            cur = parent.as_deref();
            guard += 1;
            if guard > 256 {
                break;
            }
        }
        dn
    }

    /// Whether the object matches the search, comparing DNs without regard to case.
    fn matches(&self, o: &CsObject, s: &Search) -> bool {
        let lower = |t: &str| t.to_lowercase();
        match &s.by {
            SearchBy::DnPrefix(p) => lower(&self.dn(o)).starts_with(&lower(p)),
            SearchBy::AnchorPrefix(p) => p.matches(&o.anchor),
            SearchBy::Subtree(t) => {
                let d = lower(&self.dn(o));
                let t = lower(t);
                d == t || d.ends_with(&format!(",{t}"))
            }
        }
    }
}

fn search_name(s: &Search) -> String {
    let what = match &s.by {
        SearchBy::DnPrefix(p) => format!("DN starting `{p}`"),
        SearchBy::AnchorPrefix(p) => format!("anchor starting `{p}`"),
        SearchBy::Subtree(t) => format!("sub-tree `{t}`"),
    };
    format!("{} / {what}", s.management_agent)
}

/// The failure table, for people.
pub fn table(results: &[CheckResult]) -> String {
    let w = results
        .iter()
        .map(|r| r.check.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let e = results
        .iter()
        .map(|r| r.expected.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = format!("  {:<w$}  {:<e$}  found\n", "check", "expected");
    for r in results {
        out.push_str(&format!(
            "{} {:<w$}  {:<e$}  {}\n",
            match (r.ok, r.reported_only && r.expected != r.found) {
                (false, _) => '✗',
                (true, true) => '~',
                (true, false) => ' ',
            },
            r.check,
            r.expected,
            r.found
        ));
    }
    out
}

/// Connector-space counts per management agent, before against now. Where both snapshots tell
/// placeholders and obsoleted rows apart (FIM's columns), real objects are compared with real
/// objects, and the placeholders and obsoletions are reported beside them without failing.
pub fn compare_connector_space(before: &Snapshot, now: &Snapshot) -> Vec<CheckResult> {
    let mut names: Vec<&String> = before
        .connector_space
        .keys()
        .chain(now.connector_space.keys())
        .collect();
    names.sort();
    names.dedup();
    let split = before.breakdown.is_some() && now.breakdown.is_some();
    let mut results = Vec::new();
    let shown = |v: Option<i64>| v.map_or("(absent)".into(), |v| v.to_string());
    for ma in names {
        let (b, n) = if split {
            (before.objects(ma), now.objects(ma))
        } else {
            (
                before.connector_space.get(ma).copied(),
                now.connector_space.get(ma).copied(),
            )
        };
        results.push(CheckResult {
            check: format!("connector space of {ma}"),
            expected: shown(b),
            found: shown(n),
            ok: b == n,
            reported_only: false,
        });
        if !split {
            continue;
        }
        let part = |s: &Snapshot| s.breakdown.as_ref().and_then(|m| m.get(ma)).copied();
        let (bb, nb) = (part(before), part(now));
        for (what, x, y) in [
            (
                "placeholders",
                bb.map(|p| p.placeholders),
                nb.map(|p| p.placeholders),
            ),
            (
                "obsoleted rows",
                bb.map(|p| p.obsoletions),
                nb.map(|p| p.obsoletions),
            ),
        ] {
            results.push(CheckResult {
                check: format!("  {what} of {ma} (not compared)"),
                expected: shown(x),
                found: shown(y),
                ok: true,
                reported_only: true,
            });
        }
    }
    results
}

#[async_trait]
impl Kind for VerifyStep {
    type Spec = Verify;
    type Observed = ();
    type Change = RunChecks;
    type Record = Vec<CheckResult>;
    const ROLE: Role = Role::Check;

    /// The id is not needed: this kind's messages name the product or checks, not the step.
    fn new(_id: StepId, spec: Verify) -> Self {
        VerifyStep { spec }
    }

    async fn observe(&self, _cx: &StepContext<'_>) -> Result<(), StepError> {
        // Checks run at apply; observing them would only repeat the work.
        Ok(())
    }

    fn diff(&self, _observed: &(), cx: &StepContext<'_>) -> Planned<Self> {
        match cx.record() {
            Some(r)
                if r.status == crate::steps::record::StepStatus::Done
                    && r.plan_sha256 == cx.plan_sha256 =>
            {
                Planned::done(
                    r.evidence
                        .as_ref()
                        .map(|e| e.summary.clone())
                        .unwrap_or_default(),
                )
            }
            _ => Planned::Check {
                reason: "checks run after the steps before them".into(),
                ops: self.planned_checks(),
                change: RunChecks,
            },
        }
    }

    fn again(&self) -> Option<RunChecks> {
        Some(RunChecks)
    }

    async fn apply(
        &self,
        _: &RunChecks,
        cx: &StepContext<'_>,
    ) -> Result<Finished<Vec<CheckResult>>, StepError> {
        let results = self.run_checks(cx).await?;
        let failed = results.iter().filter(|r| !r.ok).count();
        if failed > 0 {
            return Err(StepError::Failed(format!(
                "{failed} of {} check(s) failed:\n{}",
                results.len(),
                table(&results)
            )));
        }
        Ok(Finished::new(
            format!("{} check(s) passed", results.len()),
            results,
        ))
    }

    /// A verify step that a later step depends on counts by its record: checks are never re-run
    /// outside `apply` (they may run the plan's own commands).
    async fn recheck(&self, cx: &StepContext<'_>) -> Result<String, StepError> {
        match cx.journal.done(cx.id.as_str()) {
            Some(e) => Ok(format!("checks passed earlier: {}", e.summary)),
            None => Err(StepError::Refused(format!(
                "the checks of `{}` have not passed",
                cx.id
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(id: &str, parent: Option<&str>, rdn: &str) -> CsObject {
        CsObject {
            id: id.into(),
            parent: parent.map(Into::into),
            rdn: rdn.into(),
            anchor: id.as_bytes().to_vec(),
        }
    }

    /// A management agent's connector space answering a search's two statements as the server
    /// does: the parents as a result set, and every object only as a stream (asking for them all
    /// at once is the memory the search must not take).
    struct ConnectorSpace(Vec<CsObject>);

    fn row(o: &CsObject) -> Row {
        use crate::adapters::sql::SqlValue;
        Row {
            columns: ["object_id", "pobject_id", "rdn", "anchor"]
                .map(String::from)
                .to_vec(),
            values: vec![
                SqlValue::Text(o.id.clone()),
                o.parent.clone().map_or(SqlValue::Null, SqlValue::Text),
                SqlValue::Text(o.rdn.clone()),
                SqlValue::Binary(o.anchor.clone()),
            ],
        }
    }

    #[async_trait]
    impl SqlClient for ConnectorSpace {
        async fn query(&mut self, sql: &str) -> Result<Vec<Row>, SqlError> {
            assert!(
                sql.contains("IN (SELECT child.pobject_id"),
                "the whole connector space was asked for at once: {sql}"
            );
            let parents: std::collections::HashSet<&str> =
                self.0.iter().filter_map(|o| o.parent.as_deref()).collect();
            Ok(self
                .0
                .iter()
                .filter(|o| parents.contains(o.id.as_str()))
                .map(row)
                .collect())
        }

        async fn query_each(
            &mut self,
            sql: &str,
            each: &mut (dyn FnMut(Row) + Send),
        ) -> Result<u64, SqlError> {
            assert_eq!(sql, q::connector_space_objects("Sync", "Contoso AD"));
            self.0.iter().for_each(|o| each(row(o)));
            Ok(self.0.len() as u64)
        }

        async fn execute_each(
            &mut self,
            sql: &str,
            _each: &mut (dyn FnMut(crate::adapters::sql::InfoMessage) + Send),
        ) -> Result<(), SqlError> {
            panic!("a search sent a batch: {sql}")
        }
    }

    /// What a search over these objects finds, through the statements a real search sends.
    fn count_matches(objects: &[CsObject], s: &Search) -> u64 {
        let mut cs = ConnectorSpace(objects.to_vec());
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(count_search(&mut cs, "Sync", s))
            .unwrap()
    }

    fn search(by: SearchBy) -> crate::plan::Search {
        crate::plan::Search {
            database: None,
            management_agent: "Contoso AD".into(),
            by,
            min_count: 1,
        }
    }

    #[test]
    fn searches_rebuild_dns_from_parents_like_the_gui() {
        let objects = vec![
            obj("1", None, "DC=contoso,DC=com"),
            obj("2", Some("1"), "OU=Users"),
            obj("3", Some("2"), "CN=Administrator"),
            obj("4", Some("2"), "CN=Alice"),
        ];
        assert_eq!(
            count_matches(
                &objects,
                &search(SearchBy::DnPrefix("cn=administrator,OU=Users".into()))
            ),
            1
        );
        assert_eq!(
            count_matches(
                &objects,
                &search(SearchBy::Subtree("OU=Users,DC=contoso,DC=com".into()))
            ),
            3
        );
        assert_eq!(
            count_matches(&objects, &search(SearchBy::DnPrefix("CN=Bob".into()))),
            0
        );
    }

    #[test]
    fn an_anchor_prefix_in_either_case_matches_the_binary_anchor() {
        let objects = || {
            let mut o = obj("1", None, "CN=Alice");
            o.anchor = vec![0x9F, 0x3A, 0x01];
            vec![o]
        };
        let by_anchor = |prefix: &str| {
            search(SearchBy::AnchorPrefix(
                crate::plan::HexPrefix::parse(prefix).unwrap(),
            ))
        };
        assert_eq!(count_matches(&objects(), &by_anchor("9f3a")), 1);
        assert_eq!(count_matches(&objects(), &by_anchor("0x9F3A01")), 1);
        assert_eq!(count_matches(&objects(), &by_anchor("9f3b")), 0);
        assert_eq!(count_matches(&objects(), &by_anchor("9f3a0100")), 0);
    }
}

#[cfg(test)]
mod connector_space_tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::steps::snapshot_connector_space::Breakdown;

    fn snapshot(total: i64, split: Option<(i64, i64)>) -> Snapshot {
        Snapshot {
            database: "FIMSynchronizationService".into(),
            connector_space: BTreeMap::from([("Contoso AD".to_string(), total)]),
            metaverse: 10,
            breakdown: split.map(|(placeholders, obsoletions)| {
                BTreeMap::from([(
                    "Contoso AD".to_string(),
                    Breakdown {
                        placeholders,
                        obsoletions,
                    },
                )])
            }),
        }
    }

    #[test]
    fn obsoleted_rows_a_sync_run_removed_do_not_fail_the_comparison_of_real_objects() {
        let results =
            compare_connector_space(&snapshot(1800, Some((2, 3))), &snapshot(1797, Some((2, 0))));
        assert!(results.iter().all(|r| r.ok), "{results:?}");
        assert_eq!(results[0].expected, "1795");
        assert_eq!(results[0].found, "1795");
        let obsoleted = results
            .iter()
            .find(|r| r.check.contains("obsoleted rows"))
            .unwrap();
        assert!(obsoleted.reported_only);
        assert_eq!(
            (obsoleted.expected.as_str(), obsoleted.found.as_str()),
            ("3", "0")
        );
    }

    #[test]
    fn a_real_object_lost_fails_even_when_a_new_placeholder_keeps_the_total() {
        let results =
            compare_connector_space(&snapshot(1800, Some((2, 0))), &snapshot(1800, Some((3, 0))));
        assert!(!results[0].ok, "{results:?}");
    }

    #[test]
    fn without_fims_columns_on_both_sides_the_totals_are_compared() {
        let results = compare_connector_space(&snapshot(1800, None), &snapshot(1800, Some((2, 3))));
        assert_eq!(results.len(), 1);
        assert!(results[0].ok);
        assert_eq!(results[0].expected, "1800");
    }
}

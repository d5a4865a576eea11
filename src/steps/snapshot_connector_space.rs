//! `snapshot_connector_space`: records, before the upgrade, how many connector-space objects each
//! management agent holds and how many metaverse objects exist, for `verify` to compare with later.
//! Only SELECTs; once recorded, the snapshot is never retaken (it describes the old server).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::adapters::sql::{statements as q, SqlClient, SqlError};
use crate::plan::{SnapshotConnectorSpace, StepId};
use crate::steps::sqlrow::{int, text};
use crate::steps::{CarriedOutBy, Finished, Kind, Op, Planned, Role, StepContext, StepError};

pub struct SnapshotStep {
    id: StepId,
    spec: SnapshotConnectorSpace,
}

/// The counts, as recorded in the journal and read by `verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub database: String,
    /// Objects per management agent, every row counted (agents with none included, as 0).
    pub connector_space: BTreeMap<String, i64>,
    pub metaverse: i64,
    /// Where the connector-space table has FIM's columns: how many of each agent's rows are
    /// placeholders (`object_type IS NULL`) and obsoleted objects (`is_obsoletion = 1`), which a
    /// sync run creates and removes on its own. Absent on a database without those columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<BTreeMap<String, Breakdown>>,
}

/// An agent's rows that are not real objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakdown {
    pub placeholders: i64,
    pub obsoletions: i64,
}

impl Snapshot {
    pub fn total(&self) -> i64 {
        self.connector_space.values().sum()
    }

    /// An agent's real objects: every row less placeholders and obsoletions, where known.
    pub fn objects(&self, ma: &str) -> Option<i64> {
        let all = *self.connector_space.get(ma)?;
        let not_real = self
            .breakdown
            .as_ref()
            .and_then(|b| b.get(ma))
            .map_or(0, |b| b.placeholders + b.obsoletions);
        Some(all - not_real)
    }
}

/// The columns that tell placeholders and obsoletions apart (FIM 2010 and later).
const FIM_COLUMNS: [&str; 2] = ["object_type", "is_obsoletion"];

/// Reads the counts now. Used by this step and by `verify`.
pub async fn take(sql: &mut dyn SqlClient, database: &str) -> Result<Snapshot, SqlError> {
    let mut connector_space = BTreeMap::new();
    for row in sql.query(&q::management_agents(database)).await? {
        if let Some(name) = row.get("ma_name").and_then(text) {
            connector_space.insert(name, 0);
        }
    }
    for row in sql.query(&q::connector_space_counts(database)).await? {
        if let (Some(name), Some(n)) = (
            row.get("ma_name").and_then(text),
            row.get("objects").and_then(int),
        ) {
            connector_space.insert(name, n);
        }
    }
    let metaverse = sql
        .query(&q::metaverse_count(database))
        .await?
        .first()
        .and_then(|r| r.get("objects"))
        .and_then(int)
        .unwrap_or(0);
    let columns: Vec<String> = sql
        .query(&q::connector_space_columns(database))
        .await?
        .iter()
        .filter_map(|r| r.get("COLUMN_NAME").and_then(text))
        .collect();
    let has_fim_columns = FIM_COLUMNS
        .iter()
        .all(|c| columns.iter().any(|n| n.eq_ignore_ascii_case(c)));
    let breakdown = if has_fim_columns {
        let mut by_ma: BTreeMap<String, Breakdown> = connector_space
            .keys()
            .map(|ma| (ma.clone(), Breakdown::default()))
            .collect();
        for row in sql.query(&q::connector_space_breakdown(database)).await? {
            if let Some(name) = row.get("ma_name").and_then(text) {
                by_ma.insert(
                    name,
                    Breakdown {
                        placeholders: row.get("placeholders").and_then(int).unwrap_or(0),
                        obsoletions: row.get("obsoletions").and_then(int).unwrap_or(0),
                    },
                );
            }
        }
        Some(by_ma)
    } else {
        None
    };
    Ok(Snapshot {
        database: database.to_string(),
        connector_space,
        metaverse,
        breakdown,
    })
}

impl CarriedOutBy for SnapshotConnectorSpace {
    type Step = SnapshotStep;
}

/// What apply does: count the connector space and the metaverse now, with the statements plan
/// showed, and record the counts.
#[derive(Debug, Clone, Copy)]
pub struct Count;

impl SnapshotStep {
    fn recorded(&self, cx: &StepContext<'_>) -> Option<Snapshot> {
        cx.record()
            .filter(|r| r.status == crate::steps::record::StepStatus::Done)?;
        cx.recorded::<Snapshot>()
            .filter(|s| s.database == self.spec.database)
    }
}

#[async_trait]
impl Kind for SnapshotStep {
    type Spec = SnapshotConnectorSpace;
    type Observed = Snapshot;
    type Change = Count;
    type Record = Snapshot;
    /// A snapshot is the "before" that verify compares with; taken after the upgrade it is not.
    const ROLE: Role = Role::RecordsOldServer;

    /// Not a check: done is done.
    fn again(&self) -> Option<Self::Change> {
        None
    }

    fn new(id: StepId, spec: SnapshotConnectorSpace) -> Self {
        SnapshotStep { id, spec }
    }

    async fn observe(&self, cx: &StepContext<'_>) -> Result<Snapshot, StepError> {
        if let Some(s) = self.recorded(cx) {
            return Ok(s);
        }
        let mut sql = cx.world.sql().await?;
        Ok(take(sql.as_mut(), &self.spec.database).await?)
    }

    fn diff(&self, observed: &Snapshot, cx: &StepContext<'_>) -> Planned<Self> {
        if let Some(s) = self.recorded(cx) {
            let at = cx.record().map(|r| r.at.to_rfc3339()).unwrap_or_default();
            return Planned::done(format!(
                "{} objects in {} management agent(s), {} in the metaverse, recorded {at}",
                s.total(),
                s.connector_space.len(),
                s.metaverse
            ));
        }
        let now = format!("{} objects now", observed.total());
        Planned::Change {
            reason: format!("no snapshot recorded yet ({now})"),
            ops: vec![
                Op::Sql {
                    statement: q::connector_space_counts(&self.spec.database),
                },
                Op::Sql {
                    statement: q::metaverse_count(&self.spec.database),
                },
            ],
            change: Count,
        }
    }

    async fn apply(
        &self,
        _: &Count,
        cx: &StepContext<'_>,
    ) -> Result<Finished<Snapshot>, StepError> {
        let mut sql = cx.world.sql().await?;
        let s = take(sql.as_mut(), &self.spec.database).await?;
        let split = s
            .breakdown
            .as_ref()
            .map(|b| {
                let (p, o) = b
                    .values()
                    .fold((0, 0), |(p, o), x| (p + x.placeholders, o + x.obsoletions));
                format!(" ({p} placeholder(s) and {o} obsoleted row(s) among them)")
            })
            .unwrap_or_default();
        let summary = format!(
            "{} objects in {} management agent(s){split}, {} in the metaverse",
            s.total(),
            s.connector_space.len(),
            s.metaverse
        );
        Ok(Finished::new(summary, s))
    }

    async fn recheck(&self, cx: &StepContext<'_>) -> Result<String, StepError> {
        match self.recorded(cx) {
            Some(s) => Ok(format!("snapshot of {} objects recorded", s.total())),
            None => Err(StepError::Refused(format!(
                "snapshot `{}` is not recorded",
                self.id
            ))),
        }
    }
}

//! The typed side of a step kind: `Kind`, with its own types for what it observes, the change it
//! plans and the record it leaves, and `Typed`, the one adapter from any `Kind` to the engine's
//! object-safe `Step`. A kind's `diff` builds the change once; `apply` receives exactly that change
//! (as Terraform's apply receives the planned state), so what apply does is what plan showed.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::plan::kinds::KindSpec;
use crate::plan::StepId;
use crate::steps::{Diff, Evidence, Observation, Op, Role, Step, StepContext, StepError};

/// One kind of step, typed. Implementations hold their id and plan settings.
#[async_trait]
pub trait Kind: Send + Sync + Sized + 'static {
    /// The plan's settings for this kind.
    type Spec: KindSpec + Clone + Send + Sync + 'static;
    /// What `observe` found: shown with `--json`, fingerprinted in saved plans.
    type Observed: Serialize + Send + Sync + 'static;
    /// What `apply` will do, decided by `diff`.
    type Change: Send + Sync + 'static;
    /// What the journal keeps of a finished step for later runs (and for the steps naming it).
    type Record: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What the engine must know of this kind to order, gate and seal it.
    const ROLE: Role;

    fn new(id: StepId, spec: Self::Spec) -> Self;

    /// Reads the live state. Must change nothing anywhere: `upgrade plan` relies on it.
    async fn observe(&self, cx: &StepContext<'_>) -> Result<Self::Observed, StepError>;

    /// Compares the plan with what `observe` found (and with this step's record), and decides.
    fn diff(&self, observed: &Self::Observed, cx: &StepContext<'_>) -> Planned<Self>;

    /// Carries out the change `diff` decided, observes again, and returns what to record.
    async fn apply(
        &self,
        change: &Self::Change,
        cx: &StepContext<'_>,
    ) -> Result<Finished<Self::Record>, StepError>;

    /// Re-checks, right before a destructive step runs, that this step's recorded result still
    /// holds (backup verifies, key file hash matches, copies match their manifest).
    async fn recheck(&self, cx: &StepContext<'_>) -> Result<String, StepError>;

    /// Proves, against the live server, right before a destructive step that depends on it, that
    /// this step's result still protects what it protects. Stricter than `recheck` where the live
    /// source can have moved on since the step ran (Extensions edited after the copy).
    async fn recheck_before_destruction(&self, cx: &StepContext<'_>) -> Result<String, StepError> {
        self.recheck(cx).await
    }

    /// For checks (`Role::Check`): the change that runs them again although they passed before,
    /// which the engine asks for while other steps are pending. Every kind answers (`None` for
    /// kinds that are not checks), so a new check kind cannot silently keep an old pass.
    fn again(&self) -> Option<Self::Change>;
}

/// What a kind's `diff` decided, typed.
pub enum Planned<K: Kind> {
    /// `=`: nothing to do; the evidence says why. `record` is what the journal keeps when the
    /// engine adopts a result it did not produce (a backup taken by hand), for later rechecks.
    Done {
        evidence: String,
        record: Option<K::Record>,
    },
    /// `+`: will be done, shown as `ops`, carried out as `change`.
    Change {
        reason: String,
        ops: Vec<Op>,
        change: K::Change,
    },
    /// `?`: checks that run at apply.
    Check {
        reason: String,
        ops: Vec<Op>,
        change: K::Change,
    },
    /// `!`: cannot converge, and why.
    Blocked { why: String },
}

impl<K: Kind> Planned<K> {
    pub fn done(evidence: impl Into<String>) -> Self {
        Planned::Done {
            evidence: evidence.into(),
            record: None,
        }
    }

    pub fn blocked(why: impl Into<String>) -> Self {
        Planned::Blocked { why: why.into() }
    }
}

/// What a kind's `apply` leaves: a line for people and its typed record.
pub struct Finished<R> {
    pub summary: String,
    pub record: R,
    /// Windows Installer asked for a reboot (3010 / 1641); reported, never acted on.
    pub reboot_required: bool,
    /// The installer started a restart itself (1641): the run stops after this step.
    pub restart_started: bool,
}

impl<R> Finished<R> {
    pub fn new(summary: impl Into<String>, record: R) -> Self {
        Finished {
            summary: summary.into(),
            record,
            reboot_required: false,
            restart_started: false,
        }
    }
}

/// A planned change, held by the engine between plan and apply without knowing its type. Only the
/// `Typed` adapter that made it reads it back.
#[derive(Clone, Default)]
pub struct Change(Option<Arc<dyn Any + Send + Sync>>);

impl Change {
    fn of<C: Send + Sync + 'static>(change: C) -> Self {
        Change(Some(Arc::new(change)))
    }

    fn get<C: 'static>(&self) -> Option<&C> {
        self.0.as_ref().and_then(|c| c.downcast_ref::<C>())
    }
}

impl fmt::Debug for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Change(..)"
        } else {
            "Change(none)"
        })
    }
}

/// The same change: the very object one `diff` planned (two surveys plan two changes, even when
/// they show the same operations).
impl PartialEq for Change {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

/// The adapter from a typed `Kind` to the engine's `Step`.
pub struct Typed<K>(pub K);

/// A record as the journal keeps it. A record that cannot be written (a path that is not
/// UTF-8) is an error, never an empty record: the next run would find nothing to recheck.
fn record_value<R: Serialize>(record: &R) -> Result<serde_json::Value, StepError> {
    serde_json::to_value(record)
        .map_err(|e| StepError::Internal(format!("the step's record cannot be written: {e}")))
}

fn erase<K: Kind>(planned: Planned<K>) -> Diff {
    match planned {
        Planned::Done {
            evidence,
            record: Some(record),
        } => match record_value(&record) {
            Ok(details) => Diff::Done { evidence, details },
            Err(e) => Diff::Blocked { why: e.to_string() },
        },
        Planned::Done {
            evidence,
            record: None,
        } => Diff::Done {
            evidence,
            details: serde_json::Value::Null,
        },
        Planned::Change {
            reason,
            ops,
            change,
        } => Diff::Change {
            reason,
            ops,
            change: Change::of(change),
        },
        Planned::Check {
            reason,
            ops,
            change,
        } => Diff::Check {
            reason,
            ops,
            change: Change::of(change),
        },
        Planned::Blocked { why } => Diff::Blocked { why },
    }
}

#[async_trait]
impl<K: Kind> Step for Typed<K> {
    async fn observe(&self, cx: &StepContext<'_>) -> Result<Observation, StepError> {
        Observation::typed(self.0.observe(cx).await?)
    }

    fn diff(&self, observed: &Observation, cx: &StepContext<'_>) -> Diff {
        match observed.get::<K::Observed>() {
            Some(o) => erase(self.0.diff(o, cx)),
            // Invariant: the engine diffs an observation with the step that made it.
            None => Diff::Blocked {
                why: "internal error: an observation made by another step".into(),
            },
        }
    }

    async fn apply(&self, change: &Change, cx: &StepContext<'_>) -> Result<Evidence, StepError> {
        let change = change.get::<K::Change>().ok_or_else(|| {
            StepError::Internal("apply was handed a change this step did not plan".into())
        })?;
        let f = self.0.apply(change, cx).await?;
        Ok(Evidence {
            summary: f.summary,
            details: record_value(&f.record)?,
            reboot_required: f.reboot_required,
            restart_started: f.restart_started,
        })
    }

    async fn recheck(&self, cx: &StepContext<'_>) -> Result<String, StepError> {
        self.0.recheck(cx).await
    }

    async fn recheck_before_destruction(&self, cx: &StepContext<'_>) -> Result<String, StepError> {
        self.0.recheck_before_destruction(cx).await
    }

    fn again(&self) -> Option<Change> {
        self.0.again().map(Change::of)
    }

    fn role(&self) -> Role {
        K::ROLE
    }
}

#[cfg(test)]
mod tests {
    //! A toy kind driven through the adapter the engine uses: what `diff` planned is what `apply`
    //! receives, and a change from elsewhere is refused before anything runs.

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::plan::graph::Reference;
    use crate::plan::kinds::{PathField, Problems, SecretField, Where};
    use crate::steps::record::Journal;
    use crate::steps::World;

    #[derive(Clone)]
    struct ToySpec;

    impl KindSpec for ToySpec {
        fn references(&self) -> Vec<Reference<'_>> {
            Vec::new()
        }
        fn secrets(&self) -> Vec<SecretField<'_>> {
            Vec::new()
        }
        fn paths(&self) -> Vec<PathField<'_>> {
            Vec::new()
        }
        fn validate(&self, _: &Where<'_>, _: &mut Problems) {}
    }

    /// Counts to a number it observes, and records what it was handed.
    struct Toy {
        applied: Mutex<Vec<u32>>,
    }

    #[derive(Serialize)]
    struct Seen {
        count: u32,
    }

    #[async_trait]
    impl Kind for Toy {
        type Spec = ToySpec;
        type Observed = Seen;
        type Change = u32;
        type Record = u32;
        const ROLE: Role = Role::Normal;

        fn new(_: StepId, _: ToySpec) -> Self {
            Toy {
                applied: Mutex::new(Vec::new()),
            }
        }
        async fn observe(&self, _: &StepContext<'_>) -> Result<Seen, StepError> {
            Ok(Seen { count: 41 })
        }
        fn diff(&self, o: &Seen, _: &StepContext<'_>) -> Planned<Self> {
            Planned::Change {
                reason: "one more".into(),
                ops: vec![Op::Check {
                    what: format!("count to {}", o.count + 1),
                }],
                change: o.count + 1,
            }
        }
        async fn apply(&self, to: &u32, _: &StepContext<'_>) -> Result<Finished<u32>, StepError> {
            self.applied.lock().unwrap().push(*to);
            Ok(Finished::new(format!("counted to {to}"), *to))
        }
        async fn recheck(&self, _: &StepContext<'_>) -> Result<String, StepError> {
            Ok("still counted".into())
        }
        fn again(&self) -> Option<u32> {
            None
        }
    }

    fn world() -> World {
        let text = "version: 1\nname: toy\nserver:\n  sql: { host: \"(local)\", auth: windows }\nsteps:\n  - id: toy\n    service: { name: toy, state: stopped }\n";
        let loaded = crate::plan::load_str("toy.yaml", text).expect("toy plan loads");
        World::new(loaded.plan, std::env::temp_dir(), BTreeMap::new())
    }

    fn toy_id() -> StepId {
        StepId::parse("toy").unwrap()
    }

    fn context<'a>(world: &'a World, journal: &'a Journal, id: &'a StepId) -> StepContext<'a> {
        StepContext {
            world,
            id,
            journal,
            plan_sha256: "00",
            quick: true,
            progress: &crate::steps::progress::Silent,
        }
    }

    #[tokio::test]
    async fn apply_receives_exactly_the_change_diff_planned_and_records_it() {
        let (world, journal, id) = (world(), Journal::new("toy"), toy_id());
        let cx = context(&world, &journal, &id);
        let step = Typed(Toy::new(id.clone(), ToySpec));
        let observed = step.observe(&cx).await.unwrap();
        assert_eq!(observed.get::<Seen>().map(|s| s.count), Some(41));
        let Diff::Change { change, ops, .. } = step.diff(&observed, &cx) else {
            panic!("the toy plans a change");
        };
        assert_eq!(ops.len(), 1);
        let ev = step.apply(&change, &cx).await.unwrap();
        assert_eq!(*step.0.applied.lock().unwrap(), vec![42]);
        assert_eq!(ev.summary, "counted to 42");
        assert_eq!(ev.details, serde_json::json!(42));
        assert_eq!(step.role(), Role::Normal);
    }

    #[tokio::test]
    async fn a_change_this_step_did_not_plan_is_refused_and_nothing_runs() {
        let (world, journal, id) = (world(), Journal::new("toy"), toy_id());
        let cx = context(&world, &journal, &id);
        let step = Typed(Toy::new(id.clone(), ToySpec));
        let foreign = Change::of(String::from("not a count"));
        let err = step.apply(&foreign, &cx).await.unwrap_err();
        assert!(err.to_string().contains("did not plan"), "{err}");
        assert!(step.0.applied.lock().unwrap().is_empty());
        let nothing = step.apply(&Change::default(), &cx).await.unwrap_err();
        assert!(nothing.to_string().contains("did not plan"), "{nothing}");
        assert!(step.0.applied.lock().unwrap().is_empty());
    }
}

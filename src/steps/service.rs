//! `service`: brings a Windows service to a state with `sc stop NAME` / `sc start NAME` and waits
//! for `sc query NAME` to show it (the sync service stopped before the snapshot and the installer,
//! so that no scheduled run changes the connector space between the snapshot and verify).
//! The state is what the steps after it need: once they are done, the record holds, whatever the
//! new product's setup did to the service since.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::adapters::services::{self, Control, ServiceState};
use crate::plan::{graph, ServiceControl, StepId, Timeout, WantedServiceState};
use crate::steps::{Diff, Evidence, Observation, Op, Step, StepContext, StepError};

/// Default wait for the service to get there after sc asked it to.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// How often `sc query` is asked while waiting.
const POLL: Duration = Duration::from_secs(1);

pub struct ServiceStep {
    id: StepId,
    spec: ServiceControl,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Observed {
    /// `None`: no service of that name is installed.
    state: Option<ServiceState>,
}

impl ServiceStep {
    pub fn new(id: StepId, spec: ServiceControl) -> Self {
        ServiceStep { id, spec }
    }

    fn control(&self) -> Control {
        match self.spec.state {
            WantedServiceState::Stopped => Control::Stop,
            WantedServiceState::Running => Control::Start,
        }
    }

    fn wanted(&self) -> &'static str {
        match self.spec.state {
            WantedServiceState::Stopped => "stopped",
            WantedServiceState::Running => "running",
        }
    }

    fn timeout(&self) -> Duration {
        self.spec.wait_limit().unwrap_or(DEFAULT_TIMEOUT)
    }

    async fn observe_state(&self, cx: &StepContext<'_>) -> Result<Option<ServiceState>, StepError> {
        Ok(services::service_state(
            &cx.world.sc(),
            &self.spec.name,
            &cx.world.secret_env_names(),
        )
        .await?)
    }

    /// Every step that comes after this one, directly or through others, when this step is
    /// recorded done and every one of them is done too: the state served its purpose. (Only the
    /// direct ones would let a service started again after the snapshot run on through a later
    /// uninstall that does not name this step.)
    fn served(&self, cx: &StepContext<'_>) -> Option<Vec<StepId>> {
        cx.journal.done(self.id.as_str())?;
        let plan = &cx.world.plan;
        let me = graph::index_by_id(plan).get(&self.id).copied()?;
        let after: Vec<StepId> = (0..plan.steps.len())
            .filter(|&j| graph::prerequisites(plan, j).contains(&me))
            .map(|j| plan.steps[j].id.clone())
            .collect();
        let all_done = after
            .iter()
            .all(|id| cx.journal.done(id.as_str()).is_some());
        (!after.is_empty() && all_done).then_some(after)
    }

    fn ops(&self, cx: &StepContext<'_>, send: bool) -> Vec<Op> {
        let sc = cx.world.sc();
        let mut ops = Vec::new();
        if send {
            ops.push(Op::Run {
                command: services::control_command(&sc, &self.spec.name, self.control()).display(),
            });
        }
        ops.push(Op::Check {
            what: format!(
                "`sc query {}` until {} (at most {} s)",
                self.spec.name,
                self.control().target(),
                self.timeout().as_secs()
            ),
        });
        ops
    }
}

fn list(ids: &[StepId]) -> String {
    ids.iter()
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl Step for ServiceStep {
    async fn observe(&self, cx: &StepContext<'_>) -> Result<Observation, StepError> {
        Ok(Observation::of(&Observed {
            state: self.observe_state(cx).await?,
        }))
    }

    fn diff(&self, observed: &Observation, cx: &StepContext<'_>) -> Diff {
        let state = match observed.get::<Observed>() {
            Ok(o) => o.state,
            Err(e) => return Diff::Blocked { why: e.to_string() },
        };
        let name = &self.spec.name;
        let target = self.control().target();
        if state == Some(target) {
            return Diff::Done {
                evidence: format!("{name} is {}", self.wanted()),
                details: serde_json::Value::Null,
            };
        }
        let now = state.map_or("no longer installed".to_string(), |s| s.to_string());
        if let Some(after) = self.served(cx) {
            return Diff::Done {
                evidence: format!(
                    "{name} was {} for {} (it is {now} now)",
                    self.wanted(),
                    list(&after)
                ),
                details: serde_json::Value::Null,
            };
        }
        match state {
            // Recorded stopped by this step, then removed (an uninstall or a major upgrade after
            // it): a service that is not there does not run.
            None if self.spec.state == WantedServiceState::Stopped
                && cx.journal.done(self.id.as_str()).is_some() =>
            {
                Diff::Done {
                    evidence: format!("{name} was stopped, and is no longer installed"),
                    details: serde_json::Value::Null,
                }
            }
            None => Diff::Blocked {
                why: format!(
                    "there is no service named {name} (`sc query {name}`: error 1060); give the \
                     service's name, not its display name"
                ),
            },
            Some(s) if s == self.control().pending() => Diff::Change {
                reason: format!("{name} is {s}"),
                ops: self.ops(cx, false),
            },
            Some(s) => Diff::Change {
                reason: format!("{name} is {s}"),
                ops: self.ops(cx, true),
            },
        }
    }

    async fn apply(&self, cx: &StepContext<'_>) -> Result<Evidence, StepError> {
        let sc = cx.world.sc();
        let env = cx.world.secret_env_names();
        let name = &self.spec.name;
        let what = self.control();
        let was = self.observe_state(cx).await?;
        let summary = match was {
            Some(s) if s == what.target() => format!("{name} was already {}", self.wanted()),
            None => return Err(services::ServiceError::NoSuchService { name: name.clone() }.into()),
            Some(s) => {
                if s != what.pending() {
                    services::control(&sc, name, what, &env).await?;
                }
                services::wait_for(&sc, name, what, self.timeout(), POLL, &env).await?;
                format!("{name} {} (was {s})", self.wanted())
            }
        };
        Ok(Evidence {
            summary,
            details: serde_json::json!({
                "service": name,
                "state": self.wanted(),
                "was": was.map(|s| s.to_string()),
            }),
            reboot_required: false,
            restart_started: false,
        })
    }

    /// By the record: a step sealed by a destruction after it described the server before it.
    async fn recheck(&self, cx: &StepContext<'_>) -> Result<String, StepError> {
        match cx.journal.done(self.id.as_str()) {
            Some(e) => Ok(format!(
                "{} was {} before the steps after it ({})",
                self.spec.name,
                self.wanted(),
                e.summary
            )),
            None => Err(StepError::Refused(format!(
                "`{}` ({} {}) is not recorded",
                self.id,
                self.spec.name,
                self.wanted()
            ))),
        }
    }

    /// Against the live service, as the plan would see it now: a service started again before
    /// the steps that need it stopped have run is stopped again (the engine redoes this step).
    async fn recheck_before_destruction(&self, cx: &StepContext<'_>) -> Result<String, StepError> {
        let observed = self.observe(cx).await?;
        match self.diff(&observed, cx) {
            Diff::Done { evidence, .. } => Ok(evidence),
            Diff::Blocked { why } => Err(StepError::Refused(why)),
            Diff::Change { reason, .. } | Diff::Check { reason, .. } => Err(StepError::Refused(
                format!("{reason}, not {}", self.wanted()),
            )),
        }
    }
}

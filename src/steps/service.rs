//! `service`: brings a Windows service to a state with `sc stop NAME` / `sc start NAME` and waits
//! for `sc query NAME` to show it (the sync service stopped before the snapshot and the installer,
//! so that no scheduled run changes the connector space between the snapshot and verify).
//! The state is what the steps after it need: once they are done, the record holds, whatever the
//! new product's setup did to the service since.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::adapters::services::{self, Control, ServiceState};
use crate::plan::{ServiceControl, StepId, Timeout, WantedServiceState};
use crate::steps::{CarriedOutBy, Finished, Kind, Op, Planned, Role, StepContext, StepError};

/// Default wait for the service to get there after sc asked it to.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// How often `sc query` is asked while waiting.
const POLL: Duration = Duration::from_secs(1);

pub struct ServiceStep {
    id: StepId,
    spec: ServiceControl,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observed {
    /// `None`: no service of that name is installed.
    state: Option<ServiceState>,
}

impl CarriedOutBy for ServiceControl {
    type Step = ServiceStep;
}

/// What apply does: bring the service to the plan's state, asking sc unless the service is,
/// when its turn comes, already there or on its way (a service moves on its own: the state seen at
/// plan time only decides what plan shows).
#[derive(Debug, Clone, Copy)]
pub struct Bring;

/// What the journal keeps of a service brought to its state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Brought {
    service: String,
    state: String,
    was: Option<String>,
}

impl ServiceStep {
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
            cx.world.host(),
            &cx.world.sc(),
            &self.spec.name,
            &cx.world.secret_env_names(),
        )
        .await?)
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
impl Kind for ServiceStep {
    type Spec = ServiceControl;
    type Observed = Observed;
    type Change = Bring;
    type Record = Brought;
    const ROLE: Role = Role::Normal;

    /// Not a check: done is done.
    fn again(&self) -> Option<Self::Change> {
        None
    }

    fn new(id: StepId, spec: ServiceControl) -> Self {
        ServiceStep { id, spec }
    }

    async fn observe(&self, cx: &StepContext<'_>) -> Result<Observed, StepError> {
        Ok(Observed {
            state: self.observe_state(cx).await?,
        })
    }

    fn diff(&self, observed: &Observed, cx: &StepContext<'_>) -> Planned<Self> {
        let state = observed.state;
        let name = &self.spec.name;
        let target = self.control().target();
        if state == Some(target) {
            return Planned::done(format!("{name} is {}", self.wanted()));
        }
        let now = state.map_or("no longer installed".to_string(), |s| s.to_string());
        if let Some(after) = cx.dependents_done() {
            return Planned::done(format!(
                "{name} was {} for {} (it is {now} now)",
                self.wanted(),
                list(&after)
            ));
        }
        match state {
            // Recorded stopped by this step, then removed (an uninstall or a major upgrade after
            // it): a service that is not there does not run.
            None if self.spec.state == WantedServiceState::Stopped
                && cx.journal.done(self.id.as_str()).is_some() =>
            {
                Planned::done(format!("{name} was stopped, and is no longer installed"))
            }
            None => Planned::Blocked {
                why: format!(
                    "there is no service named {name} (`sc query {name}`: error 1060); give the \
                     service's name, not its display name"
                ),
            },
            Some(s) => {
                // Already on its way (STOP_PENDING for a stop): only waited for.
                let send = s != self.control().pending();
                Planned::Change {
                    reason: format!("{name} is {s}"),
                    ops: self.ops(cx, send),
                    change: Bring,
                }
            }
        }
    }

    async fn apply(&self, _: &Bring, cx: &StepContext<'_>) -> Result<Finished<Brought>, StepError> {
        let sc = cx.world.sc();
        let env = cx.world.secret_env_names();
        let name = &self.spec.name;
        let what = self.control();
        // Decided again now: the service may have moved since the plan (a STOP_PENDING seen then
        // may be RUNNING again); sc is asked unless it is already there or on its way.
        let now = services::service_state(cx.world.host(), &sc, name, &env)
            .await?
            .ok_or_else(|| services::ServiceError::NoSuchService { name: name.clone() })?;
        if now == what.target() {
            let record = Brought {
                service: name.clone(),
                state: self.wanted().to_string(),
                was: Some(now.to_string()),
            };
            return Ok(Finished::new(
                format!("{name} was already {}", self.wanted()),
                record,
            ));
        }
        if now != what.pending() {
            services::control(cx.world.host(), &sc, name, what, &env).await?;
        }
        services::wait_for(cx.world.host(), &sc, name, what, self.timeout(), POLL, &env).await?;
        let record = Brought {
            service: name.clone(),
            state: self.wanted().to_string(),
            was: Some(now.to_string()),
        };
        Ok(Finished::new(
            format!("{name} {} (was {now})", self.wanted()),
            record,
        ))
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
            Planned::Done { evidence, .. } => Ok(evidence),
            Planned::Blocked { why } => Err(StepError::Refused(why)),
            Planned::Change { reason, .. } | Planned::Check { reason, .. } => Err(
                StepError::Refused(format!("{reason}, not {}", self.wanted())),
            ),
        }
    }
}

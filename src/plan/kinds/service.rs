//! `service`: the plan's control of a Windows service (stopped before the upgrade).
//! Its spec, and what the plan language knows of it (`KindSpec`): the steps it names, the
//! secrets it holds, and its checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KindSpec, PathField, Problems, SecretField, Where};
use crate::graph::Reference;

use crate::validate::check_timeout;
use crate::values::*;

/// Bring a Windows service to a state with `sc stop` / `sc start`, e.g. the sync service stopped
/// before the connector-space snapshot and the installer, as Microsoft's upgrade runbooks do.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceControl {
    /// Service name (not its display name), e.g. `miiserver` (MIIS 2003) or
    /// `FIMSynchronizationService` (FIM 2010 / MIM 2016).
    pub name: String,
    /// The state the steps after this one need.
    pub state: WantedServiceState,
    /// How long to wait for the service to reach the state after `sc` asked it to (default `2m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// The old spelling of `timeout`, in whole seconds; still accepted, never with `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[deprecated = "read `wait_limit()`; `timeout` is the form"]
    pub timeout_secs: Option<u64>,
}

/// A state a `service` step can bring a service to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WantedServiceState {
    /// `sc stop NAME`; done when `sc query` says STOPPED.
    Stopped,
    /// `sc start NAME`; done when `sc query` says RUNNING.
    Running,
}

impl KindSpec for ServiceControl {
    fn references(&self) -> Vec<Reference<'_>> {
        Vec::new()
    }
    fn secrets(&self) -> Vec<SecretField<'_>> {
        Vec::new()
    }
    fn paths(&self) -> Vec<PathField<'_>> {
        Vec::new()
    }
    fn validate(&self, w: &Where<'_>, p: &mut Problems) {
        check_service(self, w.at, p);
    }
}

/// A service name as the Service Control Manager takes it: CreateService (Win32 API) documents at
/// most 256 characters and no `/` or `\\`.
pub(crate) fn check_service(s: &ServiceControl, at: &str, p: &mut Problems) {
    let name = s.name.trim();
    if name.is_empty() {
        p.add(
            format!("{at}.name"),
            "name the service, e.g. miiserver or FIMSynchronizationService",
        );
    } else if name.len() != s.name.len() {
        p.add(
            format!("{at}.name"),
            "a service name has no leading or trailing spaces",
        );
    } else if s.name.contains(['/', '\\']) || s.name.chars().count() > 256 {
        p.add(
            format!("{at}.name"),
            "a service name is at most 256 characters without `/` or `\\` (the service's name, \
             not its display name or its program's path)",
        );
    }
    check_timeout(
        s,
        at,
        "a wait of 0 seconds could never see the service get there",
        p,
    );
}

//! Windows services: the state of one service, read with `sc query NAME` and parsed.
//! Read-only: nothing here starts or stops a service.

use std::path::Path;
use std::time::Duration;

use super::process::{ProcessError, ProcessSpec};
use super::secrets::Redactor;

const SC_TIMEOUT: Duration = Duration::from_secs(60);

/// `STATE` of `sc query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    Stopped,
    StartPending,
    StopPending,
    Running,
    ContinuePending,
    PausePending,
    Paused,
    /// A state number sc printed that Windows does not define.
    Other(u32),
}

impl ServiceState {
    fn from_code(code: u32) -> ServiceState {
        match code {
            1 => ServiceState::Stopped,
            2 => ServiceState::StartPending,
            3 => ServiceState::StopPending,
            4 => ServiceState::Running,
            5 => ServiceState::ContinuePending,
            6 => ServiceState::PausePending,
            7 => ServiceState::Paused,
            n => ServiceState::Other(n),
        }
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceState::Stopped => f.write_str("STOPPED"),
            ServiceState::StartPending => f.write_str("START_PENDING"),
            ServiceState::StopPending => f.write_str("STOP_PENDING"),
            ServiceState::Running => f.write_str("RUNNING"),
            ServiceState::ContinuePending => f.write_str("CONTINUE_PENDING"),
            ServiceState::PausePending => f.write_str("PAUSE_PENDING"),
            ServiceState::Paused => f.write_str("PAUSED"),
            ServiceState::Other(n) => write!(f, "state {n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("querying service {name}: {source}")]
    Process { name: String, source: ProcessError },
    #[error("`{command}` exited with {exit_code}: {message}")]
    Sc {
        command: String,
        exit_code: i32,
        message: String,
    },
    #[error("`{command}` printed no STATE line:\n{output}")]
    Unparsable { command: String, output: String },
}

/// The state of service `name`; `None` when no such service exists (sc error 1060).
/// `env_remove`: variables the sc tool must not inherit (those holding the plan's secrets).
pub async fn service_state(
    sc: &Path,
    name: &str,
    env_remove: &[String],
) -> Result<Option<ServiceState>, ServiceError> {
    let mut spec = ProcessSpec::new(sc, &["query", name], SC_TIMEOUT);
    spec.env_remove = env_remove.to_vec();
    let out = spec
        .run(&Redactor::default())
        .await
        .map_err(|source| ServiceError::Process {
            name: name.to_string(),
            source,
        })?;
    let text = format!("{}{}", out.stdout, out.stderr);
    // 1060 = ERROR_SERVICE_DOES_NOT_EXIST. A Linux parent (Wine) sees the exit code cut to 8 bits
    // (36), so the message decides too.
    if out.exit_code == 1060 || text.contains("FAILED 1060") {
        tracing::debug!(service = name, "no such service");
        return Ok(None);
    }
    if out.exit_code != 0 {
        return Err(ServiceError::Sc {
            command: spec.display(),
            exit_code: out.exit_code,
            message: text.trim().to_string(),
        });
    }
    match parse_state(&text) {
        Some(state) => {
            tracing::debug!(service = name, %state, "service state");
            Ok(Some(state))
        }
        None => Err(ServiceError::Unparsable {
            command: spec.display(),
            output: text,
        }),
    }
}

/// Finds `STATE              : 4  RUNNING` and returns the number's state.
pub fn parse_state(text: &str) -> Option<ServiceState> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key.trim() != "STATE" {
            return None;
        }
        let code = value.split_whitespace().next()?.parse().ok()?;
        Some(ServiceState::from_code(code))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNING: &str = "\r\nSERVICE_NAME: miiserver \r\n        TYPE               : 10  WIN32_OWN_PROCESS  \r\n        STATE              : 4  RUNNING \r\n                                (STOPPABLE, PAUSABLE, ACCEPTS_SHUTDOWN)\r\n        WIN32_EXIT_CODE    : 0  (0x0)\r\n        SERVICE_EXIT_CODE  : 0  (0x0)\r\n        CHECKPOINT         : 0x0\r\n        WAIT_HINT          : 0x0\r\n";

    #[test]
    fn the_state_line_of_sc_query_is_read() {
        assert_eq!(parse_state(RUNNING), Some(ServiceState::Running));
        assert_eq!(
            parse_state(&RUNNING.replace("4  RUNNING", "1  STOPPED")),
            Some(ServiceState::Stopped)
        );
        assert_eq!(parse_state("SERVICE_NAME: x\r\n"), None);
    }

    #[cfg(unix)]
    async fn with_sc(script: &str, name: &str) -> Result<Option<ServiceState>, ServiceError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sc = dir.path().join("sc");
        std::fs::write(&sc, format!("#!/bin/sh\n{script}")).unwrap();
        std::fs::set_permissions(&sc, std::fs::Permissions::from_mode(0o755)).unwrap();
        service_state(&sc, name, &[]).await
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_running_service_an_unknown_one_and_a_failure() {
        let running = format!(
            "printf '{}'\n",
            RUNNING.replace('\n', "\\n").replace('\r', "\\r")
        );
        assert_eq!(
            with_sc(&running, "miiserver").await.unwrap(),
            Some(ServiceState::Running)
        );
        let unknown = "echo '[SC] EnumQueryServicesStatus:OpenService FAILED 1060:'\necho\necho 'The specified service does not exist as an installed service.'\nexit 36\n";
        assert_eq!(
            with_sc(unknown, "FIMSynchronizationService").await.unwrap(),
            None
        );
        let denied = "echo '[SC] OpenSCManager FAILED 5:'\necho 'Access is denied.'\nexit 5\n";
        let err = with_sc(denied, "miiserver").await.unwrap_err();
        assert!(err.to_string().contains("Access is denied"), "{err}");
    }
}

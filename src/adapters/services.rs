//! Windows services: the state of one service, read with `sc query NAME` and parsed, and
//! `sc stop NAME` / `sc start NAME` followed by `sc query` until the service gets there.
//! Only `control` changes anything; `service_state` is safe during `upgrade plan`.

use std::path::Path;
use std::time::Duration;

use super::host::Host;
use super::process::{ProcessError, ProcessSpec};
use super::secrets::Redactor;

const SC_TIMEOUT: Duration = Duration::from_secs(60);

/// `STATE` of `sc query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// Win32 system error codes sc.exe reports (its exit code is the error; Microsoft's "System Error
/// Codes (1000-1299)"). A Linux parent of Wine's sc sees them cut to 8 bits, so the `FAILED nnnn`
/// line decides too.
pub const ERROR_SERVICE_ALREADY_RUNNING: i32 = 1056;
pub const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
pub const ERROR_SERVICE_NOT_ACTIVE: i32 = 1062;

/// What `control` asks of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Stop,
    Start,
}

impl Control {
    fn verb(self) -> &'static str {
        match self {
            Control::Stop => "stop",
            Control::Start => "start",
        }
    }

    /// The state this control ends in.
    pub fn target(self) -> ServiceState {
        match self {
            Control::Stop => ServiceState::Stopped,
            Control::Start => ServiceState::Running,
        }
    }

    /// The state on the way to `target`: a control sent then is refused (1061), so only wait.
    pub fn pending(self) -> ServiceState {
        match self {
            Control::Stop => ServiceState::StopPending,
            Control::Start => ServiceState::StartPending,
        }
    }

    /// The error sc reports when the service is already where this control would take it.
    fn already(self) -> i32 {
        match self {
            Control::Stop => ERROR_SERVICE_NOT_ACTIVE,
            Control::Start => ERROR_SERVICE_ALREADY_RUNNING,
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
    #[error("there is no service named {name} (sc: error 1060); give the service's name, not its display name")]
    NoSuchService { name: String },
    #[error(
        "service {name} did not reach {wanted} within {waited:?} after `sc {verb}`; it is {now}"
    )]
    Timeout {
        name: String,
        verb: &'static str,
        wanted: ServiceState,
        waited: Duration,
        now: String,
    },
}

/// Whether sc's output or exit code reports Win32 error `code`.
fn reports(exit_code: i32, text: &str, code: i32) -> bool {
    exit_code == code || text.contains(&format!("FAILED {code}"))
}

/// Runs one sc command; its exit code and its output (standard output, then standard error).
async fn run_sc(
    host: &dyn Host,
    spec: &ProcessSpec,
    name: &str,
    env_remove: &[String],
) -> Result<(i32, String), ServiceError> {
    let mut spec = spec.clone();
    spec.env_remove = env_remove.to_vec();
    let out = host
        .run(&spec, &Redactor::default())
        .await
        .map_err(|source| ServiceError::Process {
            name: name.to_string(),
            source,
        })?;
    Ok((out.exit_code, format!("{}{}", out.stdout, out.stderr)))
}

/// The state of service `name`; `None` when no such service exists (sc error 1060).
/// `env_remove`: variables the sc tool must not inherit (those holding the plan's secrets).
pub async fn service_state(
    host: &dyn Host,
    sc: &Path,
    name: &str,
    env_remove: &[String],
) -> Result<Option<ServiceState>, ServiceError> {
    let spec = ProcessSpec::new(sc, &["query", name], SC_TIMEOUT).read_only();
    let (exit_code, text) = run_sc(host, &spec, name, env_remove).await?;
    // 1060 = ERROR_SERVICE_DOES_NOT_EXIST. A Linux parent (Wine) sees the exit code cut to 8 bits
    // (36), so the message decides too.
    if reports(exit_code, &text, ERROR_SERVICE_DOES_NOT_EXIST) {
        tracing::debug!(service = name, "no such service");
        return Ok(None);
    }
    if exit_code != 0 {
        return Err(ServiceError::Sc {
            command: spec.display(),
            exit_code,
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

/// The `sc stop NAME` / `sc start NAME` command line (what `upgrade plan` shows).
pub fn control_command(sc: &Path, name: &str, what: Control) -> ProcessSpec {
    ProcessSpec::new(sc, &[what.verb(), name], SC_TIMEOUT)
}

/// Runs `sc stop NAME` or `sc start NAME`: asks the Service Control Manager, which answers at once
/// (the service is then usually STOP_PENDING / START_PENDING; `wait_for` waits for the end state).
/// A service already where the control would take it (sc errors 1062 / 1056) is not an error.
pub async fn control(
    host: &dyn Host,
    sc: &Path,
    name: &str,
    what: Control,
    env_remove: &[String],
) -> Result<(), ServiceError> {
    let spec = control_command(sc, name, what);
    let (exit_code, text) = run_sc(host, &spec, name, env_remove).await?;
    if reports(exit_code, &text, ERROR_SERVICE_DOES_NOT_EXIST) {
        return Err(ServiceError::NoSuchService {
            name: name.to_string(),
        });
    }
    if exit_code != 0 && !reports(exit_code, &text, what.already()) {
        return Err(ServiceError::Sc {
            command: spec.display(),
            exit_code,
            message: text.trim().to_string(),
        });
    }
    tracing::debug!(
        service = name,
        verb = what.verb(),
        "sc accepted the control"
    );
    Ok(())
}

/// `sc query NAME` every `poll` until the service is in `what`'s end state, for at most `timeout`.
pub async fn wait_for(
    host: &dyn Host,
    sc: &Path,
    name: &str,
    what: Control,
    timeout: Duration,
    poll: Duration,
    env_remove: &[String],
) -> Result<(), ServiceError> {
    let started = std::time::Instant::now();
    loop {
        let now = service_state(host, sc, name, env_remove).await?;
        if now == Some(what.target()) {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(ServiceError::Timeout {
                name: name.to_string(),
                verb: what.verb(),
                wanted: what.target(),
                waited: timeout,
                now: now.map_or("no longer installed".into(), |s| s.to_string()),
            });
        }
        tokio::time::sleep(poll).await;
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
    use crate::adapters::host::Local;

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
        service_state(&Local, &sc, name, &[]).await
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

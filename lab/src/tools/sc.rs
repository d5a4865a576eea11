//! The sc stand-in: `sc query NAME` prints the service's status like sc.exe (exit 0); `sc stop NAME`
//! and `sc start NAME` change it and print the status on the way (STOP_PENDING / START_PENDING),
//! as sc.exe does, after which `sc query` shows STOPPED / RUNNING. Failures print sc.exe's
//! `[SC] Call FAILED nnnn:` and exit with that Win32 system error code (Microsoft's "System Error
//! Codes (1000-1299)"): 1060 ERROR_SERVICE_DOES_NOT_EXIST "The specified service does not exist as
//! an installed service.", 1062 ERROR_SERVICE_NOT_ACTIVE "The service has not been started." (stop
//! of a stopped service), 1056 ERROR_SERVICE_ALREADY_RUNNING "An instance of the service is
//! already running." (start of a running one).
//! TEST DOUBLE: the lab's services are only the entries in lab.json; nothing runs.

use std::path::Path;

use crate::state;
use crate::tools::ToolIo;

pub const NO_SUCH_SERVICE: i32 = 1060;
pub const NOT_STARTED: i32 = 1062;
pub const ALREADY_RUNNING: i32 = 1056;

/// What one run found and did.
enum Outcome {
    NoSuchService,
    /// The control did not apply: the Win32 error and its message.
    Refused(i32, &'static str),
    /// The service's name and the state line to print.
    Status(String, &'static str, &'static str),
}

/// Runs the stand-in; returns the exit code.
pub fn run(lab: &Path, args: &[String], io: &mut ToolIo) -> i32 {
    let [op, name] = args else {
        let _ = writeln!(io.stdout, "DESCRIPTION:\n        SC is a command line program used for communicating with the\n        Service Control Manager and services. (upgrade-lab stand-in: query, start, stop)\nUSAGE:\n        sc <command> [service name]");
        return 1639;
    };
    let op = op.to_ascii_lowercase();
    if !matches!(op.as_str(), "query" | "start" | "stop") {
        let _ = writeln!(
            io.stdout,
            "[SC] the lab's sc supports only query, start and stop."
        );
        return 1639;
    }
    // A query reads lab.json without its lock (as reg does): it changes nothing, not even the
    // lock file, so that `upgrade plan` leaves the lab as it found it.
    let outcome = if op == "query" {
        state::load(lab).map(|mut st| control(&mut st, &op, name))
    } else {
        state::update(lab, |st| control(st, &op, name))
    };
    // sc.exe names the Win32 call that failed.
    let call = match op.as_str() {
        "query" => "EnumQueryServicesStatus:OpenService",
        "stop" => "ControlService",
        _ => "StartService",
    };
    match outcome {
        Err(e) => {
            let _ = writeln!(io.stderr, "[SC] {e}");
            1
        }
        Ok(Outcome::NoSuchService) => {
            let call = if op == "query" { call } else { "OpenService" };
            let _ = writeln!(io.stdout, "[SC] {call} FAILED 1060:\n\nThe specified service does not exist as an installed service.\n");
            NO_SUCH_SERVICE
        }
        Ok(Outcome::Refused(code, message)) => {
            let _ = writeln!(io.stdout, "[SC] {call} FAILED {code}:\n\n{message}\n");
            code
        }
        Ok(Outcome::Status(name, state, flags)) => {
            let _ = write!(
                io.stdout,
                "\nSERVICE_NAME: {name}\n        TYPE               : 10  WIN32_OWN_PROCESS\n        STATE              : {state}\n                                {flags}\n        WIN32_EXIT_CODE    : 0  (0x0)\n        SERVICE_EXIT_CODE  : 0  (0x0)\n        CHECKPOINT         : 0x0\n        WAIT_HINT          : 0x0\n\n",
            );
            0
        }
    }
}

/// What `op` finds and does to service `name` in the lab's state (`query` changes nothing).
fn control(st: &mut state::LabState, op: &str, name: &str) -> Outcome {
    let Some(svc) = st
        .services
        .iter_mut()
        .find(|s| s.name.eq_ignore_ascii_case(name))
    else {
        return Outcome::NoSuchService;
    };
    match (op, svc.running) {
        ("stop", false) => Outcome::Refused(NOT_STARTED, "The service has not been started."),
        ("start", true) => Outcome::Refused(
            ALREADY_RUNNING,
            "An instance of the service is already running.",
        ),
        ("stop", true) => {
            svc.running = false;
            Outcome::Status(
                svc.name.clone(),
                "3  STOP_PENDING",
                "(STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)",
            )
        }
        ("start", false) => {
            svc.running = true;
            Outcome::Status(
                svc.name.clone(),
                "2  START_PENDING",
                "(NOT_STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN)",
            )
        }
        (_, true) => Outcome::Status(
            svc.name.clone(),
            "4  RUNNING",
            "(STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)",
        ),
        (_, false) => Outcome::Status(
            svc.name.clone(),
            "1  STOPPED",
            "(NOT_STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN)",
        ),
    }
}

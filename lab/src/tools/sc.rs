//! The sc stand-in: `sc query NAME` prints the service's status like sc.exe (exit 0), or
//! "OpenService FAILED 1060" (exit 1060) for an unknown service; `sc start|stop NAME` flip its state.
//! TEST DOUBLE: the lab's services are only the entries in lab.json; nothing runs.

use std::path::Path;

use crate::state;
use crate::tools::ToolIo;

pub const NO_SUCH_SERVICE: i32 = 1060;

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
    let found = state::update(lab, |st| {
        let svc = st
            .services
            .iter_mut()
            .find(|s| s.name.eq_ignore_ascii_case(name))?;
        match op.as_str() {
            "start" => svc.running = true,
            "stop" => svc.running = false,
            _ => {}
        }
        Some(svc.clone())
    });
    match found {
        Err(e) => {
            let _ = writeln!(io.stderr, "[SC] {e}");
            1
        }
        Ok(None) => {
            let call = if op == "query" {
                "EnumQueryServicesStatus:OpenService"
            } else {
                "OpenService"
            };
            let _ = writeln!(io.stdout, "[SC] {call} FAILED 1060:\n\nThe specified service does not exist as an installed service.\n");
            NO_SUCH_SERVICE
        }
        Ok(Some(s)) => {
            let (state, flags) = if s.running {
                ("4  RUNNING", "(STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)")
            } else {
                (
                    "1  STOPPED",
                    "(NOT_STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN)",
                )
            };
            let _ = write!(
                io.stdout,
                "\nSERVICE_NAME: {}\n        TYPE               : 10  WIN32_OWN_PROCESS\n        STATE              : {state}\n                                {flags}\n        WIN32_EXIT_CODE    : 0  (0x0)\n        SERVICE_EXIT_CODE  : 0  (0x0)\n        CHECKPOINT         : 0x0\n        WAIT_HINT          : 0x0\n\n",
                s.name
            );
            0
        }
    }
}

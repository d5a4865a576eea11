//! The stand-in tools (`upgrade-lab tool --lab DIR NAME ARGS...`): miiskmu, msiexec, the MIIS 2003
//! setup, reg and sc, acting on the lab's state instead of Windows. TEST DOUBLE. This module only
//! dispatches, applies `slow-tools` and appends every invocation to DIR/argv.log; each tool's
//! behaviour lives in its own module and follows /work/shared-contracts.md.

pub mod icacls;
pub mod install;
pub mod keyfile;
pub mod miiskmu;
pub mod msiexec;
pub mod package;
pub mod powershell;
pub mod reg;
pub mod sc;
pub mod setup;

use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::faults;

/// The stand-ins' names.
pub const TOOLS: [&str; 7] = [
    "miiskmu",
    "msiexec",
    "setup",
    "reg",
    "sc",
    "powershell",
    "icacls",
];

/// Standard streams of one stand-in run (real ones in the binary, buffers in tests).
pub struct ToolIo<'a> {
    pub stdin: &'a mut dyn BufRead,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

/// One line of DIR/argv.log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgvRecord {
    pub tool: String,
    pub argv: Vec<String>,
    pub exit: i32,
    #[serde(default)]
    pub at: String,
}

/// The exit code argv.log records for a stand-in ended during its `slow-tools` sleep (the code a
/// terminated process gets is its terminator's choice; the lab records 1).
pub const ENDED_EARLY: i32 = 1;

/// Runs stand-in `name` with `args` against the lab in `lab`; returns its exit code.
/// (On Unix the parent sees only the low 8 bits, e.g. 1605 as 69; argv.log keeps the full code.)
pub fn run(lab: &Path, name: &str, args: &[String], io: &mut ToolIo) -> i32 {
    run_cancellable(lab, name, args, io, &AtomicBool::new(false))
}

/// `run`, for a stand-in that can be ended from outside (the WinRM shell's Delete and Signal):
/// once `cancel` is set during the `slow-tools` sleep, the stand-in stops there without making
/// its change, as a process killed before it acted. Past the sleep its change takes milliseconds
/// and is made whole.
pub fn run_cancellable(
    lab: &Path,
    name: &str,
    args: &[String],
    io: &mut ToolIo,
    cancel: &AtomicBool,
) -> i32 {
    let code = run_inner(lab, name, args, io, cancel);
    if let Err(e) = append_argv(lab, name, args, code) {
        let _ = writeln!(io.stderr, "upgrade-lab: cannot append to argv.log: {e}");
    }
    let _ = io.stdout.flush();
    code
}

fn run_inner(lab: &Path, name: &str, args: &[String], io: &mut ToolIo, cancel: &AtomicBool) -> i32 {
    let faults = match faults::load(lab) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(io.stderr, "upgrade-lab {name}: {e}");
            return 1;
        }
    };
    if let Some(ms) = faults.slow_tools_ms {
        if !sleep_unless_cancelled(Duration::from_millis(ms), cancel) {
            return ENDED_EARLY;
        }
    }
    match name {
        "miiskmu" => miiskmu::run(lab, args, io),
        "msiexec" => msiexec::run(lab, args, io),
        "setup" => setup::run(lab, args, io),
        "reg" => reg::run(lab, args, io),
        "sc" => sc::run(lab, args, io),
        "powershell" => powershell::run(lab, args, io),
        "icacls" => icacls::run(lab, args, io),
        _ => {
            let _ = writeln!(
                io.stderr,
                "upgrade-lab: unknown tool `{name}`; known: {}",
                TOOLS.join(", ")
            );
            1
        }
    }
}

/// Sleeps `total` in short steps; false as soon as `cancel` is set.
fn sleep_unless_cancelled(total: Duration, cancel: &AtomicBool) -> bool {
    const STEP: Duration = Duration::from_millis(20);
    let until = Instant::now() + total;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(STEP));
    }
}

fn append_argv(lab: &Path, tool: &str, args: &[String], exit: i32) -> std::io::Result<()> {
    let rec = ArgvRecord {
        tool: tool.into(),
        argv: args.to_vec(),
        exit,
        at: crate::state::now(),
    };
    let mut line = serde_json::to_string(&rec).map_err(std::io::Error::other)?;
    line.push('\n');
    // One write of one line with O_APPEND: concurrent stand-ins never interleave within a line.
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(lab.join("argv.log"))?
        .write_all(line.as_bytes())
}

/// Every record in DIR/argv.log, oldest first (none when the file does not exist).
pub fn read_argv_log(lab: &Path) -> std::io::Result<Vec<ArgvRecord>> {
    let text = match std::fs::read_to_string(lab.join("argv.log")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
        .collect()
}

/// Runs a stand-in's entry with empty stdin and captured output: (exit code, stdout, stderr).
#[cfg(test)]
pub(crate) fn captured(run: impl FnOnce(&mut ToolIo) -> i32) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut stdin = std::io::empty();
    let code = run(&mut ToolIo {
        stdin: &mut stdin,
        stdout: &mut out,
        stderr: &mut err,
    });
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

//! Child processes: run a tool with a timeout, feed its stdin, collect its output redacted, and
//! kill it (with its process group on unix) when it overruns. Decides nothing about exit codes;
//! never logs a secret (arguments marked secret print as `***`, output goes through the redactor).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::secrets::{Redactor, SecretString};

/// One command-line argument. A secret argument is for the rare tool that takes a secret only on
/// its command line (msiexec properties), and only when the plan allowed it.
#[derive(Clone, PartialEq, Eq)]
pub enum Arg {
    Plain(String),
    Secret(SecretString),
}

impl std::fmt::Debug for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Plain(s) => write!(f, "{s:?}"),
            Arg::Secret(_) => f.write_str("***"),
        }
    }
}

impl Arg {
    fn value(&self) -> &str {
        match self {
            Arg::Plain(s) => s,
            Arg::Secret(s) => s.expose(),
        }
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Arg {
        Arg::Plain(s.to_string())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Arg {
        Arg::Plain(s)
    }
}

/// Whether running a command changes anything on the machine it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Effect {
    /// It changes something (an installer, a key export, a service control): it is run once,
    /// and an outcome lost in transit is an error, never a reason to run it again.
    #[default]
    Changes,
    /// It only reads (a registry or service query, a verify check): when its output may have
    /// lost a piece in transit (`adapters::remote`), it is run again rather than trusted.
    ReadOnly,
}

/// What to run. `stdin` is always treated as secret: it is written to the child and then closed,
/// and never shown (plain text can be wrapped with `SecretString::new`).
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<Arg>,
    pub stdin: Option<SecretString>,
    pub timeout: Duration,
    pub cwd: Option<PathBuf>,
    /// Extra environment variables, added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// Inherited variables the child must not see (those that hold the plan's secrets).
    pub env_remove: Vec<String>,
    pub effect: Effect,
}

/// A finished run. `stdout`/`stderr` are lossy UTF-8 and already redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessOutcome {
    /// A Windows exit code above 2^31 (0xC0000005) is its bit pattern as an i32, as Rust's
    /// `ExitStatus::code` gives it on Windows.
    pub exit_code: i32,
    /// Whether `exit_code` is the whole 32-bit Windows code (a Windows parent, or a server over
    /// WinRM), not a status a Unix parent saw cut to its low 8 bits.
    pub full_exit_code: bool,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
}

impl ProcessOutcome {
    /// The last `lines` lines of stdout then stderr, for error messages.
    pub fn tail(&self, lines: usize) -> String {
        tail_lines(&format!("{}{}", self.stdout, self.stderr), lines)
    }
}

/// Why a process did not run to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("could not start {program}: {source}{}", if source.kind() == std::io::ErrorKind::NotFound { " (is the tool at this path? check `tools:` in the plan)" } else { "" })]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{command} did not finish within {}s and was killed; last output:\n{output_tail}", timeout.as_secs())]
    Timeout {
        command: String,
        timeout: Duration,
        output_tail: String,
    },
    #[error("{command} was ended by signal {signal} ({name}); last output:\n{output_tail}")]
    Signal {
        command: String,
        signal: i32,
        name: &'static str,
        output_tail: String,
    },
    #[error("waiting for {command} failed: {source}")]
    Wait {
        command: String,
        source: std::io::Error,
    },
    /// A remote server (`adapters::remote`) cannot run this spec as written; nothing was sent.
    #[error("cannot run {program} on {server}: {why}")]
    Unsupported {
        program: String,
        server: String,
        why: String,
    },
    /// The command was sent to a remote server and its outcome is unknown.
    #[error("{command} MAY STILL BE RUNNING on {server}: {why}. Nothing was retried; the next run observes the server again before doing anything")]
    MayStillBeRunning {
        command: String,
        server: String,
        why: String,
    },
    /// The command ran to its end on a remote server, but part of its output was lost in
    /// transit, and running it again did not (or could not) bring it whole.
    #[error("{command} ended on {server} with exit code {exit_code}, but part of its output was lost with a dropped connection ({why}), so its outcome was not used. The next run observes the server again before doing anything")]
    OutputLost {
        command: String,
        server: String,
        exit_code: i32,
        /// Why it was not (or no longer) run again.
        why: String,
    },
    /// The command could not be run on a remote server (logon, connection, a refused argument).
    #[error("cannot run {command} on {server}: WinRM: {cause}")]
    Remote {
        command: String,
        server: String,
        cause: String,
    },
}

/// Lines of output kept in error messages.
const TAIL_LINES: usize = 20;
/// How long to wait for output pipes after the child ended (a grandchild may still hold them).
const PIPE_GRACE: Duration = Duration::from_secs(2);

impl ProcessSpec {
    /// A spec with plain arguments, no stdin, no extra environment.
    pub fn new(program: impl Into<PathBuf>, args: &[&str], timeout: Duration) -> ProcessSpec {
        ProcessSpec {
            program: program.into(),
            args: args.iter().map(|a| Arg::from(*a)).collect(),
            stdin: None,
            timeout,
            cwd: None,
            env: Vec::new(),
            env_remove: Vec::new(),
            effect: Effect::Changes,
        }
    }

    /// The same spec, marked as only reading (`Effect::ReadOnly`).
    pub fn read_only(self) -> ProcessSpec {
        ProcessSpec {
            effect: Effect::ReadOnly,
            ..self
        }
    }

    /// The command line as a reader sees it; secret arguments print as `***`.
    /// Arguments with spaces or quotes are double-quoted (Windows style).
    pub fn display(&self) -> String {
        let mut out = quote(&self.program.to_string_lossy());
        for arg in &self.args {
            out.push(' ');
            match arg {
                Arg::Plain(s) => out.push_str(&quote(s)),
                Arg::Secret(_) => out.push_str("***"),
            }
        }
        out
    }

    /// Runs the process to its end or its timeout.
    pub async fn run(&self, redactor: &Redactor) -> Result<ProcessOutcome, ProcessError> {
        // Secret arguments are redacted from the output too (a tool may echo its command line).
        let redactor = self.args.iter().fold(redactor.clone(), |r, a| match a {
            Arg::Secret(s) => r.with_argument(s.clone()),
            Arg::Plain(_) => r,
        });
        let command = self.display();
        tracing::debug!(%command, timeout_secs = self.timeout.as_secs(), "running");
        let started = Instant::now();

        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(self.args.iter().map(Arg::value))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for k in &self.env_remove {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        #[cfg(unix)]
        cmd.process_group(0);

        let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: self.program.display().to_string(),
            source,
        })?;

        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut readers = tokio::task::JoinSet::new();
        if let Some(pipe) = child.stdout.take() {
            readers.spawn(collect(pipe, stdout.clone()));
        }
        if let Some(pipe) = child.stderr.take() {
            readers.spawn(collect(pipe, stderr.clone()));
        }
        if let (Some(mut pipe), Some(input)) = (child.stdin.take(), self.stdin.clone()) {
            tokio::spawn(async move {
                // A child that exits without reading its stdin closes the pipe: not an error here.
                let _ = pipe.write_all(input.expose().as_bytes()).await;
                let _ = pipe.shutdown().await;
            });
        }

        let text = |buf: &Arc<Mutex<Vec<u8>>>| {
            // A poisoned lock only means a reader task panicked; its bytes are still there.
            let bytes = buf.lock().unwrap_or_else(|e| e.into_inner()).clone();
            redactor.redact(&String::from_utf8_lossy(&bytes))
        };

        // Taken now: once the child is reaped `id()` is gone, but its group may live on.
        let pid = child.id();
        let waited = tokio::time::timeout(self.timeout, child.wait()).await;
        let status = match waited {
            Ok(Ok(status)) => status,
            Ok(Err(source)) => return Err(ProcessError::Wait { command, source }),
            Err(_) => {
                kill_group(pid);
                let _ = child.kill().await;
                let _ = tokio::time::timeout(PIPE_GRACE, drain(&mut readers)).await;
                readers.abort_all();
                let output_tail =
                    tail_lines(&format!("{}{}", text(&stdout), text(&stderr)), TAIL_LINES);
                tracing::debug!(%command, "timed out; killed");
                return Err(ProcessError::Timeout {
                    command,
                    timeout: self.timeout,
                    output_tail,
                });
            }
        };
        if tokio::time::timeout(PIPE_GRACE, drain(&mut readers))
            .await
            .is_err()
        {
            // Something the tool started in the background still holds its output open.
            kill_group(pid);
            readers.abort_all();
        }
        let duration = started.elapsed();
        let (out, err) = (text(&stdout), text(&stderr));
        match status.code() {
            Some(exit_code) => {
                tracing::debug!(%command, exit_code, duration_ms = duration.as_millis() as u64, "finished");
                Ok(ProcessOutcome {
                    exit_code,
                    full_exit_code: cfg!(windows),
                    stdout: out,
                    stderr: err,
                    duration,
                })
            }
            None => {
                let signal = signal_of(&status);
                Err(ProcessError::Signal {
                    command,
                    signal,
                    name: signal_name(signal),
                    output_tail: tail_lines(&format!("{out}{err}"), TAIL_LINES),
                })
            }
        }
    }
}

async fn collect(mut pipe: impl AsyncRead + Unpin, into: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => into
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&buf[..n]),
        }
    }
}

async fn drain(readers: &mut tokio::task::JoinSet<()>) {
    while readers.join_next().await.is_some() {}
}

/// Kills everything in the child's process group (unix).
#[cfg(unix)]
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        // The child was started as the leader of its own process group (process_group(0)).
        // SAFETY: kill(2) with a negative pid signals that group; no memory is involved.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
}

/// Windows: no process groups; the child alone is killed (`Child::kill`).
#[cfg(not(unix))]
fn kill_group(_pid: Option<u32>) {}

#[cfg(unix)]
fn signal_of(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.signal().unwrap_or(0)
}

#[cfg(not(unix))]
fn signal_of(_status: &std::process::ExitStatus) -> i32 {
    0
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => "unknown signal",
    }
}

fn quote(s: &str) -> String {
    if !s.is_empty() && !s.contains([' ', '\t', '"']) {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\\\""))
    }
}

fn tail_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> ProcessSpec {
        ProcessSpec::new("/bin/sh", &["-c", script], timeout)
    }

    #[tokio::test]
    async fn a_child_does_not_inherit_variables_that_hold_secrets() {
        std::env::set_var("UPGRADE_TEST_SECRET_VAR", "hunter2-canary");
        let mut spec = sh(
            "echo \"[$UPGRADE_TEST_SECRET_VAR]\"",
            Duration::from_secs(5),
        );
        spec.env_remove.push("UPGRADE_TEST_SECRET_VAR".into());
        let out = spec.run(&Redactor::default()).await.unwrap();
        assert_eq!(out.stdout.trim(), "[]");
    }

    #[test]
    fn the_command_line_shows_secrets_as_stars_and_quotes_spaces() {
        let mut spec = ProcessSpec::new(
            r"C:\Windows\System32\msiexec.exe",
            &["/i", r"E:\New Folder\mim.msi"],
            Duration::from_secs(1),
        );
        spec.args.push(Arg::Secret(SecretString::new("pa ss")));
        assert_eq!(
            spec.display(),
            r#"C:\Windows\System32\msiexec.exe /i "E:\New Folder\mim.msi" ***"#
        );
        assert_eq!(format!("{:?}", spec.args[2]), "***");
    }

    #[tokio::test]
    async fn stdin_reaches_the_tool_and_secrets_are_redacted_from_its_output() {
        let mut spec = sh(
            "read line; echo \"got $line\"; echo \"err $line\" >&2; exit 3",
            Duration::from_secs(10),
        );
        spec.stdin = Some(SecretString::new("canary-pw\n"));
        let redactor = Redactor::new(vec![SecretString::new("canary-pw")]);
        let out = spec.run(&redactor).await.unwrap();
        assert_eq!(out.exit_code, 3);
        assert_eq!(out.stdout, "got ***\n");
        assert_eq!(out.stderr, "err ***\n");
    }

    #[tokio::test]
    async fn a_secret_argument_reaches_the_tool_but_not_the_output() {
        let mut spec = sh("echo \"arg=$0\"", Duration::from_secs(10));
        spec.args
            .push(Arg::Secret(SecretString::new("argv-canary")));
        let out = spec.run(&Redactor::default()).await.unwrap();
        assert_eq!(out.stdout, "arg=***\n");
        assert!(!spec.display().contains("argv-canary"));
    }

    #[tokio::test]
    async fn the_longest_timeout_a_plan_can_write_does_not_overflow_the_clock() {
        // `timeout: 18446744073709551615s` (or `timeout_secs` at u64::MAX) parses; waiting that
        // long must simply mean "no practical limit", not a panic when the deadline is computed.
        let out = sh("echo done", Duration::from_secs(u64::MAX))
            .run(&Redactor::default())
            .await
            .unwrap();
        assert_eq!(out.stdout, "done\n");
    }

    #[tokio::test]
    async fn an_overrunning_tool_and_its_children_are_killed_with_its_last_output() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-survived");
        // The background child would write the marker after 2s if it survived the kill.
        let script = format!(
            "(sleep 2; touch '{}') & echo started; sleep 30",
            marker.display()
        );
        let started = Instant::now();
        let err = sh(&script, Duration::from_millis(500))
            .run(&Redactor::default())
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        match &err {
            ProcessError::Timeout { output_tail, .. } => assert_eq!(output_tail, "started"),
            other => panic!("expected a timeout, got {other}"),
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!marker.exists(), "the tool's child outlived the kill");
    }

    #[tokio::test]
    async fn a_missing_tool_is_named_in_the_error() {
        let spec = ProcessSpec::new("/nonexistent/miiskmu.exe", &["/e"], Duration::from_secs(1));
        let err = spec.run(&Redactor::default()).await.unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }));
        assert!(
            err.to_string().contains("/nonexistent/miiskmu.exe"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_tool_killed_by_a_signal_is_reported_with_the_signal() {
        let err = sh("echo dying; kill -TERM $$", Duration::from_secs(10))
            .run(&Redactor::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("SIGTERM"), "{err}");
        assert!(err.to_string().contains("dying"), "{err}");
    }

    #[tokio::test]
    async fn a_tool_that_ignores_its_stdin_still_runs() {
        let mut spec = sh("exit 0", Duration::from_secs(10));
        spec.stdin = Some(SecretString::new("x".repeat(1 << 20)));
        assert_eq!(spec.run(&Redactor::default()).await.unwrap().exit_code, 0);
    }

    #[tokio::test]
    async fn env_and_working_folder_are_applied() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = sh("echo \"$UPGRADE_X $(pwd)\"", Duration::from_secs(10));
        spec.env.push(("UPGRADE_X".into(), "x1".into()));
        spec.cwd = Some(dir.path().canonicalize().unwrap());
        let out = spec.run(&Redactor::default()).await.unwrap();
        assert_eq!(
            out.stdout.trim(),
            format!("x1 {}", dir.path().canonicalize().unwrap().display())
        );
    }
}

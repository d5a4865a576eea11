//! The sync server reached over WinRM (issue 10): `WinrmHost` implements `Host` by running the
//! server's programs in a WinRS cmd shell and its file operations as PowerShell 2.0 scripts
//! (`script`), whose printed answers `output` reads. It decides nothing for the steps and never
//! retries a command that changes anything; a command whose outcome is unknown is reported as
//! "may still be running". A command that only reads (`Effect::ReadOnly`) and lost part of its
//! output with a dropped connection is run again, up to `RERUNS` more times: its outcome is never
//! judged from what a lost answer left out.
//!
//! Files come back over the same WinRM connection, as base64 lines a script prints (`fetch`), not
//! over SMB: an admin host on Linux has no UNC paths, and WinRM is already open to the server.
//! They are decoded (`stream`) as the WinRM answers arrive, so a file is never held whole here.

mod output;
pub mod script;
mod stream;

use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::adapters::fs::{self as afs, FileStat, FsError};
use crate::adapters::host::Host;
use crate::adapters::process::{Arg, Effect, ProcessError, ProcessOutcome, ProcessSpec};
use crate::adapters::secrets::Redactor;
use crate::adapters::winrm::{
    ConnectOptions, RemoteCommand, RemoteOutput, Stdin, WinrmClient, WinrmError,
};

use output::{BadOutput, Stat, Walked};
use stream::{Decoder, Streamed};

/// How many more times a read-only command that lost part of its output is run.
const RERUNS: u32 = 2;
/// Scripts that look at one path or rename one file.
const QUICK: Duration = Duration::from_secs(120);
/// Scripts that read a whole file or list a whole tree.
const LONG: Duration = Duration::from_secs(3600);

/// A Windows server reached over WinRM: its programs and files, as `Local` is this machine's.
pub struct WinrmHost {
    client: WinrmClient,
    /// The account WinRM logs on as (scripts run as it; `restrict_permissions` leaves a key file
    /// to it alone), for messages.
    user: String,
}

impl std::fmt::Debug for WinrmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WinrmHost")
            .field("server", &self.client.url())
            .field("user", &self.user)
            .finish()
    }
}

/// A path as the server's scripts see it.
fn win(path: &Path) -> String {
    script::windows_path(&path.to_string_lossy())
}

/// The folder above a Windows path (`C:\a\b.dll` -> `C:\a`), if it has one.
fn windows_parent(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('\\');
    let at = trimmed.rfind('\\')?;
    let parent = &trimmed[..at];
    if parent.is_empty() || parent.ends_with(':') {
        // `C:\x`: the drive's root exists.
        return None;
    }
    Some(parent)
}

impl WinrmHost {
    /// Connects and logs on to the server's WinRM endpoint (see `WinrmClient::connect`).
    pub async fn connect(options: ConnectOptions) -> Result<WinrmHost, WinrmError> {
        let user = options.user.clone();
        let client = WinrmClient::connect(options).await?;
        Ok(WinrmHost { client, user })
    }

    /// The server, as messages name it (its WinRM endpoint).
    pub fn server(&self) -> &str {
        self.client.url()
    }

    fn fs_error(&self, op: &'static str, path: &str, cause: String) -> FsError {
        FsError::Remote {
            op,
            path: path.to_string(),
            server: self.server().to_string(),
            cause,
        }
    }

    /// Runs `command` once, or, when it only reads and lost part of its output with a dropped
    /// connection, up to `RERUNS` more times. Returns the output and how many runs it took.
    async fn run_command(
        &self,
        command: &RemoteCommand,
        effect: Effect,
    ) -> (Result<RemoteOutput, WinrmError>, u32) {
        let mut runs = 1;
        loop {
            match self.client.run(command).await {
                Err(e @ WinrmError::OutputLost { .. })
                    if effect == Effect::ReadOnly && runs <= RERUNS =>
                {
                    tracing::warn!(program = %command.program, "{e}; it only reads, so it is run again ({runs} of {RERUNS})");
                    runs += 1;
                }
                outcome => return (outcome, runs),
            }
        }
    }

    /// Runs `text` in powershell.exe and returns its stdout; a failing script is an error with
    /// PowerShell's own message. `effect`: whether the script changes anything on the server.
    async fn script(
        &self,
        op: &'static str,
        path: &str,
        text: String,
        timeout: Duration,
        effect: Effect,
    ) -> Result<Vec<u8>, FsError> {
        let out = self
            .run_command(&script_command(&text, timeout), effect)
            .await
            .0
            .map_err(|e| self.fs_error(op, path, format!("WinRM: {e}")))?;
        if out.exit_code != 0 {
            return Err(self.fs_error(op, path, script_failed(out.exit_code, &out.stderr)));
        }
        Ok(out.stdout)
    }

    fn bad_output(&self, op: &'static str, path: &str, e: BadOutput) -> FsError {
        self.fs_error(op, path, format!("PowerShell: {e}"))
    }

    async fn stat(&self, op: &'static str, path: &Path) -> Result<(String, Stat), FsError> {
        let p = win(path);
        let out = self
            .script(op, &p, script::stat(&p), QUICK, Effect::ReadOnly)
            .await?;
        let stat = output::stat(&out).map_err(|e| self.bad_output(op, &p, e))?;
        Ok((p, stat))
    }

    /// Streams the file at `path` into a sink from `sink` as it arrives; checks that what
    /// arrived hashes as the server hashed what it read. Returns the hash, the bytes and the
    /// sink. Reading changes nothing: when an answer was lost in transit (the stream has a gap),
    /// it starts again into a fresh sink, up to `RERUNS` more times.
    async fn stream_into<W: std::io::Write + Send>(
        &self,
        op: &'static str,
        path: &Path,
        mut sink: impl FnMut() -> Result<W, FsError>,
    ) -> Result<(String, u64, W), FsError> {
        let p = win(path);
        let started = Instant::now();
        let command = script_command(&script::stream(&p), LONG);
        let mut runs = 1;
        let (exit, decoder) = loop {
            let mut decoder = Decoder::new(sink()?);
            match self.client.run_streaming(&command, &mut decoder).await {
                Ok(exit) => break (exit, decoder),
                // The decoder refused a piece of the output (or could not write it): its own
                // error names the line and why.
                Err(WinrmError::StdoutRefused { .. }) => {
                    let why = match decoder.finish() {
                        Err(e) => e,
                        Ok(_) => BadOutput::Write("the output was refused".into()),
                    };
                    return Err(self.bad_output(op, &p, why));
                }
                Err(e @ WinrmError::OutputLost { .. }) if runs <= RERUNS => {
                    tracing::warn!(path = %p, "{e}; it only reads, so it is run again from the start ({runs} of {RERUNS})");
                    runs += 1;
                }
                Err(e) => return Err(self.fs_error(op, &p, format!("WinRM: {e}"))),
            }
        };
        if exit.exit_code != 0 {
            return Err(self.fs_error(op, &p, script_failed(exit.exit_code, &exit.stderr)));
        }
        let (decoded, sink) = decoder.finish().map_err(|e| self.bad_output(op, &p, e))?;
        let (hash, bytes) = judge(decoded).map_err(|why| self.fs_error(op, &p, why))?;
        tracing::debug!(
            path = %p,
            bytes,
            ms = started.elapsed().as_millis() as u64,
            "fetched over WinRM"
        );
        Ok((hash, bytes, sink))
    }
}

/// powershell.exe running `text`, its stdin closed at once: a powershell.exe started without a
/// console may wait to read its input before it exits (users of PsExec redirect `< NUL` for
/// that); a script never reads stdin, so closing it costs one Send and risks nothing.
fn script_command(text: &str, timeout: Duration) -> RemoteCommand {
    RemoteCommand {
        program: script::POWERSHELL.to_string(),
        args: script::invocation(text),
        stdin: Some(Stdin::new(Vec::new())),
        timeout,
    }
}

/// What arrived, judged: its hash and size when it hashes as the server hashed what it read.
fn judge(decoded: Streamed) -> Result<(String, u64), String> {
    match decoded {
        Streamed::Absent => Err("it does not exist".into()),
        Streamed::Done {
            server_sha256,
            local_sha256,
            bytes,
        } if server_sha256 == local_sha256 => Ok((local_sha256, bytes)),
        Streamed::Done {
            server_sha256,
            local_sha256,
            ..
        } => Err(format!(
            "what arrived has sha256 {local_sha256}, but the server hashed {server_sha256} as it read the file; nothing was kept"
        )),
    }
}

/// A Windows exit code as `ProcessOutcome` holds it: the 32-bit code's bit pattern, as Rust's
/// `ExitStatus::code` gives it on Windows (3221225477, 0xC0000005, is -1073741819).
fn exit_code(code: u32) -> i32 {
    i32::from_ne_bytes(code.to_ne_bytes())
}

/// A script's failure in words: its exit code and the last lines of its stderr only. What a
/// script prints to stdout is its answer, which for a fetch is the file itself (base64 of a key
/// file): it never goes into an error (this is not even given it).
fn script_failed(exit_code: u32, stderr: &[u8]) -> String {
    describe_failure(
        script::POWERSHELL,
        exit_code,
        &String::from_utf8_lossy(stderr),
    )
}

/// Longest line of a tool's output an error quotes, in characters.
const LINE_CAP: usize = 300;

fn describe_failure(program: &str, exit_code: u32, text: &str) -> String {
    let tail: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.char_indices().nth(LINE_CAP) {
            Some((at, _)) => format!("{}...", &l[..at]),
            None => l.to_string(),
        })
        .collect();
    let tail = tail[tail.len().saturating_sub(6)..].join("\n");
    let hint = if text.contains("is not recognized as an internal or external command") {
        " (the server needs PowerShell 2.0: Windows Management Framework 2.0, KB968930, on Windows Server 2003 SP2 / 2008)"
    } else {
        ""
    };
    format!("{program} exited with {exit_code}{hint}:\n{tail}")
}

#[async_trait]
impl Host for WinrmHost {
    async fn run(
        &self,
        spec: &ProcessSpec,
        redactor: &Redactor,
    ) -> Result<ProcessOutcome, ProcessError> {
        let command = spec.display();
        let unsupported = |why: &str| ProcessError::Unsupported {
            program: spec.program.display().to_string(),
            server: self.server().to_string(),
            why: why.to_string(),
        };
        // A WinRS command starts in the account's profile folder with its environment; cmd.exe's
        // `cd` and `set` would set them, and no step asks for either.
        if spec.cwd.is_some() {
            return Err(unsupported(
                "a working folder cannot be set for a command over WinRM",
            ));
        }
        if !spec.env.is_empty() {
            return Err(unsupported(
                "environment variables cannot be set for a command over WinRM",
            ));
        }
        // `env_remove` keeps this machine's secret variables from a local child; a remote
        // command never inherits this machine's environment.
        //
        // A secret argument exists only where the plan said `secrets_on_command_line` (the steps
        // refuse it otherwise): it goes on the command line as the plan chose, and is redacted
        // from the output as `Local` does.
        let redactor = spec.args.iter().fold(redactor.clone(), |r, a| match a {
            Arg::Secret(s) => r.with_argument(s.clone()),
            Arg::Plain(_) => r,
        });
        let remote = RemoteCommand {
            program: script::windows_path(&spec.program.to_string_lossy()),
            args: spec
                .args
                .iter()
                .map(|a| match a {
                    Arg::Plain(s) => s.clone(),
                    Arg::Secret(s) => s.expose().to_string(),
                })
                .collect(),
            // No stdin is an empty one, closed at once: a tool that reads finds end of input, as
            // a local child reading the null device does, instead of waiting out its timeout.
            stdin: Some(Stdin::new(
                spec.stdin
                    .as_ref()
                    .map_or_else(Vec::new, |s| s.expose().as_bytes().to_vec()),
            )),
            timeout: spec.timeout,
        };
        tracing::debug!(%command, server = %self.server(), timeout_secs = spec.timeout.as_secs(), "running over WinRM");
        let started = Instant::now();
        let (outcome, runs) = self.run_command(&remote, spec.effect).await;
        let out = outcome.map_err(|e| match e {
            WinrmError::MayStillBeRunning { why, .. } => ProcessError::MayStillBeRunning {
                command: command.clone(),
                server: self.server().to_string(),
                why: why.to_string(),
            },
            WinrmError::OutputLost {
                exit_code: code, ..
            } => ProcessError::OutputLost {
                command: command.clone(),
                server: self.server().to_string(),
                exit_code: exit_code(code),
                why: match spec.effect {
                    Effect::Changes => "it changes the server, so it was not run again".to_string(),
                    Effect::ReadOnly => format!("on each of {runs} runs"),
                },
            },
            other => ProcessError::Remote {
                command: command.clone(),
                server: self.server().to_string(),
                cause: other.to_string(),
            },
        })?;
        let duration = started.elapsed();
        let text = |b: &[u8]| redactor.redact(&String::from_utf8_lossy(b));
        let exit_code = exit_code(out.exit_code);
        tracing::debug!(%command, exit_code, duration_ms = duration.as_millis() as u64, "finished over WinRM");
        Ok(ProcessOutcome {
            exit_code,
            full_exit_code: true,
            stdout: text(&out.stdout),
            stderr: text(&out.stderr),
            duration,
        })
    }

    async fn exists(&self, path: &Path) -> Result<bool, FsError> {
        Ok(self.stat("look at", path).await?.1 != Stat::Absent)
    }

    async fn is_dir(&self, path: &Path) -> Result<bool, FsError> {
        Ok(self.stat("look at", path).await?.1 == Stat::Dir)
    }

    async fn file_size(&self, path: &Path) -> Result<u64, FsError> {
        let op = "read the size of";
        match self.stat(op, path).await? {
            (_, Stat::File(bytes)) => Ok(bytes),
            (p, Stat::Dir) => Err(self.fs_error(op, &p, "it is a folder".into())),
            (p, Stat::Absent) => Err(self.fs_error(op, &p, "it does not exist".into())),
        }
    }

    async fn sha256_file(&self, path: &Path) -> Result<String, FsError> {
        let op = "hash";
        let p = win(path);
        let out = self
            .script(op, &p, script::sha256(&p), LONG, Effect::ReadOnly)
            .await?;
        match output::sha256(&out).map_err(|e| self.bad_output(op, &p, e))? {
            Some(hash) => Ok(hash),
            None => Err(self.fs_error(op, &p, "it does not exist".into())),
        }
    }

    async fn read_file(&self, path: &Path) -> Result<Vec<u8>, FsError> {
        let (_, _, bytes) = self.stream_into("read", path, || Ok(Vec::new())).await?;
        Ok(bytes)
    }

    async fn walk_files(&self, dir: &Path) -> Result<Vec<String>, FsError> {
        Ok(self
            .walk_stats(dir)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    async fn walk_stats(&self, dir: &Path) -> Result<Vec<(String, FileStat)>, FsError> {
        let op = "list";
        let p = win(dir);
        let out = self
            .script(op, &p, script::walk(&p), LONG, Effect::ReadOnly)
            .await?;
        match output::walk(&out).map_err(|e| self.bad_output(op, &p, e))? {
            Walked::Files(files) => Ok(files),
            Walked::Absent => Err(self.fs_error(op, &p, "it does not exist".into())),
            Walked::NotDir => Err(self.fs_error(op, &p, "it is a file, not a folder".into())),
        }
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), FsError> {
        let op = "rename";
        let (f, t) = (win(from), win(to));
        let what = format!("{f} to {t}");
        let out = self
            .script(op, &what, script::rename(&f, &t), QUICK, Effect::Changes)
            .await?;
        output::ok(&out).map_err(|e| self.bad_output(op, &what, e))
    }

    async fn remove_if_exists(&self, path: &Path) -> Result<(), FsError> {
        let op = "remove";
        let p = win(path);
        let out = self
            .script(op, &p, script::remove_if_exists(&p), QUICK, Effect::Changes)
            .await?;
        output::ok(&out).map_err(|e| self.bad_output(op, &p, e))
    }

    async fn create_parent_dirs(&self, path: &Path) -> Result<(), FsError> {
        let op = "create the folder";
        let p = win(path);
        let Some(parent) = windows_parent(&p) else {
            return Ok(());
        };
        let out = self
            .script(
                op,
                parent,
                script::create_dir(parent),
                QUICK,
                Effect::Changes,
            )
            .await?;
        output::ok(&out).map_err(|e| self.bad_output(op, parent, e))
    }

    async fn restrict_permissions(&self, path: &Path) -> Result<(), FsError> {
        let op = "restrict permissions of";
        let p = win(path);
        // A protected ACL giving only the account WinRM logs on as full control (`script::restrict`
        // says why not icacls): nobody else can read the file.
        let out = self
            .script(op, &p, script::restrict(&p), QUICK, Effect::Changes)
            .await?;
        output::ok(&out).map_err(|e| self.bad_output(op, &p, e))
    }

    async fn installation_in_progress(&self, _msiexec: &Path) -> Result<bool, FsError> {
        let op = "look for an installation in progress:";
        let name = crate::adapters::installer_mutex::NAME;
        let text = script::installation_in_progress(name);
        let out = self.script(op, name, text, QUICK, Effect::ReadOnly).await?;
        output::in_progress(&out).map_err(|e| self.bad_output(op, name, e))
    }

    async fn system_root(&self) -> Result<Option<String>, FsError> {
        let op = "read";
        let what = "%SystemRoot%";
        let out = self
            .script(op, what, script::system_root(), QUICK, Effect::ReadOnly)
            .await?;
        output::system_root(&out).map_err(|e| self.bad_output(op, what, e))
    }

    async fn fetch(&self, remote: &Path, local: &Path) -> Result<String, FsError> {
        let op = "fetch";
        let temp = afs::temp_sibling(local);
        // The file is written as the answers arrive, in bounded memory (made afresh, empty, for
        // each read); a fetch that fails midway removes it, and a killed one leaves it under its
        // partial name for the next run.
        let create = || {
            afs::create_private(&temp)
                .map(std::io::BufWriter::new)
                .map_err(|source| FsError::Io {
                    op: "create",
                    path: temp.clone(),
                    source,
                })
        };
        let result = self.stream_into(op, remote, create).await;
        let result = result.and_then(|(hash, _, file)| {
            drop(file);
            afs::into_place(&temp, local).map(|()| hash)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_of_a_windows_path_is_found_without_the_platforms_rules() {
        assert_eq!(
            windows_parent(r"C:\Upgrade\keys\k.bin"),
            Some(r"C:\Upgrade\keys")
        );
        assert_eq!(windows_parent(r"C:\k.bin"), None, "a drive's root exists");
        assert_eq!(windows_parent("k.bin"), None);
        assert_eq!(
            windows_parent(r"\\server\share\k.bin"),
            Some(r"\\server\share")
        );
    }

    #[test]
    fn a_file_that_does_not_hash_as_the_server_hashed_it_is_refused_naming_both_hashes() {
        let done = |server: &str, local: &str| Streamed::Done {
            server_sha256: server.repeat(64),
            local_sha256: local.repeat(64),
            bytes: 7,
        };
        assert_eq!(judge(done("a", "a")), Ok(("a".repeat(64), 7)));
        let why = judge(done("a", "b")).unwrap_err();
        assert!(
            why.contains(&"a".repeat(64)) && why.contains(&"b".repeat(64)),
            "{why}"
        );
        assert!(judge(Streamed::Absent)
            .unwrap_err()
            .contains("does not exist"));
    }

    /// The file a fetch was sending is not even given to `script_failed`: only the exit code
    /// and stderr, whose lines are capped.
    #[test]
    fn a_failed_script_is_told_by_the_last_lines_of_its_stderr_each_capped() {
        let stderr = format!(
            "Exception calling \"Read\" with \"3\" argument(s): \"The device is not ready.\"\r\n{}\r\n",
            "x".repeat(5000)
        );
        let text = script_failed(1, stderr.as_bytes());
        assert!(text.contains("The device is not ready."), "{text}");
        assert!(
            text.lines().all(|l| l.chars().count() <= LINE_CAP + 3),
            "a line is not capped: {} characters",
            text.len()
        );
    }

    #[test]
    fn a_32_bit_exit_code_keeps_its_bits() {
        assert_eq!(exit_code(1605), 1605);
        assert_eq!(exit_code(3010), 3010);
        assert_eq!(exit_code(3_221_225_477), -1_073_741_819);
        assert_eq!(exit_code(u32::MAX), -1);
    }

    #[test]
    fn a_failure_names_the_exit_code_the_last_lines_and_what_powershell_needs() {
        let stderr = b"'powershell.exe' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n";
        let text = script_failed(1, stderr);
        assert!(text.starts_with("powershell.exe exited with 1"), "{text}");
        assert!(text.contains("KB968930"), "{text}");
        assert!(text.contains("operable program"), "{text}");
    }
}

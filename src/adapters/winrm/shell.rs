//! Running one command in a WinRS cmd shell ([MS-WSMV] 3.1.4.1, 3.1.4.11-13, 3.1.4.2): create the
//! shell, start the command, send its stdin over the stdin stream (never on the command line),
//! receive output until the command reports Done, then delete the shell. Stdout goes to the
//! caller's writer as each Receive answer brings it (a fetched file is never held whole here);
//! stderr is kept, its last `STDERR_CAP` bytes.
//!
//! Once the Command request was sent, nothing here ends the command: on a shell's Delete "any
//! commands in progress SHOULD be immediately terminated" ([MS-WSMV] 3.1.4.4.1), and a terminate
//! Signal ends it too, which would kill an installer half-way. So the shell is deleted only after
//! Done (or when the server refused the Command, so nothing started). A connection lost while
//! receiving hands back a `Pending` for the client to resume over a new logon; any other trouble
//! before Done, and the command's own timeout, leave the shell alone and are `MayStillBeRunning`.
//! Nothing is ever sent twice. A writer that fails does not end the command either: the rest of
//! its output is received and dropped until Done, and the writer's error is the outcome.
//!
//! A Receive whose answer was lost may have carried output, and that output is gone: a server
//! keeps an answer for the client to fetch again only under Robust Connection Support, which a
//! client asks for with `wsmv:OperationID` ([MS-WSMV] 3.1.4.1.39; this client does not, and
//! WinRM 2.0 on Windows Server 2003 has no such cache). So a resumed command that reaches Done
//! ends with `WinrmError::OutputLost` (its exit code and how many answers were lost), never with
//! an output that silently misses a piece.

use std::io::Write;
use std::time::Duration;

use tokio::time::Instant;

use super::envelope::{self, Operation};
use super::error::{Interruption, WinrmError};
use super::response;
use super::session::{message_id, Session};
use super::{RemoteCommand, RemoteExit};

/// The longest a single Receive waits on the server for output (its OperationTimeout); the
/// command's own timeout is enforced across as many Receives as it takes.
const RECEIVE_POLL: Duration = Duration::from_secs(20);
/// Extra time the HTTP round trip of a Receive may take beyond its OperationTimeout.
const GRACE: Duration = Duration::from_secs(10);
/// The most stderr kept of a command: its last bytes, where a failing program says why.
pub const STDERR_CAP: usize = 64 * 1024;

/// A command's stderr: its last `STDERR_CAP` bytes and how many came before them.
#[derive(Debug, Default)]
struct Stderr {
    tail: Vec<u8>,
    dropped: u64,
}

impl Stderr {
    fn push(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > STDERR_CAP {
            let cut = self.tail.len() - STDERR_CAP;
            self.tail.drain(..cut);
            self.dropped += cut as u64;
        }
    }

    /// The bytes kept, after a line that says how many were left out.
    fn into_bytes(self) -> Vec<u8> {
        if self.dropped == 0 {
            return self.tail;
        }
        let mut out = format!(
            "[the first {} bytes of stderr were left out]\r\n",
            self.dropped
        )
        .into_bytes();
        out.extend_from_slice(&self.tail);
        out
    }
}

/// One command's run over one session.
pub struct Run<'a> {
    pub session: &'a mut Session,
    pub url: &'a str,
    pub user: &'a str,
    /// Bounds every operation other than Receive.
    pub operation_timeout: Duration,
}

/// A command that was started and has not reported Done when the connection was lost (or its
/// answer could not be read): where to go on receiving over a new logon.
#[derive(Debug)]
pub struct Pending {
    pub shell: String,
    pub command: String,
    program: String,
    timeout: Duration,
    deadline: Instant,
    /// Stderr received before the loss (output in an answer that was lost is gone with it).
    stderr: Stderr,
    /// Why the caller's stdout writer refused a piece: the rest is received and dropped.
    refused: Option<std::io::Error>,
    /// Receives sent whose answers were lost (or unreadable): each may have held output.
    lost_answers: u32,
    /// The first loss: the operation and its cause.
    pub operation: &'static str,
    pub cause: String,
}

impl Pending {
    /// "May still be running", naming the loss and what the new logons gave (`after`).
    pub fn unresolved(self, endpoint: &str, after: &str) -> WinrmError {
        WinrmError::MayStillBeRunning {
            program: self.program,
            endpoint: endpoint.to_string(),
            why: Interruption::Dropped {
                operation: self.operation,
                cause: format!("{}; {after}", self.cause),
            },
        }
    }

    /// Is the command's own timeout past?
    pub fn past_deadline(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// "May still be running": no Done within the command's own timeout.
    pub fn timed_out(self, endpoint: &str) -> WinrmError {
        WinrmError::MayStillBeRunning {
            program: self.program,
            endpoint: endpoint.to_string(),
            why: Interruption::TimedOut(self.timeout),
        }
    }
}

/// How far a run got.
#[derive(Debug)]
pub enum Step {
    /// The command's result, or an error that needs no new logon.
    Finished(Result<RemoteExit, WinrmError>),
    /// The connection was lost while receiving: resume with `Run::resume` over a new session.
    Lost(Pending),
}

impl Run<'_> {
    async fn call(
        &mut self,
        op: Operation<'_>,
        shell: Option<&str>,
        server_timeout: Duration,
        wait: Duration,
    ) -> Result<Vec<u8>, WinrmError> {
        let xml = envelope::request(self.url, &op, shell, &message_id()?, server_timeout);
        self.session
            .exchange(op.name(), xml.as_bytes(), wait, self.user)
            .await
    }

    async fn simple(
        &mut self,
        op: Operation<'_>,
        shell: Option<&str>,
    ) -> Result<Vec<u8>, WinrmError> {
        let t = self.operation_timeout;
        self.call(op, shell, t, t + GRACE).await
    }

    /// Creates a shell, starts the command in it, and receives until it is done, writing its
    /// stdout to `stdout` as it arrives.
    pub async fn run(&mut self, command: &RemoteCommand, stdout: &mut (dyn Write + Send)) -> Step {
        match self.start(command).await {
            Ok(pending) => self.resume(pending, stdout).await,
            Err(e) => Step::Finished(Err(e)),
        }
    }

    /// Creates the shell, sends the Command and the stdin: the command's receiving point.
    async fn start(&mut self, command: &RemoteCommand) -> Result<Pending, WinrmError> {
        let (program, args) = super::cmdline::quote(&command.program, &command.args)?;
        let created = self.simple(Operation::Create, None).await?;
        let shell = response::shell_id(&created).map_err(|e| self.protocol("Create", e))?;
        tracing::debug!(shell = %shell, program = %command.program, "WinRM: shell created");
        let deadline = Instant::now() + command.timeout;
        // From here on the server may have started the program: anything but an answered fault to
        // the Command itself is "may still run", and the shell is left alone.
        let may_run = |operation: &'static str, e: WinrmError| WinrmError::MayStillBeRunning {
            program: command.program.clone(),
            endpoint: self.url.to_string(),
            why: match e {
                WinrmError::Lost { cause, .. } => Interruption::Dropped { operation, cause },
                e @ WinrmError::Protocol { .. } => Interruption::Dropped {
                    operation,
                    cause: e.to_string(),
                },
                other => Interruption::Failed {
                    operation,
                    cause: other.to_string(),
                },
            },
        };
        let started = match self
            .simple(
                Operation::Command {
                    program: &program,
                    args: &args,
                },
                Some(&shell),
            )
            .await
        {
            Ok(xml) => xml,
            // The server refused the Command: nothing started, the shell can go.
            Err(e @ WinrmError::Fault { .. }) => {
                self.delete(&shell).await;
                return Err(e);
            }
            Err(e) => return Err(may_run("Command", e)),
        };
        let id = response::command_id(&started)
            .map_err(|e| may_run("Command", self.protocol("Command", e)))?;
        tracing::debug!(shell = %shell, command = %id, "WinRM: command started");
        // A Send whose answer is lost may or may not have delivered its bytes; sending them again
        // could hand the program a second copy, so a failed Send is "may still run" at once.
        if let Some(stdin) = &command.stdin {
            let bytes = stdin.bytes();
            let mut chunks = bytes.chunks(envelope::STDIN_CHUNK).peekable();
            if chunks.peek().is_none() {
                let op = Operation::Send {
                    command: &id,
                    data: &[],
                    end: true,
                };
                self.simple(op, Some(&shell))
                    .await
                    .map_err(|e| may_run("Send", e))?;
            }
            while let Some(chunk) = chunks.next() {
                let end = chunks.peek().is_none();
                let op = Operation::Send {
                    command: &id,
                    data: chunk,
                    end,
                };
                self.simple(op, Some(&shell))
                    .await
                    .map_err(|e| may_run("Send", e))?;
            }
        }
        Ok(Pending {
            shell,
            command: id,
            program: command.program.clone(),
            timeout: command.timeout,
            deadline,
            stderr: Stderr::default(),
            refused: None,
            lost_answers: 0,
            operation: "Receive",
            cause: String::new(),
        })
    }

    /// Receives from a started command until it reports Done (then deletes its shell), its own
    /// timeout passes, or the connection is lost (`Step::Lost`, to resume over a new session).
    /// Each answer's stdout is written to `stdout` before the next Receive is sent.
    pub async fn resume(&mut self, mut pending: Pending, stdout: &mut (dyn Write + Send)) -> Step {
        let (shell, id) = (pending.shell.clone(), pending.command.clone());
        loop {
            let left = pending.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Our timeout does not end the command (no terminate, no Delete): an installer
                // killed half-way is worse than one that finishes unobserved. The server's shell
                // idle timeout (winrm/config/winrs IdleTimeout) reclaims the shell later.
                return Step::Finished(Err(pending.timed_out(self.url)));
            }
            let poll = left.min(RECEIVE_POLL).max(Duration::from_secs(1));
            let answer = self
                .call(
                    Operation::Receive { command: &id },
                    Some(&shell),
                    poll,
                    poll + GRACE,
                )
                .await;
            let lost = |pending: Pending, cause: String| {
                Step::Lost(Pending {
                    operation: "Receive",
                    lost_answers: pending.lost_answers + 1,
                    // The first loss is the one reported; later ones are the resumes' story.
                    cause: if pending.cause.is_empty() {
                        cause
                    } else {
                        pending.cause.clone()
                    },
                    ..pending
                })
            };
            let xml = match answer {
                Ok(xml) => xml,
                Err(WinrmError::Fault { fault, .. }) if fault.is_timed_out() => continue,
                Err(WinrmError::Lost { cause, .. }) => return lost(pending, cause),
                Err(e @ WinrmError::Protocol { .. }) => return lost(pending, e.to_string()),
                Err(e) => {
                    return Step::Finished(Err(WinrmError::MayStillBeRunning {
                        program: pending.program,
                        endpoint: self.url.to_string(),
                        why: Interruption::Failed {
                            operation: "Receive",
                            cause: e.to_string(),
                        },
                    }))
                }
            };
            let got = match response::received(&xml, &id) {
                Ok(got) => got,
                Err(e) => {
                    let cause = self.protocol("Receive", e).to_string();
                    return lost(pending, cause);
                }
            };
            if pending.refused.is_none() && !got.stdout.is_empty() {
                if let Err(e) = stdout.write_all(&got.stdout) {
                    tracing::debug!(command = %id, "WinRM: the command's stdout was refused here ({e}); receiving the rest until it ends, without ending it");
                    pending.refused = Some(e);
                }
            }
            pending.stderr.push(&got.stderr);
            if let Some(code) = got.done {
                tracing::debug!(command = %id, exit_code = code, "WinRM: command done");
                self.delete(&shell).await;
                // A loss comes first: a writer that refused what arrived around a gap (a
                // decoder finding its lines out of step) is told so, and the caller may run the
                // command again; a refusal with nothing lost is the writer's own error.
                return Step::Finished(match pending.refused {
                    refused if pending.lost_answers > 0 => Err(WinrmError::OutputLost {
                        program: pending.program,
                        endpoint: self.url.to_string(),
                        exit_code: code,
                        lost_answers: pending.lost_answers,
                        refused: refused.map(|e| e.to_string()),
                    }),
                    Some(source) => Err(WinrmError::StdoutRefused {
                        program: pending.program,
                        endpoint: self.url.to_string(),
                        exit_code: code,
                        source,
                    }),
                    None => Ok(RemoteExit {
                        stderr: pending.stderr.into_bytes(),
                        exit_code: code,
                    }),
                });
            }
        }
    }

    /// Deletes `shell` (only ever one whose command is done or never started); a failure is
    /// logged, never returned (the command's outcome matters more).
    async fn delete(&mut self, shell: &str) {
        if let Err(e) = self.simple(Operation::Delete, Some(shell)).await {
            tracing::warn!(shell = %shell, "WinRM: the shell could not be deleted: {e}");
        }
    }

    fn protocol(&self, operation: &'static str, e: response::ResponseError) -> WinrmError {
        WinrmError::Protocol {
            endpoint: self.url.to_string(),
            operation,
            cause: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_stderr_keeps_its_last_bytes_and_says_how_many_came_before() {
        let mut e = Stderr::default();
        e.push(b"short\r\n");
        assert_eq!(e.into_bytes(), b"short\r\n");
        let mut e = Stderr::default();
        e.push(&vec![b'a'; STDERR_CAP]);
        e.push(b"the last line\r\n");
        let kept = String::from_utf8(e.into_bytes()).unwrap();
        assert!(
            kept.starts_with("[the first 15 bytes of stderr were left out]\r\n"),
            "{}",
            &kept[..60]
        );
        assert!(kept.ends_with("aaathe last line\r\n"));
        assert_eq!(
            kept.len(),
            STDERR_CAP + "[the first 15 bytes of stderr were left out]\r\n".len()
        );
    }
}

//! Running one command in a WinRS cmd shell ([MS-WSMV] 3.1.4.1, 3.1.4.11-13, 3.1.4.2): create the
//! shell, start the command, send its stdin over the stdin stream (never on the command line),
//! receive output until the command reports Done, then delete the shell.
//!
//! Once the Command request was sent, nothing here ends the command: on a shell's Delete "any
//! commands in progress SHOULD be immediately terminated" ([MS-WSMV] 3.1.4.4.1), and a terminate
//! Signal ends it too, which would kill an installer half-way. So the shell is deleted only after
//! Done (or when the server refused the Command, so nothing started). A connection lost while
//! receiving hands back a `Pending` for the client to resume over a new logon; any other trouble
//! before Done, and the command's own timeout, leave the shell alone and are `MayStillBeRunning`.
//! Nothing is ever sent twice.

use std::time::Duration;

use tokio::time::Instant;

use super::envelope::{self, Operation};
use super::error::{Interruption, WinrmError};
use super::response;
use super::session::{message_id, Session};
use super::{RemoteCommand, RemoteOutput};

/// The longest a single Receive waits on the server for output (its OperationTimeout); the
/// command's own timeout is enforced across as many Receives as it takes.
const RECEIVE_POLL: Duration = Duration::from_secs(20);
/// Extra time the HTTP round trip of a Receive may take beyond its OperationTimeout.
const GRACE: Duration = Duration::from_secs(10);

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
    /// Output received before the loss (output in an answer that was lost is gone with it).
    out: RemoteOutput,
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
    Finished(Result<RemoteOutput, WinrmError>),
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

    /// Creates a shell, starts the command in it, and receives until it is done.
    pub async fn run(&mut self, command: &RemoteCommand) -> Step {
        match self.start(command).await {
            Ok(pending) => self.resume(pending).await,
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
            out: RemoteOutput::default(),
            operation: "Receive",
            cause: String::new(),
        })
    }

    /// Receives from a started command until it reports Done (then deletes its shell), its own
    /// timeout passes, or the connection is lost (`Step::Lost`, to resume over a new session).
    pub async fn resume(&mut self, mut pending: Pending) -> Step {
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
            pending.out.stdout.extend_from_slice(&got.stdout);
            pending.out.stderr.extend_from_slice(&got.stderr);
            if let Some(code) = got.done {
                pending.out.exit_code = code;
                tracing::debug!(command = %id, exit_code = code, "WinRM: command done");
                self.delete(&shell).await;
                return Step::Finished(Ok(pending.out));
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

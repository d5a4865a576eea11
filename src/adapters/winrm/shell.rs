//! Running one command in a WinRS cmd shell ([MS-WSMV] 3.1.4.1, 3.1.4.11-14, 3.1.4.2): create the
//! shell, start the command, send its stdin over the stdin stream (never on the command line),
//! receive output until the exit code arrives, and delete the shell whatever happened. Past the
//! command's timeout it sends the terminate signal; a timeout or a lost connection after the
//! command was sent is `MayStillBeRunning`, and nothing is retried.

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
    /// A shell this run created but could not delete because the connection was lost.
    pub leftover: Option<String>,
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

    /// Creates a shell, runs the command in it, deletes the shell.
    pub async fn run(&mut self, command: &RemoteCommand) -> Result<RemoteOutput, WinrmError> {
        let (program, args) = super::cmdline::quote(&command.program, &command.args)?;
        let created = self.simple(Operation::Create, None).await?;
        let shell = response::shell_id(&created).map_err(|e| self.protocol("Create", e))?;
        tracing::debug!(shell = %shell, program = %command.program, "WinRM: shell created");
        let outcome = self.in_shell(&shell, &program, &args, command).await;
        match &outcome {
            // This session cannot go on; the caller deletes the shell over a new one.
            Err(e) if e.ends_session() => self.leftover = Some(shell),
            _ => self.delete(&shell).await,
        }
        outcome
    }

    /// Deletes `shell`; a failure is logged, never returned (the command's outcome matters more).
    pub async fn delete(&mut self, shell: &str) {
        if let Err(e) = self.simple(Operation::Delete, Some(shell)).await {
            tracing::warn!(shell = %shell, "WinRM: the shell could not be deleted: {e}");
        }
    }

    async fn in_shell(
        &mut self,
        shell: &str,
        program: &str,
        args: &[String],
        command: &RemoteCommand,
    ) -> Result<RemoteOutput, WinrmError> {
        let deadline = Instant::now() + command.timeout;
        let may_run = |why: Interruption| WinrmError::MayStillBeRunning {
            program: command.program.clone(),
            endpoint: self.url.to_string(),
            why,
        };
        let dropped = |e: WinrmError| match e {
            WinrmError::Lost {
                operation, cause, ..
            } => may_run(Interruption::Dropped { operation, cause }),
            other => other,
        };
        // From here on the server may have started the program: a lost answer is "may still run".
        let started = self
            .simple(Operation::Command { program, args }, Some(shell))
            .await
            .map_err(dropped)?;
        let id = response::command_id(&started).map_err(|e| self.protocol("Command", e))?;
        tracing::debug!(shell = %shell, command = %id, "WinRM: command started");
        if let Some(stdin) = &command.stdin {
            let bytes = stdin.bytes();
            let mut chunks = bytes.chunks(envelope::STDIN_CHUNK).peekable();
            if chunks.peek().is_none() {
                let op = Operation::Send {
                    command: &id,
                    data: &[],
                    end: true,
                };
                self.simple(op, Some(shell)).await.map_err(dropped)?;
            }
            while let Some(chunk) = chunks.next() {
                let end = chunks.peek().is_none();
                let op = Operation::Send {
                    command: &id,
                    data: chunk,
                    end,
                };
                self.simple(op, Some(shell)).await.map_err(dropped)?;
            }
        }
        let mut out = RemoteOutput::default();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.terminate(shell, &id).await;
                return Err(may_run(Interruption::TimedOut(command.timeout)));
            }
            let poll = left.min(RECEIVE_POLL).max(Duration::from_secs(1));
            let answer = self
                .call(
                    Operation::Receive { command: &id },
                    Some(shell),
                    poll,
                    poll + GRACE,
                )
                .await;
            let xml = match answer {
                Ok(xml) => xml,
                Err(WinrmError::Fault { fault, .. }) if fault.is_timed_out() => continue,
                Err(e) => return Err(dropped(e)),
            };
            let got = response::received(&xml, &id).map_err(|e| self.protocol("Receive", e))?;
            out.stdout.extend_from_slice(&got.stdout);
            out.stderr.extend_from_slice(&got.stderr);
            if let Some(code) = got.done {
                out.exit_code = code;
                tracing::debug!(command = %id, exit_code = code, "WinRM: command done");
                return Ok(out);
            }
        }
    }

    /// Signal terminate; a failure is logged (the shell's deletion follows anyway).
    async fn terminate(&mut self, shell: &str, command: &str) {
        if let Err(e) = self
            .simple(Operation::Terminate { command }, Some(shell))
            .await
        {
            tracing::warn!(shell = %shell, "WinRM: the terminate signal failed: {e}");
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

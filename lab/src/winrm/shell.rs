//! The WinRS shells of the lab's WinRM listener ([MS-WSMV] 3.1.4.x, the cmd shell): shells hold
//! commands; a command runs one stand-in (`tools::run`, the same entry the wrapper scripts use, so
//! the lab's drives and argv.log apply) on a thread of its own, with stdin fed by Send and
//! stdout/stderr collected for Receive. Exit codes stay full 32-bit Windows codes.
//! TEST DOUBLE. Delete and Signal end a running command as Windows does: [MS-WSMV] 3.1.4.4.1 says
//! that on a shell's Delete "any commands in progress SHOULD be immediately terminated", and
//! 3.1.4.12 (Signal) that terminate ends the command. The lab closes the command's stdin and sets
//! its cancel flag: a stand-in still in its `slow-tools` sleep stops there without making its
//! change (a stand-in past it makes its change whole: it takes milliseconds). Shells live in the
//! listener, not in a connection, so a client that logs on again over a new connection goes on
//! receiving from a command it started (lab/README.md).

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::cmdline::{self, Resolved};
use crate::tools::{self, ToolIo};

/// STATUS_CONTROL_C_EXIT: the exit code of a console process ended by Ctrl+C.
pub const STATUS_CONTROL_C_EXIT: u32 = 0xC000_013A;

/// An operation on a shell or command that does not exist (any more).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShellError {
    #[error("shell {0} not found")]
    ShellNotFound(String),
    #[error("command {command} not found in shell {shell}")]
    CommandNotFound { shell: String, command: String },
    #[error("the command's stdin was already closed")]
    StdinClosed,
    #[error("cannot make an id: {0}")]
    NoId(String),
}

/// What a Receive hands back: output since the last Receive, and the exit code once the command
/// has ended and all of its output is in this chunk.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: Option<u32>,
}

/// The most output bytes one Receive answer carries. WinRM keeps every answer within the
/// MaxEnvelopeSize the client asked for (WinRM 2.0's default MaxEnvelopeSizekb is 150) and gives
/// the rest in the next Receives; stream data travels base64-encoded, so 150 KiB of envelope holds
/// a little under 112 KiB of output. An answer with everything at once would let a client pass the
/// lab that a real server would split.
pub const RECEIVE_MAX: usize = 96 * 1024;

fn take_at_most(buf: &mut Vec<u8>, n: usize) -> Vec<u8> {
    if buf.len() <= n {
        std::mem::take(buf)
    } else {
        let rest = buf.split_off(n);
        std::mem::replace(buf, rest)
    }
}

/// How a Signal asks a command to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Terminate,
    CtrlC,
}

/// Every shell of one listener.
pub struct Shells {
    lab: PathBuf,
    shells: Mutex<HashMap<String, HashMap<String, Arc<Command>>>>,
}

/// One running (or ended) command.
struct Command {
    /// The command line WinRS was given.
    line: String,
    stdin: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    out: Mutex<Chunk>,
    notify: tokio::sync::Notify,
    /// Set by Delete and Signal: the stand-in stops if it has not acted yet.
    cancel: AtomicBool,
}

impl Command {
    fn out(&self) -> MutexGuard<'_, Chunk> {
        // A poisoned lock only means a stand-in thread panicked; its output is still usable.
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finish(&self, exit: u32) {
        let mut out = self.out();
        if out.exit.is_none() {
            out.exit = Some(exit);
        }
        drop(out);
        self.notify.notify_one();
    }
}

impl Shells {
    pub fn new(lab: PathBuf) -> Shells {
        Shells {
            lab,
            shells: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, HashMap<String, Arc<Command>>>> {
        self.shells.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a shell; returns its ShellId.
    pub fn create(&self) -> std::io::Result<String> {
        let id = new_id()?;
        self.lock().insert(id.clone(), HashMap::new());
        Ok(id)
    }

    /// Deletes a shell, ending its commands ([MS-WSMV] 3.1.4.4.1: "any commands in progress
    /// SHOULD be immediately terminated").
    pub fn delete(&self, shell: &str) -> Result<(), ShellError> {
        let commands = self
            .lock()
            .remove(shell)
            .ok_or_else(|| ShellError::ShellNotFound(shell.to_string()))?;
        for c in commands.values() {
            end(c);
        }
        Ok(())
    }

    /// Starts `line` in `shell`; returns the CommandId.
    /// The command line of a started command (for the lab's faults), if it exists.
    pub fn line(&self, shell: &str, command: &str) -> Option<String> {
        self.get(shell, command).ok().map(|c| c.line.clone())
    }

    pub fn command(&self, shell: &str, line: &str) -> Result<String, ShellError> {
        let id = new_id().map_err(|e| ShellError::NoId(e.to_string()))?;
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let command = Arc::new(Command {
            line: line.to_string(),
            stdin: Mutex::new(Some(tx)),
            out: Mutex::new(Chunk::default()),
            notify: tokio::sync::Notify::new(),
            cancel: AtomicBool::new(false),
        });
        {
            let mut shells = self.lock();
            let commands = shells
                .get_mut(shell)
                .ok_or_else(|| ShellError::ShellNotFound(shell.to_string()))?;
            commands.insert(id.clone(), command.clone());
        }
        match cmdline::resolve(&self.lab, line) {
            Resolved::Fails { stderr, exit } => {
                command.out().stderr.extend_from_slice(stderr.as_bytes());
                command.finish(exit);
            }
            Resolved::Run { tool, args } => {
                let lab = self.lab.clone();
                let runner = command.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("winrs-{tool}"))
                    .spawn(move || run_stand_in(&lab, &tool, &args, rx, &runner));
                if let Err(e) = spawned {
                    command.out().stderr.extend_from_slice(
                        format!("upgrade-lab: cannot start: {e}\r\n").as_bytes(),
                    );
                    command.finish(1);
                }
            }
        }
        Ok(id)
    }

    fn get(&self, shell: &str, command: &str) -> Result<Arc<Command>, ShellError> {
        let shells = self.lock();
        let commands = shells
            .get(shell)
            .ok_or_else(|| ShellError::ShellNotFound(shell.to_string()))?;
        commands
            .get(command)
            .cloned()
            .ok_or_else(|| ShellError::CommandNotFound {
                shell: shell.to_string(),
                command: command.to_string(),
            })
    }

    /// Feeds stdin; `end` closes it.
    pub fn send(
        &self,
        shell: &str,
        command: &str,
        data: Vec<u8>,
        end: bool,
    ) -> Result<(), ShellError> {
        let c = self.get(shell, command)?;
        let mut stdin = c.stdin.lock().unwrap_or_else(|p| p.into_inner());
        let tx = stdin.as_ref().ok_or(ShellError::StdinClosed)?;
        // A stand-in that has ended no longer reads: its input is dropped, as a pipe's would be.
        let _ = tx.send(data);
        if end {
            *stdin = None;
        }
        Ok(())
    }

    /// Waits up to `timeout` for output or the end of the command. `Ok(None)`: nothing came in
    /// time (the caller answers w:TimedOut, as Windows does after OperationTimeout).
    pub async fn receive(
        &self,
        shell: &str,
        command: &str,
        timeout: Duration,
    ) -> Result<Option<Chunk>, ShellError> {
        let c = self.get(shell, command)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let mut out = c.out();
                if !out.stdout.is_empty() || !out.stderr.is_empty() || out.exit.is_some() {
                    // One answer holds at most RECEIVE_MAX bytes of output, as WinRM keeps each
                    // answer within MaxEnvelopeSize; the end of the command is told only with
                    // its last output.
                    let stdout = take_at_most(&mut out.stdout, RECEIVE_MAX);
                    let stderr = take_at_most(&mut out.stderr, RECEIVE_MAX - stdout.len());
                    let drained = out.stdout.is_empty() && out.stderr.is_empty();
                    let chunk = Chunk {
                        stdout,
                        stderr,
                        exit: if drained { out.exit } else { None },
                    };
                    return Ok(Some(chunk));
                }
            }
            if tokio::time::timeout_at(deadline, c.notify.notified())
                .await
                .is_err()
            {
                return Ok(None);
            }
        }
    }

    /// Ends a command ([MS-WSMV] 3.1.4.12): terminate removes it, ctrl_c gives the client
    /// STATUS_CONTROL_C_EXIT, as a console program's default Ctrl+C handler ends it.
    pub fn signal(&self, shell: &str, command: &str, signal: Signal) -> Result<(), ShellError> {
        let c = self.get(shell, command)?;
        end(&c);
        match signal {
            Signal::CtrlC => c.finish(STATUS_CONTROL_C_EXIT),
            Signal::Terminate => {
                if let Some(commands) = self.lock().get_mut(shell) {
                    commands.remove(command);
                }
            }
        }
        Ok(())
    }
}

/// Ends a command: its stdin closed, its stand-in cancelled if it has not acted yet.
fn end(c: &Command) {
    c.cancel.store(true, Ordering::SeqCst);
    *c.stdin.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

/// A fresh upper-case GUID, as Windows writes ShellIds and CommandIds.
fn new_id() -> std::io::Result<String> {
    let bytes = crate::state::random_bytes(16)?;
    Ok(crate::layout::guid(&bytes)
        .trim_matches(['{', '}'])
        .to_string())
}

fn run_stand_in(
    lab: &std::path::Path,
    tool: &str,
    args: &[String],
    stdin: mpsc::Receiver<Vec<u8>>,
    command: &Arc<Command>,
) {
    let mut input = ChannelReader {
        rx: stdin,
        buf: Vec::new(),
        pos: 0,
    };
    let mut stdout = OutWriter {
        command: command.clone(),
        stderr: false,
    };
    let mut stderr = OutWriter {
        command: command.clone(),
        stderr: true,
    };
    let mut io = ToolIo {
        stdin: &mut input,
        stdout: &mut stdout,
        stderr: &mut stderr,
    };
    let code = tools::run_cancellable(lab, tool, args, &mut io, &command.cancel);
    // Windows exit codes are DWORDs: the stand-in's i32 is that DWORD's bit pattern.
    command.finish(code as u32);
}

/// A stand-in's stdin: the chunks Send delivered, then end of file once stdin is closed.
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

/// A stand-in's stdout or stderr: appended to the command's output, waking a waiting Receive.
struct OutWriter {
    command: Arc<Command>,
    stderr: bool,
}

/// How much output waits for Receive before a writing stand-in waits too, as a program waits on
/// a full pipe while the service holds output no client has received (it also keeps the lab's
/// backlog, which each Receive answer is taken from the front of, small).
const PIPE_BUFFER: usize = 1024 * 1024;

impl Write for OutWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        loop {
            if self.command.cancel.load(Ordering::SeqCst) {
                return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
            }
            let out = self.command.out();
            if out.stdout.len() + out.stderr.len() < PIPE_BUFFER {
                break;
            }
            drop(out);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        {
            let mut out = self.command.out();
            if self.stderr {
                out.stderr.extend_from_slice(data);
            } else {
                out.stdout.extend_from_slice(data);
            }
        }
        self.command.notify.notify_one();
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{InitOptions, Lab};
    use crate::Flavour;

    fn lab() -> (tempfile::TempDir, Lab) {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = InitOptions::new(Flavour::Iifp);
        // The shell runs stand-ins in-process; the wrapper scripts are not used here.
        o.exe = Some(tmp.path().join("upgrade-lab"));
        let lab = Lab::init_with(&tmp.path().join("lab"), &o).unwrap();
        (tmp, lab)
    }

    fn running(lab: &Lab) -> bool {
        lab.state().unwrap().services.iter().any(|s| s.running)
    }

    async fn exit_of(shells: &Shells, shell: &str, command: &str) -> Option<u32> {
        let mut exit = None;
        while exit.is_none() {
            let chunk = shells.receive(shell, command, Duration::from_secs(5)).await;
            exit = chunk.ok()??.exit;
        }
        exit
    }

    /// WinRM splits a command's output over Receive answers that each fit MaxEnvelopeSize, and
    /// tells the end of the command only with the last of them.
    #[tokio::test]
    async fn a_large_output_comes_in_answers_of_at_most_receive_max_bytes_and_the_end_comes_last() {
        use base64::Engine as _;
        let (_t, lab) = lab();
        let shells = Shells::new(lab.dir().to_path_buf());
        let shell = shells.create().unwrap();
        let script = "$ErrorActionPreference = 'Stop'\n$b = New-Object byte[] 300000\n[System.Convert]::ToBase64String($b)\n";
        let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let line = format!(
            "powershell -NoProfile -NonInteractive -EncodedCommand {}",
            base64::engine::general_purpose::STANDARD.encode(utf16)
        );
        let id = shells.command(&shell, &line).unwrap();
        let (mut total, mut answers) = (0usize, 0usize);
        loop {
            let chunk = shells
                .receive(&shell, &id, Duration::from_secs(10))
                .await
                .unwrap()
                .expect("an answer in time");
            assert!(chunk.stdout.len() + chunk.stderr.len() <= RECEIVE_MAX);
            total += chunk.stdout.len();
            answers += 1;
            if let Some(exit) = chunk.exit {
                assert_eq!(exit, 0);
                break;
            }
        }
        assert_eq!(
            total,
            400_000 + 2,
            "the base64 of 300,000 bytes and its line end"
        );
        assert!(answers >= 5, "{answers} answers");
    }

    /// [MS-WSMV] 3.1.4.4.1: Delete ends the commands in progress. A `sc stop` still in its
    /// `slow-tools` sleep when its shell is deleted never stops the service; the same command left
    /// alone does.
    #[tokio::test]
    async fn deleting_a_shell_whose_stand_in_is_sleeping_cancels_its_change() {
        let (_t, lab) = lab();
        lab.set_faults(&["slow-tools=600"]).unwrap();
        let shells = Shells::new(lab.dir().to_path_buf());
        let shell = shells.create().unwrap();
        shells.command(&shell, "sc stop miiserver").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        shells.delete(&shell).unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(
            running(&lab),
            "the deleted shell's sc stop stopped the service"
        );

        let shell = shells.create().unwrap();
        let id = shells.command(&shell, "sc stop miiserver").unwrap();
        assert_eq!(exit_of(&shells, &shell, &id).await, Some(0));
        assert!(!running(&lab));
    }

    /// [MS-WSMV] 3.1.4.12: the terminate signal ends the command the same way.
    #[tokio::test]
    async fn the_terminate_signal_cancels_a_sleeping_stand_in() {
        let (_t, lab) = lab();
        lab.set_faults(&["slow-tools=600"]).unwrap();
        let shells = Shells::new(lab.dir().to_path_buf());
        let shell = shells.create().unwrap();
        let id = shells.command(&shell, "sc stop miiserver").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        shells.signal(&shell, &id, Signal::Terminate).unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(running(&lab), "the terminated sc stop stopped the service");
    }
}

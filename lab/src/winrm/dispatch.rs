//! The WS-Management operations of the cmd shell ([MS-WSMV] 3.1.4.1 Create, 3.1.4.11 Command,
//! 3.1.4.12 Send, 3.1.4.13 Receive, 3.1.4.14 Signal, 3.1.4.2 Delete): one decrypted SOAP request in,
//! one SOAP response or fault out, with the lab's `winrm-drop`, `winrm-drop-answered` and
//! `winrm-slow` faults applied.
//! It neither authenticates nor encrypts (`conn` does); the shells themselves are `shell`'s.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;

use super::shell::{Chunk, ShellError, Shells, Signal};
use super::soap::{self, Element, Envelope, Fault, Node, NS_SHELL};
use crate::faults;

pub const RESOURCE_CMD: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd";
const ACTION_CREATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create";
const ACTION_DELETE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete";
const SHELL_ACTIONS: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/";
const STATE_RUNNING: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running";
const STATE_DONE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done";
const SIGNAL_TERMINATE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate";
const SIGNAL_CTRL_C: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c";
/// The OperationTimeout when the client gives none (WinRM's default MaxTimeoutms is 60 s).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do with one request.
#[derive(Debug)]
pub enum Outcome {
    /// HTTP 200 with this SOAP response.
    Reply(Vec<u8>),
    /// HTTP 500 with this SOAP fault, as Windows answers a fault.
    Fault(Vec<u8>),
    /// Close the connection without answering (the `winrm-drop` and `winrm-drop-answered`
    /// faults).
    Drop,
}

/// The shell service of one listener.
pub struct Service {
    lab: PathBuf,
    shells: Shells,
    /// The server's name in faults (WSManFault Machine).
    machine: String,
    /// The listener's URL (the Address of a created shell).
    address: String,
    /// (the `winrm-drop` value last seen, Receives counted since then)
    drop_count: Mutex<(Option<u32>, u32)>,
    /// The same for `winrm-drop-answered`.
    drop_answered_count: Mutex<(Option<u32>, u32)>,
}

impl Service {
    pub fn new(lab: PathBuf, machine: String, address: String) -> Service {
        Service {
            shells: Shells::new(lab.clone()),
            lab,
            machine,
            address,
            drop_count: Mutex::new((None, 0)),
            drop_answered_count: Mutex::new((None, 0)),
        }
    }

    /// The lab folder (its faults).
    pub fn lab(&self) -> &std::path::Path {
        &self.lab
    }

    /// Answers one decrypted SOAP request.
    pub async fn handle(&self, xml: &[u8]) -> Outcome {
        let env = match soap::envelope(xml) {
            Ok(env) => env,
            Err(e) => {
                let fault = lab_fault("s:Sender", "w:SchemaValidationError", &e.to_string());
                return Outcome::Fault(fault.envelope(&uuid_urn(), "", &self.machine));
            }
        };
        let faults = faults::load(&self.lab).unwrap_or_default();
        let receive = env.action == format!("{SHELL_ACTIONS}Receive");
        if receive && count(&self.drop_count, faults.winrm_drop_at) {
            tracing::info!("winrm-drop: dropping the connection during this Receive");
            return Outcome::Drop;
        }
        if let Some(ms) = faults.winrm_slow_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let answered = self.operate(&env).await;
        let counted = faults
            .winrm_drop_of
            .as_deref()
            .is_none_or(|program| self.receives_from(&env, program));
        if receive && counted && count(&self.drop_answered_count, faults.winrm_drop_answered_at) {
            // The output this answer took from the command is gone with it: WinRM 2.0 keeps no
            // copy of an answer it has sent ([MS-WSMV] 3.1.4.1.39, Robust Connection Support,
            // is for clients that ask with wsmv:OperationID, and came later).
            tracing::info!("winrm-drop-answered: dropping the connection instead of sending this Receive's answer");
            return Outcome::Drop;
        }
        let message_id = uuid_urn();
        match answered {
            Ok((action, body)) => {
                Outcome::Reply(soap::response(&action, &message_id, &env.message_id, body))
            }
            Err(fault) => {
                Outcome::Fault(fault.envelope(&message_id, &env.message_id, &self.machine))
            }
        }
    }

    /// Whether this Receive is from a command whose program's file name is `program` (the
    /// `winrm-drop-of` fault).
    fn receives_from(&self, env: &Envelope, program: &str) -> bool {
        let shell = env.shell_id.clone().unwrap_or_default();
        let command = env
            .body
            .as_ref()
            .and_then(|b| b.child(NS_SHELL, "DesiredStream"))
            .and_then(|d| d.attr("CommandId"))
            .unwrap_or_default();
        self.shells.line(&shell, command).is_some_and(|line| {
            let first = match line.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next().unwrap_or_default(),
                None => line.split(' ').next().unwrap_or_default(),
            };
            first
                .rsplit(['\\', '/'])
                .next()
                .is_some_and(|name| name.eq_ignore_ascii_case(program))
        })
    }

    async fn operate(&self, env: &Envelope) -> Result<(String, Option<Node>), Fault> {
        if env.resource_uri != RESOURCE_CMD {
            return Err(resource_not_found(&env.resource_uri));
        }
        let action = env.action.as_str();
        if action == ACTION_CREATE {
            let id = self.shells.create().map_err(|e| internal(&e.to_string()))?;
            return Ok((format!("{ACTION_CREATE}Response"), Some(self.created(&id))));
        }
        let Some(op) = action
            .strip_prefix(SHELL_ACTIONS)
            .or((action == ACTION_DELETE).then_some("Delete"))
        else {
            return Err(action_not_supported(action));
        };
        let shell = env.shell_id.clone().unwrap_or_default();
        let body = env.body.clone().unwrap_or_default();
        let reply =
            |name: &str, node: Option<Node>| (format!("{SHELL_ACTIONS}{name}Response"), node);
        match op {
            "Delete" => {
                self.shells.delete(&shell).map_err(shell_fault)?;
                Ok((format!("{ACTION_DELETE}Response"), None))
            }
            "Command" => {
                let line = command_line(&body)?;
                let id = self.shells.command(&shell, &line).map_err(shell_fault)?;
                Ok(reply(
                    "Command",
                    Some(
                        Node::new("rsp:CommandResponse").child(Node::new("rsp:CommandId").text(id)),
                    ),
                ))
            }
            "Send" => {
                for stream in body.children_named(NS_SHELL, "Stream") {
                    let command = stream.attr("CommandId").unwrap_or_default();
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(stream.text.trim())
                        .map_err(|e| invalid(&format!("the stdin stream is not base64: {e}")))?;
                    let end = stream.attr("End").is_some_and(|v| v == "true");
                    self.shells
                        .send(&shell, command, data, end)
                        .map_err(shell_fault)?;
                }
                Ok(reply("Send", Some(Node::new("rsp:SendResponse"))))
            }
            "Receive" => {
                let desired = body
                    .child(NS_SHELL, "DesiredStream")
                    .ok_or_else(|| invalid("Receive names no DesiredStream"))?;
                let command = desired.attr("CommandId").unwrap_or_default().to_string();
                let timeout = env.operation_timeout.unwrap_or(DEFAULT_TIMEOUT);
                match self
                    .shells
                    .receive(&shell, &command, timeout)
                    .await
                    .map_err(shell_fault)?
                {
                    Some(chunk) => Ok(reply("Receive", Some(received(&command, &chunk)))),
                    None => Err(timed_out()),
                }
            }
            "Signal" => {
                let command = body.attr("CommandId").unwrap_or_default();
                let code = body
                    .child(NS_SHELL, "Code")
                    .map(|c| c.text.trim().to_string())
                    .unwrap_or_default();
                let signal = match code.as_str() {
                    SIGNAL_TERMINATE => Signal::Terminate,
                    SIGNAL_CTRL_C => Signal::CtrlC,
                    _ => return Err(invalid(&format!("unknown signal code `{code}`"))),
                };
                self.shells
                    .signal(&shell, command, signal)
                    .map_err(shell_fault)?;
                Ok(reply("Signal", Some(Node::new("rsp:SignalResponse"))))
            }
            _ => Err(action_not_supported(action)),
        }
    }

    fn created(&self, id: &str) -> Node {
        Node::new("x:ResourceCreated")
            .child(Node::new("a:Address").text(self.address.clone()))
            .child(
                Node::new("a:ReferenceParameters")
                    .child(Node::new("w:ResourceURI").text(RESOURCE_CMD))
                    .child(
                        Node::new("w:SelectorSet")
                            .child(Node::new("w:Selector").attr("Name", "ShellId").text(id)),
                    ),
            )
    }
}

/// Counts a Receive against a drop fault's `counter`; true when it is the one the fault's N
/// (`at`) names. A new value of the fault starts the count again.
fn count(counter: &Mutex<(Option<u32>, u32)>, at: Option<u32>) -> bool {
    let mut count = counter.lock().unwrap_or_else(|p| p.into_inner());
    if count.0 != at {
        *count = (at, 0);
    }
    count.1 += 1;
    at == Some(count.1)
}

/// The command line WinRS runs: Command, then each Arguments, separated by spaces.
fn command_line(body: &Element) -> Result<String, Fault> {
    if !body.is(NS_SHELL, "CommandLine") {
        return Err(invalid("Command needs an rsp:CommandLine body"));
    }
    let command = body
        .child(NS_SHELL, "Command")
        .map(|c| c.text.trim().to_string())
        .ok_or_else(|| invalid("CommandLine has no Command"))?;
    let mut line = command;
    for a in body.children_named(NS_SHELL, "Arguments") {
        line.push(' ');
        line.push_str(&a.text);
    }
    Ok(line)
}

/// A ReceiveResponse: the output as base64 streams, then either Running or Done with the exit
/// code and both streams marked End.
fn received(command: &str, chunk: &Chunk) -> Node {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let stream = |name: &str| {
        Node::new("rsp:Stream")
            .attr("Name", name)
            .attr("CommandId", command)
    };
    let mut nodes = Vec::new();
    if !chunk.stdout.is_empty() {
        nodes.push(stream("stdout").text(b64(&chunk.stdout)));
    }
    if !chunk.stderr.is_empty() {
        nodes.push(stream("stderr").text(b64(&chunk.stderr)));
    }
    match chunk.exit {
        Some(code) => {
            nodes.push(stream("stdout").attr("End", "true"));
            nodes.push(stream("stderr").attr("End", "true"));
            nodes.push(
                Node::new("rsp:CommandState")
                    .attr("CommandId", command)
                    .attr("State", STATE_DONE)
                    .child(Node::new("rsp:ExitCode").text(code.to_string())),
            );
        }
        None => nodes.push(
            Node::new("rsp:CommandState")
                .attr("CommandId", command)
                .attr("State", STATE_RUNNING),
        ),
    }
    Node::new("rsp:ReceiveResponse").children(nodes)
}

fn uuid_urn() -> String {
    let bytes = crate::state::random_bytes(16).unwrap_or_else(|_| vec![0; 16]);
    format!(
        "uuid:{}",
        crate::layout::guid(&bytes).trim_matches(['{', '}'])
    )
}

/// An unknown ShellId: Windows' fault (subcode InvalidSelectors, ERROR_WSMAN_UNEXPECTED_SELECTORS
/// 2150858843, "the shell was not found on the server").
fn shell_fault(e: ShellError) -> Fault {
    match e {
        ShellError::ShellNotFound(id) => Fault {
            code: "s:Sender",
            subcode: "w:InvalidSelectors",
            wsman_code: Some(2_150_858_843),
            message: format!("The request for the Windows Remote Shell with ShellId {id} failed because the shell was not found on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on the server. Provide the correct ShellId or create a new shell and retry the operation. "),
        },
        ShellError::CommandNotFound { .. } | ShellError::StdinClosed => invalid(&e.to_string()),
        ShellError::NoId(_) => internal(&e.to_string()),
    }
}

/// No output within OperationTimeout: w:TimedOut with ERROR_WSMAN_OPERATION_TIMEDOUT (2150858793),
/// which clients answer by sending Receive again.
fn timed_out() -> Fault {
    Fault {
        code: "s:Receiver",
        subcode: "w:TimedOut",
        wsman_code: Some(2_150_858_793),
        message: "The WS-Management service cannot complete the operation within the time specified in OperationTimeout. ".into(),
    }
}

/// ERROR_WSMAN_RESOURCE_NOT_FOUND (0x80338000).
fn resource_not_found(uri: &str) -> Fault {
    Fault {
        code: "s:Sender",
        subcode: "w:DestinationUnreachable",
        wsman_code: Some(2_150_858_752),
        message: format!("The WS-Management service cannot process the request. The service cannot find the resource identified by the resource URI and selectors. (resource URI `{uri}`; the lab serves only the cmd shell)"),
    }
}

/// ERROR_WSMAN_INVALID_ACTIONURI (0x80338001).
fn action_not_supported(action: &str) -> Fault {
    Fault {
        code: "s:Sender",
        subcode: "a:ActionNotSupported",
        wsman_code: Some(2_150_858_753),
        message: format!("The WS-Management service cannot process the request. The WS-Addressing action URI is invalid. (`{action}`)"),
    }
}

/// A request the lab cannot act on; the wording is the lab's own.
fn invalid(why: &str) -> Fault {
    lab_fault("s:Sender", "w:InvalidParameter", why)
}

fn internal(why: &str) -> Fault {
    lab_fault("s:Receiver", "w:InternalError", why)
}

/// A fault whose Windows error number the lab does not know (no WSManFault Code).
fn lab_fault(code: &'static str, subcode: &'static str, why: &str) -> Fault {
    Fault {
        code,
        subcode,
        wsman_code: None,
        message: format!("The WS-Management service cannot process the request: {why}"),
    }
}

//! The WS-Management requests of the cmd shell, as [MS-WSMV] 3.1.4.1 (Create), 3.1.4.11
//! (Command), 3.1.4.12 (Send), 3.1.4.13 (Receive), 3.1.4.14 (Signal) and 3.1.4.2 (Delete) show
//! them: a SOAP 1.2 envelope with the WS-Addressing and WS-Management headers, the shell named by
//! the ShellId selector. Builds text only; every value is XML-escaped here.

use std::time::Duration;

use quick_xml::escape::escape;

const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
const NS_ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
const NS_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
const NS_SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";
const RESOURCE_CMD: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd";
const ACTION_CREATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create";
const ACTION_DELETE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete";
const ACTION_SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/";
/// WinRM's default MaxEnvelopeSize (150 KiB); a Send carries at most `STDIN_CHUNK` bytes of stdin.
const MAX_ENVELOPE: u32 = 153_600;
/// Stdin bytes per Send: base64 makes 4/3 of it, well inside MaxEnvelopeSize.
pub const STDIN_CHUNK: usize = 64 * 1024;

/// One request: which shell operation, on which shell, with which body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation<'a> {
    Create,
    /// Run `program` with `args` (already quoted for the command line).
    Command {
        program: &'a str,
        args: &'a [String],
    },
    /// Stdin bytes for a command; `end` closes its stdin.
    Send {
        command: &'a str,
        data: &'a [u8],
        end: bool,
    },
    Receive {
        command: &'a str,
    },
    Delete,
}

impl Operation<'_> {
    /// The operation's name in logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Create => "Create",
            Operation::Command { .. } => "Command",
            Operation::Send { .. } => "Send",
            Operation::Receive { .. } => "Receive",
            Operation::Delete => "Delete",
        }
    }

    fn action(&self) -> String {
        match self {
            Operation::Create => ACTION_CREATE.to_string(),
            Operation::Delete => ACTION_DELETE.to_string(),
            other => format!("{ACTION_SHELL}{}", other.name()),
        }
    }
}

/// The request envelope for `op` against `to` (the endpoint URL), in shell `shell` (none for
/// Create), with `message_id` (`uuid:...`) and the server-side `timeout` (OperationTimeout).
pub fn request(
    to: &str,
    op: &Operation<'_>,
    shell: Option<&str>,
    message_id: &str,
    timeout: Duration,
) -> String {
    let mut header = format!(
        "<a:To>{to}</a:To><w:ResourceURI s:mustUnderstand=\"true\">{RESOURCE_CMD}</w:ResourceURI><a:ReplyTo><a:Address s:mustUnderstand=\"true\">{ANONYMOUS}</a:Address></a:ReplyTo><a:Action s:mustUnderstand=\"true\">{action}</a:Action><w:MaxEnvelopeSize s:mustUnderstand=\"true\">{MAX_ENVELOPE}</w:MaxEnvelopeSize><a:MessageID>{id}</a:MessageID><w:Locale xml:lang=\"en-US\" s:mustUnderstand=\"false\"/><w:OperationTimeout>PT{secs}.{millis:03}S</w:OperationTimeout>",
        to = escape(to),
        action = op.action(),
        id = escape(message_id),
        secs = timeout.as_secs(),
        millis = timeout.subsec_millis(),
    );
    if let Some(shell) = shell {
        header.push_str(&format!(
            "<w:SelectorSet><w:Selector Name=\"ShellId\">{}</w:Selector></w:SelectorSet>",
            escape(shell)
        ));
    }
    if let Operation::Command { .. } = op {
        // Stdin as a console (what a password prompt reads), and the program started directly,
        // not through cmd.exe: its operators, %VAR% expansion and `/c` quote stripping play no
        // part in how the arguments arrive (WinRS options WINRS_CONSOLEMODE_STDIN and
        // WINRS_SKIP_CMD_SHELL of [MS-WSMV]).
        header.push_str("<w:OptionSet><w:Option Name=\"WINRS_CONSOLEMODE_STDIN\">TRUE</w:Option><w:Option Name=\"WINRS_SKIP_CMD_SHELL\">TRUE</w:Option></w:OptionSet>");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:w=\"{NS_WSMAN}\" xmlns:rsp=\"{NS_SHELL}\"><s:Header>{header}</s:Header><s:Body>{}</s:Body></s:Envelope>",
        body(op)
    )
}

fn body(op: &Operation<'_>) -> String {
    use base64::Engine;
    match op {
        Operation::Create => "<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>".to_string(),
        Operation::Command { program, args } => {
            let mut line = format!("<rsp:CommandLine><rsp:Command>{}</rsp:Command>", escape(*program));
            for a in args.iter() {
                line.push_str(&format!("<rsp:Arguments>{}</rsp:Arguments>", escape(a.as_str())));
            }
            line.push_str("</rsp:CommandLine>");
            line
        }
        Operation::Send { command, data, end } => format!(
            "<rsp:Send><rsp:Stream Name=\"stdin\" CommandId=\"{}\"{}>{}</rsp:Stream></rsp:Send>",
            escape(*command),
            if *end { " End=\"true\"" } else { "" },
            base64::engine::general_purpose::STANDARD.encode(data)
        ),
        Operation::Receive { command } => format!(
            "<rsp:Receive><rsp:DesiredStream CommandId=\"{}\">stdout stderr</rsp:DesiredStream></rsp:Receive>",
            escape(*command)
        ),
        Operation::Delete => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: &str = "http://server:5985/wsman";

    fn req(op: Operation<'_>, shell: Option<&str>) -> String {
        request(
            TO,
            &op,
            shell,
            "uuid:00000000-0000-0000-0000-000000000001",
            Duration::from_secs(20),
        )
    }

    /// [MS-WSMV] 3.1.4.1 (Create): the cmd shell's ResourceURI, the transfer Create action
    /// and an rsp:Shell body with stdin in and stdout/stderr out.
    #[test]
    fn a_create_is_the_transfer_create_of_a_cmd_shell() {
        let x = req(Operation::Create, None);
        assert!(x.contains("<a:Action s:mustUnderstand=\"true\">http://schemas.xmlsoap.org/ws/2004/09/transfer/Create</a:Action>"));
        assert!(x.contains("<w:ResourceURI s:mustUnderstand=\"true\">http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>"));
        assert!(x.contains("<rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams>"));
        assert!(x.contains("<w:OperationTimeout>PT20.000S</w:OperationTimeout>"));
        assert!(!x.contains("SelectorSet"));
    }

    /// [MS-WSMV] 3.1.4.11-3.1.4.14: Command, Send, Receive and Signal name the shell by its ShellId
    /// selector and the command by CommandId; stdin travels base64-encoded in rsp:Stream.
    #[test]
    fn the_shell_operations_name_the_shell_and_the_command() {
        let args = vec!["query".to_string(), "\"HKLM\\A & B\"".to_string()];
        let x = req(
            Operation::Command {
                program: "reg",
                args: &args,
            },
            Some("S-1"),
        );
        assert!(x.contains(
            "<w:SelectorSet><w:Selector Name=\"ShellId\">S-1</w:Selector></w:SelectorSet>"
        ));
        assert!(x.contains("<w:Option Name=\"WINRS_SKIP_CMD_SHELL\">TRUE</w:Option>"));
        assert!(x.contains("<rsp:Command>reg</rsp:Command><rsp:Arguments>query</rsp:Arguments><rsp:Arguments>&quot;HKLM\\A &amp; B&quot;</rsp:Arguments>"));
        let x = req(
            Operation::Send {
                command: "C-1",
                data: b"pw\n",
                end: true,
            },
            Some("S-1"),
        );
        assert!(x.contains(
            "<rsp:Stream Name=\"stdin\" CommandId=\"C-1\" End=\"true\">cHcK</rsp:Stream>"
        ));
        let x = req(Operation::Receive { command: "C-1" }, Some("S-1"));
        assert!(
            x.contains("<rsp:DesiredStream CommandId=\"C-1\">stdout stderr</rsp:DesiredStream>")
        );
        assert!(x.contains("/windows/shell/Receive</a:Action>"));
        let x = req(Operation::Delete, Some("S-1"));
        assert!(x.contains("/transfer/Delete</a:Action>") && x.contains("<s:Body></s:Body>"));
    }
}

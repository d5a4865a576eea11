//! Reading the WS-Management responses of the cmd shell ([MS-WSMV] 3.1.4.1, 3.1.4.11, 3.1.4.13):
//! the ShellId of a created shell, the CommandId of a started command, the output streams, state
//! and exit code of a Receive, and a SOAP fault with its WSManFault detail. Elements are matched by
//! namespace URI and local name (the prefixes are the server's choice). Parsing only.

use base64::Engine;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
const NS_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
const NS_SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
const NS_FAULT: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault";
const STATE_DONE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done";

/// A response that is not what the operation answers with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the server's answer is not a valid WS-Management response: {0}")]
pub struct ResponseError(pub String);

/// A SOAP fault: code, subcode, reason, and the WSManFault detail where Windows gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// e.g. `s:Receiver`.
    pub code: String,
    /// e.g. `w:TimedOut`.
    pub subcode: String,
    /// The WSManFault Code: a Windows error number (e.g. 2150858793).
    pub wsman_code: Option<u32>,
    pub reason: String,
}

impl Fault {
    /// w:TimedOut (ERROR_WSMAN_OPERATION_TIMEDOUT): a Receive saw no output within its
    /// OperationTimeout; the client asks again ([MS-WSMV] 3.1.4.13).
    pub fn is_timed_out(&self) -> bool {
        self.wsman_code == Some(2_150_858_793) || self.subcode.ends_with(":TimedOut")
    }
}

/// What one Receive brought: output since the last one, and the exit code once the command ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The command's exit code as Windows' 32-bit value, once its state is Done.
    pub done: Option<u32>,
}

/// One element: namespace URI, local name, attributes (local name, value), text, children.
#[derive(Debug, Default, Clone)]
struct Element {
    ns: String,
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every element at any depth below this one, in document order.
    fn descendants(&self) -> Vec<&Element> {
        let mut out = Vec::new();
        let mut stack: Vec<&Element> = self.children.iter().rev().collect();
        while let Some(e) = stack.pop() {
            out.push(e);
            stack.extend(e.children.iter().rev());
        }
        out
    }

    fn find(&self, ns: &str, name: &str) -> Option<&Element> {
        self.descendants().into_iter().find(|e| e.is(ns, name))
    }
}

/// The fault in a response, if it is one.
pub fn fault(xml: &[u8]) -> Result<Option<Fault>, ResponseError> {
    let root = parse(xml)?;
    let Some(f) = root.find(NS_SOAP, "Fault") else {
        return Ok(None);
    };
    let values: Vec<String> = f
        .descendants()
        .into_iter()
        .filter(|e| e.is(NS_SOAP, "Value"))
        .map(|e| e.text.trim().to_string())
        .collect();
    let detail = f.find(NS_FAULT, "WSManFault");
    let message = detail
        .and_then(|d| d.find(NS_FAULT, "Message"))
        .map(|m| m.text.trim().to_string());
    let reason = f
        .find(NS_SOAP, "Text")
        .map(|t| t.text.trim().to_string())
        .or(message)
        .unwrap_or_default();
    Ok(Some(Fault {
        code: values.first().cloned().unwrap_or_default(),
        subcode: values.get(1).cloned().unwrap_or_default(),
        wsman_code: detail
            .and_then(|d| d.attr("Code"))
            .and_then(|c| c.parse().ok()),
        reason,
    }))
}

/// The ShellId of a Create response: the ShellId selector of the created resource (Windows), or an
/// rsp:ShellId element (the rsp:Shell body some versions add).
pub fn shell_id(xml: &[u8]) -> Result<String, ResponseError> {
    let root = parse(xml)?;
    root.descendants()
        .into_iter()
        .find(|e| e.is(NS_WSMAN, "Selector") && e.attr("Name") == Some("ShellId"))
        .or_else(|| root.find(NS_SHELL, "ShellId"))
        .map(|e| e.text.trim().to_string())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ResponseError("the Create response names no ShellId".into()))
}

/// The CommandId of a Command response.
pub fn command_id(xml: &[u8]) -> Result<String, ResponseError> {
    parse(xml)?
        .find(NS_SHELL, "CommandId")
        .map(|e| e.text.trim().to_string())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ResponseError("the Command response names no CommandId".into()))
}

/// The streams and state of a Receive response for `command`.
pub fn received(xml: &[u8], command: &str) -> Result<Received, ResponseError> {
    let root = parse(xml)?;
    let response = root.find(NS_SHELL, "ReceiveResponse").ok_or_else(|| {
        ResponseError("a Receive was answered without rsp:ReceiveResponse".into())
    })?;
    let mut out = Received::default();
    for e in response.descendants() {
        let ours = e
            .attr("CommandId")
            .is_none_or(|c| c.eq_ignore_ascii_case(command));
        if e.is(NS_SHELL, "Stream") && ours {
            let data = base64::engine::general_purpose::STANDARD
                .decode(e.text.trim())
                .map_err(|err| ResponseError(format!("an output stream is not base64: {err}")))?;
            match e.attr("Name") {
                Some("stdout") => out.stdout.extend_from_slice(&data),
                Some("stderr") => out.stderr.extend_from_slice(&data),
                _ => {}
            }
        }
        if e.is(NS_SHELL, "CommandState") && ours && e.attr("State") == Some(STATE_DONE) {
            let code = e
                .find(NS_SHELL, "ExitCode")
                .ok_or_else(|| ResponseError("the command is Done but has no ExitCode".into()))?;
            out.done = Some(exit_code(code.text.trim())?);
        }
    }
    Ok(out)
}

/// A Windows exit code as a 32-bit value: written unsigned (`3221225477`) or as the signed
/// reading of the same bits (`-1073741819`), both STATUS_ACCESS_VIOLATION.
fn exit_code(text: &str) -> Result<u32, ResponseError> {
    let n: i64 = text
        .parse()
        .map_err(|_| ResponseError(format!("the exit code `{text}` is not a number")))?;
    u32::try_from(n)
        .or_else(|_| i32::try_from(n).map(|signed| signed as u32))
        .map_err(|_| ResponseError(format!("the exit code {n} does not fit 32 bits")))
}

fn parse(xml: &[u8]) -> Result<Element, ResponseError> {
    let bad = |e: &dyn std::fmt::Display| ResponseError(format!("XML: {e}"));
    let mut reader = NsReader::from_reader(xml);
    let mut stack: Vec<Element> = vec![Element::default()];
    let mut buf = Vec::new();
    loop {
        let (resolved, event) = reader
            .read_resolved_event_into(&mut buf)
            .map_err(|e| bad(&e))?;
        let ns = match resolved {
            ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
            _ => String::new(),
        };
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(start) | Event::Empty(start) => {
                let mut element = Element {
                    ns,
                    name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    ..Element::default()
                };
                for a in start.attributes() {
                    let a = a.map_err(|e| bad(&e))?;
                    let value = a.unescape_value().map_err(|e| bad(&e))?;
                    element.attrs.push((
                        String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                        value.into_owned(),
                    ));
                }
                if empty {
                    push_child(&mut stack, element);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .filter(|_| !stack.is_empty())
                    .ok_or_else(|| ResponseError("unbalanced end tag".into()))?;
                push_child(&mut stack, element);
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| bad(&e))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text);
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    match stack.pop() {
        Some(root) if stack.is_empty() => Ok(root),
        _ => Err(ResponseError("the document ends inside an element".into())),
    }
}

fn push_child(stack: &mut [Element], element: Element) {
    if let Some(parent) = stack.last_mut() {
        parent.children.push(element);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><s:Header><a:Action>x</a:Action></s:Header><s:Body>"#;
    const TAIL: &str = "</s:Body></s:Envelope>";

    fn doc(body: &str) -> Vec<u8> {
        format!("{HEAD}{body}{TAIL}").into_bytes()
    }

    /// [MS-WSMV] 3.1.4.1: the created shell is named by the ShellId selector of x:ResourceCreated.
    #[test]
    fn a_create_response_gives_the_shell_id_of_its_selector() {
        let x = doc(
            r#"<x:ResourceCreated><a:Address>http://s:5985/wsman</a:Address><a:ReferenceParameters><w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI><w:SelectorSet><w:Selector Name="ShellId">0B2F3E1A-5C47-4E13-9A1B-2D2E5A3B7C11</w:Selector></w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>"#,
        );
        assert_eq!(
            shell_id(&x).unwrap(),
            "0B2F3E1A-5C47-4E13-9A1B-2D2E5A3B7C11"
        );
        let x = doc("<rsp:Shell><rsp:ShellId>S-2</rsp:ShellId></rsp:Shell>");
        assert_eq!(shell_id(&x).unwrap(), "S-2");
        assert!(shell_id(&doc("<x:ResourceCreated/>")).is_err());
    }

    /// [MS-WSMV] 3.1.4.13: output arrives as base64 rsp:Stream elements per CommandId; the last
    /// response has both streams End and CommandState Done with the ExitCode.
    #[test]
    fn a_receive_response_gives_output_and_at_the_end_the_exit_code() {
        let running = doc(
            r#"<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="C">aGVsbG8=</rsp:Stream><rsp:Stream Name="stderr" CommandId="C">ZXJy</rsp:Stream><rsp:CommandState CommandId="C" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running"/></rsp:ReceiveResponse>"#,
        );
        let r = received(&running, "C").unwrap();
        assert_eq!(
            (r.stdout.as_slice(), r.stderr.as_slice(), r.done),
            (&b"hello"[..], &b"err"[..], None)
        );
        let done = doc(
            r#"<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="C" End="true"></rsp:Stream><rsp:Stream Name="stderr" CommandId="C" End="true"></rsp:Stream><rsp:CommandState CommandId="C" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"><rsp:ExitCode>1605</rsp:ExitCode></rsp:CommandState></rsp:ReceiveResponse>"#,
        );
        assert_eq!(received(&done, "C").unwrap().done, Some(1605));
    }

    #[test]
    fn an_exit_code_keeps_all_32_bits_whether_written_signed_or_unsigned() {
        assert_eq!(exit_code("3221225477").unwrap(), 0xC000_0005);
        assert_eq!(exit_code("-1073741819").unwrap(), 0xC000_0005);
        assert_eq!(exit_code("4294967295").unwrap(), u32::MAX);
        assert!(exit_code("4294967296").is_err());
        assert!(exit_code("x").is_err());
    }

    /// A WS-Management fault (DSP0226) as Windows sends it: SOAP code and subcode, reason, WSManFault Code.
    #[test]
    fn a_fault_gives_its_subcode_reason_and_windows_error_number() {
        let x = doc(
            r#"<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:TimedOut</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">The WS-Management service cannot complete the operation within the time specified in OperationTimeout.</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="2150858793" Machine="srv"><f:Message>m</f:Message></f:WSManFault></s:Detail></s:Fault>"#,
        );
        let f = fault(&x).unwrap().unwrap();
        assert_eq!(f.code, "s:Receiver");
        assert_eq!(f.subcode, "w:TimedOut");
        assert_eq!(f.wsman_code, Some(2_150_858_793));
        assert!(f.is_timed_out());
        assert!(f.reason.starts_with("The WS-Management service"));
        assert_eq!(fault(&doc("<rsp:ReceiveResponse/>")).unwrap(), None);
    }
}

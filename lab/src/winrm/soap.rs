//! SOAP for the lab's WS-Management listener: reads a request envelope (quick-xml, namespaces
//! resolved) into its addressing header and body tree, and writes response envelopes and
//! WS-Management faults the way Windows lays them out ([MS-WSMV] 2.2.4, 3.1.4; DMTF DSP0226).
//! XML only: what the operations mean is `shell`'s and `dispatch`'s job.

use std::time::Duration;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use quick_xml::Writer;

pub const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const NS_ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
pub const NS_TRANSFER: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer";
pub const NS_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
pub const NS_MS_WSMAN: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd";
pub const NS_SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
pub const NS_FAULT: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault";
pub const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";

/// A request body that is not a SOAP envelope the listener can read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct XmlError(pub String);

/// One element of a parsed document: namespace URI, local name, attributes by local name, the
/// concatenated text directly inside it, and its child elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub ns: String,
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is(ns, name))
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a whole document into its root element.
pub fn parse(xml: &[u8]) -> Result<Element, XmlError> {
    let mut reader = NsReader::from_reader(xml);
    let mut buf = Vec::new();
    let mut stack: Vec<Element> = Vec::new();
    let bad = |e: &dyn std::fmt::Display| XmlError(format!("the XML is not well formed: {e}"));
    loop {
        let (ns, event) = reader
            .read_resolved_event_into(&mut buf)
            .map_err(|e| bad(&e))?;
        let ns = match ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            _ => String::new(),
        };
        match event {
            Event::Start(e) => stack.push(element(ns, &e)?),
            Event::Empty(e) => {
                let el = element(ns, &e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| bad(&"unbalanced end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(el),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.unescape().map_err(|e| bad(&e))?);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::Eof => return Err(bad(&"the document ends before its root element does")),
            _ => {}
        }
        buf.clear();
    }
}

fn element(ns: String, e: &BytesStart) -> Result<Element, XmlError> {
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| XmlError(format!("bad attribute: {e}")))?;
        let key = a.key;
        if key.as_ref() == b"xmlns" || key.prefix().is_some_and(|p| p.as_ref() == b"xmlns") {
            continue;
        }
        let value = a
            .unescape_value()
            .map_err(|e| XmlError(format!("bad attribute value: {e}")))?;
        attrs.push((
            String::from_utf8_lossy(key.local_name().as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(Element {
        ns,
        name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
        attrs,
        text: String::new(),
        children: Vec::new(),
    })
}

/// A request envelope: its WS-Addressing / WS-Management header and its body's first element.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub action: String,
    pub message_id: String,
    pub resource_uri: String,
    /// The `ShellId` selector, if any.
    pub shell_id: Option<String>,
    pub operation_timeout: Option<Duration>,
    pub body: Option<Element>,
}

/// Reads a request envelope.
pub fn envelope(xml: &[u8]) -> Result<Envelope, XmlError> {
    let root = parse(xml)?;
    if !root.is(NS_SOAP, "Envelope") {
        return Err(XmlError(format!(
            "the root element is {{{}}}{}, not a SOAP 1.2 Envelope",
            root.ns, root.name
        )));
    }
    let header = root
        .child(NS_SOAP, "Header")
        .ok_or_else(|| XmlError("the envelope has no Header".into()))?;
    let text = |ns: &str, name: &str| header.child(ns, name).map(|e| e.text.trim().to_string());
    let action = text(NS_ADDRESSING, "Action")
        .ok_or_else(|| XmlError("the header has no a:Action".into()))?;
    let message_id = text(NS_ADDRESSING, "MessageID")
        .ok_or_else(|| XmlError("the header has no a:MessageID".into()))?;
    let shell_id = header.child(NS_WSMAN, "SelectorSet").and_then(|set| {
        set.children_named(NS_WSMAN, "Selector")
            .find(|s| s.attr("Name") == Some("ShellId"))
            .map(|s| s.text.trim().to_string())
    });
    Ok(Envelope {
        action,
        message_id,
        resource_uri: text(NS_WSMAN, "ResourceURI").unwrap_or_default(),
        shell_id,
        operation_timeout: text(NS_WSMAN, "OperationTimeout").and_then(|t| duration(&t)),
        body: root
            .child(NS_SOAP, "Body")
            .and_then(|b| b.children.first().cloned()),
    })
}

/// An xs:duration of the form WinRM clients send (`PT20S`, `PT60.000S`, `PT1M30S`).
pub fn duration(text: &str) -> Option<Duration> {
    let rest = text.strip_prefix("PT")?;
    let mut secs = 0f64;
    let mut num = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'H' | 'M' | 'S' => {
                let n: f64 = num.parse().ok()?;
                secs += n * match c {
                    'H' => 3600.0,
                    'M' => 60.0,
                    _ => 1.0,
                };
                num.clear();
            }
            _ => return None,
        }
    }
    num.is_empty().then(|| Duration::from_secs_f64(secs))
}

/// An element to write: a prefixed name, attributes, text, children.
#[derive(Debug, Clone)]
pub struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    text: Option<String>,
    children: Vec<Node>,
}

impl Node {
    pub fn new(name: &str) -> Node {
        Node {
            name: name.to_string(),
            attrs: Vec::new(),
            text: None,
            children: Vec::new(),
        }
    }

    pub fn attr(mut self, name: &str, value: impl Into<String>) -> Node {
        self.attrs.push((name.to_string(), value.into()));
        self
    }

    pub fn text(mut self, text: impl Into<String>) -> Node {
        self.text = Some(text.into());
        self
    }

    pub fn child(mut self, child: Node) -> Node {
        self.children.push(child);
        self
    }

    pub fn children(mut self, children: impl IntoIterator<Item = Node>) -> Node {
        self.children.extend(children);
        self
    }

    fn write(&self, w: &mut Writer<Vec<u8>>) -> std::io::Result<()> {
        let mut start = BytesStart::new(self.name.as_str());
        for (n, v) in &self.attrs {
            start.push_attribute((n.as_str(), v.as_str()));
        }
        if self.text.is_none() && self.children.is_empty() {
            return w.write_event(Event::Empty(start));
        }
        w.write_event(Event::Start(start))?;
        if let Some(t) = &self.text {
            w.write_event(Event::Text(BytesText::new(t)))?;
        }
        for c in &self.children {
            c.write(w)?;
        }
        w.write_event(Event::End(BytesEnd::new(self.name.as_str())))
    }
}

/// A response envelope for `action`, relating to the request `relates_to`, with `body` inside
/// s:Body (none: an empty body, as a DeleteResponse has).
pub fn response(action: &str, message_id: &str, relates_to: &str, body: Option<Node>) -> Vec<u8> {
    let header = Node::new("s:Header")
        .child(Node::new("a:Action").text(action))
        .child(Node::new("a:MessageID").text(message_id))
        .child(Node::new("a:To").text(ANONYMOUS))
        .child(Node::new("a:RelatesTo").text(relates_to));
    let envelope = Node::new("s:Envelope")
        .attr("xml:lang", "en-US")
        .attr("xmlns:s", NS_SOAP)
        .attr("xmlns:a", NS_ADDRESSING)
        .attr("xmlns:x", NS_TRANSFER)
        .attr("xmlns:w", NS_WSMAN)
        .attr("xmlns:rsp", NS_SHELL)
        .attr("xmlns:p", NS_MS_WSMAN)
        .child(header)
        .child(Node::new("s:Body").children(body));
    let mut w = Writer::new(Vec::new());
    // Writing into a Vec cannot fail.
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)));
    let _ = envelope.write(&mut w);
    w.into_inner()
}

/// A WS-Management fault as Windows reports it: SOAP code and subcode, the reason text, and the
/// WSManFault detail with Windows' error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `s:Sender` or `s:Receiver`.
    pub code: &'static str,
    /// e.g. `w:InvalidSelectors`.
    pub subcode: &'static str,
    /// The WSManFault Code (a Windows error number), where the lab knows Windows' one.
    pub wsman_code: Option<u32>,
    pub message: String,
}

/// The action of every WS-Management fault message (DSP0226).
pub const FAULT_ACTION: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault";

impl Fault {
    /// The envelope of this fault, from `machine`.
    pub fn envelope(&self, message_id: &str, relates_to: &str, machine: &str) -> Vec<u8> {
        let mut detail = Node::new("f:WSManFault").attr("xmlns:f", NS_FAULT);
        if let Some(code) = self.wsman_code {
            detail = detail.attr("Code", code.to_string());
        }
        let detail = detail
            .attr("Machine", machine)
            .child(Node::new("f:Message").text(self.message.clone()));
        let body = Node::new("s:Fault")
            .child(
                Node::new("s:Code")
                    .child(Node::new("s:Value").text(self.code))
                    .child(Node::new("s:Subcode").child(Node::new("s:Value").text(self.subcode))),
            )
            .child(
                Node::new("s:Reason").child(
                    Node::new("s:Text")
                        .attr("xml:lang", "en-US")
                        .text(self.message.clone()),
                ),
            )
            .child(Node::new("s:Detail").child(detail));
        response(FAULT_ACTION, message_id, relates_to, Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_header_is_read_whatever_prefixes_the_client_chose() {
        let xml = br#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:wsman="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd">
<env:Header><a:Action mustUnderstand="true">http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive</a:Action>
<a:MessageID>uuid:1</a:MessageID><wsman:OperationTimeout>PT20S</wsman:OperationTimeout>
<wsman:SelectorSet><wsman:Selector Name="ShellId">ABC</wsman:Selector></wsman:SelectorSet></env:Header>
<env:Body><rsp:Receive xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><rsp:DesiredStream CommandId="C1">stdout stderr</rsp:DesiredStream></rsp:Receive></env:Body></env:Envelope>"#;
        let env = envelope(xml).unwrap();
        assert!(env.action.ends_with("/shell/Receive"));
        assert_eq!(env.shell_id.as_deref(), Some("ABC"));
        assert_eq!(env.operation_timeout, Some(Duration::from_secs(20)));
        let body = env.body.unwrap();
        assert!(body.is(NS_SHELL, "Receive"));
        let stream = body.child(NS_SHELL, "DesiredStream").unwrap();
        assert_eq!(stream.attr("CommandId"), Some("C1"));
    }

    #[test]
    fn text_is_escaped_on_the_way_out() {
        let xml = response(
            "A",
            "uuid:2",
            "uuid:1",
            Some(Node::new("x:Y").text("a<b&c")),
        );
        let text = String::from_utf8(xml).unwrap();
        assert!(text.contains("a&lt;b&amp;c"), "{text}");
        assert_eq!(duration("PT1M30.500S"), Some(Duration::from_millis(90_500)));
    }
}

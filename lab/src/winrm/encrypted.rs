//! The body of an encrypted WinRM message over HTTP ([MS-WSMV] 2.2.9.1.1, SPNEGO/NTLM): a
//! `multipart/encrypted; protocol="application/HTTP-SPNEGO-session-encrypted"` body with a header
//! part that gives the plain SOAP length and an `application/octet-stream` part holding a 4-byte
//! little-endian signature length, the signature and the sealed SOAP. Framing only: sealing is
//! `seal`'s job.

/// The protocol parameter of the Content-Type of an encrypted message (NTLM, or Kerberos under
/// Negotiate as pywinrm sends it).
pub const PROTOCOL: &str = "application/HTTP-SPNEGO-session-encrypted";
/// The protocol parameter under the `Kerberos` scheme ([MS-WSMV] 2.2.9.1.2).
pub const KERBEROS_PROTOCOL: &str = "application/HTTP-Kerberos-session-encrypted";
/// The boundary Windows uses.
pub const BOUNDARY: &str = "Encrypted Boundary";

/// A body that is not a well-formed encrypted message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed encrypted message: {0}")]
pub struct FramingError(pub &'static str);

/// The parts of an encrypted body: the signature and the sealed bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Sealed<'a> {
    pub signature: &'a [u8],
    pub sealed: &'a [u8],
    /// The plain message's length (OriginalContent).
    pub length: usize,
}

/// The encrypted body's protocol (`PROTOCOL` or `KERBEROS_PROTOCOL`), if the Content-Type
/// announces one.
pub fn protocol(content_type: &str) -> Option<&'static str> {
    let lower = content_type.to_ascii_lowercase();
    if !lower.starts_with("multipart/encrypted") {
        return None;
    }
    [PROTOCOL, KERBEROS_PROTOCOL]
        .into_iter()
        .find(|p| lower.contains(&format!("protocol=\"{}\"", p.to_ascii_lowercase())))
}

/// The Content-Type of an encrypted response in `protocol`.
pub fn content_type(protocol: &str) -> String {
    format!("multipart/encrypted;protocol=\"{protocol}\";boundary=\"{BOUNDARY}\"")
}

/// Splits an encrypted body. The sealed part runs from the signature to the closing boundary that
/// ends the body, and is at least the OriginalContent Length long (RC4 keeps the length; Kerberos
/// may add padding), so binary sealed bytes are never searched for the boundary.
pub fn parse(body: &[u8]) -> Result<Sealed<'_>, FramingError> {
    let start = format!("--{BOUNDARY}\r\n");
    let rest = body
        .strip_prefix(start.as_bytes())
        .ok_or(FramingError("does not start with --Encrypted Boundary"))?;
    let header_end = find(rest, start.as_bytes()).ok_or(FramingError("no second part"))?;
    let header = std::str::from_utf8(&rest[..header_end])
        .map_err(|_| FramingError("header part is not text"))?;
    let lower = header.to_ascii_lowercase();
    if ![PROTOCOL, KERBEROS_PROTOCOL]
        .iter()
        .any(|p| lower.contains(&format!("content-type: {}", p.to_ascii_lowercase())))
    {
        return Err(FramingError("header part has another Content-Type"));
    }
    let length: usize = header
        .split("Length=")
        .nth(1)
        .and_then(|s| s.trim().split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .ok_or(FramingError("no OriginalContent Length"))?;
    let part = &rest[header_end + start.len()..];
    let octet = b"\tContent-Type: application/octet-stream\r\n";
    let part = part
        .strip_prefix(octet.as_slice())
        .ok_or(FramingError("second part is not application/octet-stream"))?;
    let sig_len = part
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(FramingError("no signature length"))?;
    let signature = part
        .get(4..4 + sig_len)
        .ok_or(FramingError("signature cut short"))?;
    let closing = format!("--{BOUNDARY}--\r\n");
    let sealed = part[4 + sig_len..]
        .strip_suffix(closing.as_bytes())
        .ok_or(FramingError("no closing boundary after the sealed data"))?;
    if sealed.len() < length {
        return Err(FramingError("sealed data shorter than its Length"));
    }
    Ok(Sealed {
        signature,
        sealed,
        length,
    })
}

/// Builds an encrypted body in `protocol` from the plain length, the signature (Kerberos: the
/// wrap header) and the sealed bytes.
pub fn build(protocol: &str, plain_len: usize, signature: &[u8], sealed: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "--{BOUNDARY}\r\n\tContent-Type: {protocol}\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={plain_len}\r\n--{BOUNDARY}\r\n\tContent-Type: application/octet-stream\r\n"
    )
    .into_bytes();
    out.extend_from_slice(&(signature.len() as u32).to_le_bytes());
    out.extend_from_slice(signature);
    out.extend_from_slice(sealed);
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_body_parses_back_even_when_the_sealed_bytes_look_like_a_boundary() {
        let sealed = b"--Encrypted Boundary\r\nxx".to_vec();
        let body = build(PROTOCOL, sealed.len(), &[9u8; 16], &sealed);
        let parsed = parse(&body).unwrap();
        assert_eq!(parsed.signature, &[9u8; 16]);
        assert_eq!(parsed.sealed, sealed.as_slice());
    }

    #[test]
    fn a_plain_soap_body_is_not_an_encrypted_message() {
        assert!(parse(b"<s:Envelope/>").is_err());
        assert_eq!(protocol("application/soap+xml;charset=UTF-8"), None);
        assert_eq!(protocol(&content_type(PROTOCOL)), Some(PROTOCOL));
        assert_eq!(
            protocol(&content_type(KERBEROS_PROTOCOL)),
            Some(KERBEROS_PROTOCOL)
        );
    }
}

//! The encrypted WinRM message body over HTTP ([MS-WSMV] 2.2.9.1.1, SPNEGO/NTLM): a
//! `multipart/encrypted; protocol="application/HTTP-SPNEGO-session-encrypted"` body with a first
//! part that gives the plain SOAP length and an `application/octet-stream` part holding a 4-byte
//! little-endian signature length, the signature and the sealed SOAP. Kerberos ([MS-WSMV]
//! 2.2.9.1.2) has the same form under `application/HTTP-Kerberos-session-encrypted`, the GSS wrap
//! header in the signature's place. Framing only; `seal` and `kerberos` seal.

/// The protocol parameter of an encrypted message's Content-Type (NTLM).
pub const PROTOCOL: &str = "application/HTTP-SPNEGO-session-encrypted";
/// The protocol parameter under Kerberos.
pub const KERBEROS_PROTOCOL: &str = "application/HTTP-Kerberos-session-encrypted";
const BOUNDARY: &str = "Encrypted Boundary";
/// The Content-Type of an NTLM-encrypted request.
pub const CONTENT_TYPE: &str = "multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\"";
/// The Content-Type of a Kerberos-encrypted request.
pub const KERBEROS_CONTENT_TYPE: &str = "multipart/encrypted;protocol=\"application/HTTP-Kerberos-session-encrypted\";boundary=\"Encrypted Boundary\"";

/// An encrypted body that is not framed as [MS-WSMV] 2.2.9.1.1 says.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the server's encrypted message is malformed: {0}")]
pub struct FramingError(pub &'static str);

/// The two things an encrypted body carries.
#[derive(Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    pub signature: &'a [u8],
    pub sealed: &'a [u8],
    /// The plain message's length (OriginalContent).
    pub length: usize,
}

/// Does this Content-Type announce an encrypted body in `protocol`?
pub fn is_encrypted(content_type: &str, protocol: &str) -> bool {
    let lower = content_type.to_ascii_lowercase();
    lower.starts_with("multipart/encrypted") && lower.contains(&protocol.to_ascii_lowercase())
}

/// Frames a sealed SOAP message of `plain_len` bytes in `protocol`.
pub fn frame(protocol: &str, plain_len: usize, signature: &[u8], sealed: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "--{BOUNDARY}\r\n\tContent-Type: {protocol}\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={plain_len}\r\n--{BOUNDARY}\r\n\tContent-Type: application/octet-stream\r\n"
    )
    .into_bytes();
    // Invariant: a signature (NTLM: 16 bytes, Kerberos: a wrap header) is far below 4 GiB.
    out.extend_from_slice(&(signature.len() as u32).to_le_bytes());
    out.extend_from_slice(signature);
    out.extend_from_slice(sealed);
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

/// Splits an encrypted body. The sealed part runs from the signature to the closing boundary that
/// ends the body and is at least `Length` bytes long (RC4 keeps the length; Kerberos may add
/// padding), so the binary sealed bytes are never searched for the boundary.
pub fn parts(body: &[u8]) -> Result<Parts<'_>, FramingError> {
    let start = format!("--{BOUNDARY}\r\n");
    let rest = body
        .strip_prefix(start.as_bytes())
        .ok_or(FramingError("it does not start with --Encrypted Boundary"))?;
    let second = rest
        .windows(start.len())
        .position(|w| w == start.as_bytes())
        .ok_or(FramingError("there is no second part"))?;
    let header = std::str::from_utf8(&rest[..second])
        .map_err(|_| FramingError("the first part is not text"))?;
    let length: usize = header
        .split("Length=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .ok_or(FramingError(
            "the first part gives no OriginalContent Length",
        ))?;
    let part = &rest[second + start.len()..];
    let data_at = part
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| i + 2)
        .ok_or(FramingError("the second part has no header line"))?;
    if !part[..data_at]
        .to_ascii_lowercase()
        .windows(24)
        .any(|w| w == b"application/octet-stream")
    {
        return Err(FramingError(
            "the second part is not application/octet-stream",
        ));
    }
    let data = &part[data_at..];
    let sig_len = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(FramingError("the signature length is missing"))?;
    let signature = data
        .get(4..4 + sig_len)
        .ok_or(FramingError("the signature is cut short"))?;
    let closing = format!("--{BOUNDARY}--\r\n");
    let sealed = data[4 + sig_len..]
        .strip_suffix(closing.as_bytes())
        .ok_or(FramingError("no closing boundary after the sealed data"))?;
    if sealed.len() < length {
        return Err(FramingError("the sealed data is shorter than its Length"));
    }
    Ok(Parts {
        signature,
        sealed,
        length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [MS-WSMV] 2.2.9.1.1's example layout, byte for byte: boundary, the SPNEGO part's two tab-
    /// indented headers, the octet-stream part, signature length 16 (10 00 00 00), closing line.
    #[test]
    fn a_frame_has_the_layout_of_ms_wsmv_2_2_9_1_1() {
        let body = frame(PROTOCOL, 5, &[0xaa; 16], b"\x01\x02\x03\x04\x05");
        let mut expected = b"--Encrypted Boundary\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=5\r\n--Encrypted Boundary\r\n\tContent-Type: application/octet-stream\r\n\x10\x00\x00\x00".to_vec();
        expected.extend_from_slice(&[0xaa; 16]);
        expected.extend_from_slice(b"\x01\x02\x03\x04\x05--Encrypted Boundary--\r\n");
        assert_eq!(body, expected);
        assert!(is_encrypted(CONTENT_TYPE, PROTOCOL));
        assert!(is_encrypted(KERBEROS_CONTENT_TYPE, KERBEROS_PROTOCOL));
        assert!(!is_encrypted(KERBEROS_CONTENT_TYPE, PROTOCOL));
    }

    #[test]
    fn sealed_bytes_that_look_like_the_closing_boundary_are_kept_whole() {
        let sealed = b"xx--Encrypted Boundary--\r\nyy".to_vec();
        let body = frame(PROTOCOL, sealed.len(), &[9; 16], &sealed);
        let p = parts(&body).unwrap();
        assert_eq!(p.signature, &[9; 16]);
        assert_eq!(p.sealed, sealed.as_slice());
    }

    #[test]
    fn a_plain_or_cut_body_is_a_framing_error() {
        assert!(parts(b"<s:Envelope/>").is_err());
        let body = frame(PROTOCOL, 100, &[1; 16], b"short");
        assert_eq!(
            parts(&body).unwrap_err(),
            FramingError("the sealed data is shorter than its Length")
        );
        assert!(!is_encrypted(
            "application/soap+xml;charset=UTF-8",
            PROTOCOL
        ));
    }
}

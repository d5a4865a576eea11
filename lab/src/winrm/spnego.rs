//! SPNEGO ([MS-SPNG], RFC 4178) around NTLM for `Authorization: Negotiate`: takes the NTLM token
//! out of a NegTokenInit / NegTokenResp and wraps the server's NTLM answer and final mechListMIC in
//! a NegTokenResp, with just enough DER for these messages. Windows takes both these wrapped tokens
//! and raw NTLM under Negotiate; the lab does too. Framing only: NTLM itself is `ntlm`'s job.

/// NTLMSSP's mechanism OID, 1.3.6.1.4.1.311.2.2.10, as DER contents.
const NTLMSSP_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a];
/// SPNEGO's OID, 1.3.6.1.5.5.2, as DER contents.
const SPNEGO_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];

/// A SPNEGO token the lab cannot read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("SPNEGO: {0}")]
pub struct SpnegoError(pub &'static str);

/// What a client's SPNEGO token carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Incoming {
    /// The DER of the mechTypes list (NegTokenInit only): the mechListMICs cover it.
    pub mech_types: Option<Vec<u8>>,
    /// Does the client offer NTLM (NegTokenInit only; a NegTokenResp continues NTLM)?
    pub offers_ntlm: bool,
    /// The NTLM token inside (mechToken / responseToken), if any.
    pub token: Option<Vec<u8>>,
    pub mech_list_mic: Option<Vec<u8>>,
}

/// Is this a SPNEGO token (GSS-API InitialContextToken or a bare NegTokenResp)?
pub fn is_spnego(token: &[u8]) -> bool {
    matches!(token.first(), Some(0x60) | Some(0xa1))
}

/// Reads a NegTokenInit (in its GSS-API wrapper) or a NegTokenResp.
pub fn parse(token: &[u8]) -> Result<Incoming, SpnegoError> {
    let (tag, body, _) = tlv(token)?;
    match tag {
        0x60 => {
            let (oid_tag, oid, rest) = tlv(body)?;
            if oid_tag != 0x06 || oid != SPNEGO_OID {
                return Err(SpnegoError("not the SPNEGO mechanism"));
            }
            let (tag, init, _) = tlv(rest)?;
            if tag != 0xa0 {
                return Err(SpnegoError("expected a NegTokenInit"));
            }
            let mut out = Incoming::default();
            for (tag, value, raw) in fields(init)? {
                match tag {
                    0xa0 => {
                        let (_, list, _) = tlv(value)?;
                        let mut oids = list;
                        while !oids.is_empty() {
                            let (t, oid, rest) = tlv(oids)?;
                            out.offers_ntlm |= t == 0x06 && oid == NTLMSSP_OID;
                            oids = rest;
                        }
                        // The mechTypes SEQUENCE itself, as the client encoded it.
                        out.mech_types = Some(raw_inner(raw)?.to_vec());
                    }
                    0xa2 => out.token = Some(octets(value)?),
                    0xa3 => out.mech_list_mic = Some(octets(value)?),
                    _ => {}
                }
            }
            Ok(out)
        }
        0xa1 => {
            let mut out = Incoming {
                offers_ntlm: true,
                ..Incoming::default()
            };
            for (tag, value, _) in fields(body)? {
                match tag {
                    0xa2 => out.token = Some(octets(value)?),
                    0xa3 => out.mech_list_mic = Some(octets(value)?),
                    _ => {}
                }
            }
            Ok(out)
        }
        _ => Err(SpnegoError("neither a NegTokenInit nor a NegTokenResp")),
    }
}

/// negState values (RFC 4178 4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    AcceptCompleted = 0,
    AcceptIncomplete = 1,
}

/// A NegTokenResp: the state, NTLM as the chosen mechanism (with the first answer), the NTLM token
/// and the server's mechListMIC.
pub fn response(
    state: State,
    with_mech: bool,
    token: Option<&[u8]>,
    mic: Option<&[u8]>,
) -> Vec<u8> {
    let mut seq = der(0xa0, &der(0x0a, &[state as u8]));
    if with_mech {
        seq.extend(der(0xa1, &der(0x06, NTLMSSP_OID)));
    }
    if let Some(t) = token {
        seq.extend(der(0xa2, &der(0x04, t)));
    }
    if let Some(m) = mic {
        seq.extend(der(0xa3, &der(0x04, m)));
    }
    der(0xa1, &der(0x30, &seq))
}

/// One DER element: (tag, contents, what follows it).
fn tlv(b: &[u8]) -> Result<(u8, &[u8], &[u8]), SpnegoError> {
    let short = SpnegoError("DER cut short");
    let tag = *b.first().ok_or(short.clone())?;
    let first = *b.get(1).ok_or(short.clone())?;
    let (len, head) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(SpnegoError("unsupported DER length"));
        }
        let bytes = b.get(2..2 + n).ok_or(short.clone())?;
        (
            bytes.iter().fold(0usize, |acc, x| (acc << 8) | *x as usize),
            2 + n,
        )
    };
    let value = b.get(head..head + len).ok_or(short)?;
    Ok((tag, value, &b[head + len..]))
}

/// One element of a SEQUENCE: tag, contents, the whole element.
type Field<'a> = (u8, &'a [u8], &'a [u8]);

/// The elements of the SEQUENCE that `outer_contents` holds.
fn fields(outer_contents: &[u8]) -> Result<Vec<Field<'_>>, SpnegoError> {
    let (tag, mut rest, _) = tlv(outer_contents)?;
    if tag != 0x30 {
        return Err(SpnegoError("expected a SEQUENCE"));
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (t, v, after) = tlv(rest)?;
        out.push((t, v, &rest[..rest.len() - after.len()]));
        rest = after;
    }
    Ok(out)
}

/// The element inside a context tag's whole encoding.
fn raw_inner(whole: &[u8]) -> Result<&[u8], SpnegoError> {
    let (_, inner, _) = tlv(whole)?;
    Ok(inner)
}

fn octets(value: &[u8]) -> Result<Vec<u8>, SpnegoError> {
    match tlv(value)? {
        (0x04, v, _) => Ok(v.to_vec()),
        _ => Err(SpnegoError("expected an OCTET STRING")),
    }
}

fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_neg_token_init_gives_its_mech_types_and_ntlm_token() {
        let mech_types = der(0x30, &der(0x06, NTLMSSP_OID));
        let mut init = der(0xa0, &mech_types);
        init.extend(der(0xa2, &der(0x04, b"NTLMSSP\0\x01\0\0\0")));
        let token = der(
            0x60,
            &[der(0x06, SPNEGO_OID), der(0xa0, &der(0x30, &init))].concat(),
        );
        let parsed = parse(&token).unwrap();
        assert!(parsed.offers_ntlm);
        assert_eq!(parsed.mech_types, Some(mech_types));
        assert_eq!(parsed.token.as_deref(), Some(&b"NTLMSSP\0\x01\0\0\0"[..]));
        let resp = response(State::AcceptIncomplete, true, Some(&[7; 200]), None);
        assert_eq!(parse(&resp).unwrap().token, Some(vec![7; 200]));
    }
}

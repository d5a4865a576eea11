//! The server side of NTLM ([MS-NLMP]) for the lab's WinRM listener: answers a NEGOTIATE_MESSAGE
//! with a CHALLENGE_MESSAGE, checks an AUTHENTICATE_MESSAGE's NTLMv2 response (and its MIC) against
//! the lab's one local account, and derives the session keys that `seal` uses. It only computes;
//! it never touches the network or the lab's files.
//!
//! Limits (the lab's, documented in lab/README.md): NTLMv2 only (no NTLMv1 / LM responses), extended
//! session security and 128-bit keys required (what Windows 7 / 2008 R2 and later require by default
//! and every current client offers), no anonymous logon.

use hmac::{Hmac, Mac};
use md4::{Digest, Md4};
use md5::Md5;
use rc4::{KeyInit, StreamCipher};

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// NegotiateFlags bits ([MS-NLMP] 2.2.2.5).
pub mod flags {
    pub const UNICODE: u32 = 0x0000_0001;
    pub const REQUEST_TARGET: u32 = 0x0000_0004;
    pub const SIGN: u32 = 0x0000_0010;
    pub const SEAL: u32 = 0x0000_0020;
    pub const NTLM: u32 = 0x0000_0200;
    pub const ALWAYS_SIGN: u32 = 0x0000_8000;
    pub const TARGET_TYPE_SERVER: u32 = 0x0002_0000;
    pub const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
    pub const TARGET_INFO: u32 = 0x0080_0000;
    pub const VERSION: u32 = 0x0200_0000;
    pub const N128: u32 = 0x2000_0000;
    pub const KEY_EXCH: u32 = 0x4000_0000;
    pub const N56: u32 = 0x8000_0000;
}

/// AV_PAIR ids ([MS-NLMP] 2.2.2.1).
mod av {
    pub const EOL: u16 = 0;
    pub const NB_COMPUTER_NAME: u16 = 1;
    pub const NB_DOMAIN_NAME: u16 = 2;
    pub const DNS_COMPUTER_NAME: u16 = 3;
    pub const DNS_DOMAIN_NAME: u16 = 4;
    pub const FLAGS: u16 = 6;
    pub const TIMESTAMP: u16 = 7;
    /// MsvAvFlags bit: the AUTHENTICATE_MESSAGE carries a MIC.
    pub const FLAG_MIC: u32 = 0x2;
}

/// Why a token was refused. The HTTP layer answers each with 401, as Windows does.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NtlmError {
    #[error("not an NTLM message of type {expected}")]
    NotNtlm { expected: u32 },
    #[error("NTLM message too short or a field points outside it")]
    Truncated,
    #[error("the client did not offer {0}, which the lab requires")]
    Unsupported(&'static str),
    #[error("anonymous or NTLMv1 logon refused (the lab accepts NTLMv2 only)")]
    NotNtlmV2,
    #[error("logon failure: unknown user name or bad password")]
    LogonFailure,
    #[error("the AUTHENTICATE message's MIC does not match")]
    BadMic,
}

/// The lab's one local account and what the server says about itself.
#[derive(Debug, Clone)]
pub struct Identity {
    /// NetBIOS name of the server (also its workgroup "domain" for a local account).
    pub computer: String,
    pub user: String,
    pub password: String,
    /// The Windows version the CHALLENGE's VERSION field reports: major, minor, build.
    pub os_version: (u8, u8, u16),
}

/// Waiting for the AUTHENTICATE message: what the CHALLENGE said (the MIC covers all three).
#[derive(Debug, Clone)]
pub struct Challenged {
    negotiate: Vec<u8>,
    challenge: Vec<u8>,
    server_challenge: [u8; 8],
    flags: u32,
}

/// An accepted logon: the user as the client named it and the exported session key.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub user: String,
    pub domain: String,
    pub flags: u32,
    pub session_key: [u8; 16],
}

/// Reads the message type of an NTLM token (1, 2 or 3), if it is one.
pub fn message_type(token: &[u8]) -> Option<u32> {
    if token.len() >= 12 && &token[..8] == SIGNATURE {
        Some(u32::from_le_bytes([
            token[8], token[9], token[10], token[11],
        ]))
    } else {
        None
    }
}

/// Answers a NEGOTIATE_MESSAGE: the CHALLENGE_MESSAGE to send, and the state to keep until the
/// AUTHENTICATE arrives. `server_challenge` and `now_filetime` come from the caller (random, clock).
pub fn challenge(
    id: &Identity,
    negotiate: &[u8],
    server_challenge: [u8; 8],
    now_filetime: u64,
) -> Result<(Vec<u8>, Challenged), NtlmError> {
    if message_type(negotiate) != Some(1) || negotiate.len() < 16 {
        return Err(NtlmError::NotNtlm { expected: 1 });
    }
    let asked = u32_at(negotiate, 12)?;
    require(asked, flags::UNICODE, "NEGOTIATE_UNICODE")?;
    require(
        asked,
        flags::EXTENDED_SESSIONSECURITY,
        "NEGOTIATE_EXTENDED_SESSIONSECURITY",
    )?;
    require(asked, flags::N128, "NEGOTIATE_128")?;
    // What the server grants: the client's requests it supports, plus what a server always says.
    let supported = flags::UNICODE
        | flags::REQUEST_TARGET
        | flags::SIGN
        | flags::SEAL
        | flags::ALWAYS_SIGN
        | flags::EXTENDED_SESSIONSECURITY
        | flags::VERSION
        | flags::N128
        | flags::KEY_EXCH
        | flags::N56;
    let granted =
        (asked & supported) | flags::NTLM | flags::TARGET_INFO | flags::TARGET_TYPE_SERVER;

    let target = utf16(&id.computer);
    let mut info = Vec::new();
    push_av(&mut info, av::NB_DOMAIN_NAME, &target);
    push_av(&mut info, av::NB_COMPUTER_NAME, &target);
    push_av(
        &mut info,
        av::DNS_DOMAIN_NAME,
        &utf16(&id.computer.to_lowercase()),
    );
    push_av(
        &mut info,
        av::DNS_COMPUTER_NAME,
        &utf16(&id.computer.to_lowercase()),
    );
    push_av(&mut info, av::TIMESTAMP, &now_filetime.to_le_bytes());
    push_av(&mut info, av::EOL, &[]);

    let header = 56usize;
    let mut msg = Vec::with_capacity(header + target.len() + info.len());
    msg.extend_from_slice(SIGNATURE);
    msg.extend_from_slice(&2u32.to_le_bytes());
    push_field(&mut msg, target.len(), header);
    msg.extend_from_slice(&granted.to_le_bytes());
    msg.extend_from_slice(&server_challenge);
    msg.extend_from_slice(&[0u8; 8]);
    push_field(&mut msg, info.len(), header + target.len());
    let (major, minor, build) = id.os_version;
    msg.extend_from_slice(&[major, minor]);
    msg.extend_from_slice(&build.to_le_bytes());
    // Reserved (3 bytes), then NTLMSSP_REVISION_W2K3 (15).
    msg.extend_from_slice(&[0, 0, 0, 15]);
    msg.extend_from_slice(&target);
    msg.extend_from_slice(&info);
    let state = Challenged {
        negotiate: negotiate.to_vec(),
        challenge: msg.clone(),
        server_challenge,
        flags: granted,
    };
    Ok((msg, state))
}

/// Checks an AUTHENTICATE_MESSAGE against the account ([MS-NLMP] 3.2.5.1.2 and 3.3.2).
pub fn authenticate(id: &Identity, state: &Challenged, auth: &[u8]) -> Result<Accepted, NtlmError> {
    if message_type(auth) != Some(3) || auth.len() < 64 {
        return Err(NtlmError::NotNtlm { expected: 3 });
    }
    let nt = field(auth, 20)?;
    let domain = utf16_decode(field(auth, 28)?);
    let user = utf16_decode(field(auth, 36)?);
    let encrypted_key = field(auth, 52)?;
    let auth_flags = u32_at(auth, 60)?;
    if user.is_empty() || nt.len() <= 24 {
        return Err(NtlmError::NotNtlmV2);
    }
    // A local account: the client names no domain, `.`, or this computer.
    let domain_ok = domain.is_empty() || domain == "." || domain.eq_ignore_ascii_case(&id.computer);
    if !domain_ok || !user.eq_ignore_ascii_case(&id.user) {
        return Err(NtlmError::LogonFailure);
    }
    let response_key = ntowf_v2(&id.password, &user, &domain);
    let (proof, blob) = nt.split_at(16);
    let mut expected = hmac_md5(&response_key, &[&state.server_challenge, blob]);
    if expected != proof {
        return Err(NtlmError::LogonFailure);
    }
    let session_base_key = hmac_md5(&response_key, &[proof]);
    // NTLMv2: KeyExchangeKey = SessionBaseKey ([MS-NLMP] 3.4.5.1).
    let flags = state.flags & auth_flags;
    let session_key = if flags & flags::KEY_EXCH != 0 {
        if encrypted_key.len() != 16 {
            return Err(NtlmError::Truncated);
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(encrypted_key);
        rc4_once(&session_base_key, &mut key);
        key
    } else {
        session_base_key
    };
    // NTLMv2_CLIENT_CHALLENGE: 28 bytes of header, then AV pairs.
    if blob.len() >= 28 && av_flags(&blob[28..]) & av::FLAG_MIC != 0 {
        let version_len = if auth_flags & flags::VERSION != 0 {
            8
        } else {
            0
        };
        let at = 64 + version_len;
        let mic = auth.get(at..at + 16).ok_or(NtlmError::Truncated)?;
        let mut zeroed = auth.to_vec();
        zeroed[at..at + 16].fill(0);
        expected = hmac_md5(&session_key, &[&state.negotiate, &state.challenge, &zeroed]);
        if expected != mic {
            return Err(NtlmError::BadMic);
        }
    }
    Ok(Accepted {
        user,
        domain,
        flags,
        session_key,
    })
}

/// NTOWFv2 ([MS-NLMP] 3.3.2): HMAC_MD5(MD4(UNICODE(password)), UNICODE(Uppercase(user) + domain)).
pub fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let nt_hash: [u8; 16] = Md4::digest(utf16(password)).into();
    let who = format!("{}{}", user.to_uppercase(), domain);
    hmac_md5(&nt_hash, &[&utf16(&who)])
}

/// HMAC-MD5 over the concatenation of `parts`.
pub fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// MD5 of the concatenation of `parts`.
pub fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// RC4 with a fresh 16-byte key over `data`, in place.
pub fn rc4_once(key: &[u8; 16], data: &mut [u8]) {
    let mut c = rc4::Rc4::<rc4::consts::U16>::new(key.into());
    c.apply_keystream(data);
}

/// UTF-16LE bytes of `s`.
pub fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn utf16_decode(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

fn require(asked: u32, flag: u32, name: &'static str) -> Result<(), NtlmError> {
    if asked & flag == 0 {
        Err(NtlmError::Unsupported(name))
    } else {
        Ok(())
    }
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, NtlmError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(NtlmError::Truncated)
}

/// A (Len, MaxLen, BufferOffset) field at `at`, as the slice it points to.
fn field(b: &[u8], at: usize) -> Result<&[u8], NtlmError> {
    let head = b.get(at..at + 8).ok_or(NtlmError::Truncated)?;
    let len = u16::from_le_bytes([head[0], head[1]]) as usize;
    let off = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if len == 0 {
        return Ok(&[]);
    }
    b.get(off..off + len).ok_or(NtlmError::Truncated)
}

fn push_field(msg: &mut Vec<u8>, len: usize, offset: usize) {
    // The lab's own payloads are a few hundred bytes: they fit the u16 / u32 fields.
    let len = len as u16;
    msg.extend_from_slice(&len.to_le_bytes());
    msg.extend_from_slice(&len.to_le_bytes());
    msg.extend_from_slice(&(offset as u32).to_le_bytes());
}

fn push_av(out: &mut Vec<u8>, id: u16, value: &[u8]) {
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
}

/// MsvAvFlags in a list of AV pairs (0 when absent or the list is malformed).
fn av_flags(mut pairs: &[u8]) -> u32 {
    while pairs.len() >= 4 {
        let id = u16::from_le_bytes([pairs[0], pairs[1]]);
        let len = u16::from_le_bytes([pairs[2], pairs[3]]) as usize;
        let Some(value) = pairs.get(4..4 + len) else {
            return 0;
        };
        if id == av::EOL {
            return 0;
        }
        if id == av::FLAGS && len == 4 {
            return u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
        }
        pairs = &pairs[4 + len..];
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntowf_v2_matches_the_worked_example_of_ms_nlmp() {
        // [MS-NLMP] 4.2.4.1.1: User "User", UserDom "Domain", Passwd "Password".
        assert_eq!(
            hex::encode(ntowf_v2("Password", "User", "Domain")),
            "0c868a403bfd7a93a3001ef22ef02e3f"
        );
    }
}

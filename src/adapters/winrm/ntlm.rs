//! The client side of NTLM ([MS-NLMP]) for the WinRM client: the NEGOTIATE_MESSAGE, reading the
//! server's CHALLENGE_MESSAGE, and an NTLMv2 AUTHENTICATE_MESSAGE with key exchange and a MIC, which
//! yields the exported session key that `seal` derives its keys from. Pure computation: the caller
//! supplies the randomness and the clock, and nothing here logs (a password goes in, hashes come out).
//!
//! Only NTLMv2 with extended session security and 128-bit keys is offered: what Windows 7 / 2008 R2
//! and later require by default (LmCompatibilityLevel 3+), and what Windows Server 2003 with WMF 2.0
//! accepts. NTLMv1 and LM responses are never sent.

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
    pub const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
    pub const VERSION: u32 = 0x0200_0000;
    pub const N128: u32 = 0x2000_0000;
    pub const KEY_EXCH: u32 = 0x4000_0000;
    pub const N56: u32 = 0x8000_0000;
}

/// What the client asks for: Unicode, signing and sealing with extended session security, 128-bit
/// keys and a fresh session key sent under key exchange.
pub const CLIENT_FLAGS: u32 = flags::UNICODE
    | flags::REQUEST_TARGET
    | flags::SIGN
    | flags::SEAL
    | flags::NTLM
    | flags::ALWAYS_SIGN
    | flags::EXTENDED_SESSIONSECURITY
    | flags::VERSION
    | flags::N128
    | flags::KEY_EXCH
    | flags::N56;

/// The flags without which the client does not go on: message encryption needs SEAL and SIGN,
/// and anything below extended session security with 128-bit keys is too weak to send data over.
const REQUIRED: [(u32, &str); 4] = [
    (flags::SEAL, "NEGOTIATE_SEAL"),
    (flags::SIGN, "NEGOTIATE_SIGN"),
    (
        flags::EXTENDED_SESSIONSECURITY,
        "NEGOTIATE_EXTENDED_SESSIONSECURITY",
    ),
    (flags::N128, "NEGOTIATE_128"),
];

/// AV_PAIR ids ([MS-NLMP] 2.2.2.1).
mod av {
    pub const EOL: u16 = 0;
    pub const FLAGS: u16 = 6;
    pub const TIMESTAMP: u16 = 7;
    /// MsvAvFlags bit: the AUTHENTICATE_MESSAGE carries a MIC.
    pub const FLAG_MIC: u32 = 0x2;
}

/// A CHALLENGE_MESSAGE the client cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChallengeError {
    #[error("the server's answer is not an NTLM CHALLENGE message")]
    NotChallenge,
    #[error("the NTLM CHALLENGE message is cut short or a field points outside it")]
    Truncated,
    #[error("the server did not grant {0}, which message encryption needs")]
    NotGranted(&'static str),
}

/// The server's CHALLENGE_MESSAGE, as far as the client needs it.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub raw: Vec<u8>,
    pub flags: u32,
    pub server_challenge: [u8; 8],
    /// TargetInfo: the AV pairs the NTLMv2 response repeats.
    pub target_info: Vec<u8>,
}

/// The user as NTLM sends it: `DOMAIN\user` splits; `user@domain` and a bare name stay whole with
/// no domain (a UPN, or the server's local account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub domain: String,
}

impl Account {
    pub fn parse(name: &str) -> Account {
        match name.split_once('\\') {
            Some((domain, user)) => Account {
                user: user.to_string(),
                domain: domain.to_string(),
            },
            None => Account {
                user: name.to_string(),
                domain: String::new(),
            },
        }
    }
}

/// The fresh random values one logon uses, and the client's clock.
#[derive(Clone, Copy)]
pub struct Nonces {
    pub client_challenge: [u8; 8],
    pub session_key: [u8; 16],
    /// Now, as a Windows FILETIME (100 ns since 1601): the NTLMv2 response's time when the server
    /// sends none (Windows Server 2003 does not).
    pub now: u64,
}

/// The AUTHENTICATE_MESSAGE and the session it sets up.
pub struct Authenticated {
    pub message: Vec<u8>,
    pub flags: u32,
    /// ExportedSessionKey: the key `seal` derives the signing and sealing keys from.
    pub session_key: [u8; 16],
}

/// The NEGOTIATE_MESSAGE ([MS-NLMP] 2.2.1.1): no domain or workstation supplied.
pub fn negotiate() -> Vec<u8> {
    let mut msg = Vec::with_capacity(40);
    msg.extend_from_slice(SIGNATURE);
    msg.extend_from_slice(&1u32.to_le_bytes());
    msg.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
    msg.extend_from_slice(&[0u8; 16]); // DomainNameFields, WorkstationFields
    msg.extend_from_slice(&VERSION);
    msg
}

/// The client's VERSION field: Windows 6.1 build 7601, NTLMSSP_REVISION_W2K3. Servers use it for
/// debugging only ([MS-NLMP] 2.2.2.10).
const VERSION: [u8; 8] = [6, 1, 0xb1, 0x1d, 0, 0, 0, 15];

/// Reads a CHALLENGE_MESSAGE ([MS-NLMP] 2.2.1.2) and checks it grants what encryption needs.
pub fn read_challenge(raw: &[u8]) -> Result<Challenge, ChallengeError> {
    if raw.len() < 48 || &raw[..8] != SIGNATURE || u32_at(raw, 8)? != 2 {
        return Err(ChallengeError::NotChallenge);
    }
    let flags = u32_at(raw, 20)?;
    for (flag, name) in REQUIRED {
        if flags & flag == 0 {
            return Err(ChallengeError::NotGranted(name));
        }
    }
    let mut server_challenge = [0u8; 8];
    server_challenge.copy_from_slice(&raw[24..32]);
    let target_info = field(raw, 40)?.to_vec();
    Ok(Challenge {
        raw: raw.to_vec(),
        flags,
        server_challenge,
        target_info,
    })
}

/// The NTLMv2 AUTHENTICATE_MESSAGE ([MS-NLMP] 2.2.1.3, 3.1.5.1.2, 3.3.2) answering `challenge`
/// for `account`, with the MIC over all three messages when the server sent a timestamp.
pub fn authenticate(
    negotiate: &[u8],
    challenge: &Challenge,
    account: &Account,
    password: &str,
    nonces: Nonces,
) -> Authenticated {
    let flags = challenge.flags & CLIENT_FLAGS;
    let response_key = ntowf_v2(password, &account.user, &account.domain);
    let timestamp = av_value(&challenge.target_info, av::TIMESTAMP);
    let with_mic = timestamp.is_some();
    // The server's timestamp when it sent one, else the client's clock ([MS-NLMP] 3.1.5.1.2).
    let time: [u8; 8] = timestamp
        .and_then(|t| t.try_into().ok())
        .unwrap_or(nonces.now.to_le_bytes());
    let info = if with_mic {
        add_mic_flag(&challenge.target_info)
    } else {
        challenge.target_info.clone()
    };
    let temp = client_blob(time, nonces.client_challenge, &info);
    let (nt_response, session_base_key) =
        nt_response(&response_key, &challenge.server_challenge, &temp);
    // With a timestamp the LM response is 24 zero bytes ([MS-NLMP] 3.1.5.1.2).
    let lm_response = if with_mic {
        vec![0u8; 24]
    } else {
        let mut lm = hmac_md5(
            &response_key,
            &[&challenge.server_challenge, &nonces.client_challenge],
        )
        .to_vec();
        lm.extend_from_slice(&nonces.client_challenge);
        lm
    };
    // NTLMv2: KeyExchangeKey = SessionBaseKey ([MS-NLMP] 3.4.5.1).
    let (session_key, encrypted_key) = if flags & flags::KEY_EXCH != 0 {
        let mut encrypted = nonces.session_key;
        rc4_once(&session_base_key, &mut encrypted);
        (nonces.session_key, encrypted.to_vec())
    } else {
        (session_base_key, Vec::new())
    };

    let domain = utf16(&account.domain);
    let user = utf16(&account.user);
    let workstation: Vec<u8> = Vec::new();
    let header = 88usize; // fields (64) + VERSION (8) + MIC (16)
    let payloads: [&[u8]; 6] = [
        &lm_response,
        &nt_response,
        &domain,
        &user,
        &workstation,
        &encrypted_key,
    ];
    let mut msg = Vec::with_capacity(header + payloads.iter().map(|p| p.len()).sum::<usize>());
    msg.extend_from_slice(SIGNATURE);
    msg.extend_from_slice(&3u32.to_le_bytes());
    let mut offset = header;
    for p in payloads {
        push_field(&mut msg, p.len(), offset);
        offset += p.len();
    }
    msg.extend_from_slice(&flags.to_le_bytes());
    msg.extend_from_slice(&VERSION);
    let mic_at = msg.len();
    msg.extend_from_slice(&[0u8; 16]);
    for p in payloads {
        msg.extend_from_slice(p);
    }
    if with_mic {
        let mic = hmac_md5(&session_key, &[negotiate, &challenge.raw, &msg]);
        msg[mic_at..mic_at + 16].copy_from_slice(&mic);
    }
    Authenticated {
        message: msg,
        flags,
        session_key,
    }
}

/// NTOWFv2 ([MS-NLMP] 3.3.2): HMAC_MD5(MD4(UNICODE(password)), UNICODE(Uppercase(user) + domain)).
pub fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let nt_hash: [u8; 16] = Md4::digest(utf16(password)).into();
    let who = format!("{}{}", user.to_uppercase(), domain);
    hmac_md5(&nt_hash, &[&utf16(&who)])
}

/// The NTLMv2_CLIENT_CHALLENGE ("temp" in [MS-NLMP] 3.3.2): versions, time, client challenge and
/// the AV pairs, each with the reserved zeros around them.
fn client_blob(time: [u8; 8], client_challenge: [u8; 8], info: &[u8]) -> Vec<u8> {
    let mut temp = vec![1u8, 1, 0, 0, 0, 0, 0, 0];
    temp.extend_from_slice(&time);
    temp.extend_from_slice(&client_challenge);
    temp.extend_from_slice(&[0u8; 4]);
    temp.extend_from_slice(info);
    temp.extend_from_slice(&[0u8; 4]);
    temp
}

/// NtChallengeResponse (NTProofStr followed by `temp`) and SessionBaseKey ([MS-NLMP] 3.3.2).
fn nt_response(
    response_key: &[u8; 16],
    server_challenge: &[u8; 8],
    temp: &[u8],
) -> (Vec<u8>, [u8; 16]) {
    let proof = hmac_md5(response_key, &[server_challenge, temp]);
    let session_base_key = hmac_md5(response_key, &[&proof]);
    let mut response = proof.to_vec();
    response.extend_from_slice(temp);
    (response, session_base_key)
}

/// The AV pairs with MsvAvFlags' MIC bit set (added before MsvAvEOL when absent).
fn add_mic_flag(pairs: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pairs.len() + 8);
    let mut rest = pairs;
    let mut had_flags = false;
    while rest.len() >= 4 {
        let id = u16::from_le_bytes([rest[0], rest[1]]);
        let len = u16::from_le_bytes([rest[2], rest[3]]) as usize;
        let Some(value) = rest.get(4..4 + len) else {
            break;
        };
        if id == av::EOL {
            break;
        }
        if id == av::FLAGS && len == 4 {
            let v = u32::from_le_bytes([value[0], value[1], value[2], value[3]]) | av::FLAG_MIC;
            push_av(&mut out, av::FLAGS, &v.to_le_bytes());
            had_flags = true;
        } else {
            out.extend_from_slice(&rest[..4 + len]);
        }
        rest = &rest[4 + len..];
    }
    if !had_flags {
        push_av(&mut out, av::FLAGS, &av::FLAG_MIC.to_le_bytes());
    }
    push_av(&mut out, av::EOL, &[]);
    out
}

/// The value of the first AV pair `id`, if the list has one.
fn av_value(mut pairs: &[u8], id: u16) -> Option<&[u8]> {
    while pairs.len() >= 4 {
        let this = u16::from_le_bytes([pairs[0], pairs[1]]);
        let len = u16::from_le_bytes([pairs[2], pairs[3]]) as usize;
        let value = pairs.get(4..4 + len)?;
        if this == av::EOL {
            return None;
        }
        if this == id {
            return Some(value);
        }
        pairs = &pairs[4 + len..];
    }
    None
}

/// HMAC-MD5 over the concatenation of `parts`.
pub fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // Invariant: HMAC takes a key of any length, so new_from_slice cannot fail.
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

fn rc4_once(key: &[u8; 16], data: &mut [u8]) {
    rc4::Rc4::<rc4::consts::U16>::new(key.into()).apply_keystream(data);
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, ChallengeError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(ChallengeError::Truncated)
}

/// A (Len, MaxLen, BufferOffset) field at `at`, as the slice it points to.
fn field(b: &[u8], at: usize) -> Result<&[u8], ChallengeError> {
    let head = b.get(at..at + 8).ok_or(ChallengeError::Truncated)?;
    let len = u16::from_le_bytes([head[0], head[1]]) as usize;
    let off = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if len == 0 {
        return Ok(&[]);
    }
    b.get(off..off + len).ok_or(ChallengeError::Truncated)
}

fn push_field(msg: &mut Vec<u8>, len: usize, offset: usize) {
    // Invariant: user and domain names and NTLM responses are far below 64 KiB, and the message
    // is built in memory well below 4 GiB, so these fit their u16 / u32 fields.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// [MS-NLMP] 4.2.4.1.1-4.2.4.1.3 and 4.2.4.2.2: the NTLMv2 worked example. User "User",
    /// domain "Domain", password "Password", server challenge 0123456789abcdef, client challenge
    /// aa x 8, time 0, random session key 55 x 16, TargetInfo MsvAvNbDomainName "Domain" and
    /// MsvAvNbComputerName "Server" (no timestamp, so no MIC and a real LMv2 response).
    fn example_challenge() -> Challenge {
        let mut info = Vec::new();
        push_av(&mut info, 2, &utf16("Domain"));
        push_av(&mut info, 1, &utf16("Server"));
        push_av(&mut info, av::EOL, &[]);
        Challenge {
            raw: Vec::new(),
            flags: 0xe28a_8233,
            server_challenge: [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
            target_info: info,
        }
    }

    const EXAMPLE_NONCES: Nonces = Nonces {
        client_challenge: [0xaa; 8],
        session_key: [0x55; 16],
        now: 0,
    };

    #[test]
    fn the_ntlmv2_example_of_ms_nlmp_4_2_4_gives_its_proof_keys_and_responses() {
        let ch = example_challenge();
        let key = ntowf_v2("Password", "User", "Domain");
        assert_eq!(hex::encode(key), "0c868a403bfd7a93a3001ef22ef02e3f");
        let temp = client_blob([0; 8], [0xaa; 8], &ch.target_info);
        let (response, base) = nt_response(&key, &ch.server_challenge, &temp);
        assert_eq!(
            hex::encode(&response[..16]),
            "68cd0ab851e51c96aabc927bebef6a1c"
        );
        assert_eq!(hex::encode(base), "8de40ccadbc14a82f15cb0ad0de95ca3");

        let account = Account::parse(r"Domain\User");
        let auth = authenticate(&negotiate(), &ch, &account, "Password", EXAMPLE_NONCES);
        let msg = &auth.message;
        let lm = field(msg, 12).unwrap();
        assert_eq!(
            hex::encode(lm),
            "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"
        );
        assert_eq!(field(msg, 20).unwrap(), response.as_slice());
        assert_eq!(
            hex::encode(field(msg, 52).unwrap()),
            "c5dad2544fc9799094ce1ce90bc9d03e"
        );
        assert_eq!(auth.session_key, [0x55; 16]);
        assert_eq!(field(msg, 28).unwrap(), utf16("Domain").as_slice());
        assert_eq!(field(msg, 36).unwrap(), utf16("User").as_slice());
        assert_eq!(&msg[72..88], &[0u8; 16], "no MIC without a timestamp");
    }

    #[test]
    fn a_challenge_with_a_timestamp_gets_a_mic_over_all_three_messages_and_a_zero_lm_response() {
        let mut info = Vec::new();
        push_av(&mut info, 1, &utf16("LAB"));
        push_av(&mut info, av::TIMESTAMP, &7u64.to_le_bytes());
        push_av(&mut info, av::EOL, &[]);
        let mut ch = example_challenge();
        ch.target_info = info;
        ch.raw = b"the challenge".to_vec();
        let neg = negotiate();
        let auth = authenticate(&neg, &ch, &Account::parse("u"), "pw", EXAMPLE_NONCES);
        assert_eq!(field(&auth.message, 12).unwrap(), &[0u8; 24]);
        let nt = field(&auth.message, 20).unwrap();
        assert_eq!(&nt[24..32], &7u64.to_le_bytes(), "the server's time");
        assert_eq!(
            av_value(&nt[44..], av::FLAGS),
            Some(&av::FLAG_MIC.to_le_bytes()[..])
        );
        let mut zeroed = auth.message.clone();
        zeroed[72..88].fill(0);
        let mic = hmac_md5(&auth.session_key, &[&neg, &ch.raw, &zeroed]);
        assert_eq!(&auth.message[72..88], &mic);
    }

    #[test]
    fn without_a_server_timestamp_the_response_carries_the_clients_clock_and_no_mic() {
        let nonces = Nonces {
            now: 0x01d9_0000_0000_0000,
            ..EXAMPLE_NONCES
        };
        let auth = authenticate(
            &negotiate(),
            &example_challenge(),
            &Account::parse("u"),
            "pw",
            nonces,
        );
        let nt = field(&auth.message, 20).unwrap();
        assert_eq!(&nt[24..32], &nonces.now.to_le_bytes());
        assert_eq!(&auth.message[72..88], &[0u8; 16]);
    }

    #[test]
    fn a_challenge_without_sealing_or_extended_session_security_is_refused() {
        let mut raw = vec![0u8; 48];
        raw[..8].copy_from_slice(SIGNATURE);
        raw[8] = 2;
        let granted = CLIENT_FLAGS & !flags::EXTENDED_SESSIONSECURITY;
        raw[20..24].copy_from_slice(&granted.to_le_bytes());
        assert_eq!(
            read_challenge(&raw).unwrap_err(),
            ChallengeError::NotGranted("NEGOTIATE_EXTENDED_SESSIONSECURITY")
        );
        raw[20..24].copy_from_slice(&CLIENT_FLAGS.to_le_bytes());
        assert!(read_challenge(&raw).is_ok());
        assert_eq!(
            read_challenge(b"NTLMSSP\0\x01\0\0\0").unwrap_err(),
            ChallengeError::NotChallenge
        );
    }

    #[test]
    fn a_user_name_splits_at_the_backslash_only() {
        assert_eq!(
            Account::parse(r"CONTOSO\svc"),
            Account {
                user: "svc".into(),
                domain: "CONTOSO".into()
            }
        );
        assert_eq!(Account::parse("svc@contoso.com").domain, "");
        assert_eq!(Account::parse("Administrator").user, "Administrator");
    }
}

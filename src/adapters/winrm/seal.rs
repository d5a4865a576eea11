//! NTLM session security for one authenticated WinRM connection, client side ([MS-NLMP] 3.4.3,
//! 3.4.4.2, 3.4.5.2-3): sealing with RC4 and signing with HMAC-MD5 under extended session
//! security, the checksum RC4-encrypted under key exchange, each direction with its own keys, RC4
//! state and sequence number. Pure computation; a message that fails its signature is an error.

use rc4::{KeyInit, StreamCipher};

use super::ntlm::{flags, hmac_md5, md5, Authenticated};

type Rc4 = rc4::Rc4<rc4::consts::U16>;

const CLIENT_SIGN: &[u8] = b"session key to client-to-server signing key magic constant\0";
const SERVER_SIGN: &[u8] = b"session key to server-to-client signing key magic constant\0";
const CLIENT_SEAL: &[u8] = b"session key to client-to-server sealing key magic constant\0";
const SERVER_SEAL: &[u8] = b"session key to server-to-client sealing key magic constant\0";

/// A message from the server whose signature does not verify: tampered, replayed, out of order,
/// or sealed under other keys.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the server's message does not verify (NTLM signature, sequence number {seq})")]
pub struct BadSignature {
    pub seq: u32,
}

/// One direction: signing key, sealing RC4 handle, next sequence number.
struct Direction {
    sign_key: [u8; 16],
    seal: Rc4,
    seq: u32,
}

impl Direction {
    /// SIGNKEY and SEALKEY ([MS-NLMP] 3.4.5.2-3) with NEGOTIATE_128: all 16 bytes of the key.
    fn new(session_key: &[u8; 16], sign_magic: &[u8], seal_magic: &[u8]) -> Direction {
        Direction {
            sign_key: md5(&[session_key, sign_magic]),
            seal: Rc4::new(&md5(&[session_key, seal_magic]).into()),
            seq: 0,
        }
    }

    /// Seals `plain` in place and returns its NTLMSSP_MESSAGE_SIGNATURE ([MS-NLMP] 3.4.4.2).
    fn seal(&mut self, data: &mut [u8], key_exch: bool) -> [u8; 16] {
        let mac = hmac_md5(&self.sign_key, &[&self.seq.to_le_bytes(), data]);
        self.seal.apply_keystream(data);
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(&mac[..8]);
        if key_exch {
            self.seal.apply_keystream(&mut checksum);
        }
        let sig = signature(&checksum, self.seq);
        self.seq = self.seq.wrapping_add(1);
        sig
    }

    /// Unseals `data` in place and checks `sig` against it.
    fn unseal(&mut self, data: &mut [u8], sig: &[u8], key_exch: bool) -> Result<(), BadSignature> {
        let seq = self.seq;
        self.seq = seq.wrapping_add(1);
        self.seal.apply_keystream(data);
        let mac = hmac_md5(&self.sign_key, &[&seq.to_le_bytes(), data]);
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(&mac[..8]);
        if key_exch {
            self.seal.apply_keystream(&mut checksum);
        }
        if sig != signature(&checksum, seq) {
            return Err(BadSignature { seq });
        }
        Ok(())
    }
}

/// NTLMSSP_MESSAGE_SIGNATURE with extended session security: Version 1, checksum, SeqNum.
fn signature(checksum: &[u8; 8], seq: u32) -> [u8; 16] {
    let mut sig = [0u8; 16];
    sig[..4].copy_from_slice(&1u32.to_le_bytes());
    sig[4..12].copy_from_slice(checksum);
    sig[12..].copy_from_slice(&seq.to_le_bytes());
    sig
}

/// Both directions of an authenticated connection, from the client's side.
pub struct SessionSecurity {
    outgoing: Direction,
    incoming: Direction,
    key_exch: bool,
}

impl SessionSecurity {
    pub fn new(auth: &Authenticated) -> SessionSecurity {
        SessionSecurity::from_key(&auth.session_key, auth.flags)
    }

    fn from_key(session_key: &[u8; 16], negotiated: u32) -> SessionSecurity {
        SessionSecurity {
            outgoing: Direction::new(session_key, CLIENT_SIGN, CLIENT_SEAL),
            incoming: Direction::new(session_key, SERVER_SIGN, SERVER_SEAL),
            key_exch: negotiated & flags::KEY_EXCH != 0,
        }
    }

    /// Seals a message for the server: (signature, sealed bytes of the same length).
    pub fn seal(&mut self, plain: &[u8]) -> ([u8; 16], Vec<u8>) {
        let mut data = plain.to_vec();
        let sig = self.outgoing.seal(&mut data, self.key_exch);
        (sig, data)
    }

    /// Unseals a message from the server and verifies its signature.
    pub fn unseal(&mut self, sig: &[u8], sealed: &[u8]) -> Result<Vec<u8>, BadSignature> {
        let mut data = sealed.to_vec();
        self.incoming.unseal(&mut data, sig, self.key_exch)?;
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    /// [MS-NLMP] 4.2.4.2.4 (keys) and 4.2.4.4 (GSS_WrapEx): exported session key 55 x 16, flags
    /// with extended session security and key exchange; "Plaintext" in UTF-16 sealed at sequence 0.
    #[test]
    fn the_ntlmv2_wrap_example_of_ms_nlmp_4_2_4_4_seals_and_signs_as_published() {
        let client = Direction::new(&[0x55; 16], CLIENT_SIGN, CLIENT_SEAL);
        assert_eq!(
            hex::encode(client.sign_key),
            "4788dc861b4782f35d43fd98fe1a2d39"
        );
        assert_eq!(
            hex::encode(md5(&[&[0x55; 16], CLIENT_SEAL])),
            "59f600973cc4960a25480a7c196e4c58"
        );
        let mut security = SessionSecurity::from_key(&[0x55; 16], 0xe28a_8233);
        let (sig, sealed) = security.seal(&utf16("Plaintext"));
        assert_eq!(hex::encode(sealed), "54e50165bf1936dc996020c1811b0f06fb5f");
        assert_eq!(hex::encode(sig), "010000007fb38ec5c55d497600000000");
    }

    /// The server's side of the same keys seals with the server-to-client keys; what the client
    /// sealed does not verify as a server message, and a message replayed out of order fails.
    #[test]
    fn a_message_verifies_only_in_its_direction_and_in_order() {
        let mut client = SessionSecurity::from_key(&[7; 16], flags::KEY_EXCH);
        let mut server = SessionSecurity::from_key(&[7; 16], flags::KEY_EXCH);
        // The server's outgoing direction is the client's incoming one.
        std::mem::swap(&mut server.outgoing, &mut server.incoming);
        let (sig0, first) = server.seal(b"<s:Envelope>0</s:Envelope>");
        let (sig1, second) = server.seal(b"<s:Envelope>1</s:Envelope>");
        assert_eq!(
            client.unseal(&sig0, &first).unwrap(),
            b"<s:Envelope>0</s:Envelope>"
        );
        assert_eq!(
            client.unseal(&sig1, &second).unwrap(),
            b"<s:Envelope>1</s:Envelope>"
        );
        let (sig, own) = client.seal(b"x");
        let mut other = SessionSecurity::from_key(&[7; 16], flags::KEY_EXCH);
        assert_eq!(other.unseal(&sig, &own), Err(BadSignature { seq: 0 }));
    }
}

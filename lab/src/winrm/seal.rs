//! NTLM session security for one authenticated connection ([MS-NLMP] 3.4): sealing (RC4) and
//! signing (HMAC-MD5, checksum RC4-encrypted under key exchange) with extended session security,
//! each direction with its own keys, RC4 state and sequence number, and SPNEGO's mechListMIC
//! (after which the RC4 handle restarts, as Windows does). Pure computation.

use rc4::{KeyInit, StreamCipher};

use super::ntlm::{flags, hmac_md5, md5, Accepted};

type Rc4 = rc4::Rc4<rc4::consts::U16>;

const CLIENT_SIGN: &[u8] = b"session key to client-to-server signing key magic constant\0";
const SERVER_SIGN: &[u8] = b"session key to server-to-client signing key magic constant\0";
const CLIENT_SEAL: &[u8] = b"session key to client-to-server sealing key magic constant\0";
const SERVER_SEAL: &[u8] = b"session key to server-to-client sealing key magic constant\0";

/// A sealed message whose signature does not verify (tampered, replayed or out of order).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the message signature does not verify (sequence number {seq})")]
pub struct BadSignature {
    pub seq: u32,
}

/// One direction: signing key, sealing RC4 handle (and its key, to restart it), next sequence
/// number.
struct Direction {
    sign_key: [u8; 16],
    seal_key: [u8; 16],
    seal: Rc4,
    seq: u32,
}

impl Direction {
    fn new(session_key: &[u8; 16], sign_magic: &[u8], seal_magic: &[u8]) -> Direction {
        let sign_key = md5(&[session_key, sign_magic]);
        // NEGOTIATE_128 is required at the challenge, so the sealing key uses all 16 bytes.
        let seal_key = md5(&[session_key, seal_magic]);
        Direction {
            sign_key,
            seal_key,
            seal: Rc4::new(&seal_key.into()),
            seq: 0,
        }
    }

    /// The signature of `data` without sealing it (a mechListMIC), then the RC4 handle starts
    /// over, as Windows does after SPNEGO's mechListMIC; the sequence number goes on.
    fn mic(&mut self, data: &[u8], key_exch: bool) -> [u8; 16] {
        let sum = self.checksum(data, key_exch);
        let sig = signature(&sum, self.seq);
        self.seq = self.seq.wrapping_add(1);
        self.seal = Rc4::new(&self.seal_key.into());
        sig
    }

    /// The 8-byte checksum of `plain` at the current sequence number, RC4'd under key exchange.
    fn checksum(&mut self, plain: &[u8], key_exch: bool) -> [u8; 8] {
        let mac = hmac_md5(&self.sign_key, &[&self.seq.to_le_bytes(), plain]);
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&mac[..8]);
        if key_exch {
            self.seal.apply_keystream(&mut sum);
        }
        sum
    }
}

/// Both directions of an authenticated connection, from the server's side.
pub struct SessionSecurity {
    incoming: Direction,
    outgoing: Direction,
    key_exch: bool,
}

impl SessionSecurity {
    pub fn new(accepted: &Accepted) -> SessionSecurity {
        SessionSecurity {
            incoming: Direction::new(&accepted.session_key, CLIENT_SIGN, CLIENT_SEAL),
            outgoing: Direction::new(&accepted.session_key, SERVER_SIGN, SERVER_SEAL),
            key_exch: accepted.flags & flags::KEY_EXCH != 0,
        }
    }

    /// Seals a message for the client: (16-byte signature, sealed bytes of the same length).
    pub fn seal(&mut self, plain: &[u8]) -> ([u8; 16], Vec<u8>) {
        let mut sealed = plain.to_vec();
        self.outgoing.seal.apply_keystream(&mut sealed);
        let sum = self.outgoing.checksum(plain, self.key_exch);
        let sig = signature(&sum, self.outgoing.seq);
        self.outgoing.seq = self.outgoing.seq.wrapping_add(1);
        (sig, sealed)
    }

    /// Unseals a message from the client and verifies its signature.
    pub fn unseal(&mut self, sig: &[u8], sealed: &[u8]) -> Result<Vec<u8>, BadSignature> {
        let seq = self.incoming.seq;
        let mut plain = sealed.to_vec();
        self.incoming.seal.apply_keystream(&mut plain);
        let sum = self.incoming.checksum(&plain, self.key_exch);
        self.incoming.seq = seq.wrapping_add(1);
        if sig != signature(&sum, seq) {
            return Err(BadSignature { seq });
        }
        Ok(plain)
    }
}

impl SessionSecurity {
    /// Checks the client's SPNEGO mechListMIC over `mech_types`.
    pub fn verify_mic(&mut self, mech_types: &[u8], mic: &[u8]) -> Result<(), BadSignature> {
        let seq = self.incoming.seq;
        if self.incoming.mic(mech_types, self.key_exch) != mic {
            return Err(BadSignature { seq });
        }
        Ok(())
    }

    /// The server's SPNEGO mechListMIC over `mech_types`.
    pub fn mic(&mut self, mech_types: &[u8]) -> [u8; 16] {
        self.outgoing.mic(mech_types, self.key_exch)
    }
}

/// NTLMSSP_MESSAGE_SIGNATURE with extended session security: Version 1, checksum, SeqNum.
fn signature(sum: &[u8; 8], seq: u32) -> [u8; 16] {
    let mut sig = [0u8; 16];
    sig[..4].copy_from_slice(&1u32.to_le_bytes());
    sig[4..12].copy_from_slice(sum);
    sig[12..].copy_from_slice(&seq.to_le_bytes());
    sig
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(key: u8) -> Accepted {
        Accepted {
            user: "u".into(),
            domain: String::new(),
            flags: flags::KEY_EXCH | flags::SEAL | flags::SIGN,
            session_key: [key; 16],
        }
    }

    /// The client's side of the same keys: what the server unseals it must have sealed with the
    /// client-to-server keys, so a server sealing to itself must fail.
    #[test]
    fn a_message_sealed_by_the_server_does_not_unseal_as_a_client_message() {
        let mut server = SessionSecurity::new(&accepted(7));
        let (sig, sealed) = server.seal(b"<s:Envelope/>");
        assert_ne!(sealed, b"<s:Envelope/>");
        let mut other = SessionSecurity::new(&accepted(7));
        assert_eq!(other.unseal(&sig, &sealed), Err(BadSignature { seq: 0 }));
    }
}

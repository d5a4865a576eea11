//! Kerberos logon on the lab's WinRM listener, as Windows' listener takes it ([MS-WSMV] 2.2.9.1.2):
//! `Authorization: Kerberos <AP-REQ>`, or `Negotiate` with a raw Kerberos token (what pywinrm's
//! kerberos transport sends) or a SPNEGO token offering Kerberos; one round trip, and the 200
//! answer's `WWW-Authenticate` carries the AP-REP (mutual authentication). Only the lab's
//! administrator principal is let in, as Windows lets in members of Administrators. Messages are
//! then encrypted with the context (`gssapi`). Logon decisions only; framing is `encrypted`'s job.

use std::path::PathBuf;

use super::gssapi::{Acceptor, GssError};

/// The Kerberos V5 mechanism's OID (1.2.840.113554.1.2.2) as it opens an initial context token.
const KRB5_TOKEN_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02,
];

/// What the listener needs to accept Kerberos.
#[derive(Debug, Clone)]
pub struct KerberosConfig {
    /// The keytab holding `HTTP/<host>`'s key.
    pub keytab: PathBuf,
    /// The one principal let in, e.g. `admin@LAB.TEST`.
    pub admin: String,
}

/// Is this a raw Kerberos initial context token (GSS-API framing around an AP-REQ)?
pub fn is_kerberos_token(token: &[u8]) -> bool {
    if token.first() != Some(&0x60) {
        return false;
    }
    // The length octets: short form, or long form with 1-4 bytes.
    let skip = match token.get(1) {
        Some(l) if *l < 0x80 => 2,
        Some(l) => 2 + (l & 0x7f) as usize,
        None => return false,
    };
    token
        .get(skip..)
        .is_some_and(|t| t.starts_with(KRB5_TOKEN_OID))
}

/// A connection's Kerberos security context.
pub struct Session {
    acceptor: Acceptor,
}

/// A logon the listener refuses (401), with why (for the lab's log only).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Gss(#[from] GssError),
    /// GSSAPI refused it and made a KRB-ERROR for the client (the 401 carries it).
    #[error("{0}")]
    WithError(GssError, Vec<u8>),
    #[error("{0} is not an administrator of the lab's server")]
    NotAdmin(String),
}

/// Accepts `token`: the session and the AP-REP to send back.
/// `stale_key` (the `kerberos-stale-key` fault): with the service's previous key instead.
pub fn logon(
    config: &KerberosConfig,
    token: &[u8],
    stale_key: bool,
) -> Result<(Session, Vec<u8>), Refused> {
    let keytab = match stale_key {
        true => config.keytab.with_file_name(crate::kdc::STALE_KEYTAB),
        false => config.keytab.clone(),
    };
    let (acceptor, accepted) = Acceptor::accept(&keytab, token)?;
    if !accepted.client.eq_ignore_ascii_case(&config.admin) {
        return Err(Refused::NotAdmin(accepted.client));
    }
    tracing::info!("WinRM Kerberos logon of {}", accepted.client);
    Ok((Session { acceptor }, accepted.reply))
}

impl Session {
    /// Decrypts a message's header and data.
    pub fn unseal(&mut self, header: &[u8], data: &[u8]) -> Result<Vec<u8>, GssError> {
        self.acceptor.unwrap(header, data)
    }

    /// Wraps an answer, encrypted when `encrypt` (else integrity only, for the
    /// `kerberos-sign-only` fault): (header, data with padding).
    pub fn seal(&mut self, plain: &[u8], encrypt: bool) -> Result<(Vec<u8>, Vec<u8>), GssError> {
        self.acceptor.wrap(plain, encrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kerberos_token_is_told_from_spnego_and_ntlm() {
        let mut krb = vec![0x60, 0x0d];
        krb.extend_from_slice(KRB5_TOKEN_OID);
        krb.extend_from_slice(&[0x01, 0x00]);
        assert!(is_kerberos_token(&krb));
        let spnego = [0x60, 0x08, 0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
        assert!(!is_kerberos_token(&spnego));
        assert!(!is_kerberos_token(b"NTLMSSP\0"));
    }
}

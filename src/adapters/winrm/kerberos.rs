//! Kerberos logon to a WinRM listener ([MS-WSMV] 2.2.9.1.2), client side: a ticket for the service
//! `HTTP@<server>` (from the password, or from the user's ticket cache after `kinit`), the AP-REQ
//! in `Authorization: Kerberos` on an empty request, and the server's AP-REP from the 200 answer's
//! `WWW-Authenticate` checked (mutual authentication: a server that cannot prove it holds the
//! service key is refused). The context then encrypts every message over HTTP. No password,
//! token or header reaches a log. The security library is the platform's, behind `Mechanism`:
//! GSSAPI on Unix (`gssapi`), SSPI on Windows (`sspi`); the framing is `encrypted`'s.

use std::time::Duration;

use base64::Engine;

use super::error::WinrmError;
use super::http::Connection;
use super::session::round_trip;
use super::Endpoint;
use crate::adapters::secrets::SecretString;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The platform's security library.
#[cfg(unix)]
type Platform = super::gssapi::Context;
#[cfg(windows)]
type Platform = super::sspi::Context;

/// Where the client's Kerberos credentials come from.
pub enum Credentials<'a> {
    /// A password for this principal: a fresh ticket from the KDC, kept in memory only.
    Password(&'a str, &'a str),
    /// The ticket cache (Unix, after `kinit`) or the logon (Windows) of the person running
    /// `upgrade`, for this principal.
    Cache(&'a str),
}

/// What the Kerberos logon needs of a security library: one initiator context for the WinRM
/// service of a host (mutual authentication, confidentiality and integrity required), its steps,
/// and the encryption of [MS-WSMV] 2.2.9.1.2 (a header and the encrypted data).
pub trait Mechanism: Sized + Send {
    type Error: std::error::Error;
    /// Credentials and a context for the service `HTTP/host`; nothing is sent yet.
    fn new(credentials: Credentials<'_>, host: &str) -> Result<Self, Self::Error>;
    /// One step of the logon: the server's last token in (none at first), the next token out.
    /// `Ok((token, true))` once the context is complete (mutual authentication done).
    fn step(&mut self, input: Option<&[u8]>) -> Result<(Vec<u8>, bool), Self::Error>;
    /// Encrypts a message: (header, encrypted data followed by any padding).
    fn wrap(&mut self, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Self::Error>;
    /// Decrypts and checks the server's (header, data); a message not encrypted is refused.
    fn unwrap(&mut self, header: &[u8], data: &[u8]) -> Result<Vec<u8>, Self::Error>;
}

/// A connection's Kerberos security context, complete.
pub struct Kerberos {
    context: Platform,
}

/// Logs on over `conn` in one round trip.
pub async fn logon(
    conn: &mut Connection,
    endpoint: &Endpoint,
    user: &str,
    password: Option<&SecretString>,
    timeout: Duration,
) -> Result<Kerberos, WinrmError> {
    let failed = |cause: String| WinrmError::Kerberos {
        endpoint: endpoint.url.clone(),
        user: user.to_string(),
        cause,
    };
    let library = |e: <Platform as Mechanism>::Error| failed(e.to_string());
    let credentials = match password {
        Some(p) => Credentials::Password(user, p.expose()),
        None => Credentials::Cache(user),
    };
    let host = endpoint.host.trim_matches(['[', ']']);
    let mut context = Platform::new(credentials, host).map_err(library)?;
    let (token, _) = context.step(None).map_err(library)?;
    let header = format!("Kerberos {}", B64.encode(&token));
    let resp = round_trip(conn, &header, timeout)
        .await
        .map_err(|cause| WinrmError::Lost {
            endpoint: endpoint.url.clone(),
            operation: "logon",
            cause,
        })?;
    match resp.status {
        200..=299 => {}
        401 => {
            // A KRB-ERROR in the 401's WWW-Authenticate: GSSAPI words the server's reason.
            let why = server_token(&resp)
                .and_then(|t| B64.decode(t).ok())
                .and_then(|t| context.step(Some(&t)).err())
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            return Err(WinrmError::KerberosRefused {
                endpoint: endpoint.url.clone(),
                user: user.to_string(),
                host: endpoint.host.clone(),
                why,
            });
        }
        status => {
            return Err(failed(format!(
                "the server answered the logon with HTTP {status}"
            )))
        }
    }
    let reply = server_token(&resp).ok_or_else(|| {
            failed("the server's answer carries no Kerberos reply, so it did not prove who it is (mutual authentication)".into())
        })?;
    let reply = B64
        .decode(reply)
        .map_err(|e| failed(format!("the server's reply is not base64: {e}")))?;
    match context.step(Some(&reply)).map_err(library)? {
        (_, true) => Ok(Kerberos { context }),
        (_, false) => Err(failed(
            "the server's reply did not complete the logon (mutual authentication)".into(),
        )),
    }
}

/// The Kerberos token of an answer's `WWW-Authenticate` (under `Kerberos` or `Negotiate`).
fn server_token(resp: &super::http::Response) -> Option<String> {
    resp.headers_named("WWW-Authenticate").find_map(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        (scheme.eq_ignore_ascii_case("Kerberos") || scheme.eq_ignore_ascii_case("Negotiate"))
            .then(|| token.trim().to_string())
    })
}

impl Kerberos {
    /// Encrypts a SOAP message: (wrap header, encrypted data).
    pub fn seal(&mut self, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
        self.context.wrap(plain).map_err(|e| e.to_string())
    }

    /// Decrypts the server's message.
    pub fn unseal(&mut self, header: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
        self.context.unwrap(header, data).map_err(|e| e.to_string())
    }
}

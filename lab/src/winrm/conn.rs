//! One connection to the lab's WinRM listener, as Windows' default listener treats it
//! (AllowUnencrypted=false, Basic off, Negotiate on): NTLM over `Authorization: Negotiate|NTLM`
//! authenticates the connection; after that every SOAP body over HTTP must arrive sealed in the
//! SPNEGO-encrypted multipart form and every answer leaves sealed the same way. A plain body after
//! logon gets HTTP 500 (what Windows answers when AllowUnencrypted is false), a bad or missing
//! logon 401 with `WWW-Authenticate: Negotiate`. Over the optional HTTPS listener (a listener with
//! Basic enabled) TLS protects the traffic: plain SOAP bodies are taken, and so is Basic, which
//! authenticates each request that carries it.

use std::sync::Arc;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncWrite};

use super::dispatch::{Outcome, Service};
use super::encrypted;
use super::http::{self, Request, Response};
use super::ntlm::{self, Identity};
use super::seal::SessionSecurity;

/// What every connection of one listener shares.
pub struct Shared {
    pub identity: Identity,
    pub service: Service,
}

/// The Content-Type of a plain SOAP message.
const SOAP: &str = "application/soap+xml;charset=UTF-8";

/// Where one connection's logon stands.
enum Logon {
    None,
    /// CHALLENGE sent under `scheme` (`Negotiate` or `NTLM`, as the client wrote it).
    Challenged(ntlm::Challenged),
    Done(Box<SessionSecurity>),
}

/// Serves one connection until the client closes it (or a fault drops it). `https`: the stream is
/// TLS, so Basic and plain SOAP bodies are taken.
pub async fn run<S>(stream: S, shared: Arc<Shared>, https: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = http::Reader::new(read);
    let mut logon = Logon::None;
    loop {
        let req = match reader.next().await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("WinRM connection: {e}");
                let _ = http::write(&mut write, &Response::new(400)).await;
                return;
            }
        };
        let close = req.wants_close();
        let Some(resp) = respond(&shared, &mut logon, req, https).await else {
            return;
        };
        if http::write(&mut write, &resp).await.is_err() || close {
            return;
        }
    }
}

fn unauthorized() -> Response {
    Response::new(401).header("WWW-Authenticate", "Negotiate")
}

/// The answer to one request; `None` drops the connection.
async fn respond(
    shared: &Shared,
    logon: &mut Logon,
    req: Request,
    https: bool,
) -> Option<Response> {
    let path = req.path.split('?').next().unwrap_or_default();
    if !path.eq_ignore_ascii_case("/wsman") {
        return Some(Response::new(404));
    }
    if req.method != "POST" {
        return Some(Response::new(405));
    }
    let basic = match authorize(shared, logon, &req, https) {
        Ok(basic) => basic,
        Err(refusal) => return Some(refusal),
    };
    let security = match logon {
        Logon::Done(s) => Some(s),
        _ if basic => None,
        _ => return Some(unauthorized()),
    };
    if req.body.is_empty() {
        return Some(Response::new(200));
    }
    let content_type = req.header("Content-Type").unwrap_or_default();
    match (encrypted::is_encrypted(content_type), security) {
        (true, Some(security)) => {
            let plain = match encrypted::parse(&req.body)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    security
                        .unseal(p.signature, p.sealed)
                        .map_err(|e| e.to_string())
                }) {
                Ok(p) => p,
                Err(e) => {
                    tracing::info!("WinRM: {e}");
                    return Some(Response::new(400));
                }
            };
            let (status, xml) = answer(shared, &plain).await?;
            let (signature, sealed) = security.seal(&xml);
            Some(Response::new(status).body(
                encrypted::CONTENT_TYPE,
                encrypted::build(xml.len(), &signature, &sealed),
            ))
        }
        (false, _) if https => {
            let (status, xml) = answer(shared, &req.body).await?;
            Some(Response::new(status).body(SOAP, xml))
        }
        (true, None) => Some(Response::new(400)),
        (false, _) => {
            tracing::info!("WinRM: unencrypted request refused (AllowUnencrypted=false)");
            Some(Response::new(500))
        }
    }
}

/// The shell service's answer as (HTTP status, SOAP); `None` drops the connection.
async fn answer(shared: &Shared, xml: &[u8]) -> Option<(u16, Vec<u8>)> {
    match shared.service.handle(xml).await {
        Outcome::Drop => None,
        Outcome::Reply(xml) => Some((200, xml)),
        Outcome::Fault(xml) => Some((500, xml)),
    }
}

/// Takes the request's Authorization header, if any: `Ok(true)` for a good Basic logon (HTTPS
/// only), `Ok(false)` when the connection's NTLM logon decides, `Err` with the 401 to send.
fn authorize(
    shared: &Shared,
    logon: &mut Logon,
    req: &Request,
    https: bool,
) -> Result<bool, Response> {
    let Some(value) = req.header("Authorization") else {
        return Ok(false);
    };
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    if https && scheme.eq_ignore_ascii_case("Basic") && basic_ok(&shared.identity, token) {
        return Ok(true);
    }
    let ntlm_scheme =
        scheme.eq_ignore_ascii_case("Negotiate") || scheme.eq_ignore_ascii_case("NTLM");
    let token = base64::engine::general_purpose::STANDARD.decode(token.trim());
    let (true, Ok(token)) = (ntlm_scheme, token) else {
        // Basic over plain HTTP (off by default on Windows), a bad Basic password, Kerberos,
        // anything else.
        *logon = Logon::None;
        return Err(unauthorized());
    };
    match ntlm::message_type(&token) {
        Some(1) => Err(challenge(shared, logon, scheme, &token)),
        Some(3) => {
            let accepted = match std::mem::replace(logon, Logon::None) {
                Logon::Challenged(state) => ntlm::authenticate(&shared.identity, &state, &token),
                _ => Err(ntlm::NtlmError::NotNtlm { expected: 1 }),
            };
            match accepted {
                Ok(a) => {
                    tracing::info!("WinRM logon of {}\\{}", a.domain, a.user);
                    *logon = Logon::Done(Box::new(SessionSecurity::new(&a)));
                    Ok(false)
                }
                Err(e) => {
                    tracing::info!("WinRM logon refused: {e}");
                    Err(unauthorized())
                }
            }
        }
        _ => {
            // A SPNEGO-wrapped (GSS-API) token: the lab's Negotiate takes raw NTLM only.
            tracing::info!("WinRM logon refused: not a raw NTLM token");
            *logon = Logon::None;
            Err(unauthorized())
        }
    }
}

/// Does a Basic token name the local administrator with its password?
fn basic_ok(id: &Identity, token: &str) -> bool {
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
        return false;
    };
    let text = String::from_utf8_lossy(&decoded);
    let Some((who, password)) = text.split_once(':') else {
        return false;
    };
    let user = match who.split_once('\\') {
        Some((domain, user)) if domain == "." || domain.eq_ignore_ascii_case(&id.computer) => user,
        Some(_) => return false,
        None => who,
    };
    user.eq_ignore_ascii_case(&id.user) && password == id.password
}

fn challenge(shared: &Shared, logon: &mut Logon, scheme: &str, token: &[u8]) -> Response {
    let server_challenge: [u8; 8] = match crate::state::random_bytes(8) {
        Ok(b) => b.try_into().unwrap_or([0; 8]),
        Err(_) => return Response::new(500),
    };
    match ntlm::challenge(&shared.identity, token, server_challenge, filetime_now()) {
        Ok((msg, state)) => {
            *logon = Logon::Challenged(state);
            let b64 = base64::engine::general_purpose::STANDARD.encode(msg);
            Response::new(401).header("WWW-Authenticate", format!("{scheme} {b64}"))
        }
        Err(e) => {
            tracing::info!("WinRM logon refused: {e}");
            *logon = Logon::None;
            unauthorized()
        }
    }
}

/// Now as a Windows FILETIME (100 ns ticks since 1601-01-01).
fn filetime_now() -> u64 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (unix.as_secs() + 11_644_473_600) * 10_000_000 + u64::from(unix.subsec_nanos() / 100)
}

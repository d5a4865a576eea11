//! One HTTP connection to the lab's WinRM listener, as Windows' default listener treats it
//! (AllowUnencrypted=false, Basic off, Negotiate on): NTLM over `Authorization: Negotiate|NTLM`
//! authenticates the connection; after that every SOAP body must arrive sealed in the
//! SPNEGO-encrypted multipart form and every answer leaves sealed the same way. A plain body after
//! logon gets HTTP 500 (what Windows answers when AllowUnencrypted is false), a bad or missing
//! logon 401 with `WWW-Authenticate: Negotiate`.

use std::sync::Arc;

use base64::Engine;
use tokio::net::TcpStream;

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

/// Where one connection's logon stands.
enum Logon {
    None,
    /// CHALLENGE sent under `scheme` (`Negotiate` or `NTLM`, as the client wrote it).
    Challenged(ntlm::Challenged),
    Done(Box<SessionSecurity>),
}

/// Serves one connection until the client closes it (or a fault drops it).
pub async fn run(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
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
        let Some(resp) = respond(&shared, &mut logon, req).await else {
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
async fn respond(shared: &Shared, logon: &mut Logon, req: Request) -> Option<Response> {
    let path = req.path.split('?').next().unwrap_or_default();
    if !path.eq_ignore_ascii_case("/wsman") {
        return Some(Response::new(404));
    }
    if req.method != "POST" {
        return Some(Response::new(405));
    }
    if let Some(value) = req.header("Authorization") {
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
        if !(scheme.eq_ignore_ascii_case("Negotiate") || scheme.eq_ignore_ascii_case("NTLM")) {
            // Basic (off by default, and never over plain HTTP), Kerberos, anything else.
            *logon = Logon::None;
            return Some(unauthorized());
        }
        let Ok(token) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
            *logon = Logon::None;
            return Some(unauthorized());
        };
        match ntlm::message_type(&token) {
            Some(1) => return Some(challenge(shared, logon, scheme, &token)),
            Some(3) => {
                let accepted = match std::mem::replace(logon, Logon::None) {
                    Logon::Challenged(state) => {
                        ntlm::authenticate(&shared.identity, &state, &token)
                    }
                    _ => Err(ntlm::NtlmError::NotNtlm { expected: 1 }),
                };
                match accepted {
                    Ok(a) => {
                        tracing::info!("WinRM logon of {}\\{}", a.domain, a.user);
                        *logon = Logon::Done(Box::new(SessionSecurity::new(&a)));
                    }
                    Err(e) => {
                        tracing::info!("WinRM logon refused: {e}");
                        return Some(unauthorized());
                    }
                }
            }
            _ => {
                // A SPNEGO-wrapped (GSS-API) token: the lab's Negotiate takes raw NTLM only.
                tracing::info!("WinRM logon refused: not a raw NTLM token");
                *logon = Logon::None;
                return Some(unauthorized());
            }
        }
    }
    let Logon::Done(security) = logon else {
        return Some(unauthorized());
    };
    if req.body.is_empty() {
        return Some(Response::new(200));
    }
    let content_type = req.header("Content-Type").unwrap_or_default();
    if !encrypted::is_encrypted(content_type) {
        tracing::info!("WinRM: unencrypted request refused (AllowUnencrypted=false)");
        return Some(Response::new(500));
    }
    let plain = match encrypted::parse(&req.body) {
        Ok(parts) => match security.unseal(parts.signature, parts.sealed) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!("WinRM: {e}");
                return Some(Response::new(400));
            }
        },
        Err(e) => {
            tracing::info!("WinRM: {e}");
            return Some(Response::new(400));
        }
    };
    let (status, xml) = match shared.service.handle(&plain).await {
        Outcome::Drop => return None,
        Outcome::Reply(xml) => (200, xml),
        Outcome::Fault(xml) => (500, xml),
    };
    let (signature, sealed) = security.seal(&xml);
    Some(Response::new(status).body(
        encrypted::CONTENT_TYPE,
        encrypted::build(xml.len(), &signature, &sealed),
    ))
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

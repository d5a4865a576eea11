//! One connection to the lab's WinRM listener, as Windows' default listener treats it
//! (AllowUnencrypted=false, Basic off, Negotiate on): NTLM over `Authorization: Negotiate|NTLM`,
//! raw or (under Negotiate) wrapped in SPNEGO, authenticates the connection; after that every SOAP body over HTTP must arrive sealed in the
//! SPNEGO-encrypted multipart form and every answer leaves sealed the same way. A plain body after
//! logon gets HTTP 500 (what Windows answers when AllowUnencrypted is false), a bad or missing
//! logon 401 with `WWW-Authenticate: Negotiate`. Over the optional HTTPS listener (a listener with
//! Basic enabled) TLS protects the traffic: plain SOAP bodies are taken, and so is Basic, which
//! authenticates each request that carries it. With a keytab (`serve --kerberos`) Kerberos logs on
//! too (`kerberos`), and its messages are encrypted with the Kerberos context in the same form.

use std::sync::Arc;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncWrite};

use super::dispatch::{Outcome, Service};
use super::encrypted;
use super::http::{self, Request, Response};
use super::kerberos::{self, KerberosConfig};
use super::ntlm::{self, Identity};
use super::seal::SessionSecurity;
use super::spnego;
use crate::faults::{self, KerberosFault};

/// What every connection of one listener shares.
pub struct Shared {
    pub identity: Identity,
    pub service: Service,
    /// Kerberos is taken when the listener has a keytab.
    pub kerberos: Option<KerberosConfig>,
}

/// The Content-Type of a plain SOAP message.
const SOAP: &str = "application/soap+xml;charset=UTF-8";

/// Where one connection's logon stands. `spnego`: the client wraps NTLM in SPNEGO, offering
/// these mechTypes (DER), which the mechListMICs cover; `None`: raw NTLM tokens.
enum Logon {
    None,
    /// SPNEGO settled on NTLM; the client's NTLM NEGOTIATE has not come yet.
    Chosen {
        spnego: Option<Vec<u8>>,
    },
    /// CHALLENGE sent.
    Challenged {
        state: ntlm::Challenged,
        spnego: Option<Vec<u8>>,
    },
    Done(Box<SessionSecurity>),
    /// A Kerberos context, and the encrypted body's protocol its logon scheme pairs with.
    Kerberos(Box<kerberos::Session>, &'static str),
}

/// A request's authorization that lets it through.
struct Authorized {
    /// Basic (HTTPS only): this request only.
    basic: bool,
    /// The last SPNEGO token, for the answer's `WWW-Authenticate` header.
    final_token: Option<String>,
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

/// 401 with the schemes the listener takes, as Windows' listener offers them: Negotiate, then
/// Kerberos, and Basic only over HTTPS, where the lab enables it.
fn unauthorized(https: bool) -> Response {
    let r = Response::new(401)
        .header("WWW-Authenticate", "Negotiate")
        .header("WWW-Authenticate", "Kerberos");
    if https {
        r.header("WWW-Authenticate", "Basic realm=\"WSMAN\"")
    } else {
        r
    }
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
    let Authorized { basic, final_token } = match authorize(shared, logon, &req, https) {
        Ok(a) => a,
        Err(refusal) => return Some(refusal),
    };
    let response = answer_body(shared, logon, &req, https, basic).await;
    Some(match final_token {
        Some(t) => response?.header("WWW-Authenticate", t),
        None => response?,
    })
}

/// The answer to an authorized request's body; `None` drops the connection.
async fn answer_body(
    shared: &Shared,
    logon: &mut Logon,
    req: &Request,
    https: bool,
    basic: bool,
) -> Option<Response> {
    let logged_on = matches!(logon, Logon::Done(_) | Logon::Kerberos(..));
    if !logged_on && !basic {
        return Some(unauthorized(https));
    }
    if req.body.is_empty() {
        return Some(Response::new(200));
    }
    let content_type = req.header("Content-Type").unwrap_or_default();
    match (encrypted::protocol(content_type), logged_on) {
        (Some(protocol), true) => {
            let fault = faults::load(shared.service.lab())
                .unwrap_or_default()
                .kerberos;
            if let (Logon::Kerberos(..), Some(KerberosFault::Expired)) = (&logon, fault) {
                faults::update(shared.service.lab(), |f| f.kerberos = None).ok()?;
                return Some(refuse(
                    logon,
                    "kerberos-expired: the session expired",
                    https,
                ));
            }
            if let Err(why) = pairs(logon, protocol) {
                tracing::info!("WinRM: {why}");
                return Some(Response::new(400));
            }
            let plain = match unseal(logon, &req.body) {
                Ok(p) => p,
                Err(e) => {
                    tracing::info!("WinRM: {e}");
                    return Some(Response::new(400));
                }
            };
            let (status, xml) = answer(shared, &plain).await?;
            if let (Logon::Kerberos(..), Some(KerberosFault::PlainAnswer)) = (&logon, fault) {
                tracing::info!("kerberos-plain-answer: answering with plain SOAP");
                return Some(Response::new(status).body(SOAP, xml));
            }
            let sign_only = fault == Some(KerberosFault::SignOnly);
            let (signature, sealed) = match seal(logon, &xml, sign_only) {
                Ok(s) => s,
                Err(e) => {
                    tracing::info!("WinRM: {e}");
                    return Some(Response::new(500));
                }
            };
            Some(Response::new(status).body(
                &encrypted::content_type(protocol),
                encrypted::build(protocol, xml.len(), &signature, &sealed),
            ))
        }
        (None, _) if https => {
            let (status, xml) = answer(shared, &req.body).await?;
            Some(Response::new(status).body(SOAP, xml))
        }
        (Some(_), false) => Some(Response::new(400)),
        (None, _) => {
            tracing::info!("WinRM: unencrypted request refused (AllowUnencrypted=false)");
            Some(Response::new(500))
        }
    }
}

/// Does the encrypted body's protocol go with the connection's logon? [MS-WSMV] 2.2.9.1.1 gives
/// `application/HTTP-SPNEGO-session-encrypted` for a Negotiate (SPNEGO) logon, NTLM or Kerberos
/// (pywinrm's kerberos transport logs on with Negotiate and sends this label), and 2.2.9.1.2
/// `application/HTTP-Kerberos-session-encrypted` for the `Kerberos` scheme; the lab answers a
/// mismatch with 400, as it answers a body it cannot decrypt.
fn pairs(logon: &Logon, protocol: &str) -> Result<(), String> {
    let expected = match logon {
        Logon::Kerberos(_, expected) => *expected,
        _ => encrypted::PROTOCOL,
    };
    pairing(expected, protocol)
}

fn pairing(expected: &str, protocol: &str) -> Result<(), String> {
    if protocol == expected {
        Ok(())
    } else {
        Err(format!(
            "an encrypted body labelled {protocol} on a logon whose label is {expected}"
        ))
    }
}

/// The encrypted body's protocol a Kerberos logon under `scheme` pairs with.
fn kerberos_protocol(scheme: &str) -> &'static str {
    if scheme.eq_ignore_ascii_case("Kerberos") {
        encrypted::KERBEROS_PROTOCOL
    } else {
        encrypted::PROTOCOL
    }
}

/// A request's encrypted body, decrypted with the connection's NTLM or Kerberos context.
fn unseal(logon: &mut Logon, body: &[u8]) -> Result<Vec<u8>, String> {
    let p = encrypted::parse(body).map_err(|e| e.to_string())?;
    match logon {
        Logon::Done(security) if p.sealed.len() == p.length => security
            .unseal(p.signature, p.sealed)
            .map_err(|e| e.to_string()),
        Logon::Done(_) => Err("NTLM sealed data longer than its Length".into()),
        Logon::Kerberos(session, _) => {
            let plain = session
                .unseal(p.signature, p.sealed)
                .map_err(|e| e.to_string())?;
            if plain.len() != p.length {
                return Err(format!(
                    "a message of {} bytes whose OriginalContent Length says {}",
                    plain.len(),
                    p.length
                ));
            }
            Ok(plain)
        }
        _ => Err("an encrypted message before any logon".into()),
    }
}

/// An answer encrypted with the connection's context: (signature or header, sealed data);
/// `sign_only` (the `kerberos-sign-only` fault): a Kerberos answer with integrity only.
fn seal(logon: &mut Logon, xml: &[u8], sign_only: bool) -> Result<(Vec<u8>, Vec<u8>), String> {
    match logon {
        Logon::Done(security) => {
            let (signature, sealed) = security.seal(xml);
            Ok((signature.to_vec(), sealed))
        }
        Logon::Kerberos(session, _) => session.seal(xml, !sign_only).map_err(|e| e.to_string()),
        _ => Err("no logon to encrypt with".into()),
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

/// Takes the request's Authorization header, if any: through for a good Basic logon (HTTPS
/// only) or when the connection's NTLM logon decides; `Err` with the 401 to send.
fn authorize(
    shared: &Shared,
    logon: &mut Logon,
    req: &Request,
    https: bool,
) -> Result<Authorized, Response> {
    let through = |basic| Authorized {
        basic,
        final_token: None,
    };
    let Some(value) = req.header("Authorization") else {
        return Ok(through(false));
    };
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    if https && scheme.eq_ignore_ascii_case("Basic") && basic_ok(&shared.identity, token) {
        return Ok(through(true));
    }
    let kerberos_scheme = scheme.eq_ignore_ascii_case("Kerberos");
    let ntlm_scheme =
        scheme.eq_ignore_ascii_case("Negotiate") || scheme.eq_ignore_ascii_case("NTLM");
    let token = base64::engine::general_purpose::STANDARD.decode(token.trim());
    let (true, Ok(token)) = (ntlm_scheme || kerberos_scheme, token) else {
        // Basic over plain HTTP (off by default on Windows), a bad Basic password, anything else.
        return Err(refuse(
            logon,
            "not an NTLM, Kerberos or Negotiate logon",
            https,
        ));
    };
    if kerberos_scheme || kerberos::is_kerberos_token(&token) {
        return kerberos_logon(shared, logon, scheme, &token, https);
    }
    let (inner, wrapped) = if spnego::is_spnego(&token) {
        match spnego::parse(&token) {
            Ok(w) if w.offers_ntlm => (w.token.clone().unwrap_or_default(), Some(w)),
            // SPNEGO offering Kerberos only: GSSAPI's SPNEGO takes it.
            Ok(_) => return kerberos_logon(shared, logon, scheme, &token, https),
            Err(e) => return Err(refuse(logon, &e.to_string(), https)),
        }
    } else {
        (token, None)
    };
    // The mechTypes a NegTokenInit brings, else those kept from the first SPNEGO token.
    let spnego = |logon: &Logon| -> Option<Vec<u8>> {
        let w = wrapped.as_ref()?;
        w.mech_types.clone().or_else(|| match logon {
            Logon::Chosen { spnego } | Logon::Challenged { spnego, .. } => spnego.clone(),
            _ => None,
        })
    };
    let wrap = |state, token: Option<&[u8]>, mic: Option<&[u8]>, first: bool| {
        let b64 = base64::engine::general_purpose::STANDARD;
        match &wrapped {
            Some(_) => format!(
                "{scheme} {}",
                b64.encode(spnego::response(state, first, token, mic))
            ),
            None => format!("{scheme} {}", b64.encode(token.unwrap_or_default())),
        }
    };
    match ntlm::message_type(&inner) {
        Some(1) => {
            let server_challenge: [u8; 8] = crate::state::random_bytes(8)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| Response::new(500))?;
            let spnego = spnego(logon);
            match ntlm::challenge(&shared.identity, &inner, server_challenge, filetime_now()) {
                Ok((msg, state)) => {
                    *logon = Logon::Challenged { state, spnego };
                    let header = wrap(spnego::State::AcceptIncomplete, Some(&msg), None, true);
                    Err(Response::new(401).header("WWW-Authenticate", header))
                }
                Err(e) => Err(refuse(logon, &e.to_string(), https)),
            }
        }
        Some(3) => {
            let spnego = spnego(logon);
            let accepted = match std::mem::replace(logon, Logon::None) {
                Logon::Challenged { state, .. } => {
                    ntlm::authenticate(&shared.identity, &state, &inner).map_err(|e| e.to_string())
                }
                _ => Err("an AUTHENTICATE message before any CHALLENGE".to_string()),
            };
            let a = accepted.map_err(|e| refuse(logon, &e, https))?;
            let mut security = SessionSecurity::new(&a);
            let client_mic = wrapped.as_ref().and_then(|w| w.mech_list_mic.clone());
            let final_token = match (&wrapped, spnego, client_mic) {
                (None, _, _) => None,
                (Some(_), Some(types), Some(mic)) => {
                    security
                        .verify_mic(&types, &mic)
                        .map_err(|e| refuse(logon, &format!("mechListMIC: {e}"), https))?;
                    let ours = security.mic(&types);
                    Some(wrap(
                        spnego::State::AcceptCompleted,
                        None,
                        Some(&ours),
                        false,
                    ))
                }
                (Some(_), _, _) => Some(wrap(spnego::State::AcceptCompleted, None, None, false)),
            };
            tracing::info!("WinRM logon of {}\\{}", a.domain, a.user);
            *logon = Logon::Done(Box::new(security));
            Ok(Authorized {
                basic: false,
                final_token,
            })
        }
        _ if wrapped.is_some() => {
            // SPNEGO with no NTLM token yet (an optimistic token of another mechanism, or
            // none): NTLM is the one the lab takes; the client's NEGOTIATE comes next.
            *logon = Logon::Chosen {
                spnego: spnego(logon),
            };
            let header = wrap(spnego::State::AcceptIncomplete, None, None, true);
            Err(Response::new(401).header("WWW-Authenticate", header))
        }
        _ => Err(refuse(logon, "not an NTLM token", https)),
    }
}

/// A Kerberos logon in one round trip: through with the AP-REP for the answer's
/// `WWW-Authenticate` (under the scheme the client used), or 401.
fn kerberos_logon(
    shared: &Shared,
    logon: &mut Logon,
    scheme: &str,
    token: &[u8],
    https: bool,
) -> Result<Authorized, Response> {
    let Some(config) = &shared.kerberos else {
        return Err(refuse(
            logon,
            "a Kerberos logon, but this listener has no keytab (serve --kerberos)",
            https,
        ));
    };
    let fault = faults::load(shared.service.lab())
        .unwrap_or_default()
        .kerberos;
    match kerberos::logon(config, token, fault == Some(KerberosFault::StaleKey)) {
        Ok((session, reply)) => {
            *logon = Logon::Kerberos(Box::new(session), kerberos_protocol(scheme));
            let b64 = base64::engine::general_purpose::STANDARD;
            let final_token = match fault {
                Some(KerberosFault::NoApRep) => None,
                // An AP-REP's outer form around bytes that are no key's encryption.
                Some(KerberosFault::BadApRep) => {
                    Some(format!("{scheme} {}", b64.encode(BAD_AP_REP)))
                }
                _ => Some(format!("{scheme} {}", b64.encode(reply))),
            };
            Ok(Authorized {
                basic: false,
                final_token,
            })
        }
        Err(kerberos::Refused::WithError(e, krb_error)) => {
            // As Windows answers a Kerberos failure: the KRB-ERROR in the 401's
            // WWW-Authenticate, under the client's scheme, for the client to read its reason.
            let b64 = base64::engine::general_purpose::STANDARD;
            let header = format!("{scheme} {}", b64.encode(krb_error));
            Err(refuse(logon, &e.to_string(), https).header("WWW-Authenticate", header))
        }
        Err(e) => Err(refuse(logon, &e.to_string(), https)),
    }
}

/// What `kerberos-bad-ap-rep` sends in the AP-REP's place: a GSS-API krb5 token (OID, token id
/// 02 00 for an AP-REP, RFC 4121 4.1) around bytes that are no AP-REP.
const BAD_AP_REP: &[u8] = &[
    0x60, 0x13, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x02, 0x00, 0x6f,
    0x04, 0x30, 0x02, 0x05, 0x00,
];

/// Forgets the connection's logon and answers 401.
fn refuse(logon: &mut Logon, why: &str, https: bool) -> Response {
    tracing::info!("WinRM logon refused: {why}");
    *logon = Logon::None;
    unauthorized(https)
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

/// Now as a Windows FILETIME (100 ns ticks since 1601-01-01).
fn filetime_now() -> u64 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (unix.as_secs() + 11_644_473_600) * 10_000_000 + u64::from(unix.subsec_nanos() / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [MS-WSMV] 2.2.9.1.1 / 2.2.9.1.2: the `Kerberos` scheme goes with the Kerberos label,
    /// `Negotiate` (SPNEGO, as pywinrm's kerberos transport logs on) with the SPNEGO one; a body
    /// under the other label is refused.
    #[test]
    fn a_kerberos_logon_takes_only_the_encrypted_label_its_scheme_pairs_with() {
        let kerberos = kerberos_protocol("Kerberos");
        let negotiate = kerberos_protocol("Negotiate");
        assert_eq!(kerberos, encrypted::KERBEROS_PROTOCOL);
        assert_eq!(negotiate, encrypted::PROTOCOL);
        assert!(pairing(kerberos, encrypted::KERBEROS_PROTOCOL).is_ok());
        assert!(pairing(kerberos, encrypted::PROTOCOL).is_err());
        assert!(pairing(negotiate, encrypted::KERBEROS_PROTOCOL).is_err());
        assert!(pairing(negotiate, encrypted::PROTOCOL).is_ok());
        // NTLM: the SPNEGO label only.
        assert!(pairs(&Logon::None, encrypted::KERBEROS_PROTOCOL).is_err());
    }
}

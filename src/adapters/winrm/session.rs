//! One authenticated connection to a WinRM endpoint: TCP (and TLS for https), the logon, and the
//! exchange of one SOAP request for one SOAP response. NTLM logs on with empty bodies and then
//! seals every message over HTTP ([MS-WSMV] 2.2.9.1, what Windows' default HTTP listener requires;
//! over HTTPS TLS protects the bodies); Basic (https only) sends its header with every request.
//! Kerberos (`kerberos`) logs on in one round trip and encrypts over HTTP as NTLM does. HTTP
//! statuses become errors a user can act on. Logs name operations and sizes only, never a header
//! or a body.

use std::time::Duration;

use base64::Engine;
use tokio::net::TcpStream;

use super::encrypted;
use super::error::WinrmError;
use super::http::{Connection, Response};
use super::ntlm::{self, Account, Nonces};
use super::response;
use super::seal::SessionSecurity;
use super::{Auth, ConnectOptions, Endpoint};
use crate::adapters::secrets::SecretString;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How the session authenticates each request.
enum Logon {
    /// NTLM over HTTP: every body sealed with these keys.
    Sealed(Box<SessionSecurity>),
    /// NTLM over TLS: the connection is authenticated and TLS protects the bodies, which go
    /// plain (as pywinrm sends them over HTTPS by default).
    Tls,
    /// Basic over TLS: this Authorization header value on every request.
    Basic(SecretString),
    /// Kerberos over HTTP: every body encrypted with this context.
    Kerberos(Box<super::kerberos::Kerberos>),
}

/// An authenticated connection.
pub struct Session {
    conn: Connection,
    logon: Logon,
    endpoint: String,
}

impl Session {
    /// Connects and logs on; `timeout` bounds the connection and each logon round trip.
    pub async fn open(
        options: &ConnectOptions,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<Session, WinrmError> {
        let mut conn = connect(endpoint, options, timeout).await?;
        let logon = match options.auth {
            Auth::Ntlm => {
                let account = Account::parse(&options.user);
                let password = options.password.as_ref().ok_or(WinrmError::NoPassword)?;
                let security = ntlm_logon(
                    &mut conn,
                    endpoint,
                    &options.user,
                    &account,
                    password,
                    timeout,
                )
                .await?;
                if endpoint.https {
                    Logon::Tls
                } else {
                    Logon::Sealed(Box::new(security))
                }
            }
            Auth::Basic => {
                let password = options.password.as_ref().ok_or(WinrmError::NoPassword)?;
                let pair = SecretString::new(format!("{}:{}", options.user, password.expose()));
                Logon::Basic(SecretString::new(format!(
                    "Basic {}",
                    B64.encode(pair.expose())
                )))
            }
            Auth::Kerberos => {
                let password = options.password.as_ref();
                let context =
                    super::kerberos::logon(&mut conn, endpoint, &options.user, password, timeout)
                        .await?;
                if endpoint.https {
                    Logon::Tls
                } else {
                    Logon::Kerberos(Box::new(context))
                }
            }
        };
        tracing::debug!(endpoint = %endpoint.url, user = %options.user, "WinRM: logged on");
        Ok(Session {
            conn,
            logon,
            endpoint: endpoint.url.clone(),
        })
    }

    /// Sends one SOAP request and returns the SOAP response; a fault is an error. `wait` bounds the
    /// round trip: past it the connection cannot be trusted and the answer counts as lost.
    pub async fn exchange(
        &mut self,
        operation: &'static str,
        soap: &[u8],
        wait: Duration,
        user: &str,
    ) -> Result<Vec<u8>, WinrmError> {
        tracing::trace!(operation, bytes = soap.len(), "WinRM request");
        let lost = |cause: String| WinrmError::Lost {
            endpoint: self.endpoint.clone(),
            operation,
            cause,
        };
        let (content_type, body) = match &mut self.logon {
            Logon::Sealed(security) => {
                let (sig, sealed) = security.seal(soap);
                (
                    encrypted::CONTENT_TYPE,
                    encrypted::frame(encrypted::PROTOCOL, soap.len(), &sig, &sealed),
                )
            }
            Logon::Kerberos(context) => {
                let (header, sealed) = context
                    .seal(soap)
                    .map_err(|e| self_protocol(&self.endpoint, operation, e))?;
                (
                    encrypted::KERBEROS_CONTENT_TYPE,
                    encrypted::frame(encrypted::KERBEROS_PROTOCOL, soap.len(), &header, &sealed),
                )
            }
            Logon::Tls | Logon::Basic(_) => ("application/soap+xml;charset=UTF-8", soap.to_vec()),
        };
        let mut headers = vec![("Content-Type", content_type)];
        if let Logon::Basic(value) = &self.logon {
            headers.push(("Authorization", value.expose()));
        }
        let resp = match tokio::time::timeout(wait, self.conn.post(&headers, &body)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Err(lost(e.to_string())),
            Err(_) => return Err(lost(format!("no answer within {}s", wait.as_secs()))),
        };
        tracing::trace!(
            operation,
            status = resp.status,
            bytes = resp.body.len(),
            "WinRM response"
        );
        let plain = self.plain_body(operation, &resp, user)?;
        if let Some(fault) = response::fault(&plain).map_err(|e| self.protocol(operation, e))? {
            return Err(WinrmError::Fault {
                endpoint: self.endpoint.clone(),
                operation,
                fault,
            });
        }
        if resp.status != 200 {
            return Err(refused(&self.endpoint, operation, resp.status, false));
        }
        Ok(plain)
    }

    /// The response's SOAP text: unsealed when it came encrypted, as it is under Basic.
    fn plain_body(
        &mut self,
        operation: &'static str,
        resp: &Response,
        user: &str,
    ) -> Result<Vec<u8>, WinrmError> {
        if resp.status == 401 {
            return Err(match self.logon {
                Logon::Kerberos(_) => WinrmError::KerberosExpired {
                    endpoint: self.endpoint.clone(),
                    user: user.to_string(),
                },
                Logon::Sealed(_) | Logon::Tls => WinrmError::Unauthorized {
                    endpoint: self.endpoint.clone(),
                    user: user.to_string(),
                },
                Logon::Basic(_) => WinrmError::BasicRefused {
                    endpoint: self.endpoint.clone(),
                    user: user.to_string(),
                },
            });
        }
        let content_type = resp.header("Content-Type").unwrap_or_default();
        let endpoint = &self.endpoint;
        let protocol = |cause: String| WinrmError::Protocol {
            endpoint: endpoint.clone(),
            operation,
            cause,
        };
        match &mut self.logon {
            Logon::Sealed(security) => {
                if !encrypted::is_encrypted(content_type, encrypted::PROTOCOL) {
                    return Err(refused(endpoint, operation, resp.status, true));
                }
                let parts = encrypted::parts(&resp.body).map_err(|e| protocol(e.to_string()))?;
                if parts.sealed.len() != parts.length {
                    return Err(protocol(
                        "the NTLM-sealed data is longer than its Length".into(),
                    ));
                }
                let plain = security.unseal(parts.signature, parts.sealed);
                plain.map_err(|e| protocol(e.to_string()))
            }
            Logon::Kerberos(context) => {
                if !encrypted::is_encrypted(content_type, encrypted::KERBEROS_PROTOCOL) {
                    return Err(refused(endpoint, operation, resp.status, true));
                }
                let parts = encrypted::parts(&resp.body).map_err(|e| protocol(e.to_string()))?;
                let plain = context
                    .unseal(parts.signature, parts.sealed)
                    .map_err(|e| protocol(e.to_string()))?;
                if plain.len() != parts.length {
                    return Err(protocol(format!(
                        "the decrypted message has {} bytes where its Length says {}",
                        plain.len(),
                        parts.length
                    )));
                }
                Ok(plain)
            }
            Logon::Tls | Logon::Basic(_) => {
                if resp.body.is_empty() {
                    return Err(refused(endpoint, operation, resp.status, false));
                }
                Ok(resp.body.clone())
            }
        }
    }

    fn protocol(&self, operation: &'static str, cause: impl std::fmt::Display) -> WinrmError {
        WinrmError::Protocol {
            endpoint: self.endpoint.clone(),
            operation,
            cause: cause.to_string(),
        }
    }
}

/// A message that could not be encrypted, as a protocol error of `operation`.
fn self_protocol(
    endpoint: &str,
    operation: &'static str,
    cause: impl std::fmt::Display,
) -> WinrmError {
    WinrmError::Protocol {
        endpoint: endpoint.to_string(),
        operation,
        cause: cause.to_string(),
    }
}

fn refused(endpoint: &str, operation: &'static str, status: u16, unencrypted: bool) -> WinrmError {
    {
        let hint = if unencrypted {
            ": the server answered without message encryption, which an NTLM or Kerberos session over HTTP must use (an answer that is not encrypted is not taken); check the listener with `winrm enumerate winrm/config/listener` and the service with `winrm get winrm/config/service` (AllowUnencrypted should stay false)"
        } else {
            match status {
                404 => ": no WinRM service at this path (the default is /wsman)",
                415 => ": the server did not accept the message's content type; over HTTP without encryption Windows refuses every message unless the service's AllowUnencrypted is true (it is false by default; keep it so and use auth: ntlm)",
                500 => ": the server could not read the message; over HTTP without encryption Windows refuses it unless AllowUnencrypted is true (the default is false; use auth: ntlm, which encrypts)",
                _ => "",
            }
        };
        WinrmError::Refused {
            endpoint: endpoint.to_string(),
            operation,
            status,
            hint,
        }
    }
}

/// TCP, then TLS for https, within `timeout`.
async fn connect(
    endpoint: &Endpoint,
    options: &ConnectOptions,
    timeout: Duration,
) -> Result<Connection, WinrmError> {
    let failed = |cause: String| WinrmError::Connect {
        endpoint: endpoint.url.clone(),
        cause,
    };
    let addr = format!("{}:{}", endpoint.host, endpoint.port);
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(WinrmError::NotListening {
                endpoint: endpoint.url.clone(),
            })
        }
        Ok(Err(e)) => return Err(failed(e.to_string())),
        Err(_) => return Err(failed(format!("no answer within {}s", timeout.as_secs()))),
    };
    let _ = tcp.set_nodelay(true);
    let host_header = format!("{}:{}", endpoint.host, endpoint.port);
    if !endpoint.https {
        return Ok(Connection::new(
            Box::new(tcp),
            host_header,
            endpoint.path.clone(),
        ));
    }
    let config = super::tls::config(options.ca.as_deref())?;
    let name =
        rustls::pki_types::ServerName::try_from(endpoint.host.trim_matches(['[', ']']).to_string())
            .map_err(|e| WinrmError::BadEndpoint {
                endpoint: endpoint.url.clone(),
                why: format!("`{}` is not a host name: {e}", endpoint.host),
            })?;
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    let tls = match tokio::time::timeout(timeout, tls).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            return Err(WinrmError::Tls {
                endpoint: endpoint.url.clone(),
                cause: e.to_string(),
            })
        }
        Err(_) => {
            return Err(failed(format!(
                "no TLS answer within {}s",
                timeout.as_secs()
            )))
        }
    };
    Ok(Connection::new(
        Box::new(tls),
        host_header,
        endpoint.path.clone(),
    ))
}

/// NTLM over `Authorization: Negotiate` with empty bodies ([MS-WSMV] 2.2.9.1: the encrypted
/// messages follow once the connection is authenticated).
async fn ntlm_logon(
    conn: &mut Connection,
    endpoint: &Endpoint,
    user: &str,
    account: &Account,
    password: &SecretString,
    timeout: Duration,
) -> Result<SessionSecurity, WinrmError> {
    let lost = |cause: String| WinrmError::Lost {
        endpoint: endpoint.url.clone(),
        operation: "logon",
        cause,
    };
    let ntlm_err = |cause: String| WinrmError::Ntlm {
        endpoint: endpoint.url.clone(),
        cause,
    };
    let negotiate = ntlm::negotiate();
    let header = format!("Negotiate {}", B64.encode(&negotiate));
    let resp = round_trip(conn, &header, timeout).await.map_err(lost)?;
    if resp.status != 401 {
        return Err(ntlm_err(format!(
            "the server answered the NEGOTIATE message with HTTP {} instead of a challenge",
            resp.status
        )));
    }
    let token = resp
        .headers_named("WWW-Authenticate")
        .find_map(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            (scheme.eq_ignore_ascii_case("Negotiate") || scheme.eq_ignore_ascii_case("NTLM"))
                .then(|| token.trim().to_string())
        })
        .ok_or_else(|| WinrmError::NoNegotiate {
            endpoint: endpoint.url.clone(),
            offered: resp
                .headers_named("WWW-Authenticate")
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let raw = B64
        .decode(&token)
        .map_err(|e| ntlm_err(format!("the challenge is not base64: {e}")))?;
    let challenge = ntlm::read_challenge(&raw).map_err(|e| ntlm_err(e.to_string()))?;
    let auth = ntlm::authenticate(
        &negotiate,
        &challenge,
        account,
        password.expose(),
        nonces()?,
    );
    let header = format!("Negotiate {}", B64.encode(&auth.message));
    let resp = round_trip(conn, &header, timeout).await.map_err(lost)?;
    match resp.status {
        200..=299 => Ok(SessionSecurity::new(&auth)),
        401 => Err(WinrmError::Unauthorized {
            endpoint: endpoint.url.clone(),
            user: user.to_string(),
        }),
        status => Err(ntlm_err(format!(
            "the server answered the AUTHENTICATE message with HTTP {status}"
        ))),
    }
}

pub(super) async fn round_trip(
    conn: &mut Connection,
    authorization: &str,
    timeout: Duration,
) -> Result<Response, String> {
    let headers = [
        ("Authorization", authorization),
        ("Content-Type", "application/soap+xml;charset=UTF-8"),
    ];
    match tokio::time::timeout(timeout, conn.post(&headers, b"")).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

/// Fresh random values for one logon (from the TLS library's system random source) and the clock.
fn nonces() -> Result<Nonces, WinrmError> {
    let mut bytes = [0u8; 24];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|e| WinrmError::Random(format!("{e:?}")))?;
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut n = Nonces {
        client_challenge: [0; 8],
        session_key: [0; 16],
        // FILETIME: 100 ns ticks since 1601-01-01, 11,644,473,600 s before the Unix epoch.
        now: (unix.as_secs() + 11_644_473_600) * 10_000_000 + u64::from(unix.subsec_nanos() / 100),
    };
    n.client_challenge.copy_from_slice(&bytes[..8]);
    n.session_key.copy_from_slice(&bytes[8..]);
    Ok(n)
}

/// A random `uuid:` MessageID (version 4 form).
pub fn message_id() -> Result<String, WinrmError> {
    let mut b = [0u8; 16];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut b)
        .map_err(|e| WinrmError::Random(format!("{e:?}")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode_upper(b);
    Ok(format!(
        "uuid:{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

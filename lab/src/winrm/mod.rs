//! The lab's WinRM (WS-Management) listener: `http://127.0.0.1:PORT/wsman` as Windows' default
//! HTTP listener behaves (NTLM with message encryption, no Basic, no unencrypted traffic), serving
//! the cmd shell over the lab's stand-ins. TEST DOUBLE. Modules, one job each: `http` (HTTP/1.1),
//! `ntlm` (NTLMv2 acceptor), `spnego` (SPNEGO around it), `seal` (session security), `encrypted`
//! (the MS-WSMV encrypted body), `conn` (one connection: logon and encryption), `soap` (XML), `dispatch` (the shell operations),
//! `shell` (shells and commands), `cmdline` (what cmd.exe does with a command line), `tls` (the
//! optional HTTPS listener's self-signed certificate), `kerberos` (Kerberos logon, with a keytab)
//! over `gssapi` (the platform's GSSAPI, loaded at run time).

mod cmdline;
mod conn;
mod dispatch;
mod encrypted;
mod gssapi;
mod http;
pub mod kerberos;
pub mod ntlm;
mod seal;
mod shell;
mod soap;
mod spnego;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::listener::Listening;

pub use ntlm::Identity;

/// How to run the listener.
#[derive(Clone)]
pub struct WinrmConfig {
    /// Where to listen, e.g. 127.0.0.1:0 for a free port.
    pub bind: SocketAddr,
    /// The lab folder whose stand-ins, drives and faults the shell uses.
    pub lab: PathBuf,
    /// The one local account and the server's name and Windows version.
    pub identity: Identity,
    /// HTTPS with this TLS configuration (`tls::server_config`) instead of plain HTTP.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Also Kerberos logons, with this keytab and administrator principal.
    pub kerberos: Option<kerberos::KerberosConfig>,
}

impl std::fmt::Debug for WinrmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WinrmConfig")
            .field("bind", &self.bind)
            .field("lab", &self.lab)
            .field("computer", &self.identity.computer)
            .field("user", &self.identity.user)
            .field("password", &"<redacted>")
            .field("https", &self.tls.is_some())
            .field("kerberos", &self.kerberos)
            .finish()
    }
}

/// A running listener. Stops on `shutdown()` or when dropped.
#[derive(Debug)]
pub struct WinrmServer {
    listening: Listening,
    https: bool,
}

impl WinrmServer {
    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listening.local_addr()
    }

    /// The endpoint URL clients use.
    pub fn url(&self) -> String {
        endpoint(self.local_addr(), self.https)
    }

    /// Stops accepting, ends every open connection, and waits until that is done.
    pub async fn shutdown(self) {
        self.listening.shutdown().await
    }
}

fn endpoint(addr: SocketAddr, https: bool) -> String {
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{addr}/wsman")
}

/// Starts the listener on `config.bind`. Returns once it listens.
pub async fn serve(config: WinrmConfig) -> std::io::Result<WinrmServer> {
    let listener = TcpListener::bind(config.bind).await?;
    let local_addr = listener.local_addr()?;
    let https = config.tls.is_some();
    let shared = Arc::new(conn::Shared {
        service: dispatch::Service::new(
            config.lab.clone(),
            config.identity.computer.clone(),
            endpoint(local_addr, https),
        ),
        identity: config.identity,
        kerberos: config.kerberos,
    });
    let acceptor = config.tls.map(tokio_rustls::TlsAcceptor::from);
    let listening = Listening::start(listener, move |stream, peer| {
        tracing::debug!("WinRM connection from {peer}");
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        async move {
            match acceptor {
                None => conn::run(stream, shared, false).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => conn::run(tls, shared, true).await,
                    Err(e) => tracing::info!("WinRM TLS handshake with {peer}: {e}"),
                },
            }
        }
    })?;
    tracing::info!("WinRM listener on {}", endpoint(local_addr, https));
    Ok(WinrmServer { listening, https })
}

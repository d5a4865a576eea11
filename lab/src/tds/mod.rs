//! A TDS server double: speaks enough of Microsoft's Tabular Data Stream (prelogin, login7, SQL
//! batches, sp_executesql RPC, result sets, messages; TDS 7.4 or 7.1) for tiberius and FreeTDS to
//! talk to the lab's SQL model over real TCP. TEST DOUBLE: never TLS, one SQL login, 127.0.0.1 use.

mod login;
mod packet;
mod request;
mod session;
mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::listener::Listening;

use crate::sqlmodel::{Model, ModelError};
pub use crate::sqlmodel::{SqlFaults, TdsVersion};

/// How to run the double.
#[derive(Clone, PartialEq, Eq)]
pub struct TdsConfig {
    /// Where to listen, e.g. 127.0.0.1:0 for a free port.
    pub bind: SocketAddr,
    /// V74 answers as SQL Server 2016, V71 as SQL Server 2000.
    pub version: TdsVersion,
    /// The one SQL login accepted (compared case-insensitively, as SQL Server does).
    pub login: String,
    /// Its password (case-sensitive). Never logged.
    pub password: String,
    /// Installed into the model at start (`Model::set_faults`); DIR/faults.json changes later.
    pub faults: SqlFaults,
}

impl std::fmt::Debug for TdsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TdsConfig")
            .field("bind", &self.bind)
            .field("version", &self.version)
            .field("login", &self.login)
            .field("password", &"<redacted>")
            .field("faults", &self.faults)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TdsError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A running double. Stops on `shutdown()` or when dropped.
pub type TdsServer = Listening;

/// Starts the double on `config.bind`, answering from `model` (told which server it is and which
/// faults are set). Returns once it listens.
pub async fn serve(config: TdsConfig, model: Arc<Mutex<Model>>) -> Result<TdsServer, TdsError> {
    {
        let mut m = model.lock().await;
        m.set_version(config.version);
        m.set_faults(config.faults)?;
    }
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|source| TdsError::Bind {
            addr: config.bind,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| TdsError::Bind {
        addr: config.bind,
        source,
    })?;
    let shared = Arc::new(session::Shared {
        login: config.login,
        password: config.password,
        version: config.version,
        model,
    });
    let mut spid: u16 = 51;
    let server = Listening::start(listener, move |stream, peer| {
        tracing::debug!("TDS connection {spid} from {peer}");
        let session = session::run(stream, shared.clone(), spid);
        spid = if spid == u16::MAX { 51 } else { spid + 1 };
        session
    })
    .map_err(|source| TdsError::Bind {
        addr: config.bind,
        source,
    })?;
    tracing::info!(
        "TDS double listening on {local_addr} ({:?})",
        config.version
    );
    Ok(server)
}

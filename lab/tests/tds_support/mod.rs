//! Shared helpers for the TDS double's tests: a seeded lab SQL model served on a free port, and a
//! tiberius client that logs in without TLS. TEST code.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};
use upgrade_lab::sqlmodel::{Fixture, Model};
use upgrade_lab::tds::{self, SqlFaults, TdsConfig, TdsServer, TdsVersion};

pub const USER: &str = "upgrade";
pub const PASSWORD: &str = "Lab-Passw0rd!";
pub const DB: &str = "MicrosoftIdentityIntegrationServer";

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub server: TdsServer,
    pub model: Arc<Mutex<Model>>,
}

impl Lab {
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    /// A backup destination inside the lab folder (created).
    pub fn backup_dir(&self) -> std::path::PathBuf {
        let d = self.path().join("backups");
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

pub async fn start(version: TdsVersion, faults: SqlFaults) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let model = Arc::new(Mutex::new(
        Model::seed(dir.path(), &Fixture::miis()).unwrap(),
    ));
    let config = TdsConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        version,
        login: USER.into(),
        password: PASSWORD.into(),
        faults,
    };
    let server = tds::serve(config, model.clone()).await.unwrap();
    Lab { dir, server, model }
}

pub async fn connect_as(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> tiberius::Result<Client<Compat<TcpStream>>> {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(addr.port());
    config.authentication(AuthMethod::sql_server(user, password));
    config.encryption(EncryptionLevel::NotSupported);
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

pub async fn connect(addr: SocketAddr) -> Client<Compat<TcpStream>> {
    connect_as(addr, USER, PASSWORD).await.unwrap()
}

/// The SQL error number of a tiberius error, if it is a server error.
pub fn error_code(e: &tiberius::error::Error) -> Option<u32> {
    match e {
        tiberius::error::Error::Server(t) => Some(t.code()),
        _ => None,
    }
}

/// `N'text'`, as the executor quotes literals.
pub fn lit(s: &str) -> String {
    format!("N'{}'", s.replace('\'', "''"))
}

/// Lines of DIR/sql/statements.log as (kind, sql).
pub fn statements(dir: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join("sql/statements.log")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["kind"].as_str().unwrap().to_string(),
                v["sql"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

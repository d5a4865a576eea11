//! Running the lab: the TDS server double on 127.0.0.1 over the lab's SQL model and the WinRM
//! listener over its stand-ins, on a thread with its own tokio runtime (so tests, sync or async, can
//! hold a `RunningLab`), and `upgrade-lab serve`, which prints one JSON line when ready and stops on
//! SIGTERM/SIGINT. TEST DOUBLE; no TLS, no auth other than the lab's one SQL login and its one
//! local administrator (WinRM, NTLM).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::faults::{self, Faults};
use crate::kdc::{Enctypes, Kdc, KerberosLogon};
use crate::layout::{Lab, ToolPaths};
use crate::sqlmodel::{Model, SqlFaults, TdsVersion};
use crate::tds;
use crate::winrm::kerberos::KerberosConfig;
use crate::winrm::{self, Identity, WinrmConfig};
use crate::LabError;

/// `--tds 7.4|7.1`.
pub type TdsMode = TdsVersion;

/// Parses `7.4` / `7.1`.
pub fn parse_tds(raw: &str) -> Result<TdsVersion, LabError> {
    match raw {
        "7.4" => Ok(TdsVersion::V74),
        "7.1" => Ok(TdsVersion::V71),
        _ => Err(LabError::Usage(format!(
            "--tds: expected 7.4 (SQL Server 2016) or 7.1 (SQL Server 2000), found `{raw}`"
        ))),
    }
}

fn tds_text(v: TdsVersion) -> &'static str {
    match v {
        TdsVersion::V74 => "7.4",
        TdsVersion::V71 => "7.1",
    }
}

/// How to start a lab server.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// 0 = any free port.
    pub port: u16,
    /// The WinRM listener's port; 0 = any free port.
    pub winrm_port: u16,
    /// Also an HTTPS WinRM listener (any free port) with a self-signed certificate, taking Basic
    /// and NTLM without message encryption.
    pub winrm_https: bool,
    pub tds: TdsVersion,
    /// Fault specs that replace DIR/faults.json; `None` keeps the file as it is.
    pub faults: Option<Vec<String>>,
    /// Whether SQL Server runs on the sync server itself or on a machine of its own.
    pub sql_host: SqlHost,
    /// Also Kerberos on the WinRM listener: a KDC of the lab's own (`kdc`, MIT's krb5kdc) in
    /// DIR/kdc whose realm has keys of these enctypes, and the listener's `HTTP/localhost` key
    /// in its keytab.
    pub kerberos: Option<Enctypes>,
}

/// Where the lab's SQL Server runs. MIIS 2003 and MIM can keep their database on another SQL
/// Server; a backup path is then a path on that machine, which the executor cannot see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqlHost {
    /// On the sync server: BACKUP paths resolve in the lab's own drives (DIR/drives/X), which the
    /// stand-in tools and a lab-native plan also use.
    #[default]
    SyncServer,
    /// On a machine of its own: BACKUP and RESTORE paths resolve in DIR/sqlhost/drives/X, a
    /// sandbox no stand-in and no executor path reaches; a path that is not a Windows drive path
    /// is not found (OS error 3), as on a Windows SQL Server.
    Separate,
}

/// What `serve` prints when ready (one JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct Ready {
    pub host: String,
    pub port: u16,
    pub login: String,
    pub password: String,
    pub tds: String,
    pub dir: PathBuf,
    pub drives: BTreeMap<String, PathBuf>,
    pub tools: ToolPaths,
    pub winrm: WinrmEndpoint,
    /// With `serve --kerberos`: the realm, its krb5.conf and the principal to log on with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kerberos: Option<KerberosLogon>,
}

/// The lab's WinRM listener: where it is and the local administrator it accepts (NTLM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WinrmEndpoint {
    /// `http://127.0.0.1:PORT/wsman`
    pub url: String,
    pub user: String,
    pub password: String,
    /// `https://127.0.0.1:PORT/wsman` with `serve --winrm-https`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_url: Option<String>,
    /// The HTTPS listener's self-signed certificate (PEM), for clients to trust.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_cert: Option<PathBuf>,
}

/// A lab whose TDS server is listening. Dropping it stops the server.
pub struct RunningLab {
    pub host: String,
    pub port: u16,
    pub login: String,
    pub password: String,
    pub tds: TdsVersion,
    pub winrm: WinrmEndpoint,
    /// With `StartOptions::kerberos`: how to log on with Kerberos.
    pub kerberos: Option<KerberosLogon>,
    lab: Lab,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The KDC process, ended with the lab (after the listener).
    kdc: Option<Kdc>,
}

impl RunningLab {
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn dir(&self) -> &Path {
        self.lab.dir()
    }

    /// Maps a Windows drive path (`C:\...`) into the sandbox.
    pub fn lab_path(&self, win: &str) -> PathBuf {
        self.lab.lab_path(win)
    }

    /// Where a path on a separate SQL Server machine lives in the lab (`SqlHost::Separate`).
    pub fn sql_host_path(&self, win: &str) -> PathBuf {
        crate::sqlmodel::separate_host_path(self.dir(), win)
    }

    /// The ready line's content.
    pub fn ready(&self) -> Result<Ready, LabError> {
        let drives = ["C", "D", "E"]
            .iter()
            .map(|d| (d.to_string(), self.dir().join("drives").join(d)))
            .collect();
        Ok(Ready {
            host: self.host.clone(),
            port: self.port,
            login: self.login.clone(),
            password: self.password.clone(),
            tds: tds_text(self.tds).into(),
            dir: self.dir().to_path_buf(),
            drives,
            tools: self.lab.tools()?,
            winrm: self.winrm.clone(),
            kerberos: self.kerberos.clone(),
        })
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.kdc.take();
    }
}

impl Drop for RunningLab {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Lab {
    /// Starts the TDS double for this lab on 127.0.0.1.
    pub fn start(&self, opts: StartOptions) -> Result<RunningLab, LabError> {
        let dir = self.dir().to_path_buf();
        if let Some(specs) = &opts.faults {
            faults::store(&dir, &Faults::from_specs(specs)?)?;
        }
        let active = faults::load(&dir)?;
        let mut st = crate::state::load(&dir)?;
        if st.winrm.is_none() {
            // A lab made before the WinRM listener: give it its administrator now.
            let login = crate::layout::winrm_login()?;
            st = crate::state::update(&dir, |s| {
                s.winrm.get_or_insert(login);
                s.clone()
            })?;
        }
        let admin = st.winrm.clone().ok_or_else(|| {
            LabError::Server("lab.json has no WinRM administrator after adding one".into())
        })?;
        let winrm_config = WinrmConfig {
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], opts.winrm_port)),
            lab: dir.clone(),
            identity: Identity {
                computer: st.flavour.computer_name().into(),
                user: admin.user.clone(),
                password: admin.password.clone(),
                os_version: st.flavour.windows().version,
            },
            tls: None,
            kerberos: None,
        };
        let kdc = match opts.kerberos {
            Some(enctypes) => Some(
                Kdc::start(&dir.join("kdc"), enctypes)
                    .map_err(|e| LabError::Server(e.to_string()))?,
            ),
            None => None,
        };
        let winrm_config = WinrmConfig {
            kerberos: kdc.as_ref().map(|k| KerberosConfig {
                keytab: k.keytab.clone(),
                admin: k.logon.user.clone(),
            }),
            ..winrm_config
        };
        let https_config = if opts.winrm_https {
            let tls = winrm::tls::server_config(&dir, st.flavour.computer_name())
                .map_err(|e| LabError::Server(format!("WinRM HTTPS listener: {e}")))?;
            Some(WinrmConfig {
                bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                tls: Some(tls),
                ..winrm_config.clone()
            })
        } else {
            None
        };
        let config = tds::TdsConfig {
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], opts.port)),
            version: opts.tds,
            login: st.sql.login.clone(),
            password: st.sql.password.clone(),
            faults: sql_faults(&active),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Listeners, LabError>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("upgrade-lab-tds".into())
            .spawn(move || {
                let winrm = [Some(winrm_config), https_config];
                server_thread(dir, config, winrm, opts.sql_host, ready_tx, stop_rx)
            })
            .map_err(|e| LabError::Server(format!("cannot start the server thread: {e}")))?;
        let (port, winrm_url, https_url) = match ready_rx.recv() {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(LabError::Server(
                    "the server thread ended before it was ready".into(),
                ));
            }
        };
        Ok(RunningLab {
            host: "127.0.0.1".into(),
            port,
            login: st.sql.login,
            password: st.sql.password,
            tds: opts.tds,
            kerberos: kdc.as_ref().map(|k| KerberosLogon {
                url: Some(winrm_url.replace("127.0.0.1", crate::kdc::SERVICE_HOST)),
                ..k.logon.clone()
            }),
            winrm: WinrmEndpoint {
                url: winrm_url,
                user: admin.user,
                password: admin.password,
                https_cert: https_url
                    .as_ref()
                    .map(|_| winrm::tls::cert_path(self.dir())),
                https_url,
            },
            lab: self.clone(),
            stop: Some(stop_tx),
            thread: Some(thread),
            kdc,
        })
    }
}

/// What the server thread reports when ready: the TDS port, the WinRM URL, the HTTPS one.
type Listeners = (u16, String, Option<String>);

/// The SQL part of the lab's faults, as the TDS double takes it.
pub fn sql_faults(f: &Faults) -> SqlFaults {
    f.sql
}

fn server_thread(
    dir: PathBuf,
    config: tds::TdsConfig,
    winrm: [Option<WinrmConfig>; 2],
    sql_host: SqlHost,
    ready: std::sync::mpsc::Sender<Result<Listeners, LabError>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(LabError::Server(format!("tokio runtime: {e}"))));
            return;
        }
    };
    rt.block_on(async move {
        let model = match Model::open(&dir).and_then(|mut m| m.set_sql_host(sql_host).map(|()| m)) {
            Ok(m) => Arc::new(tokio::sync::Mutex::new(m)),
            Err(e) => {
                let _ = ready.send(Err(e.into()));
                return;
            }
        };
        let server = match tds::serve(config, model).await {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(LabError::Server(e.to_string())));
                return;
            }
        };
        let mut listeners = Vec::new();
        for config in winrm.into_iter().flatten() {
            match winrm::serve(config.clone()).await {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    let _ = ready.send(Err(LabError::Server(format!(
                        "WinRM listener on {}: {e}",
                        config.bind
                    ))));
                    return;
                }
            }
        }
        let urls: Vec<String> = listeners.iter().map(|l| l.url()).collect();
        let _ = ready.send(Ok((
            server.local_addr().port(),
            urls.first().cloned().unwrap_or_default(),
            urls.get(1).cloned(),
        )));
        // A dropped sender (RunningLab gone without stop) also ends the server.
        let _ = stop.await;
        for l in listeners {
            l.shutdown().await;
        }
        server.shutdown().await;
    });
}

/// `upgrade-lab serve`: start, print the ready line, wait for SIGTERM or SIGINT, stop.
pub fn serve_until_signal(lab: &Lab, opts: StartOptions) -> Result<(), LabError> {
    let running = lab.start(opts)?;
    let line =
        serde_json::to_string(&running.ready()?).map_err(|e| LabError::Server(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LabError::Server(format!("tokio runtime: {e}")))?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        // The handlers are in place before the ready line: a SIGTERM sent as soon as it is read
        // stops the server cleanly instead of killing the process.
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| LabError::Server(format!("SIGTERM handler: {e}")))?;
        let ctrl_c = tokio::signal::ctrl_c();
        println!("{line}");
        tokio::select! {
            _ = term.recv() => {}
            _ = ctrl_c => {}
        }
        Ok::<(), LabError>(())
    })?;
    tracing::info!("stopping the lab server");
    running.stop();
    Ok(())
}

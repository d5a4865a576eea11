//! Which host the plan's steps act on: this machine (`server.connect: local`) or the sync server
//! over WinRM (`winrm`), logged on once per `plan` / `apply` before anything is observed.
//! `validate` never comes here. Names no step kind: the steps see only the `Host`.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::host::{Host, Local};
use crate::adapters::remote::WinrmHost;
use crate::adapters::secrets::SecretString;
use crate::adapters::winrm::{Auth, ConnectOptions, WinrmError};
use crate::engine::EngineError;
use crate::plan::{Plan, WinrmAuth, WinrmConnect};
use crate::steps::World;

/// How long the connection, the logon and each WinRM operation may take unless the plan says.
pub const DEFAULT_WINRM_TIMEOUT: Duration = Duration::from_secs(30);

/// The host `world`'s plan names, connected and logged on.
pub async fn host(world: &World) -> Result<Arc<dyn Host>, EngineError> {
    let Some(winrm) = world.plan.server.connect.winrm() else {
        return Ok(Arc::new(Local));
    };
    // Kerberos without a password uses the ticket cache.
    let password = match &winrm.password {
        Some(secret) => Some(
            world
                .secret(secret, WinrmConnect::PASSWORD)
                .map_err(|e| EngineError::Secret(e.to_string()))?
                .clone(),
        ),
        None => None,
    };
    let options = options(&world.plan, winrm, password)?;
    let endpoint = options.endpoint.clone();
    let host = WinrmHost::connect(options)
        .await
        .map_err(|e| connect_error(&endpoint, e))?;
    tracing::info!(server = %host.server(), "acting on the sync server over WinRM");
    Ok(Arc::new(host))
}

/// The server's `%SystemRoot%` (`Host::system_root`): one PowerShell call over WinRM, the
/// environment on Windows, none on Linux.
pub async fn system_root(host: &dyn Host) -> Result<Option<String>, EngineError> {
    let root = host
        .system_root()
        .await
        .map_err(|e| EngineError::Server(e.to_string()))?;
    if let Some(r) = &root {
        tracing::debug!(system_root = %r, "the server's Windows folder");
    }
    Ok(root)
}

/// The WinRM client's options for `winrm`: the endpoint defaults to `server.host`.
pub fn options(
    plan: &Plan,
    winrm: &WinrmConnect,
    password: Option<SecretString>,
) -> Result<ConnectOptions, EngineError> {
    // Validation requires one of them; a plan that reached here without either is a bug.
    let endpoint = winrm
        .endpoint
        .clone()
        .or_else(|| plan.server.host.clone())
        .ok_or_else(|| {
            EngineError::Invalid(
                "server.connect.winrm.endpoint: no endpoint and no server.host".into(),
            )
        })?;
    Ok(ConnectOptions {
        endpoint,
        auth: match winrm.auth {
            WinrmAuth::Ntlm => Auth::Ntlm,
            WinrmAuth::Kerberos => Auth::Kerberos,
            WinrmAuth::Basic => Auth::Basic,
        },
        user: winrm.user.clone(),
        password,
        https: winrm.https,
        ca: winrm.ca.as_ref().map(|p| p.to_path_buf()),
        operation_timeout: winrm
            .timeout
            .map(|t| t.get())
            .unwrap_or(DEFAULT_WINRM_TIMEOUT),
    })
}

/// What the administrator reads when the server cannot be reached: the endpoint, and what to do.
fn connect_error(endpoint: &str, e: WinrmError) -> EngineError {
    match e {
        WinrmError::Unauthorized { endpoint, user } => EngineError::WinrmLogon { endpoint, user },
        WinrmError::NotListening { endpoint } => EngineError::WinrmNotListening { endpoint },
        source => EngineError::Winrm {
            endpoint: endpoint.to_string(),
            source: Box::new(source),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(server: &str) -> Plan {
        let text = format!(
            "version: 1\nname: x\nserver:\n{server}\n  sql: {{ host: h, auth: windows }}\n\
             steps:\n  - id: s\n    service: {{ name: miiserver, state: stopped }}\n"
        );
        crate::plan::load_str("p.yaml", &text).unwrap().plan
    }

    #[test]
    fn the_endpoint_defaults_to_the_server_host_and_the_timeout_to_30s() {
        let p = plan(
            "  host: miis01\n  connect:\n    winrm: { auth: ntlm, user: 'C\\u', password: { env: W } }",
        );
        let w = p.server.connect.winrm().unwrap();
        let o = options(&p, w, Some(SecretString::new("secret-pw"))).unwrap();
        assert_eq!(o.endpoint, "miis01");
        assert_eq!(o.auth, Auth::Ntlm);
        assert_eq!(o.user, r"C\u");
        assert!(!o.https && o.ca.is_none());
        assert_eq!(o.operation_timeout, DEFAULT_WINRM_TIMEOUT);
    }

    #[test]
    fn an_endpoint_https_ca_and_timeout_written_in_the_plan_are_used() {
        let p = plan(
            "  host: miis01\n  connect:\n    winrm: { endpoint: 'https://10.0.0.5:5986/wsman', \
             auth: basic, https: true, ca: /etc/ca.pem, timeout: 2m, user: u, password: { env: W } }",
        );
        let w = p.server.connect.winrm().unwrap();
        let o = options(&p, w, Some(SecretString::new("secret-pw"))).unwrap();
        assert_eq!(o.endpoint, "https://10.0.0.5:5986/wsman");
        assert_eq!(o.auth, Auth::Basic);
        assert!(o.https);
        assert_eq!(o.ca.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        assert_eq!(o.operation_timeout, Duration::from_secs(120));
    }
}

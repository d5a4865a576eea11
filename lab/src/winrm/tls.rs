//! The optional HTTPS listener's TLS: a fresh self-signed certificate for `localhost`,
//! `127.0.0.1` and the server's computer name (as an administrator makes one for a WinRM HTTPS
//! listener on a test server), written as PEM into the lab folder so that clients can trust it,
//! and the rustls server configuration that uses it. The private key stays in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;

/// The certificate's file in a lab folder.
pub fn cert_path(lab: &Path) -> PathBuf {
    lab.join("winrm-https.pem")
}

/// Makes the certificate, writes its PEM to `cert_path(lab)`, returns the TLS configuration.
pub fn server_config(lab: &Path, computer: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        computer.to_string(),
    ];
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| format!("certificate: {e}"))?;
    let path = cert_path(lab);
    std::fs::write(&path, certified.cert.pem()).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key.into())
        .map_err(|e| format!("TLS certificate: {e}"))?;
    Ok(Arc::new(config))
}

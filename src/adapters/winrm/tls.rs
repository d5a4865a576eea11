//! HTTPS for the WinRM client: a rustls client configuration that validates the server's
//! certificate against the system's trusted roots, or, when the plan names a CA file (PEM), against
//! that CA alone (a self-signed listener certificate or a company CA). There is no way to turn
//! validation off.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::error::WinrmError;

/// The client configuration for `ca` (or the system's roots).
pub fn config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, WinrmError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let bad = |why: String| WinrmError::CaFile {
                path: path.to_path_buf(),
                why,
            };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(bad(
                    "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A system root rustls cannot parse is skipped, as browsers do.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(WinrmError::CaFile {
                    path: "(the system's trusted roots)".into(),
                    why: "no trusted root certificate was found; give the server's CA with `ca`"
                        .into(),
                });
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WinrmError::Tls {
            endpoint: String::new(),
            cause: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = config(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("ca.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
        let err = config(Some(&dir.path().join("missing.pem")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }
}

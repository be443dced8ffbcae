//! TLS client set-up shared by the connections vmauto makes to its own infrastructure (SCP,
//! the SurrealDB server): a CA file when one is named, otherwise the operating system's
//! trust store. Always ring, the process's one crypto provider.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_platform_verifier::BuilderVerifierExt;

/// A verifying client configuration: `ca_file` (PEM, the key that names it is `key`) as the
/// only roots, or the system's trust store when `ca_file` is empty.
pub fn verified_client_config(ca_file: &str, key: &str) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    if ca_file.is_empty() {
        return Ok(builder
            .with_platform_verifier()
            .map_err(|e| format!("system trust store: {e}"))?
            .with_no_client_auth());
    }
    let pem = std::fs::read(ca_file).map_err(|e| format!("cannot read {key} {ca_file}: {e}"))?;
    let roots = roots_from_pem(&pem).map_err(|e| format!("{key} {ca_file}: {e}"))?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Parses PEM certificates into a root store.
pub fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let mut reader = std::io::BufReader::new(pem);
    for cert in rustls_pemfile::certs(&mut reader) {
        let cert = cert.map_err(|e| format!("invalid PEM: {e}"))?;
        roots.add(cert).map_err(|e| format!("unusable certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no certificate found (expected PEM `-----BEGIN CERTIFICATE-----`)".into());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_roots() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let pem = cert.cert.pem();
        assert_eq!(roots_from_pem(pem.as_bytes()).expect("parses").len(), 1);
        assert!(roots_from_pem(b"not a certificate").is_err());
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let err = verified_client_config("/nonexistent/ca.pem", "database.ca_file").unwrap_err();
        assert!(err.contains("database.ca_file /nonexistent/ca.pem"), "{err}");
        assert!(verified_client_config("", "database.ca_file").is_ok());
    }
}

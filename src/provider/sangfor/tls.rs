//! The rustls configuration for SCP connections.
//!
//! SCP ships with a self-signed certificate, so the usual set-up is `ca_file` pointing at
//! that certificate (or the CA that signed it). Without `ca_file` the operating system's
//! trust store is used. Turning verification off is possible for a lab, is logged as an
//! error-level warning every start, and is never the default: an appliance that holds SCP
//! admin credentials must not hand them to whoever answers on the network.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_platform_verifier::BuilderVerifierExt;

use crate::config::SangforConfig;
use crate::provider::ProviderError;

/// Builds the TLS client configuration `provider.sangfor` asks for.
pub fn client_config(cfg: &SangforConfig) -> Result<ClientConfig, ProviderError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ProviderError::Config(format!("TLS set-up: {e}")))?;
    let config = if !cfg.verify_tls {
        tracing::error!(
            base_url = %cfg.base_url,
            "TLS verification of SCP is OFF (provider.sangfor.verify_tls = false): anyone on the \
             network path can impersonate SCP and capture its credentials. Set ca_file to SCP's \
             certificate instead."
        );
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider))).with_no_client_auth()
    } else if !cfg.ca_file.is_empty() {
        builder.with_root_certificates(roots_from_file(&cfg.ca_file)?).with_no_client_auth()
    } else {
        builder
            .with_platform_verifier()
            .map_err(|e| ProviderError::Config(format!("system trust store: {e}")))?
            .with_no_client_auth()
    };
    Ok(config)
}

/// Reads every certificate of a PEM file into a root store.
pub fn roots_from_file(path: &str) -> Result<RootCertStore, ProviderError> {
    let pem = std::fs::read(path)
        .map_err(|e| ProviderError::Config(format!("cannot read provider.sangfor.ca_file {path}: {e}")))?;
    roots_from_pem(&pem).map_err(|e| ProviderError::Config(format!("provider.sangfor.ca_file {path}: {e}")))
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

/// Accepts any certificate but still checks handshake signatures (so the session key is at
/// least bound to the presented certificate). Only for `verify_tls = false`.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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
    fn every_mode_builds() {
        let mut cfg = SangforConfig { base_url: "https://scp.example".into(), ..Default::default() };
        assert!(client_config(&cfg).is_ok());
        cfg.verify_tls = false;
        assert!(client_config(&cfg).is_ok());
        cfg.verify_tls = true;
        cfg.ca_file = "/nonexistent/ca.pem".into();
        let err = client_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("ca_file"), "{err}");
    }
}

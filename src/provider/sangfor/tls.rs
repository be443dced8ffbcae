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
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::config::SangforConfig;
use crate::provider::ProviderError;

/// Builds the TLS client configuration `provider.sangfor` asks for.
pub fn client_config(cfg: &SangforConfig) -> Result<ClientConfig, ProviderError> {
    if cfg.verify_tls {
        return crate::tls::verified_client_config(&cfg.ca_file, "provider.sangfor.ca_file")
            .map_err(ProviderError::Config);
    }
    tracing::error!(
        base_url = %cfg.base_url,
        "TLS verification of SCP is OFF (provider.sangfor.verify_tls = false): anyone on the \
         network path can impersonate SCP and capture its credentials. Set ca_file to SCP's \
         certificate instead."
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ProviderError::Config(format!("TLS set-up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        .with_no_client_auth();
    Ok(config)
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

//! HTTPS like a real SCP: a self-signed certificate generated at start (§1.3).

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A fresh self-signed certificate for `localhost` and the listening IP, and a rustls config
/// serving it. Built with the ring provider explicitly: another crate in the build enables
/// aws-lc-rs too, so the process-wide default is ambiguous.
pub fn self_signed(ip: std::net::IpAddr) -> anyhow::Result<(rustls::ServerConfig, String)> {
    let names = vec!["localhost".to_string(), ip.to_string(), "scp.sim.local".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).context("generating the simulator certificate")?;
    let pem = certified.cert.pem();
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .context("loading the simulator certificate")?;
    Ok((config, pem))
}

//! `[sources.NAME]`: who may send billing webhooks, how they sign them, and which plugin
//! reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    /// No verification. Allowed only when chosen explicitly; warned at every start.
    None,
    /// A shared token compared in constant time (path segment, header or body field).
    #[default]
    SharedToken,
    HmacSha256,
    GhlEd25519,
    GhlRsa,
    Stripe,
}

/// A billing source: which plugin reads its webhooks and how they are authenticated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub plugin: String,
    pub signature: SignatureScheme,
    /// Shared token (`shared_token`).
    pub token: Secret,
    /// Where the shared token travels: `path`, `header` or `body`.
    pub token_in: String,
    /// Header or body field name carrying the token or the HMAC.
    pub token_field: String,
    /// HMAC secret (`hmac_sha256`).
    pub hmac_secret: Secret,
    /// `hex` or `base64`.
    pub hmac_encoding: String,
    /// Public keys (PEM) for `ghl_ed25519` / `ghl_rsa`; several during rotation.
    pub public_keys: Vec<String>,
    /// Stripe webhook secrets for the `stripe` scheme.
    pub secrets: Vec<Secret>,
    /// Free-form settings handed to the plugin.
    pub settings: BTreeMap<String, String>,
    /// Send customers the "your VPS is ready" email.
    pub customer_email: bool,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            plugin: String::new(),
            signature: SignatureScheme::SharedToken,
            token: Secret::default(),
            token_in: "path".into(),
            token_field: "x-vmauto-token".into(),
            hmac_secret: Secret::default(),
            hmac_encoding: "hex".into(),
            public_keys: Vec::new(),
            secrets: Vec::new(),
            settings: BTreeMap::new(),
            customer_email: false,
        }
    }
}

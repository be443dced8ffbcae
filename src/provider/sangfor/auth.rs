//! Token authentication (sangfor-scp-api.md §2.2) and RSA password encryption.
//!
//! SCP's token login sends the password RSA-encrypted (PKCS#1 v1.5) with the platform's
//! public key, whose modulus SCP serves as hex. The same encryption protects VM root
//! passwords in `server-password`, in both authentication modes. Tokens are cached and
//! renewed shortly before they expire; one login runs at a time, whoever else needs a token
//! waits for it instead of logging in again. The public key is kept too (it changes only
//! with the platform's key pair), so a create does not ask for it again; a request SCP
//! refuses (400) with a kept key is made once more with the key fetched again.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use rsa::{BigUint, Pkcs1v15Encrypt, RsaPublicKey};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Call, SangforClient, envelope};
use crate::provider::ProviderError;
use crate::telemetry::metrics::GatewayMetrics;

/// Lifetime assumed when SCP does not say (its tokens live 24 h; renew after 23 h).
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(23 * 3600);
/// Renew this long before expiry, at most (a tenth of the lifetime for short-lived tokens).
const RENEW_MARGIN: Duration = Duration::from_secs(300);
/// How long SCP's public key is used before it is fetched again.
const PUBLIC_KEY_TTL: Duration = Duration::from_secs(600);

struct Token {
    id: String,
    renew_at: Instant,
}

/// The current token, if any, and SCP's public key, if fetched.
pub(super) struct TokenCache {
    current: Mutex<Option<Token>>,
    /// SCP's public key and when it was fetched.
    key: parking_lot::Mutex<Option<(Arc<RsaPublicKey>, Instant)>>,
    metrics: GatewayMetrics,
}

impl TokenCache {
    pub fn new(metrics: GatewayMetrics) -> Self {
        Self { current: Mutex::new(None), key: parking_lot::Mutex::new(None), metrics }
    }

    /// Forgets `id` if it is still the current token (a concurrent request may already have
    /// replaced it).
    pub async fn invalidate(&self, id: &str) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|t| t.id == id) {
            *current = None;
        }
    }
}

impl SangforClient {
    /// A valid token, logging in when there is none or it is about to expire.
    pub(super) async fn token(&self) -> Result<String, ProviderError> {
        let mut current = self.tokens.current.lock().await;
        if let Some(t) = current.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.id.clone());
        }
        match self.login().await {
            Ok(t) => {
                self.tokens.metrics.token_refreshes.with_label_values(&["ok"]).inc();
                let id = t.id.clone();
                *current = Some(t);
                Ok(id)
            }
            Err(e) => {
                self.tokens.metrics.token_refreshes.with_label_values(&["error"]).inc();
                Err(e)
            }
        }
    }

    async fn login(&self) -> Result<Token, ProviderError> {
        let send = |password: String| async move {
            let body = json!({"auth": {"passwordCredentials": {"username": self.cfg.username, "password": password}}});
            let mut call = Call::write("authenticate", Method::POST, "/janus/authenticate", &body, None);
            call.headers.push(("cookie", format!("aCMPAuthToken={}", uuid::Uuid::new_v4().simple())));
            self.call_anonymous(call).await
        };
        let data = self.with_encrypted(self.cfg.password.expose(), send).await.map_err(|e| match e {
            ProviderError::Unauthorized { message, .. } | ProviderError::BadRequest { message, .. } => {
                ProviderError::Auth(format!("SCP refused user {:?}: {message}", self.cfg.username))
            }
            other => other,
        })?;
        let token = data.pointer("/access/token").cloned().unwrap_or(Value::Null);
        let id = envelope::field(&token, "id");
        if id.is_empty() {
            return Err(ProviderError::Auth("login answer has no access.token.id".into()));
        }
        let ttl = token_ttl(&token).unwrap_or(DEFAULT_TOKEN_TTL);
        let margin = RENEW_MARGIN.min(ttl / 10);
        tracing::debug!(ttl_secs = ttl.as_secs(), "logged in to SCP");
        Ok(Token { id, renew_at: Instant::now() + ttl.saturating_sub(margin) })
    }

    /// SCP's RSA public key; `/janus/v2/public-key` first, the older path as a fallback.
    pub(crate) async fn public_key(&self) -> Result<RsaPublicKey, ProviderError> {
        let data = match self.call_anonymous(Call::get("public_key", "/janus/v2/public-key")).await {
            Ok(v) => v,
            Err(e) if !e.is_transient() => {
                tracing::debug!(error = %e, "v2 public-key path failed; trying the older path");
                self.call_anonymous(Call::get("public_key", "/janus/public-key")).await?
            }
            Err(e) => return Err(e),
        };
        let hex = data.get("public_key").map(envelope::text).unwrap_or_else(|| envelope::text(&data));
        public_key_from_hex(&hex)
    }

    /// Sends a request carrying `secret` encrypted for SCP (RSA PKCS#1 v1.5 with the
    /// platform key, lower-case hex). The key is kept for [`PUBLIC_KEY_TTL`]; when SCP
    /// refuses the request (400) and the key was a kept one, the platform may have a new key
    /// pair: the key is fetched again and the request sent once more.
    pub(crate) async fn with_encrypted<T, F, Fut>(&self, secret: &str, send: F) -> Result<T, ProviderError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let (key, kept) = self.kept_public_key().await?;
        match send(encrypt_hex(&key, secret)?).await {
            Err(ProviderError::BadRequest { message, .. }) if kept => {
                tracing::info!(%message, "SCP refused a request encrypted with its kept public key; fetching the key again");
                self.tokens.key.lock().take();
                let (key, _) = self.kept_public_key().await?;
                send(encrypt_hex(&key, secret)?).await
            }
            result => result,
        }
    }

    /// SCP's public key, and whether it was kept from an earlier fetch.
    async fn kept_public_key(&self) -> Result<(Arc<RsaPublicKey>, bool), ProviderError> {
        if let Some((key, at)) = self.tokens.key.lock().as_ref()
            && at.elapsed() < PUBLIC_KEY_TTL
        {
            return Ok((key.clone(), true));
        }
        let key = Arc::new(self.public_key().await?);
        *self.tokens.key.lock() = Some((key.clone(), Instant::now()));
        Ok((key, false))
    }
}

/// The token's lifetime from `expires` (and `issued_at` when given, so a skewed clock does
/// not matter).
fn token_ttl(token: &Value) -> Option<Duration> {
    let expires = chrono::DateTime::parse_from_rfc3339(&envelope::field(token, "expires")).ok()?;
    let issued = chrono::DateTime::parse_from_rfc3339(&envelope::field(token, "issued_at"))
        .map(|d| d.to_utc())
        .unwrap_or_else(|_| chrono::Utc::now());
    (expires.to_utc() - issued).to_std().ok()
}

/// Builds the key from SCP's hex modulus (exponent 65537); tolerates whitespace and the
/// literal trailing `\n` some versions send.
pub fn public_key_from_hex(hex: &str) -> Result<RsaPublicKey, ProviderError> {
    let cleaned: String = hex.trim().trim_end_matches(['\\', 'n']).chars().filter(|c| !c.is_whitespace()).collect();
    let n = BigUint::parse_bytes(cleaned.as_bytes(), 16)
        .ok_or_else(|| ProviderError::Protocol("SCP's public key is not a hex modulus".into()))?;
    RsaPublicKey::new(n, BigUint::from(65_537u32))
        .map_err(|e| ProviderError::Protocol(format!("SCP's public key is unusable: {e}")))
}

/// PKCS#1 v1.5 encryption, lower-case hex.
pub fn encrypt_hex(key: &RsaPublicKey, secret: &str) -> Result<String, ProviderError> {
    let mut rng = rand::thread_rng();
    key.encrypt(&mut rng, Pkcs1v15Encrypt, secret.as_bytes())
        .map(hex::encode)
        .map_err(|e| ProviderError::Protocol(format!("cannot encrypt with SCP's public key: {e}")))
}

#[cfg(test)]
mod tests {
    use rsa::RsaPrivateKey;
    use rsa::traits::PublicKeyParts;

    use super::*;

    #[test]
    fn encrypts_for_the_modulus_scp_serves() {
        let private = RsaPrivateKey::new(&mut rand::thread_rng(), 1024).expect("key");
        let hex_modulus = format!("{}\\n", hex::encode_upper(private.n().to_bytes_be()));
        let public = public_key_from_hex(&hex_modulus).expect("parses");
        let cipher = encrypt_hex(&public, "S3cret!").expect("encrypts");
        assert_eq!(cipher.len(), 256);
        assert!(cipher.chars().all(|c| !c.is_ascii_uppercase()));
        let plain = private.decrypt(Pkcs1v15Encrypt, &hex::decode(cipher).expect("hex")).expect("decrypts");
        assert_eq!(plain, b"S3cret!");
        assert!(public_key_from_hex("zz").is_err());
    }

    #[test]
    fn ttl_from_login_answer() {
        let t = json!({"id": "x", "issued_at": "2024-01-01T00:00:00Z", "expires": "2024-01-02T00:00:00Z"});
        assert_eq!(token_ttl(&t), Some(Duration::from_secs(86_400)));
        assert_eq!(token_ttl(&json!({"id": "x"})), None);
    }
}

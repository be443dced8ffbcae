//! Both of SCP's authentications (sangfor-scp-api.md §2): EC2 signature verification and the
//! token flow with an RSA-encrypted password.
//!
//! The EC2 check rebuilds the signature from whatever the request declares (region, service
//! and signed headers come from the `Authorization` header), with the shared signer in
//! `provider::sangfor::sign`, so the client and the simulator cannot disagree on the algorithm.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::HttpRequest;
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;

use super::reply::ApiError;
use super::world::Millis;
use crate::provider::sangfor::sign::{SigningScope, parse_authorization, signature};

/// The credentials the simulator accepts.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub username: String,
    pub password: String,
}

/// An issued token.
#[derive(Debug, Clone)]
pub struct Grant {
    pub username: String,
    pub expires_ms: Millis,
}

/// Issued tokens by id.
pub type Tokens = HashMap<String, Grant>;

fn eq_ct(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Verifies `Authorization` and returns the caller's identity (`ak:<AK>` or `user:<name>`),
/// which keys rate limits and idempotency records.
pub fn authenticate(
    req: &HttpRequest,
    body: &[u8],
    creds: &Credentials,
    tokens: &Tokens,
    max_skew_secs: u64,
    now: Millis,
) -> Result<String, ApiError> {
    let header = req
        .headers()
        .get("authorization")
        .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("Authorization header is not ASCII"))?;
    if let Some(token) = header.strip_prefix("Token ").map(str::trim) {
        let grant = tokens.get(token).ok_or_else(|| ApiError::unauthorized("invalid token"))?;
        if now >= grant.expires_ms {
            return Err(ApiError::unauthorized("token expired, authenticate again"));
        }
        return Ok(format!("user:{}", grant.username));
    }
    verify_ec2(req, header, body, creds, max_skew_secs, now)
}

fn verify_ec2(
    req: &HttpRequest,
    header: &str,
    body: &[u8],
    creds: &Credentials,
    max_skew_secs: u64,
    now: Millis,
) -> Result<String, ApiError> {
    let parsed = parse_authorization(header)
        .ok_or_else(|| ApiError::unauthorized("unsupported or malformed Authorization header"))?;
    if !eq_ct(&parsed.access_key, &creds.access_key) {
        return Err(ApiError::unauthorized("unknown access key"));
    }
    let amz_date = req
        .headers()
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing X-Amz-Date header"))?;
    if max_skew_secs > 0 {
        let stamp = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
            .map_err(|_| ApiError::unauthorized("malformed X-Amz-Date"))?;
        let skew = (now / 1000 - stamp.and_utc().timestamp()).unsigned_abs();
        if skew > max_skew_secs {
            return Err(ApiError::unauthorized("X-Amz-Date is outside the allowed clock skew"));
        }
    }
    // Each declared header with its value, or "" when absent, as Sangfor's sample SDK does.
    let values: Vec<(String, String)> = parsed
        .signed_headers
        .iter()
        .map(|name| {
            let value = req.headers().get(name.as_str()).and_then(|v| v.to_str().ok()).unwrap_or("");
            (name.clone(), value.to_string())
        })
        .collect();
    let headers: Vec<(&str, &str)> = values.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let scope = SigningScope {
        access_key: &parsed.access_key,
        secret_key: &creds.secret_key,
        region: &parsed.region,
        service: &parsed.service,
        amz_date,
    };
    let expected = signature(&scope, req.method().as_str(), req.uri().path(), &headers, body);
    if eq_ct(&expected, &parsed.signature) {
        Ok(format!("ak:{}", parsed.access_key))
    } else {
        Err(ApiError::unauthorized("signature does not match"))
    }
}

/// The platform's RSA key, generated once in the background at start: key generation is slow
/// in debug builds and must not delay binding. `POST /_sim/key/rotate` replaces it, as a
/// reinstalled or upgraded platform does.
#[derive(Clone)]
pub struct RsaKey {
    cell: Arc<OnceCell<Arc<RsaPrivateKey>>>,
    replaced: Arc<parking_lot::Mutex<Option<Arc<RsaPrivateKey>>>>,
    bits: usize,
}

impl RsaKey {
    pub fn new(bits: usize) -> Self {
        Self { cell: Arc::new(OnceCell::new()), replaced: Arc::default(), bits }
    }

    /// The key, generating it on first use.
    pub async fn get(&self) -> Result<Arc<RsaPrivateKey>, ApiError> {
        if let Some(key) = self.replaced.lock().clone() {
            return Ok(key);
        }
        let bits = self.bits;
        self.cell.get_or_try_init(|| generate(bits)).await.cloned()
    }

    /// A new key pair in place of the current one.
    pub async fn rotate(&self) -> Result<(), ApiError> {
        let key = generate(self.bits).await?;
        *self.replaced.lock() = Some(key);
        Ok(())
    }
}

async fn generate(bits: usize) -> Result<Arc<RsaPrivateKey>, ApiError> {
    tokio::task::spawn_blocking(move || RsaPrivateKey::new(&mut rand::rngs::OsRng, bits))
        .await
        .map_err(|e| ApiError::internal(format!("key generation stopped: {e}")))?
        .map(Arc::new)
        .map_err(|e| ApiError::internal(format!("key generation failed: {e}")))
}

/// `{"public_key": "<hex modulus>"}`, the body of `GET /janus/v2/public-key` (§2.2).
pub fn public_key_data(key: &RsaPrivateKey) -> Value {
    json!({"public_key": hex::encode_upper(key.n().to_bytes_be())})
}

/// Decrypts a hex PKCS#1 v1.5 ciphertext made with the public key.
pub fn decrypt_password(key: &RsaPrivateKey, hex_ciphertext: &str) -> Result<String, ApiError> {
    let bytes = hex::decode(hex_ciphertext.trim())
        .map_err(|_| ApiError::bad_request("password must be the hex RSA ciphertext"))?;
    let plain = key
        .decrypt(Pkcs1v15Encrypt, &bytes)
        .map_err(|_| ApiError::bad_request("password could not be decrypted with the platform key"))?;
    String::from_utf8(plain).map_err(|_| ApiError::bad_request("decrypted password is not UTF-8"))
}

/// Handles `POST /janus/authenticate`: checks user and password, issues a token.
pub fn login(
    key: &RsaPrivateKey,
    body: &Value,
    creds: &Credentials,
    tokens: &mut Tokens,
    ttl_secs: u64,
    now: Millis,
) -> Result<Value, ApiError> {
    let pc = &body["auth"]["passwordCredentials"];
    let username = pc["username"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("missing field auth.passwordCredentials.username"))?;
    let cipher = pc["password"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("missing field auth.passwordCredentials.password"))?;
    let password = decrypt_password(key, cipher).map_err(|_| ApiError::unauthorized("invalid username or password"))?;
    let user_ok = eq_ct(username, &creds.username);
    let pass_ok = eq_ct(&password, &creds.password);
    if !(user_ok && pass_ok) {
        return Err(ApiError::unauthorized("invalid username or password"));
    }
    let id = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let ttl_ms = i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let expires_ms = now.saturating_add(ttl_ms);
    // Expired tokens are dropped here so the table cannot grow without bound.
    tokens.retain(|_, g| g.expires_ms > now);
    tokens.insert(id.clone(), Grant { username: username.to_string(), expires_ms });
    let rfc = |ms: Millis| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339();
    Ok(json!({"access": {
        "token": {
            "id": id, "issued_at": rfc(now), "expires": rfc(expires_ms),
            "tenant": {"id": "", "name": "", "description": "", "enabled": true},
            "audit_ids": [uuid::Uuid::new_v4().simple().to_string()],
        },
        "user": {"id": format!("user-{username}"), "username": username, "name": username,
                 "roles": [{"name": "admin"}], "roles_links": []},
    }}))
}

//! Webhook authentication, in the host (plugins never see secrets).
//!
//! [`verify`] is a pure function of the source's configuration, the request and the time.
//! The scheme is chosen per source (`sources.<name>.signature`):
//! - `shared_token`: a token compared in constant time, carried in a secret path segment
//!   (`token_in = "path"`), a header or a body field (`token_field`, a dotted JSON path for
//!   bodies, e.g. `customData.shared_token`). GoHighLevel's standard workflow "Webhook"
//!   action can neither sign nor set headers, so this is what most GHL users need.
//! - `hmac_sha256`: HMAC-SHA256 of the raw body with `hmac_secret`, in the header
//!   `token_field`, `hex` or `base64` (`hmac_encoding`); a `sha256=` prefix is accepted.
//! - `ghl_ed25519`: GoHighLevel's `x-ghl-signature` (base64 Ed25519 over the raw body),
//!   with every Ed25519 key of `public_keys` tried (rotation). While GHL still sends the
//!   legacy header, a delivery with only `x-wh-signature` is checked against the RSA keys.
//! - `ghl_rsa`: GoHighLevel's legacy `x-wh-signature` (RSA PKCS#1 v1.5, SHA-256, base64).
//! - `stripe`: `Stripe-Signature` (`t=…,v1=…`), HMAC-SHA256 of `"{t}.{body}"` keyed by each
//!   of `secrets` (`whsec_…`, rotation), any `v1` matching, then the timestamp tolerance.
//! - `none`: no verification (only when configured explicitly; warned at every start).
//!
//! Whatever the scheme, an `x-ghl-signature` header is verified whenever it is present and
//! an Ed25519 key is configured: a present but wrong signature is always refused.

use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use hmac::{Hmac, Mac};
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::signature::Verifier as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{SignatureScheme, SourceConfig};

/// GoHighLevel's Ed25519 signature header.
pub const GHL_SIGNATURE_HEADER: &str = "x-ghl-signature";
/// GoHighLevel's legacy RSA signature header.
pub const GHL_LEGACY_HEADER: &str = "x-wh-signature";
/// Stripe's signature header.
pub const STRIPE_HEADER: &str = "stripe-signature";

/// What [`verify`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    /// The secret path segment after `/webhooks/{source}/`, if the URL has one.
    pub path_token: Option<&'a str>,
    /// Request headers (any case).
    pub headers: &'a [(String, String)],
    /// The raw body, exactly as received.
    pub body: &'a [u8],
}

impl WebhookRequest<'_> {
    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// The scheme that authenticated the request.
    pub scheme: SignatureScheme,
    /// Which configured key or secret matched (0-based), for rotation bookkeeping.
    pub key_index: Option<usize>,
    /// The signed timestamp (Stripe's `t`).
    pub signed_at: Option<i64>,
    /// True when an `x-ghl-signature` was present and verified in addition to the scheme.
    pub ghl_signature_verified: bool,
}

/// Why a request was refused. Every message says what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "the shared token is missing from the {location} - Hint: check the webhook URL or action in the billing system"
    )]
    MissingToken { location: String },
    #[error(
        "the shared token does not match - Hint: the token in the billing system differs from sources.<name>.token"
    )]
    BadToken,
    #[error(
        "the {header} header is missing - Hint: is the sender configured to sign, and is the right scheme configured?"
    )]
    MissingSignature { header: String },
    #[error("the {header} header is malformed: {reason}")]
    MalformedSignature { header: String, reason: String },
    #[error(
        "the {header} signature matches none of the {keys} configured key(s) - Hint: the body was altered, or the key or secret is wrong or was rotated"
    )]
    Mismatch { header: String, keys: usize },
    #[error(
        "the signature timestamp is {age_secs} s old, outside the tolerance of {tolerance_secs} s - Hint: a replay, or this host's clock is wrong"
    )]
    Expired { age_secs: i64, tolerance_secs: u64 },
    #[error("the source is not configured for {scheme}: {what}")]
    NotConfigured { scheme: String, what: String },
    #[error("public_keys[{index}] cannot be read: {reason}")]
    BadKey { index: usize, reason: String },
}

impl SignatureError {
    /// A stable snake_case name for the inbox record and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::MissingToken { .. } => "missing_token",
            SignatureError::BadToken => "bad_token",
            SignatureError::MissingSignature { .. } => "missing_signature",
            SignatureError::MalformedSignature { .. } => "malformed_signature",
            SignatureError::Mismatch { .. } => "signature_mismatch",
            SignatureError::Expired { .. } => "signature_expired",
            SignatureError::NotConfigured { .. } => "signature_not_configured",
            SignatureError::BadKey { .. } => "bad_public_key",
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

/// Authenticates one webhook delivery for `source` at time `now`; Stripe timestamps older
/// than `stripe_tolerance_secs` are refused (0 disables the check, as in Stripe's libraries).
pub fn verify(
    source: &SourceConfig,
    req: &WebhookRequest<'_>,
    now: DateTime<Utc>,
    stripe_tolerance_secs: u64,
) -> Result<Verified, SignatureError> {
    let mut verified =
        Verified { scheme: source.signature, key_index: None, signed_at: None, ghl_signature_verified: false };
    match source.signature {
        SignatureScheme::None => {}
        SignatureScheme::SharedToken => verify_token(source, req)?,
        SignatureScheme::HmacSha256 => verified.key_index = Some(verify_hmac(source, req)?),
        SignatureScheme::GhlEd25519 => {
            if req.header(GHL_SIGNATURE_HEADER).is_none()
                && req.header(GHL_LEGACY_HEADER).is_some()
                && !rsa_keys(source)?.is_empty()
            {
                verified.key_index = Some(verify_ghl_rsa(source, req)?);
            } else {
                verified.key_index = Some(verify_ghl_ed25519(source, req)?);
                verified.ghl_signature_verified = true;
            }
        }
        SignatureScheme::GhlRsa => verified.key_index = Some(verify_ghl_rsa(source, req)?),
        SignatureScheme::Stripe => {
            let (index, t) = verify_stripe(source, req, now, stripe_tolerance_secs)?;
            verified.key_index = Some(index);
            verified.signed_at = Some(t);
        }
    }
    // An x-ghl-signature is checked whenever it is present and a key can check it.
    if !verified.ghl_signature_verified
        && req.header(GHL_SIGNATURE_HEADER).is_some()
        && !ed25519_keys(source)?.is_empty()
    {
        verify_ghl_ed25519(source, req)?;
        verified.ghl_signature_verified = true;
    }
    Ok(verified)
}

/// Equal in constant time (lengths are hidden by hashing both sides first).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

fn verify_token(source: &SourceConfig, req: &WebhookRequest<'_>) -> Result<(), SignatureError> {
    let expected = source.token.expose();
    if expected.is_empty() {
        return Err(SignatureError::NotConfigured { scheme: "shared_token".into(), what: "token is empty".into() });
    }
    let presented: Option<String> = match source.token_in.as_str() {
        "header" => req.header(&source.token_field).map(str::to_string),
        "body" => serde_json::from_slice::<serde_json::Value>(req.body).ok().and_then(|v| {
            let mut cur = &v;
            for part in source.token_field.split('.') {
                cur = cur.get(part)?;
            }
            cur.as_str().map(str::to_string)
        }),
        _ => req.path_token.map(str::to_string),
    };
    let location = match source.token_in.as_str() {
        "header" => format!("header {}", source.token_field),
        "body" => format!("body field {}", source.token_field),
        _ => "URL path (/webhooks/<source>/<token>)".into(),
    };
    let presented = presented.filter(|t| !t.is_empty()).ok_or(SignatureError::MissingToken { location })?;
    if ct_eq(presented.trim().as_bytes(), expected.as_bytes()) { Ok(()) } else { Err(SignatureError::BadToken) }
}

fn verify_hmac(source: &SourceConfig, req: &WebhookRequest<'_>) -> Result<usize, SignatureError> {
    let header = source.token_field.to_ascii_lowercase();
    if source.hmac_secret.is_empty() {
        return Err(SignatureError::NotConfigured {
            scheme: "hmac_sha256".into(),
            what: "hmac_secret is empty".into(),
        });
    }
    let value = req.header(&header).ok_or_else(|| SignatureError::MissingSignature { header: header.clone() })?;
    let value = value.trim();
    let value = value.strip_prefix("sha256=").unwrap_or(value);
    let presented = match source.hmac_encoding.as_str() {
        "base64" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(value).map_err(|e| SignatureError::MalformedSignature {
                header: header.clone(),
                reason: format!("not base64: {e}"),
            })?
        }
        _ => hex::decode(value).map_err(|e| SignatureError::MalformedSignature {
            header: header.clone(),
            reason: format!("not hex: {e}"),
        })?,
    };
    let mut mac = HmacSha256::new_from_slice(source.hmac_secret.expose().as_bytes()).expect("HMAC takes any key");
    mac.update(req.body);
    mac.verify_slice(&presented).map(|_| 0).map_err(|_| SignatureError::Mismatch { header, keys: 1 })
}

/// Decoded public keys of one kind, with their index in `public_keys`.
fn ed25519_keys(source: &SourceConfig) -> Result<Vec<(usize, ed25519_dalek::VerifyingKey)>, SignatureError> {
    let mut keys = Vec::new();
    for (index, text) in source.public_keys.iter().enumerate() {
        let text = text.trim();
        if text.contains("-----BEGIN") {
            // RSA keys in the same list are for the legacy scheme.
            if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(text) {
                keys.push((index, k));
            }
            continue;
        }
        // A raw 32-byte key in hex or base64, or a base64 DER SPKI.
        use base64::Engine as _;
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .ok_or_else(|| SignatureError::BadKey { index, reason: "neither PEM, hex nor base64".into() })?;
        let key = match bytes.len() {
            32 => ed25519_dalek::VerifyingKey::from_bytes(&bytes.try_into().expect("32 bytes"))
                .map_err(|e| SignatureError::BadKey { index, reason: e.to_string() })?,
            _ => ed25519_dalek::VerifyingKey::from_public_key_der(&bytes)
                .map_err(|e| SignatureError::BadKey { index, reason: format!("not an Ed25519 key: {e}") })?,
        };
        keys.push((index, key));
    }
    Ok(keys)
}

fn rsa_keys(source: &SourceConfig) -> Result<Vec<(usize, rsa::RsaPublicKey)>, SignatureError> {
    let mut keys = Vec::new();
    for (index, text) in source.public_keys.iter().enumerate() {
        let text = text.trim();
        if text.contains("BEGIN RSA PUBLIC KEY") {
            let key = rsa::RsaPublicKey::from_pkcs1_pem(text)
                .map_err(|e| SignatureError::BadKey { index, reason: e.to_string() })?;
            keys.push((index, key));
        } else if text.contains("-----BEGIN PUBLIC KEY")
            && let Ok(key) = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_pem(text)
        {
            keys.push((index, key));
        }
    }
    Ok(keys)
}

fn decode_b64_signature(header: &str, value: &str) -> Result<Vec<u8>, SignatureError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| SignatureError::MalformedSignature { header: header.into(), reason: format!("not base64: {e}") })
}

fn verify_ghl_ed25519(source: &SourceConfig, req: &WebhookRequest<'_>) -> Result<usize, SignatureError> {
    let keys = ed25519_keys(source)?;
    if keys.is_empty() {
        return Err(SignatureError::NotConfigured {
            scheme: "ghl_ed25519".into(),
            what: "public_keys holds no Ed25519 key (GoHighLevel's key is in plugins/README.md)".into(),
        });
    }
    let header = GHL_SIGNATURE_HEADER;
    let value = req.header(header).ok_or_else(|| SignatureError::MissingSignature { header: header.into() })?;
    let raw = decode_b64_signature(header, value)?;
    let signature = ed25519_dalek::Signature::from_slice(&raw).map_err(|_| SignatureError::MalformedSignature {
        header: header.into(),
        reason: format!("{} bytes, an Ed25519 signature has 64", raw.len()),
    })?;
    keys.iter()
        .find(|(_, key)| key.verify_strict(req.body, &signature).is_ok())
        .map(|(i, _)| *i)
        .ok_or(SignatureError::Mismatch { header: header.into(), keys: keys.len() })
}

fn verify_ghl_rsa(source: &SourceConfig, req: &WebhookRequest<'_>) -> Result<usize, SignatureError> {
    let keys = rsa_keys(source)?;
    if keys.is_empty() {
        return Err(SignatureError::NotConfigured {
            scheme: "ghl_rsa".into(),
            what: "public_keys holds no RSA key (GoHighLevel's legacy key is in its Webhook Authentication guide)"
                .into(),
        });
    }
    let header = GHL_LEGACY_HEADER;
    let value = req.header(header).ok_or_else(|| SignatureError::MissingSignature { header: header.into() })?;
    let raw = decode_b64_signature(header, value)?;
    let signature = rsa::pkcs1v15::Signature::try_from(raw.as_slice())
        .map_err(|e| SignatureError::MalformedSignature { header: header.into(), reason: e.to_string() })?;
    keys.iter()
        .find(|(_, key)| rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.clone()).verify(req.body, &signature).is_ok())
        .map(|(i, _)| *i)
        .ok_or(SignatureError::Mismatch { header: header.into(), keys: keys.len() })
}

fn verify_stripe(
    source: &SourceConfig,
    req: &WebhookRequest<'_>,
    now: DateTime<Utc>,
    tolerance_secs: u64,
) -> Result<(usize, i64), SignatureError> {
    let header = STRIPE_HEADER;
    if source.secrets.iter().all(|s| s.is_empty()) {
        return Err(SignatureError::NotConfigured {
            scheme: "stripe".into(),
            what: "secrets is empty (the endpoint's whsec_… signing secret)".into(),
        });
    }
    let value = req.header(header).ok_or_else(|| SignatureError::MissingSignature { header: header.into() })?;
    let malformed = |reason: &str| SignatureError::MalformedSignature { header: header.into(), reason: reason.into() };
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in value.split(',') {
        let Some((k, v)) = item.split_once('=') else { continue };
        match k {
            "t" => timestamp = v.parse::<i64>().ok(),
            "v1" => v1.push(v),
            _ => {}
        }
    }
    let t = timestamp.ok_or_else(|| malformed("unable to extract the timestamp (t=…)"))?;
    if v1.is_empty() {
        return Err(malformed("no signatures found with expected scheme v1"));
    }
    let body = std::str::from_utf8(req.body).map_err(|_| malformed("the body is not UTF-8"))?;
    let signed = format!("{t}.{body}");
    let mut matched = None;
    for (index, secret) in source.secrets.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key");
        mac.update(signed.as_bytes());
        let expected = hex::encode(mac.finalize().into_bytes());
        if v1.iter().any(|sig| ct_eq(sig.as_bytes(), expected.as_bytes())) {
            matched = Some(index);
            break;
        }
    }
    let index = matched.ok_or(SignatureError::Mismatch {
        header: header.into(),
        keys: source.secrets.iter().filter(|s| !s.is_empty()).count(),
    })?;
    let age = now.timestamp() - t;
    if tolerance_secs > 0 && age > tolerance_secs as i64 {
        return Err(SignatureError::Expired { age_secs: age, tolerance_secs });
    }
    Ok((index, t))
}

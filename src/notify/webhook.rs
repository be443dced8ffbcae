//! Outgoing webhooks: each notification as JSON, POSTed to every configured URL and signed
//! with HMAC-SHA256 so the receiver can tell it came from this appliance.
//!
//! `X-Vmauto-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. Each
//! attempt is signed afresh (a new `t`), so a receiver can refuse old signatures; the
//! `X-Vmauto-Delivery` id stays the same across attempts, so it can also drop duplicates.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::delivery::AttemptError;
use crate::config::Secret;
use crate::notice::{Notify, NotifyKind, Severity};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Vmauto-Signature";
/// The delivery id header (the same on every attempt of one delivery).
pub const DELIVERY_HEADER: &str = "X-Vmauto-Delivery";
/// The notification kind header.
pub const EVENT_HEADER: &str = "X-Vmauto-Event";

/// The JSON body of an outgoing webhook.
#[derive(Debug, Clone, Serialize)]
pub struct Payload<'a> {
    /// The delivery id (also in `X-Vmauto-Delivery`).
    pub id: &'a str,
    pub kind: NotifyKind,
    pub severity: Severity,
    pub title: &'a str,
    pub body: &'a str,
    /// The record this is about (`vps:…`), or null.
    pub subject: Option<&'a str>,
    /// When the notification was raised (RFC 3339).
    pub created_at: &'a str,
    /// The customer's portal link (`vps_ready` and `customer_warning`, with `portal.enabled`),
    /// for a billing system's own emails or customer area.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal_url: Option<&'a str>,
}

impl<'a> Payload<'a> {
    pub fn new(id: &'a str, n: &'a Notify, created_at: &'a str) -> Self {
        Self {
            id,
            kind: n.kind,
            severity: n.severity,
            title: &n.title,
            body: &n.body,
            subject: n.subject.as_deref(),
            created_at,
            portal_url: n.portal_url.as_deref(),
        }
    }
}

/// The header value for `body` signed at unix time `t`.
pub fn sign(secret: &Secret, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header against `body` (what a receiver does; used by tests and by
/// anyone writing a receiver in Rust). Constant-time.
pub fn verify(secret: &Secret, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    sigs.iter().any(|sig| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(sig).is_ok()
    })
}

/// A client for outgoing webhooks: no redirects (a redirect would resend the signed body
/// somewhere else), a per-request timeout.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("vmauto/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// One attempt: sign now, POST, classify the answer. 2xx delivers; 408, 429 and 5xx and
/// network errors are retried; other 4xx are permanent (the receiver refuses this body).
pub async fn post_once(
    http: &reqwest::Client,
    url: &str,
    secret: &Secret,
    delivery: &str,
    kind: NotifyKind,
    body: &[u8],
) -> Result<String, AttemptError> {
    let t = chrono::Utc::now().timestamp();
    let kind = serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let resp = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, sign(secret, t, body))
        .header(DELIVERY_HEADER, delivery)
        .header(EVENT_HEADER, kind)
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| AttemptError::Transient(format!("request failed: {}", without_url(&e))))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(format!("HTTP {}", status.as_u16()));
    }
    let msg = format!("HTTP {}", status.as_u16());
    if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
        Err(AttemptError::Transient(msg))
    } else {
        Err(AttemptError::Permanent(format!("{msg}: the receiver refused the webhook")))
    }
}

/// A reqwest error without its URL (URLs may carry tokens in their query).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "redirected"
    } else {
        "transport error"
    };
    kind.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_detect_tampering() {
        let secret = Secret::new("whsec-test");
        let header = sign(&secret, 1_700_000_000, b"{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="), "{header}");
        assert!(verify(&secret, &header, b"{\"a\":1}"));
        assert!(!verify(&secret, &header, b"{\"a\":2}"));
        assert!(!verify(&Secret::new("other"), &header, b"{\"a\":1}"));
        assert!(!verify(&secret, &header.replace("t=1700000000", "t=1700000001"), b"{\"a\":1}"));
        assert!(!verify(&secret, "v1=00", b"{\"a\":1}"));
    }
}

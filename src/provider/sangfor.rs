//! The Sangfor SCP Open-API client (sangfor-scp-api.md).
//!
//! [`SangforClient`] turns one logical request into HTTP: it signs (EC2) or attaches a token,
//! keeps header names in title case on HTTP/1.1 (SCP is reported to be case-sensitive
//! about them), sends every request through the [`Traffic`] layer, maps statuses to
//! [`ProviderError`] and unwraps SCP's envelopes. The operations the appliance needs, and the
//! [`crate::provider::Provider`] implementation, are in [`ops`].

mod auth;
pub mod envelope;
mod ops;
pub mod sign;
pub mod tls;
mod wire;

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

use self::auth::TokenCache;
use crate::config::{SangforAuth, SangforConfig};
use crate::provider::ProviderError;
use crate::provider::traffic::{Replay, RequestClass, Traffic};

/// The API version prefix of the endpoints the appliance uses.
pub const API: &str = "/janus/20180725";

/// Largest page SCP serves.
const PAGE_SIZE: u32 = 100;
/// A listing longer than this many pages is treated as a server bug (paging that never ends).
const MAX_PAGES: u64 = 10_000;

/// One logical request.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// Operation name for metrics (`get_server`, `create_server`, …).
    pub op: &'static str,
    pub method: Method,
    /// Absolute path starting with `/janus/`.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The exact body bytes (signed as sent).
    pub body: Option<Vec<u8>>,
    /// `X-Client-Token`: the same on every attempt, which is what makes a write replayable.
    pub client_token: Option<String>,
    /// Other headers (the login's `Cookie`).
    pub headers: Vec<(&'static str, String)>,
}

impl Call {
    pub fn get(op: &'static str, path: impl Into<String>) -> Self {
        Self {
            op,
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: None,
            client_token: None,
            headers: Vec::new(),
        }
    }

    pub fn write(
        op: &'static str,
        method: Method,
        path: impl Into<String>,
        body: &Value,
        token: Option<String>,
    ) -> Self {
        Self {
            op,
            method,
            path: path.into(),
            query: Vec::new(),
            body: Some(serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec())),
            client_token: token,
            headers: Vec::new(),
        }
    }

    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    fn class(&self) -> RequestClass {
        if self.method == Method::GET { RequestClass::Read } else { RequestClass::Write }
    }

    /// GET and DELETE are safe to send again; POST and PUT only with their idempotency token.
    fn replay(&self) -> Replay {
        if self.method == Method::GET || self.method == Method::DELETE || self.client_token.is_some() {
            Replay::Safe
        } else {
            Replay::Never
        }
    }
}

/// A connection to one SCP.
pub struct SangforClient {
    http: reqwest::Client,
    base: url::Url,
    cfg: SangforConfig,
    traffic: Arc<Traffic>,
    tokens: TokenCache,
    timeout: Duration,
    /// The TLS trust of every connection to this SCP (its consoles too).
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for SangforClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SangforClient").field("base", &self.base.as_str()).field("auth", &self.cfg.auth).finish()
    }
}

impl SangforClient {
    /// Builds a client for `cfg`, sending through `traffic`.
    pub fn new(cfg: &SangforConfig, traffic: Arc<Traffic>) -> Result<Self, ProviderError> {
        if cfg.base_url.trim().is_empty() {
            return Err(ProviderError::NotConfigured);
        }
        let base = url::Url::parse(cfg.base_url.trim().trim_end_matches('/')).map_err(|e| {
            ProviderError::Config(format!(
                "provider.sangfor.base_url {:?} is not a URL ({e}); write it with its scheme, e.g. https://10.1.2.3",
                cfg.base_url
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ProviderError::Config(format!(
                "provider.sangfor.base_url must start with https:// (or http:// for a simulator), got {:?}",
                cfg.base_url
            )));
        }
        match cfg.auth {
            SangforAuth::Ec2 if cfg.access_key.is_empty() || cfg.secret_key.is_empty() => {
                return Err(ProviderError::Config(
                    "auth = ec2 needs provider.sangfor.access_key and secret_key".into(),
                ));
            }
            SangforAuth::Token if cfg.username.is_empty() || cfg.password.is_empty() => {
                return Err(ProviderError::Config("auth = token needs provider.sangfor.username and password".into()));
            }
            _ => {}
        }
        let timeout = Duration::from_secs(cfg.request_timeout_secs.max(1));
        let tls = Arc::new(tls::client_config(cfg)?);
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .http1_only()
            .http1_title_case_headers()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .map_err(|e| ProviderError::Config(format!("HTTP client: {e}")))?;
        let tokens = TokenCache::new(traffic.metrics().clone());
        Ok(Self { http, base, cfg: cfg.clone(), traffic, tokens, timeout, tls })
    }

    pub fn config(&self) -> &SangforConfig {
        &self.cfg
    }

    pub(crate) fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn traffic(&self) -> &Arc<Traffic> {
        &self.traffic
    }

    /// Sends an authenticated request, retrying what is safe to retry.
    pub(crate) async fn call(&self, call: Call) -> Result<Value, ProviderError> {
        self.traffic.run(call.op, call.replay(), |_| self.attempt(&call)).await
    }

    /// Sends a request without credentials (public key, login), with retries.
    ///
    /// These skip the admission queue: they are rare (a login a day, a key fetch per password
    /// change), one login runs at a time, and a request holding a slot may be the one waiting
    /// for the login, so queueing them behind a long write queue would stall everything.
    pub(crate) async fn call_anonymous(&self, call: Call) -> Result<Value, ProviderError> {
        self.traffic.run(call.op, Replay::Safe, |_| self.send(&call, None)).await
    }

    /// One attempt: wait for admission, take a token (token mode; logs in when needed) or
    /// sign (EC2) so credentials are fresh when the request leaves the queue, send. A 401 in
    /// token mode means the token died early (SCP restarted, expired it): log in again once
    /// and resend.
    async fn attempt(&self, call: &Call) -> Result<Value, ProviderError> {
        let mut relogged = false;
        loop {
            let permit = self.traffic.admit(call.class(), call.op).await?;
            let token = match self.cfg.auth {
                SangforAuth::Token => Some(self.token().await?),
                SangforAuth::Ec2 => None,
            };
            let auth = match &token {
                Some(t) => Auth::Token(t),
                None => Auth::Ec2,
            };
            let result = self.send(call, Some(auth)).await;
            drop(permit);
            match (result, token) {
                (Err(ProviderError::Unauthorized { .. }), Some(t)) if !relogged => {
                    tracing::info!(op = call.op, "SCP rejected the token; logging in again");
                    // The run loop counts the attempt's final outcome; count this answer too.
                    self.traffic.metrics().requests.with_label_values(&[call.op, "unauthorized"]).inc();
                    self.tokens.invalidate(&t).await;
                    relogged = true;
                }
                (result, _) => return result,
            }
        }
    }

    /// Builds and sends one HTTP request; maps the answer.
    async fn send(&self, call: &Call, auth: Option<Auth<'_>>) -> Result<Value, ProviderError> {
        let mut url = self.base.clone();
        let base_path = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{base_path}{}", call.path));
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(call.query.iter());
        }
        let body = call.body.as_deref().unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        if let Some(t) = &call.client_token {
            headers.insert("x-client-token", header_value(t)?);
        }
        for (name, value) in &call.headers {
            headers.insert(*name, header_value(value)?);
        }
        match auth {
            Some(Auth::Ec2) => {
                let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
                let scope = sign::SigningScope {
                    access_key: &self.cfg.access_key,
                    secret_key: self.cfg.secret_key.expose(),
                    region: &self.cfg.region,
                    service: &self.cfg.service,
                    amz_date: &amz_date,
                };
                let signed = [("x-amz-date", amz_date.as_str())];
                let authorization = sign::authorization(&scope, call.method.as_str(), url.path(), &signed, body);
                headers.insert("x-amz-date", header_value(&amz_date)?);
                headers.insert("authorization", header_value(&authorization)?);
            }
            Some(Auth::Token(t)) => {
                headers.insert("authorization", header_value(&format!("Token {t}"))?);
            }
            None => {}
        }
        let mut req = self.http.request(call.method.clone(), url).headers(headers);
        if call.body.is_some() {
            req = req.body(body.to_vec());
        }
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let server_date = resp
            .headers()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok());
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(&e))?;
        if (200..300).contains(&status) {
            return envelope::success(status, &bytes);
        }
        let (message, code) = envelope::error_fields(&bytes);
        let mut err = ProviderError::from_status(status, message, code, retry_after);
        if let ProviderError::Unauthorized { clock_skew_secs, .. } = &mut err {
            *clock_skew_secs = server_date.map(|d| d.timestamp() - chrono::Utc::now().timestamp());
        }
        Err(err)
    }

    fn transport_error(&self, e: &reqwest::Error) -> ProviderError {
        let chain = error_chain(e);
        if e.is_timeout() {
            return ProviderError::Timeout(self.timeout);
        }
        if is_tls_failure(e) {
            return ProviderError::Tls(chain);
        }
        if e.is_builder() {
            return ProviderError::Config(chain);
        }
        ProviderError::Connection(chain)
    }

    /// Reads every page of a listing (0-based `page_num`, following `next_page_num`).
    pub(crate) async fn list_all(&self, call: Call) -> Result<Vec<Value>, ProviderError> {
        let mut items = Vec::new();
        let mut page_num: u64 = 0;
        loop {
            let c = call.clone().query("page_num", page_num).query("page_size", PAGE_SIZE);
            let page = envelope::page(self.call(c).await?)?;
            let got = page.items.len();
            items.extend(page.items);
            let done = got == 0
                || page.total.is_some_and(|t| items.len() as u64 >= t)
                || page.next.is_none_or(|n| n <= page_num)
                || page_num >= MAX_PAGES;
            if done {
                return Ok(items);
            }
            page_num = page.next.unwrap_or(page_num + 1);
        }
    }
}

/// How a request proves who sends it.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Ec2,
    Token(&'a str),
}

fn header_value(s: &str) -> Result<HeaderValue, ProviderError> {
    HeaderValue::from_str(s).map_err(|_| ProviderError::Config("a header value contains invalid characters".into()))
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = when.timestamp() - chrono::Utc::now().timestamp();
    Some(Duration::from_secs(secs.max(0).unsigned_abs()))
}

/// The error and its sources, `: `-joined (reqwest's own message hides the cause).
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Whether a transport error came from the TLS handshake (rustls reports through io::Error,
/// whose `source()` skips the wrapped error, so look inside it too).
fn is_tls_failure(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.get_ref().is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        source = s.source();
    }
    let text = error_chain(e).to_ascii_lowercase();
    text.contains("certificate") || text.contains("handshake")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Tue, 15 Nov 1994 08:12:31 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn replay_rules() {
        let get = Call::get("x", "/janus/a");
        assert_eq!(get.replay(), Replay::Safe);
        assert_eq!(get.class(), RequestClass::Read);
        let post = Call::write("x", Method::POST, "/janus/a", &serde_json::json!({}), None);
        assert_eq!(post.replay(), Replay::Never);
        assert_eq!(post.class(), RequestClass::Write);
        let post = Call::write("x", Method::POST, "/janus/a", &serde_json::json!({}), Some("t".into()));
        assert_eq!(post.replay(), Replay::Safe);
    }
}

//! SCP's envelopes, error bodies and pages (sangfor-scp-api.md §3.1, §3.2, §4).
//!
//! Handlers return the `data` part or an [`ApiError`]; this module is the one place that turns
//! either into bytes, so every answer the simulator gives has the same shape.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Which success envelope the simulator speaks (§3.1 documents both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// `{"code": 0, "message": "", "data": …}` (older SCP builds; the default).
    #[default]
    Code,
    /// `{"errcode": "", "message": "", "data": …}` (newer SCP builds).
    Errcode,
}

/// Error codes in SCP's hex style. Real SCP codes are product specific; these keep the shape
/// (`0x` + 12 hex digits) so clients that parse or log them behave as against a real platform.
pub mod codes {
    pub const BAD_REQUEST: &str = "0x120090010001";
    pub const UNAUTHORIZED: &str = "0x120010010001";
    pub const FORBIDDEN: &str = "0x120010010003";
    pub const NOT_FOUND: &str = "0x120090010004";
    pub const METHOD: &str = "0x120090010005";
    pub const CONFLICT: &str = "0x120090010009";
    pub const TOO_LARGE: &str = "0x12009001000D";
    pub const RATE_LIMITED: &str = "0x120000010029";
    pub const INTERNAL: &str = "0x120000010500";
    pub const INJECTED: &str = "0x1200000105FF";
}

/// An error answered in SCP's error envelope with the given HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub errcode: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, errcode: &'static str, message: impl Into<String>) -> Self {
        Self { status, errcode, message: message.into(), retry_after: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, codes::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, codes::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, codes::FORBIDDEN, message)
    }
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(404, codes::NOT_FOUND, format!("{kind} {id} not found"))
    }
    pub fn no_route(method: &str, path: &str) -> Self {
        Self::new(404, codes::NOT_FOUND, format!("no API at {method} {path}"))
    }
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(405, codes::METHOD, format!("method {method} is not allowed on {path}"))
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, codes::CONFLICT, message)
    }
    pub fn too_large(limit: usize) -> Self {
        Self::new(413, codes::TOO_LARGE, format!("request body exceeds {limit} bytes"))
    }
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = Self::new(429, codes::RATE_LIMITED, "request rate limit exceeded, retry later");
        e.retry_after = Some(retry_after.max(1));
        e
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, codes::INTERNAL, message)
    }

    /// The JSON error body (§3.2): `errcode` and `message`, plus `code` in the older style so
    /// clients reading `str(body.code)` see the status.
    pub fn body(&self, envelope: Envelope) -> Value {
        match envelope {
            Envelope::Code => json!({
                "code": self.status, "errcode": self.errcode, "message": self.message, "data": {}
            }),
            Envelope::Errcode => json!({"errcode": self.errcode, "message": self.message, "data": {}}),
        }
    }
}

/// What a successful handler produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// 200 with `data` in the envelope.
    Data(Value),
    /// 204, no body (the batch action endpoint, §3.1).
    NoContent,
}

pub type ApiResult = Result<Outcome, ApiError>;

/// Wraps `data` in the success envelope.
pub fn success_body(envelope: Envelope, data: Value) -> Value {
    match envelope {
        Envelope::Code => json!({"code": 0, "message": "", "data": data}),
        Envelope::Errcode => json!({"errcode": "", "message": "", "data": data}),
    }
}

/// The decoded query string: last value wins, like most web frameworks.
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: &str) -> Self {
        Self(url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect())
    }
    /// A non-empty parameter.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }
    /// An integer parameter; malformed numbers are the caller's error (400), not ignored.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("query parameter {key} must be an integer, got {v:?}"))),
        }
    }
}

/// The maximum `page_size` SCP accepts (§4).
pub const MAX_PAGE_SIZE: usize = 100;

/// Cuts one 0-based page out of `items` and renders only that page, so listing stays cheap
/// however many objects match. `next_page_num` is a numeric string, or `""` on the last page.
pub fn page<T>(items: &[T], query: &Query, render: impl Fn(&T) -> Value) -> Result<Value, ApiError> {
    let page_num = query.int("page_num")?.unwrap_or(0);
    if page_num < 0 {
        return Err(ApiError::bad_request("page_num must be 0 or greater"));
    }
    let page_size = query.int("page_size")?.unwrap_or(MAX_PAGE_SIZE as i64).clamp(1, MAX_PAGE_SIZE as i64) as usize;
    let page_num = page_num as usize;
    let start = page_num.saturating_mul(page_size);
    let data: Vec<Value> = items.iter().skip(start).take(page_size).map(render).collect();
    let next = if start.saturating_add(page_size) < items.len() { (page_num + 1).to_string() } else { String::new() };
    Ok(json!({
        "total_size": items.len(),
        "page_num": page_num,
        "page_size": page_size,
        "next_page_num": next,
        "data": data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_zero_based_and_clamped() {
        let items: Vec<u32> = (0..250).collect();
        let q = Query::parse("page_num=1&page_size=500");
        let p = page(&items, &q, |i| json!(i)).expect("page");
        assert_eq!(p["page_size"], 100);
        assert_eq!(p["next_page_num"], "2");
        assert_eq!(p["data"][0], 100);
        let last = page(&items, &Query::parse("page_num=2"), |i| json!(i)).expect("page");
        assert_eq!(last["next_page_num"], "");
        assert_eq!(last["data"].as_array().map(Vec::len), Some(50));
        let out = page(&items, &Query::parse("page_num=9"), |i| json!(i)).expect("page");
        assert_eq!(out["data"].as_array().map(Vec::len), Some(0));
        assert_eq!(out["next_page_num"], "");
        assert!(page(&items, &Query::parse("page_num=x"), |i| json!(i)).is_err());
    }
}

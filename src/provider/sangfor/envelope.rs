//! SCP response envelopes, pages and tolerant field parsing (sangfor-scp-api.md §3–§4).
//!
//! Two envelope styles exist (`{"code":0,…}` and `{"errcode":"",…}`); a non-zero `code` or
//! a non-empty `errcode` is an error even on a 2xx. `data` may be a page object or a bare
//! list where a page is expected, and numbers sometimes arrive as strings, so everything
//! here reads `serde_json::Value` leniently instead of failing on a surprise.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::provider::ProviderError;

/// The payload of a successful answer: `data` when present, else the whole body.
pub fn success(status: u16, body: &[u8]) -> Result<Value, ProviderError> {
    if status == 204 || body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        ProviderError::Protocol(format!(
            "the answer is not JSON (starts with {:?}); is base_url SCP's API address?",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        ))
    })?;
    if let Value::Object(map) = &value {
        let code_err = map.get("code").is_some_and(|c| match c {
            Value::Number(n) => n.as_i64() != Some(0),
            Value::String(s) => !s.is_empty() && s != "0",
            _ => false,
        });
        let errcode_err = map.get("errcode").is_some_and(|c| match c {
            Value::String(s) => !s.is_empty() && s != "0",
            Value::Number(n) => n.as_i64() != Some(0),
            _ => false,
        });
        if code_err || errcode_err {
            let (message, code) = error_fields(body);
            return Err(ProviderError::Api { message, code });
        }
        if let Some(data) = map.get("data") {
            return Ok(data.clone());
        }
    }
    Ok(value)
}

/// `(message, code)` of an error body: `message`, and `errcode` or else `code`.
pub fn error_fields(body: &[u8]) -> (String, String) {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            let message = map.get("message").map(text).unwrap_or_default();
            let code = match map.get("errcode").map(text) {
                Some(c) if !c.is_empty() => c,
                _ => map.get("code").map(text).unwrap_or_default(),
            };
            (message, code)
        }
        _ => {
            let s = String::from_utf8_lossy(body);
            (s.chars().take(200).collect::<String>().trim().to_string(), String::new())
        }
    }
}

/// A string field: strings as they are, numbers and booleans printed, null and others empty.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// A numeric field: numbers, or strings holding numbers; anything else is 0.
pub fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

/// A non-negative integer field, leniently (see [`number`]).
pub fn uint(v: &Value) -> u64 {
    let n = number(v);
    if n.is_finite() && n > 0.0 { n.round() as u64 } else { 0 }
}

/// Field `key` of an object as text (empty when absent).
pub fn field(v: &Value, key: &str) -> String {
    v.get(key).map(text).unwrap_or_default()
}

/// Field `key` of an object as a non-negative integer (0 when absent).
pub fn ufield(v: &Value, key: &str) -> u64 {
    v.get(key).map(uint).unwrap_or_default()
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Value>,
    /// The next 0-based page number, or `None` on the last page.
    pub next: Option<u64>,
    pub total: Option<u64>,
}

/// Reads a page: a page object (`data`, `next_page_num`, `total_size`) or a bare list.
pub fn page(data: Value) -> Result<Page, ProviderError> {
    match data {
        Value::Array(items) => Ok(Page { items, next: None, total: None }),
        Value::Null => Ok(Page::default()),
        Value::Object(mut map) => {
            let items = match map.remove("data") {
                Some(Value::Array(items)) => items,
                None | Some(Value::Null) => Vec::new(),
                Some(other) => {
                    return Err(ProviderError::Protocol(format!("page `data` is not a list: {other}")));
                }
            };
            let next = match map.get("next_page_num") {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) => s.trim().parse().ok(),
                _ => None,
            };
            let total = map.get("total_size").map(uint).filter(|_| map.contains_key("total_size"));
            Ok(Page { items, next, total })
        }
        other => Err(ProviderError::Protocol(format!("expected a list or a page, got {other}"))),
    }
}

/// Deserializes a value into a type, as a protocol error when it does not fit.
pub fn decode<T: DeserializeOwned>(what: &str, v: Value) -> Result<T, ProviderError> {
    serde_json::from_value(v).map_err(|e| ProviderError::Protocol(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn both_envelope_styles() {
        let ok = success(200, br#"{"code":0,"message":"","data":{"id":"a"}}"#).unwrap();
        assert_eq!(ok, json!({"id": "a"}));
        let ok = success(200, br#"{"errcode":"","message":"","data":[1]}"#).unwrap();
        assert_eq!(ok, json!([1]));
        assert_eq!(success(200, br#"{"id":"bare"}"#).unwrap(), json!({"id": "bare"}));
        assert_eq!(success(204, b"").unwrap(), Value::Null);
        assert_eq!(success(200, b"  ").unwrap(), Value::Null);
    }

    #[test]
    fn error_codes_on_2xx() {
        let e = success(200, br#"{"code":1,"message":"boom","data":{}}"#).unwrap_err();
        assert!(matches!(&e, ProviderError::Api { message, code } if message == "boom" && code == "1"), "{e:?}");
        let e = success(200, br#"{"errcode":"0x12009001005F","message":"nic"}"#).unwrap_err();
        assert!(matches!(&e, ProviderError::Api { code, .. } if code == "0x12009001005F"), "{e:?}");
        assert!(success(200, br#"{"code":"0","data":1}"#).is_ok());
        assert!(matches!(success(200, b"<html>"), Err(ProviderError::Protocol(_))));
    }

    #[test]
    fn error_body_fields() {
        assert_eq!(error_fields(br#"{"errcode":"0x1","message":"m","data":{}}"#), ("m".into(), "0x1".into()));
        assert_eq!(error_fields(br#"{"code":401,"message":"unauthorized"}"#), ("unauthorized".into(), "401".into()));
        assert_eq!(error_fields(b"Bad Gateway"), ("Bad Gateway".into(), String::new()));
    }

    #[test]
    fn pages_and_lists() {
        let p = page(json!({"total_size": 250, "page_num": 0, "page_size": 100, "next_page_num": "1", "data": [1, 2]}))
            .unwrap();
        assert_eq!((p.items.len(), p.next, p.total), (2, Some(1), Some(250)));
        let p = page(json!({"next_page_num": 2, "data": []})).unwrap();
        assert_eq!(p.next, Some(2));
        for last in [json!(""), Value::Null] {
            let p = page(json!({"next_page_num": last, "data": [1]})).unwrap();
            assert_eq!(p.next, None);
        }
        let p = page(json!([1, 2, 3])).unwrap();
        assert_eq!((p.items.len(), p.next), (3, None));
        assert!(page(json!({"data": "x"})).is_err());
    }

    #[test]
    fn lenient_numbers() {
        assert_eq!(uint(&json!("2048")), 2048);
        assert_eq!(uint(&json!(4)), 4);
        assert_eq!(uint(&json!(-1)), 0);
        assert_eq!(uint(&json!(null)), 0);
        assert_eq!(number(&json!("14.86")), 14.86);
        assert_eq!(text(&json!(7)), "7");
    }
}

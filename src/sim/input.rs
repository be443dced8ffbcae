//! What a handler gets about its request, and strict readers for JSON bodies.
//!
//! SCP answers bad input with 400 and a message naming the field; these helpers do the same so
//! no handler ever indexes into input it has not checked.

use rsa::RsaPrivateKey;
use serde_json::{Map, Value};

use super::fault::TaskFault;
use super::reply::{ApiError, Query};
use super::world::Millis;

/// The request as a handler sees it.
pub struct Ctx<'a> {
    pub now: Millis,
    /// `ak:<AK>` or `user:<name>`.
    pub identity: &'a str,
    pub user_ip: &'a str,
    pub query: Query,
    pub body: &'a [u8],
    /// A fault rule decided that a task created by this request fails, and how.
    pub fail_task: Option<TaskFault>,
    /// The platform key, when the route needs it (login, passwords).
    pub rsa: Option<&'a RsaPrivateKey>,
    pub base_url: &'a str,
}

impl Ctx<'_> {
    /// The user name shown on tasks.
    pub fn user(&self) -> String {
        self.identity.split_once(':').map_or(self.identity, |(_, u)| u).to_string()
    }

    /// The failure reason of a task this request creates, when a fault rule dooms it.
    pub fn injected(&self, action: &str) -> Option<String> {
        self.fail_task.map(|f| f.kind.reason(action))
    }

    /// Whether a failed create should leave its VM behind in `error`.
    pub fn leaves_vm(&self) -> bool {
        self.fail_task.is_some_and(|f| f.leave_vm)
    }

    /// The body as a JSON object; an empty body counts as `{}` (power actions send `{}` or
    /// nothing, DELETE may have no body).
    pub fn object(&self) -> Result<Map<String, Value>, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(self.body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiError::bad_request("request body must be a JSON object")),
            Err(e) => Err(ApiError::bad_request(format!("malformed JSON body: {e}"))),
        }
    }
}

fn missing(key: &str) -> ApiError {
    ApiError::bad_request(format!("missing required field `{key}`"))
}

fn wrong(key: &str, what: &str) -> ApiError {
    ApiError::bad_request(format!("field `{key}` must be {what}"))
}

pub fn req_str<'m>(obj: &'m Map<String, Value>, key: &str) -> Result<&'m str, ApiError> {
    opt_str(obj, key)?.ok_or_else(|| missing(key))
}

pub fn opt_str<'m>(obj: &'m Map<String, Value>, key: &str) -> Result<Option<&'m str>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(wrong(key, "a string")),
    }
}

/// An unsigned integer; numeric strings are accepted as SCP's own forms do.
pub fn opt_u64(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| wrong(key, "a non-negative integer")),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| wrong(key, "a non-negative integer")),
        Some(_) => Err(wrong(key, "a non-negative integer")),
    }
}

pub fn req_u64(obj: &Map<String, Value>, key: &str) -> Result<u64, ApiError> {
    opt_u64(obj, key)?.ok_or_else(|| missing(key))
}

/// A 0/1 flag that may also arrive as a JSON boolean.
pub fn flag(obj: &Map<String, Value>, key: &str, default: bool) -> Result<bool, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        _ => Ok(opt_u64(obj, key).map_err(|_| wrong(key, "0 or 1"))?.unwrap_or(0) != 0),
    }
}

/// A string filter from the query compared case-insensitively as a substring.
pub fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

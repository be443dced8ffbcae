//! Helpers for writing vmauto plugins in Rust.
//!
//! A plugin crate is a `cdylib` built for `wasm32-unknown-unknown`. It writes one plain
//! function over the types of this crate and exports it with [`export_source!`] (billing
//! sources) or [`export_mapper!`] (plan mappers); the macros generate the component-model
//! bindings of `plugins/wit` inside the plugin crate and convert between them and these
//! types. The JSON helpers ([`Body`]) produce the contract's typed errors (missing field,
//! wrong type) with the dotted path of the field; the body is parsed into a [`Value`] that
//! borrows its strings from the request (see [`Value`] for why).

mod export;
mod json;

pub use json::{Arena, Map, NULL, Number, Value};
pub use serde_json;
pub use wit_bindgen;

/// What a billing event asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Subscribe,
    Cancel,
    Suspend,
    Resume,
    ChangePlan,
    Ignore,
}

impl Kind {
    /// Reads a kind from the words billing systems and admins use (`provision`,
    /// `deprovision`, `past_due`, `change-plan`, …), case-insensitively.
    pub fn from_word(word: &str) -> Option<Kind> {
        let w: String = word
            .trim()
            .chars()
            .map(|c| if c == '-' || c == ' ' || c == '.' { '_' } else { c.to_ascii_lowercase() })
            .collect();
        Some(match w.as_str() {
            "subscribe"
            | "subscribed"
            | "provision"
            | "create"
            | "activate"
            | "activated"
            | "start"
            | "new"
            | "subscription_created"
            | "order_paid"
            | "paid" => Kind::Subscribe,
            "cancel"
            | "cancelled"
            | "canceled"
            | "deprovision"
            | "delete"
            | "terminate"
            | "terminated"
            | "end"
            | "subscription_cancelled"
            | "subscription_canceled"
            | "refund"
            | "refunded" => Kind::Cancel,
            "suspend" | "suspended" | "past_due" | "payment_failed" | "unpaid" | "pause" | "paused" => Kind::Suspend,
            "resume" | "resumed" | "unsuspend" | "reactivate" | "reactivated" | "payment_recovered" | "unpause" => {
                Kind::Resume
            }
            "change_plan" | "plan_change" | "plan_changed" | "upgrade" | "downgrade" => Kind::ChangePlan,
            "ignore" | "noop" | "none" => Kind::Ignore,
            _ => return None,
        })
    }
}

/// When the billing system says an event happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instant {
    UnixSeconds(i64),
    Rfc3339(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub email: String,
}

/// One normalized billing event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    pub source_event_id: Option<String>,
    pub occurred_at: Option<Instant>,
    pub subscription_id: Option<String>,
    pub customer: Customer,
    pub plan_key: Option<String>,
    pub attributes: Vec<(String, String)>,
    /// What the customer chose at checkout (contract 1.1); see [`Event::choose`].
    pub image: Option<String>,
    pub hostname: Option<String>,
    pub location: Option<String>,
}

impl Event {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            source_event_id: None,
            occurred_at: None,
            subscription_id: None,
            customer: Customer::default(),
            plan_key: None,
            attributes: Vec::new(),
            image: None,
            hostname: None,
            location: None,
        }
    }

    /// Sets the customer's order-time choices (blank values count as not chosen); the host
    /// checks them against the template and parks the event when one is not allowed.
    pub fn choose(&mut self, image: Option<String>, hostname: Option<String>, location: Option<String>) -> &mut Self {
        let keep = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        self.image = keep(image);
        self.hostname = keep(hostname);
        self.location = keep(location);
        self
    }

    /// An `ignore` event that records why.
    pub fn ignored(reason: impl Into<String>) -> Self {
        let mut e = Self::new(Kind::Ignore);
        e.attr("reason", reason);
        e
    }

    /// Adds an attribute (empty values are skipped).
    pub fn attr(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        if !value.is_empty() {
            self.attributes.push((name.to_string(), value));
        }
        self
    }
}

/// Why a plugin refused a request (the contract's `plugin-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Malformed(String),
    MissingField(String),
    WrongType { field: String, expected: String },
    BadSetting(String),
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// One webhook delivery.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub source: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub settings: Vec<(String, String)>,
    /// Where [`Request::json`] parses to.
    arena: std::cell::OnceCell<Arena>,
}

impl Request {
    pub fn new(
        source: String,
        path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        settings: Vec<(String, String)>,
    ) -> Self {
        Self { source, path, headers, body, settings, arena: std::cell::OnceCell::new() }
    }

    /// A setting of the source, if configured and not empty.
    pub fn setting(&self, name: &str) -> Option<&str> {
        setting(&self.settings, name)
    }

    /// A header (names are lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (an object), borrowing from the request.
    pub fn json(&self) -> Result<Body<'_>> {
        let arena = self.arena.get_or_init(|| Arena::with_capacity(self.body.len() * 2));
        Body::parse(&self.body, arena)
    }
}

/// Reads a setting from name/value pairs.
pub fn setting<'a>(settings: &'a [(String, String)], name: &str) -> Option<&'a str> {
    settings.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// Splits a comma-separated setting into trimmed, non-empty items.
pub fn list(value: Option<&str>) -> Vec<String> {
    value.unwrap_or("").split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// A request body parsed as JSON: a [`Value`] borrowing from the request, with the typed,
/// path-named accessors below (every [`Value`] has them, so an element of an array is read
/// the same way as the body).
pub type Body<'a> = Value<'a>;

impl<'a> Value<'a> {
    /// Parses a body that must be a JSON object.
    pub fn parse(bytes: &'a [u8], arena: &'a Arena) -> Result<Body<'a>> {
        let value =
            Value::from_slice(bytes, arena).map_err(|e| Error::Malformed(format!("the body is not JSON: {e}")))?;
        if !value.is_object() {
            return Err(Error::Malformed("the body is not a JSON object".into()));
        }
        Ok(value)
    }

    /// The value at a dotted path (`a.b.0.c`); `null` counts as absent.
    pub fn get(&self, path: &str) -> Option<&Value<'a>> {
        lookup(self, path)
    }

    /// A string field, absent allowed; a number or bool is not a string.
    pub fn opt_str(&self, path: &str) -> Result<Option<String>> {
        opt_str(self, path)
    }

    /// A required string field.
    pub fn str(&self, path: &str) -> Result<String> {
        self.opt_str(path)?.ok_or_else(|| Error::MissingField(path.into()))
    }

    /// An identifier: a string or an integer (rendered as text).
    pub fn opt_id(&self, path: &str) -> Result<Option<String>> {
        opt_id(self, path)
    }

    /// The first of several paths that holds a string.
    pub fn first_str(&self, paths: &[&str]) -> Result<Option<String>> {
        for p in paths {
            if let Some(v) = self.opt_str(p)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    pub fn opt_bool(&self, path: &str) -> Result<Option<bool>> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(wrong(path, "boolean")),
        }
    }

    pub fn opt_i64(&self, path: &str) -> Result<Option<i64>> {
        match self.get(path) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| wrong(path, "integer")),
        }
    }

    pub fn opt_array(&self, path: &str) -> Result<Option<&[Value<'a>]>> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(wrong(path, "array")),
        }
    }

    pub fn opt_object(&self, path: &str) -> Result<Option<&Map<'a>>> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(wrong(path, "object")),
        }
    }
}

/// The value at a dotted path; array elements are addressed by index; `null` is absent.
pub fn lookup<'v, 'a>(value: &'v Value<'a>, path: &str) -> Option<&'v Value<'a>> {
    let mut cur = value;
    // The parts as `path.split('.')` gives them, found byte by byte: paths are a few short
    // parts, for which `str::split`'s searcher costs more than the search.
    let mut rest = Some(path).filter(|p| !p.is_empty());
    while let Some(r) = rest {
        let (part, next) = match r.bytes().position(|b| b == b'.') {
            Some(dot) => (&r[..dot], Some(&r[dot + 1..])),
            None => (r, None),
        };
        cur = cur.member(part)?;
        rest = next;
    }
    (!cur.is_null()).then_some(cur)
}

pub fn opt_str(value: &Value, path: &str) -> Result<Option<String>> {
    match lookup(value, path) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(trimmed(s)),
        Some(_) => Err(wrong(path, "string")),
    }
}

pub fn opt_id(value: &Value, path: &str) -> Result<Option<String>> {
    match lookup(value, path) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(trimmed(s)),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(wrong(path, "string or integer")),
    }
}

/// A string without its surrounding white space, `None` when nothing is left.
fn trimmed(s: &str) -> Option<String> {
    // Most values start and end with a visible ASCII character: nothing to trim, and no
    // need to decode characters from both ends to find that out.
    let visible = |b: Option<&u8>| b.is_some_and(|b| (b'!'..=b'~').contains(b));
    let t = if visible(s.as_bytes().first()) && visible(s.as_bytes().last()) { s } else { s.trim() };
    Some(t).filter(|t| !t.is_empty()).map(str::to_string)
}

/// A scalar rendered as text (for attributes); objects and arrays as compact JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.to_string(),
        Value::Null => String::new(),
        // Straight to text: going through the JSON rendering builds the text twice.
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

pub fn wrong(path: &str, expected: &str) -> Error {
    Error::WrongType { field: path.into(), expected: expected.into() }
}

/// The catalogue row of one template.
#[derive(Debug, Clone, Default)]
pub struct Template {
    pub name: String,
    pub enabled: bool,
    pub cores: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
    pub extra: Vec<(String, String)>,
}

/// `source + plan_key -> template`.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    pub source: String,
    pub plan_key: String,
    pub template: String,
}

/// What a plan mapper is asked.
#[derive(Debug, Clone)]
pub struct MappingRequest {
    pub source: String,
    pub event: Event,
    pub templates: Vec<Template>,
    pub mappings: Vec<Mapping>,
    pub settings: Vec<(String, String)>,
}

impl MappingRequest {
    /// A request with no catalogue, no settings and an `ignore` event.
    pub fn empty() -> Self {
        Self {
            source: String::new(),
            event: Event::new(Kind::Ignore),
            templates: Vec::new(),
            mappings: Vec::new(),
            settings: Vec::new(),
        }
    }
}

/// A plan mapper's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Template(String),
    None(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_renders_scalars_as_serde_json_does() {
        let json =
            r#"[328.9, -2, 18446744073709551615, 1.5e300, 1e-7, 0.1, true, false, null, "s", {"b": 1, "a": [2.5]}]"#;
        let arena = Arena::new();
        let ours = Value::from_slice(json.as_bytes(), &arena).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(json).unwrap();
        for (ours, theirs) in ours.as_array().unwrap().iter().zip(theirs.as_array().unwrap()) {
            let expected = match theirs {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            assert_eq!(text(ours), expected);
        }
    }

    #[test]
    fn a_request_parses_its_body_into_an_arena_of_its_own() {
        let body = br#"{"a": "x\ty", "b": [1, {"c": "d"}]}"#.to_vec();
        let req = Request::new("s".into(), "/p".into(), Vec::new(), body, Vec::new());
        let parsed = req.json().unwrap();
        assert_eq!(parsed.opt_str("a").unwrap().as_deref(), Some("x\ty"));
        assert_eq!(parsed.opt_str("b.1.c").unwrap().as_deref(), Some("d"));
        let again = req.json().unwrap();
        assert_eq!(again, parsed, "a second parse reads the same");
        let copy = req.clone();
        drop(req);
        assert_eq!(copy.json().unwrap().get("b.0").and_then(Value::as_i64), Some(1), "a clone parses on its own");
        let empty = Request::default();
        assert!(matches!(empty.json(), Err(Error::Malformed(_))), "an empty body is not JSON");
        let array = Request { body: b"[1]".to_vec(), ..Request::default() };
        assert_eq!(array.json(), Err(Error::Malformed("the body is not a JSON object".into())));
    }

    #[test]
    fn paths_are_read_part_by_part_as_split_on_dots() {
        let arena = Arena::new();
        let body = Body::parse(
            br#"{"a": {"b": [{"c": " x "}, null], "": {"e": 1}}, "": 2, "s": "  ", "u": "\u00a0y\t", "v": "z"}"#,
            &arena,
        )
        .unwrap();
        assert_eq!(body.opt_str("a.b.0.c").unwrap().as_deref(), Some("x"), "trimmed");
        assert_eq!(body.opt_str("u").unwrap().as_deref(), Some("y"), "Unicode white space trimmed too");
        assert_eq!(body.opt_str("v").unwrap().as_deref(), Some("z"));
        assert_eq!(body.get("a.b.1"), None, "null is absent");
        assert_eq!(body.get("a.b.2"), None);
        assert_eq!(body.get("a..e").and_then(Value::as_i64), Some(1), "an empty part is the empty key");
        assert_eq!(body.get(".").and_then(|v| v.member("e")).and_then(Value::as_i64), None);
        assert_eq!(body.get("a.").and_then(|v| v.member("e")).and_then(Value::as_i64), Some(1));
        assert!(body.get("").is_some_and(Value::is_object), "the empty path is the body itself");
        assert_eq!(body.opt_str("s").unwrap(), None, "a blank string is absent");
        assert!(body.opt_str("a").is_err(), "an object is not a string");
        for path in ["a.b.0.c", "a..e", "a.", ".", "a.b.x", "z.y"] {
            let split = path.split('.').try_fold(&body, |v, part| v.member(part)).filter(|v| !v.is_null());
            assert_eq!(body.get(path), split, "{path:?}");
        }
    }
}

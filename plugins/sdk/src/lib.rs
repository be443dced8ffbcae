//! Helpers for writing vmauto plugins in Rust.
//!
//! A plugin crate is a `cdylib` built for `wasm32-unknown-unknown`. It writes one plain
//! function over the types of this crate and exports it with [`export_source!`] (billing
//! sources) or [`export_mapper!`] (plan mappers); the macros generate the component-model
//! bindings of `plugins/wit` inside the plugin crate and convert between them and these
//! types. The JSON helpers ([`Body`]) produce the contract's typed errors (missing field,
//! wrong type) with the dotted path of the field; the body is parsed into a [`Value`] that
//! borrows its strings from the request (see [`Value`] for why).

mod json;

pub use json::{Map, NULL, Number, Value};
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
}

impl Request {
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
        Body::parse(&self.body)
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
    pub fn parse(bytes: &'a [u8]) -> Result<Body<'a>> {
        let value = Value::from_slice(bytes).map_err(|e| Error::Malformed(format!("the body is not JSON: {e}")))?;
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
    if !path.is_empty() {
        for part in path.split('.') {
            cur = cur.member(part)?;
        }
    }
    (!cur.is_null()).then_some(cur)
}

pub fn opt_str(value: &Value, path: &str) -> Result<Option<String>> {
    match lookup(value, path) {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(wrong(path, "string")),
    }
}

pub fn opt_id(value: &Value, path: &str) -> Result<Option<String>> {
    match lookup(value, path) {
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(Value::Number(_)) | Some(Value::Bool(_)) | Some(Value::Array(_)) | Some(Value::Object(_)) => {
            Err(wrong(path, "string or integer"))
        }
        _ => opt_str(value, path),
    }
}

/// A scalar rendered as text (for attributes); objects and arrays as compact JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.to_string(),
        Value::Null => String::new(),
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

/// A plan mapper's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Template(String),
    None(String),
}

/// Exports a billing-source plugin: `export_source!(parse)` with
/// `fn parse(req: &Request) -> Result<Vec<Event>>`.
#[macro_export]
macro_rules! export_source {
    ($parse:path) => {
        mod __vmauto_bindings {
            $crate::wit_bindgen::generate!({
                path: "../wit",
                world: "billing-source",
                runtime_path: "::vmauto_plugin_sdk::wit_bindgen::rt",
            });
        }

        struct __VmautoPlugin;

        impl __vmauto_bindings::exports::vmauto::plugin::source::Guest for __VmautoPlugin {
            fn parse(
                req: __vmauto_bindings::vmauto::plugin::types::Request,
            ) -> ::core::result::Result<
                ::std::vec::Vec<__vmauto_bindings::vmauto::plugin::types::Event>,
                __vmauto_bindings::vmauto::plugin::types::PluginError,
            > {
                use __vmauto_bindings::vmauto::plugin::types as t;
                let pairs = |v: ::std::vec::Vec<t::Pair>| v.into_iter().map(|p| (p.name, p.value)).collect();
                let req = $crate::Request {
                    source: req.source,
                    path: req.path,
                    headers: pairs(req.headers),
                    body: req.body,
                    settings: pairs(req.settings),
                };
                match $parse(&req) {
                    Ok(events) => Ok(events.into_iter().map(__vmauto_event_out).collect()),
                    Err(e) => Err(__vmauto_error_out(e)),
                }
            }
        }

        $crate::__vmauto_conversions!(__vmauto_bindings);

        __vmauto_bindings::export!(__VmautoPlugin with_types_in __vmauto_bindings);
    };
}

/// Exports a plan-mapper plugin: `export_mapper!(choose)` with
/// `fn choose(req: &MappingRequest) -> Result<Choice>`.
#[macro_export]
macro_rules! export_mapper {
    ($choose:path) => {
        mod __vmauto_bindings {
            $crate::wit_bindgen::generate!({
                path: "../wit",
                world: "plan-mapper",
                runtime_path: "::vmauto_plugin_sdk::wit_bindgen::rt",
            });
        }

        struct __VmautoPlugin;

        impl __vmauto_bindings::exports::vmauto::plugin::mapper::Guest for __VmautoPlugin {
            fn choose(
                req: __vmauto_bindings::vmauto::plugin::types::MappingRequest,
            ) -> ::core::result::Result<
                __vmauto_bindings::vmauto::plugin::types::Choice,
                __vmauto_bindings::vmauto::plugin::types::PluginError,
            > {
                use __vmauto_bindings::vmauto::plugin::types as t;
                let pairs = |v: ::std::vec::Vec<t::Pair>| -> ::std::vec::Vec<(String, String)> {
                    v.into_iter().map(|p| (p.name, p.value)).collect()
                };
                let e = req.event;
                let kind = match e.kind {
                    t::EventKind::Subscribe => $crate::Kind::Subscribe,
                    t::EventKind::Cancel => $crate::Kind::Cancel,
                    t::EventKind::Suspend => $crate::Kind::Suspend,
                    t::EventKind::Resume => $crate::Kind::Resume,
                    t::EventKind::ChangePlan => $crate::Kind::ChangePlan,
                    t::EventKind::Ignore => $crate::Kind::Ignore,
                };
                let event = $crate::Event {
                    kind,
                    source_event_id: e.source_event_id,
                    occurred_at: e.occurred_at.map(|i| match i {
                        t::Instant::UnixSeconds(s) => $crate::Instant::UnixSeconds(s),
                        t::Instant::Rfc3339(s) => $crate::Instant::Rfc3339(s),
                    }),
                    subscription_id: e.subscription_id,
                    customer: $crate::Customer { id: e.customer.id, name: e.customer.name, email: e.customer.email },
                    plan_key: e.plan_key,
                    attributes: pairs(e.attributes),
                    image: e.image,
                    hostname: e.hostname,
                    location: e.location,
                };
                let req = $crate::MappingRequest {
                    source: req.source,
                    event,
                    templates: req
                        .templates
                        .into_iter()
                        .map(|t| $crate::Template {
                            name: t.name,
                            enabled: t.enabled,
                            cores: t.cores,
                            memory_mb: t.memory_mb,
                            disk_gb: t.disk_gb,
                            extra: pairs(t.extra),
                        })
                        .collect(),
                    mappings: req
                        .mappings
                        .into_iter()
                        .map(|m| $crate::Mapping { source: m.source, plan_key: m.plan_key, template: m.template })
                        .collect(),
                    settings: pairs(req.settings),
                };
                match $choose(&req) {
                    Ok($crate::Choice::Template(name)) => Ok(t::Choice::Template(name)),
                    Ok($crate::Choice::None(reason)) => Ok(t::Choice::None(reason)),
                    Err(e) => Err(__vmauto_error_out(e)),
                }
            }
        }

        $crate::__vmauto_conversions!(__vmauto_bindings);

        __vmauto_bindings::export!(__VmautoPlugin with_types_in __vmauto_bindings);
    };
}

/// Conversions from this crate's types to the generated ones (used by the export macros).
#[doc(hidden)]
#[macro_export]
macro_rules! __vmauto_conversions {
    ($b:ident) => {
        #[allow(dead_code)]
        fn __vmauto_error_out(e: $crate::Error) -> $b::vmauto::plugin::types::PluginError {
            use $b::vmauto::plugin::types as t;
            match e {
                $crate::Error::Malformed(m) => t::PluginError::Malformed(m),
                $crate::Error::MissingField(f) => t::PluginError::MissingField(f),
                $crate::Error::WrongType { field, expected } => {
                    t::PluginError::WrongType(t::WrongType { field, expected })
                }
                $crate::Error::BadSetting(m) => t::PluginError::BadSetting(m),
                $crate::Error::Other(m) => t::PluginError::Other(m),
            }
        }

        #[allow(dead_code)]
        fn __vmauto_event_out(e: $crate::Event) -> $b::vmauto::plugin::types::Event {
            use $b::vmauto::plugin::types as t;
            t::Event {
                kind: match e.kind {
                    $crate::Kind::Subscribe => t::EventKind::Subscribe,
                    $crate::Kind::Cancel => t::EventKind::Cancel,
                    $crate::Kind::Suspend => t::EventKind::Suspend,
                    $crate::Kind::Resume => t::EventKind::Resume,
                    $crate::Kind::ChangePlan => t::EventKind::ChangePlan,
                    $crate::Kind::Ignore => t::EventKind::Ignore,
                },
                source_event_id: e.source_event_id,
                occurred_at: e.occurred_at.map(|i| match i {
                    $crate::Instant::UnixSeconds(s) => t::Instant::UnixSeconds(s),
                    $crate::Instant::Rfc3339(s) => t::Instant::Rfc3339(s),
                }),
                subscription_id: e.subscription_id,
                customer: t::Customer { id: e.customer.id, name: e.customer.name, email: e.customer.email },
                plan_key: e.plan_key,
                attributes: e.attributes.into_iter().map(|(name, value)| t::Pair { name, value }).collect(),
                image: e.image,
                hostname: e.hostname,
                location: e.location,
            }
        }
    };
}

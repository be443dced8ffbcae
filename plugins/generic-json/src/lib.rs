//! `generic-json`: any billing system that posts JSON, described by the source's settings.
//!
//! Field paths are dotted (`data.customer.id`, `items.0.sku`). Settings:
//! - `event_field` (default `event`): the field naming the event; required in the body.
//! - `map.<value> = <kind>`: value maps, e.g. `map.activated = subscribe`. Values without a
//!   map entry fall back to the common words (`subscribe`, `provision`, `cancel`,
//!   `deprovision`, `suspend`, `resume`, `change_plan`, …); anything else is ignored and
//!   recorded.
//! - `subscription_field`, `customer_id_field`, `customer_name_field`,
//!   `customer_email_field`, `plan_field`, `event_id_field`, `occurred_at_field` (RFC 3339
//!   text or Unix seconds).
//! - `image_field`, `hostname_field`, `location_field` (defaults `image`, `hostname`,
//!   `location`): what the customer chose at checkout.
//! - `attribute.<name> = <path>`: extra attributes.
//! - `required`: comma-separated settings whose fields must be present
//!   (e.g. `customer_id_field,plan_field`).
//! - `events_field`: a path to an array of events (a batch); each element is read with the
//!   paths above, relative to the element.

use vmauto_plugin_sdk::{Body, Error, Event, Instant, Kind, Request, Result, Value, list, lookup, text};

fn parse(req: &Request) -> Result<Vec<Event>> {
    let body = req.json()?;
    match req.setting("events_field") {
        None => Ok(vec![one(req, &body, "")?]),
        Some(path) => {
            let items = body.opt_array(path)?.ok_or_else(|| Error::MissingField(path.into()))?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    if !item.is_object() {
                        return Err(vmauto_plugin_sdk::wrong(&format!("{path}.{i}"), "object"));
                    }
                    one(req, item, &format!("{path}.{i}."))
                })
                .collect()
        }
    }
}

fn one(req: &Request, body: &Body, prefix: &str) -> Result<Event> {
    let rename = |e: Error| match e {
        Error::MissingField(f) => Error::MissingField(format!("{prefix}{f}")),
        Error::WrongType { field, expected } => Error::WrongType { field: format!("{prefix}{field}"), expected },
        other => other,
    };
    read(req, body).map_err(rename)
}

fn read(req: &Request, body: &Body) -> Result<Event> {
    let required = list(req.setting("required"));
    let field = |setting: &str, default: Option<&str>| -> Result<Option<String>> {
        let Some(path) = req.setting(setting).or(default) else {
            if required.iter().any(|r| r == setting) {
                return Err(Error::BadSetting(format!("{setting} is listed in required but not set")));
            }
            return Ok(None);
        };
        let value = body.opt_id(path)?;
        if value.is_none() && required.iter().any(|r| r == setting) {
            return Err(Error::MissingField(path.into()));
        }
        Ok(value)
    };
    let event_path = req.setting("event_field").unwrap_or("event");
    let word = body.opt_id(event_path)?.ok_or_else(|| Error::MissingField(event_path.into()))?;
    let mapped = match req.setting(&format!("map.{word}")) {
        Some(kind) => Some(Kind::from_word(kind).ok_or_else(|| {
            Error::BadSetting(format!(
                "map.{word}: {kind:?} is not an event kind (subscribe, cancel, suspend, resume, change_plan, ignore)"
            ))
        })?),
        None => Kind::from_word(&word),
    };
    let mut e = match mapped {
        Some(kind) => Event::new(kind),
        None => Event::ignored(format!("unknown event {word:?} in {event_path}")),
    };
    e.attr("event", word.as_str());
    e.subscription_id = field("subscription_field", Some("subscription_id"))?;
    e.customer.id = field("customer_id_field", Some("customer.id"))?.unwrap_or_default();
    e.customer.name = field("customer_name_field", Some("customer.name"))?.unwrap_or_default();
    e.customer.email = field("customer_email_field", Some("customer.email"))?.unwrap_or_default();
    e.plan_key = field("plan_field", Some("plan"))?;
    e.source_event_id = field("event_id_field", Some("id"))?;
    e.choose(
        field("image_field", Some("image"))?,
        field("hostname_field", Some("hostname"))?,
        field("location_field", Some("location"))?,
    );
    let at_path = req.setting("occurred_at_field").unwrap_or("occurred_at");
    e.occurred_at = match body.get(at_path) {
        None => None,
        Some(Value::String(s)) => Some(Instant::Rfc3339(s.to_string())),
        Some(Value::Number(n)) => {
            Some(Instant::UnixSeconds(n.as_i64().ok_or_else(|| vmauto_plugin_sdk::wrong(at_path, "integer"))?))
        }
        Some(_) => return Err(vmauto_plugin_sdk::wrong(at_path, "string or integer")),
    };
    for (name, path) in &req.settings {
        if let Some(attr) = name.strip_prefix("attribute.")
            && let Some(v) = lookup(body, path)
        {
            e.attr(attr, text(v));
        }
    }
    Ok(e)
}

vmauto_plugin_sdk::export_source!(parse);

//! `ghl-workflow`: GoHighLevel workflow "Webhook" and "Custom Webhook" actions.
//!
//! The standard action posts the contact's fields at the top level (`contact_id`,
//! `full_name`, `email`, `tags` as a comma-separated string, …) plus the pairs the user
//! added under `customData`. The plugin reads:
//! - the event from `customData.event` (`subscribe`/`provision`, `cancel`/`deprovision`,
//!   `suspend`, `resume`, `change_plan`, …); when absent, the path implies it:
//!   `…/provision` subscribes and `…/deprovision` cancels;
//! - the plan from `customData.plan` (or `plan_key`, `sku`);
//! - the subscription from `customData.subscription_id` (or `subscriptionId`);
//! - an event id from `customData.event_id` (or `webhookId`);
//! - what the customer chose at checkout from `customData.image`, `customData.hostname` and
//!   `customData.location` (in a Custom Webhook also top-level strings of those names; GHL's
//!   own top-level `location` object, the sub-account, is not a choice).
//!
//! A Custom Webhook action may send the same keys at the top level instead of under
//! `customData`. Settings: `event.<word> = <kind>` adds words (e.g. `event.upgrade_paid =
//! subscribe`); `plan_field` names another path for the plan (e.g. `customData.sku`).
//! Keys whose name mentions a token, secret or password are never copied into attributes.

use vmauto_plugin_sdk::{Body, Customer, Error, Event, Instant, Kind, Request, Result, Value};

fn parse(req: &Request) -> Result<Vec<Event>> {
    let body = req.json()?;
    if body.get("customData").is_some_and(|v| !v.is_object()) {
        return Err(vmauto_plugin_sdk::wrong("customData", "object"));
    }
    // Keys may sit under customData (standard action) or at the top level (custom action).
    let custom = |key: &str| -> Result<Option<String>> {
        match body.opt_id(&format!("customData.{key}"))? {
            Some(v) => Ok(Some(v)),
            None => body.opt_id(key),
        }
    };
    let word = match custom("event")? {
        Some(w) => Some(w),
        None => custom("action")?,
    };
    let kind = match word.as_deref() {
        Some(w) => match configured_kind(req, w)?.or_else(|| Kind::from_word(w)) {
            Some(k) => k,
            None => {
                let mut e = Event::ignored(format!("unknown event {w:?} in customData.event"));
                e.attr("event", w);
                fill_common(&mut e, &body, &custom)?;
                return Ok(vec![e]);
            }
        },
        None => {
            let path = req.path.trim_end_matches('/');
            if path.ends_with("/deprovision") {
                Kind::Cancel
            } else if path.ends_with("/provision") {
                Kind::Subscribe
            } else {
                return Err(Error::MissingField("customData.event".into()));
            }
        }
    };
    let mut e = Event::new(kind);
    if let Some(w) = &word {
        e.attr("event", w.as_str());
    }
    fill_common(&mut e, &body, &custom)?;
    let choice = |key: &str| -> Result<Option<String>> {
        match body.opt_str(&format!("customData.{key}"))? {
            Some(v) => Ok(Some(v)),
            None => Ok(body.get(key).and_then(Value::as_str).map(str::to_string)),
        }
    };
    e.choose(choice("image")?, choice("hostname")?, choice("location")?);
    e.plan_key = match req.setting("plan_field") {
        Some(path) => body.opt_id(path)?,
        None => match custom("plan")? {
            Some(p) => Some(p),
            None => match custom("plan_key")? {
                Some(p) => Some(p),
                None => custom("sku")?,
            },
        },
    };
    if matches!(kind, Kind::Subscribe | Kind::ChangePlan) && e.plan_key.is_none() {
        return Err(Error::MissingField("customData.plan".into()));
    }
    if e.customer.id.is_empty() {
        return Err(Error::MissingField("contact_id".into()));
    }
    Ok(vec![e])
}

/// `event.<word> = <kind>` settings.
fn configured_kind(req: &Request, word: &str) -> Result<Option<Kind>> {
    let key = format!("event.{}", word.trim().to_ascii_lowercase());
    match req.setting(&key) {
        None => Ok(None),
        Some(kind) => Kind::from_word(kind).map(Some).ok_or_else(|| {
            Error::BadSetting(format!(
                "{key}: {kind:?} is not an event kind (subscribe, cancel, suspend, resume, change_plan, ignore)"
            ))
        }),
    }
}

fn fill_common(e: &mut Event, body: &Body, custom: &dyn Fn(&str) -> Result<Option<String>>) -> Result<()> {
    let first = body.opt_str("first_name")?.unwrap_or_default();
    let last = body.opt_str("last_name")?.unwrap_or_default();
    let name = match body.opt_str("full_name")? {
        Some(n) => n,
        None => format!("{first} {last}").trim().to_string(),
    };
    let id = match body.opt_id("contact_id")? {
        Some(id) => id,
        None => match custom("contact_id")? {
            Some(id) => id,
            None => body.opt_id("contact.id")?.unwrap_or_default(),
        },
    };
    e.customer = Customer { id, name, email: body.opt_str("email")?.unwrap_or_default() };
    e.subscription_id = match custom("subscription_id")? {
        Some(s) => Some(s),
        None => custom("subscriptionId")?,
    };
    e.source_event_id = match custom("event_id")? {
        Some(s) => Some(s),
        None => body.opt_str("webhookId")?,
    };
    e.occurred_at = custom("occurred_at")?.map(Instant::Rfc3339);
    match body.get("tags") {
        Some(Value::String(s)) => {
            e.attr("tags", *s);
        }
        Some(Value::Array(items)) => {
            let tags: Vec<String> = items.iter().map(vmauto_plugin_sdk::text).collect();
            e.attr("tags", tags.join(","));
        }
        Some(_) => return Err(vmauto_plugin_sdk::wrong("tags", "string")),
        None => {}
    }
    for (attr, path) in [
        ("phone", "phone"),
        ("location_id", "location.id"),
        ("location_name", "location.name"),
        ("workflow_id", "workflow.id"),
        ("workflow_name", "workflow.name"),
    ] {
        if let Some(v) = body.get(path) {
            e.attr(attr, vmauto_plugin_sdk::text(v));
        }
    }
    if let Some(Value::Object(map)) = body.get("customData") {
        for (k, v) in map {
            let lower = k.to_ascii_lowercase();
            let secret = ["token", "secret", "password", "key"].iter().any(|s| lower.contains(s));
            let known = [
                "event",
                "plan",
                "subscription_id",
                "subscriptionId",
                "event_id",
                "occurred_at",
                "image",
                "hostname",
                "location",
            ]
            .contains(&k);
            if !secret && !known {
                e.attr(k, vmauto_plugin_sdk::text(v));
            }
        }
    }
    Ok(())
}

vmauto_plugin_sdk::export_source!(parse);

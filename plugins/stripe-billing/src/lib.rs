//! `stripe-billing`: Stripe subscription events.
//!
//! - `customer.subscription.created`: subscribe when `active` or `trialing` (ignored while
//!   `incomplete`, i.e. before the first payment); `past_due`/`unpaid`/`paused` suspend.
//! - `customer.subscription.updated`: `past_due`/`unpaid`/`paused` suspend;
//!   `canceled`/`incomplete_expired` cancel; back to `active`/`trialing` from a suspended
//!   status resumes; a changed price changes the plan; anything else is ignored.
//! - `customer.subscription.deleted`: cancel.
//! - `invoice.paid`: resume; `invoice.payment_failed`: suspend (setting
//!   `suspend_on_payment_failed = false` ignores it and waits for the subscription status).
//!   Both invoice layouts are read: `parent.subscription_details.subscription` (API
//!   2025-03-31 and later) and the top-level `subscription` of older API versions.
//! - Other types (checkout sessions, payment intents, charges) are ignored here: upgrades
//!   are paid through `/stripe/webhook`.
//!
//! The plan key is the price's `lookup_key` when set, else the price id; setting
//! `plan_from = metadata:<key>` reads the subscription's metadata instead.
//!
//! What the customer chose at checkout comes from the subscription's metadata `image`,
//! `hostname` and `location` (set them with Checkout's `subscription_data[metadata]`, e.g.
//! from custom fields), else from the price's metadata (a price per image or location).

use vmauto_plugin_sdk::{Body, Error, Event, Instant, Kind, NULL, Request, Result, text};

const SUSPENDED: &[&str] = &["past_due", "unpaid", "paused"];
const LIVE: &[&str] = &["active", "trialing"];

fn parse(req: &Request) -> Result<Vec<Event>> {
    let body = req.json()?;
    let event_type = body.str("type")?;
    let id = body.str("id")?;
    let created = body.opt_i64("created")?;
    if body.get("data.object").is_none() && !event_type.is_empty() {
        return Err(Error::MissingField("data.object".into()));
    }
    let object = body.get("data.object").unwrap_or(&NULL);
    let field = |p: &str| format!("data.object.{p}");
    let rename = |e: Error| match e {
        Error::MissingField(f) => Error::MissingField(field(&f)),
        Error::WrongType { field: f, expected } => Error::WrongType { field: field(&f), expected },
        other => other,
    };
    let mut e = match event_type.as_str() {
        "customer.subscription.created" | "customer.subscription.updated" | "customer.subscription.deleted" => {
            subscription(req, &event_type, &body, object).map_err(rename)?
        }
        "invoice.paid" | "invoice.payment_failed" => invoice(req, &event_type, object).map_err(rename)?,
        other => Event::ignored(format!("Stripe event {other:?} does not change a subscription")),
    };
    e.source_event_id = Some(id);
    e.occurred_at = created.map(Instant::UnixSeconds);
    e.attr("type", event_type.as_str());
    if let Some(live) = body.opt_bool("livemode")? {
        e.attr("livemode", live.to_string());
    }
    Ok(vec![e])
}

fn subscription(req: &Request, event_type: &str, envelope: &Body, sub: &Body) -> Result<Event> {
    let status = sub.str("status")?;
    let previous = envelope.opt_str("data.previous_attributes.status")?;
    let price_changed = envelope.get("data.previous_attributes.items").is_some()
        || envelope.get("data.previous_attributes.plan").is_some();
    let (kind, reason) = match event_type {
        "customer.subscription.deleted" => (Kind::Cancel, None),
        "customer.subscription.created" if LIVE.contains(&status.as_str()) => (Kind::Subscribe, None),
        "customer.subscription.created" if SUSPENDED.contains(&status.as_str()) => (Kind::Suspend, None),
        "customer.subscription.created" => {
            (Kind::Ignore, Some(format!("subscription created with status {status:?}; waiting for payment")))
        }
        _ if SUSPENDED.contains(&status.as_str()) => {
            if previous.as_deref().is_some_and(|p| SUSPENDED.contains(&p)) {
                (Kind::Ignore, Some(format!("still {status:?}")))
            } else {
                (Kind::Suspend, None)
            }
        }
        _ if status == "canceled" || status == "incomplete_expired" => (Kind::Cancel, None),
        _ if LIVE.contains(&status.as_str()) && previous.as_deref().is_some_and(|p| SUSPENDED.contains(&p)) => {
            (Kind::Resume, None)
        }
        _ if LIVE.contains(&status.as_str()) && previous.as_deref() == Some("incomplete") => (Kind::Subscribe, None),
        _ if LIVE.contains(&status.as_str()) && price_changed => (Kind::ChangePlan, None),
        _ => (Kind::Ignore, Some(format!("subscription updated without a lifecycle change (status {status:?})"))),
    };
    let mut e = Event::new(kind);
    if let Some(r) = reason {
        e.attr("reason", r);
    }
    e.subscription_id = Some(sub.str("id")?);
    e.customer.id = customer_id(sub)?;
    e.plan_key = plan_key(req, sub)?;
    if kind == Kind::ChangePlan && e.plan_key.is_none() {
        return Err(Error::MissingField("items.data.0.price.id".into()));
    }
    e.attr("status", status.as_str());
    if let Some(p) = previous {
        e.attr("previous_status", p);
    }
    // Old API versions: top-level current_period_end; new ones: on the item.
    let period_end = match sub.opt_i64("current_period_end")? {
        Some(t) => Some(t),
        None => sub.opt_i64("items.data.0.current_period_end")?,
    };
    if let Some(t) = period_end {
        e.attr("current_period_end", t.to_string());
    }
    if let Some(b) = sub.opt_bool("cancel_at_period_end")? {
        e.attr("cancel_at_period_end", b.to_string());
    }
    metadata(&mut e, sub, "metadata")?;
    let choice = |key: &str| -> Result<Option<String>> {
        match sub.opt_str(&format!("metadata.{key}"))? {
            Some(v) => Ok(Some(v)),
            None => sub.opt_str(&format!("items.data.0.price.metadata.{key}")),
        }
    };
    e.choose(choice("image")?, choice("hostname")?, choice("location")?);
    Ok(e)
}

fn invoice(req: &Request, event_type: &str, inv: &Body) -> Result<Event> {
    let subscription = match inv.opt_str("parent.subscription_details.subscription")? {
        Some(s) => Some(s),
        None => inv.opt_str("subscription")?,
    };
    let kind = match event_type {
        "invoice.paid" => Kind::Resume,
        _ if req.setting("suspend_on_payment_failed") == Some("false") => Kind::Ignore,
        _ => Kind::Suspend,
    };
    let mut e = Event::new(kind);
    if subscription.is_none() {
        e.kind = Kind::Ignore;
        e.attr("reason", "the invoice does not belong to a subscription");
    } else if kind == Kind::Ignore {
        e.attr("reason", "payment failed; suspend_on_payment_failed = false waits for the subscription status");
    }
    e.subscription_id = subscription;
    e.customer.id = customer_id(inv)?;
    e.customer.email = inv.opt_str("customer_email")?.unwrap_or_default();
    e.customer.name = inv.opt_str("customer_name")?.unwrap_or_default();
    e.attr("invoice_id", inv.str("id")?);
    for (attr, path) in [
        ("billing_reason", "billing_reason"),
        ("amount_paid", "amount_paid"),
        ("amount_due", "amount_due"),
        ("currency", "currency"),
    ] {
        if let Some(v) = inv.get(path) {
            e.attr(attr, text(v));
        }
    }
    if inv.get("parent.subscription_details.metadata").is_some() {
        metadata(&mut e, inv, "parent.subscription_details.metadata")?;
    } else {
        metadata(&mut e, inv, "subscription_details.metadata")?;
    }
    Ok(e)
}

/// `customer` is an id, or an expanded object with one.
fn customer_id(obj: &Body) -> Result<String> {
    match obj.get("customer") {
        Some(vmauto_plugin_sdk::Value::Object(_)) => obj.str("customer.id"),
        _ => obj.str("customer"),
    }
}

fn plan_key(req: &Request, sub: &Body) -> Result<Option<String>> {
    if let Some(from) = req.setting("plan_from") {
        let Some(key) = from.strip_prefix("metadata:") else {
            return Err(Error::BadSetting(format!("plan_from: {from:?} must look like metadata:<key>")));
        };
        return sub.opt_id(&format!("metadata.{key}"));
    }
    if let Some(k) = sub.opt_str("items.data.0.price.lookup_key")? {
        return Ok(Some(k));
    }
    if let Some(k) = sub.opt_str("items.data.0.price.id")? {
        return Ok(Some(k));
    }
    // Old API versions carry a single `plan`.
    sub.opt_str("plan.id")
}

fn metadata(e: &mut Event, obj: &Body, path: &str) -> Result<()> {
    if let Some(map) = obj.opt_object(path)? {
        for (k, v) in map {
            e.attr(&format!("metadata.{k}"), text(v));
        }
    }
    Ok(())
}

vmauto_plugin_sdk::export_source!(parse);

//! `ghl-marketplace`: GoHighLevel Marketplace app webhooks.
//!
//! - `OrderCreate` / `OrderStatusUpdate`: a cancelled or refunded order cancels; otherwise
//!   each recurring item (`items[].price.type == "recurring"`) subscribes, with the price id
//!   as the plan key (setting `plan_key = product` uses the product id, `price_name` /
//!   `product_name` the names). Orders have no subscription id, so the order id is the
//!   subscription id (`<order>:<price>` when one order holds several recurring items).
//!   Setting `require_paid = true` ignores orders not yet `completed`/`paid`.
//!   What the customer chose in the order form: settings `image_field`, `hostname_field`,
//!   `location_field` name a custom field (its id or key) read from the order's
//!   `customFields[]`, else the contact's (`contactSnapshot.customFields[]`); without a
//!   setting, fields keyed `image`, `hostname`, `location` are read.
//! - `InvoicePaid`: resume (the subscription resumes when it was suspended).
//!   `InvoiceVoid`: setting `invoice_void` (`ignore` by default, or `suspend`, `cancel`).
//!   Invoice deliveries without `type` are recognised by their shape and `status`.
//! - `ContactTagUpdate`: settings `subscribe_tags`, `cancel_tags`, `suspend_tags`,
//!   `resume_tags` (comma-separated) say which tags mean what; `plan_tag_prefix` (e.g.
//!   `plan-`) reads the plan from a tag. The contact id is the subscription id.
//! - `INSTALL` / `UNINSTALL` / `PLAN_CHANGE` (a location installing, removing or changing the
//!   plan of the marketplace app itself): not a VPS subscription, so recorded and ignored by
//!   default, without a parked event or an alert. Setting `app_events = subscription` makes
//!   them subscribe, cancel and change plan (plan key `planId` / `newPlanId`), with the
//!   location (or company) as the subscription, for sellers who bill VPSs as the app's plans.
//! - Anything else is ignored, with the reason recorded.

use vmauto_plugin_sdk::{Body, Customer, Error, Event, Instant, Kind, Request, Result, Value, list, text};

fn parse(req: &Request) -> Result<Vec<Event>> {
    let body = req.json()?;
    let kind = match body.opt_str("type")? {
        Some(t) => t,
        None if body.get("invoiceNumber").is_some() || body.get("invoiceItems").is_some() => {
            match body.opt_str("status")?.as_deref() {
                Some("paid") => "InvoicePaid".into(),
                Some("void") => "InvoiceVoid".into(),
                Some(other) => format!("Invoice({other})"),
                None => return Err(Error::MissingField("status".into())),
            }
        }
        None => return Err(Error::MissingField("type".into())),
    };
    let mut events = match kind.as_str() {
        "OrderCreate" | "OrderStatusUpdate" => order(req, &body)?,
        "InvoicePaid" => vec![invoice(&body, Kind::Resume)?],
        "InvoiceVoid" => {
            let k = match req.setting("invoice_void").unwrap_or("ignore") {
                "ignore" => Kind::Ignore,
                "suspend" => Kind::Suspend,
                "cancel" => Kind::Cancel,
                other => {
                    return Err(Error::BadSetting(format!(
                        "invoice_void: {other:?} must be ignore, suspend or cancel"
                    )));
                }
            };
            let mut e = invoice(&body, k)?;
            if k == Kind::Ignore {
                e.attr("reason", "InvoiceVoid (setting invoice_void = ignore)");
            }
            vec![e]
        }
        "ContactTagUpdate" => vec![tags(req, &body)?],
        "INSTALL" | "UNINSTALL" | "PLAN_CHANGE" => match req.setting("app_events").unwrap_or("ignore") {
            "ignore" => vec![Event::ignored(format!(
                "{kind} is the marketplace app's own lifecycle, not a VPS subscription (setting app_events = ignore)"
            ))],
            "subscription" => vec![app(&kind, &body)?],
            other => {
                return Err(Error::BadSetting(format!("app_events: {other:?} must be ignore or subscription")));
            }
        },
        other => vec![Event::ignored(format!("event type {other:?} does not change a subscription"))],
    };
    let event_id = body.opt_str("webhookId")?;
    let at = match body.opt_str("timestamp")? {
        Some(t) => Some(t),
        None => body.first_str(&["updatedAt", "createdAt"])?,
    };
    let location = match body.opt_str("locationId")? {
        Some(l) => Some(l),
        None if body.opt_str("altType")?.as_deref() == Some("location") => body.opt_str("altId")?,
        None => None,
    };
    let many = events.len() > 1;
    for (i, e) in events.iter_mut().enumerate() {
        e.source_event_id = match (&event_id, many) {
            (Some(id), false) => Some(id.clone()),
            (Some(id), true) => Some(format!("{id}#{i}")),
            (None, _) => None,
        };
        e.occurred_at = at.clone().map(Instant::Rfc3339);
        e.attr("type", kind.as_str());
        if let Some(l) = &location {
            e.attr("location_id", l.as_str());
        }
    }
    Ok(events)
}

fn order(req: &Request, body: &Body) -> Result<Vec<Event>> {
    let order_id = body.str("_id")?;
    let status = body.opt_str("status")?.unwrap_or_default().to_ascii_lowercase();
    let customer = Customer {
        id: match body.opt_str("contactId")? {
            Some(id) => id,
            None => body.opt_str("contactSnapshot.id")?.unwrap_or_default(),
        },
        name: match body.opt_str("contactSnapshot.name")? {
            Some(n) => n,
            None => format!(
                "{} {}",
                body.opt_str("contactSnapshot.firstName")?.unwrap_or_default(),
                body.opt_str("contactSnapshot.lastName")?.unwrap_or_default()
            )
            .trim()
            .to_string(),
        },
        email: body.opt_str("contactSnapshot.email")?.unwrap_or_default(),
    };
    if customer.id.is_empty() {
        return Err(Error::MissingField("contactId".into()));
    }
    let items = body.opt_array("items")?.unwrap_or(&[]);
    // A bad setting counts only when an item needs it.
    let key_path = match req.setting("plan_key").unwrap_or("price") {
        "price" => Ok("price._id"),
        "product" => Ok("product._id"),
        "price_name" => Ok("price.name"),
        "product_name" => Ok("product.name"),
        other => {
            Err(Error::BadSetting(format!("plan_key: {other:?} must be price, product, price_name or product_name")))
        }
    };
    let mut recurring = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = |p: &str| format!("items.{i}.{p}");
        match item.get("price.type") {
            Some(Value::String(t)) if t.trim() == "recurring" => {}
            None | Some(Value::String(_)) => continue,
            Some(_) => return Err(vmauto_plugin_sdk::wrong(&at("price.type"), "string")),
        }
        let key_path = key_path.clone()?;
        let key = item.opt_id(key_path).map_err(|_| vmauto_plugin_sdk::wrong(&at(key_path), "string"))?;
        let key = key.ok_or_else(|| Error::MissingField(at(key_path)))?;
        let mut attrs = vec![("item_name", item.opt_str("name").unwrap_or_default().unwrap_or_default())];
        if let Some(interval) = item.get("price.recurring.interval") {
            attrs.push(("interval", text(interval)));
        }
        recurring.push((key, attrs));
    }
    let mut common = Event::new(Kind::Ignore);
    common.customer = customer;
    let [image, hostname, location] = choices(req, body)?;
    common.choose(image, hostname, location);
    common.attr("order_id", order_id.as_str()).attr("order_status", status.as_str());
    if let Some(v) = body.get("amount") {
        common.attr("amount", text(v));
    }
    if let Some(v) = body.get("currency") {
        common.attr("currency", text(v));
    }
    if let Some(v) = body.get("liveMode") {
        common.attr("live_mode", text(v));
    }
    let several = recurring.len() > 1;
    let sub_id = |key: &str| if several { format!("{order_id}:{key}") } else { order_id.clone() };
    let cancelled = ["cancelled", "canceled", "refunded", "voided", "void"].contains(&status.as_str());
    if cancelled {
        if recurring.is_empty() {
            let mut e = common.clone();
            e.kind = Kind::Cancel;
            e.subscription_id = Some(order_id.clone());
            return Ok(vec![e]);
        }
        return Ok(recurring
            .iter()
            .map(|(key, _)| {
                let mut e = common.clone();
                e.kind = Kind::Cancel;
                e.subscription_id = Some(sub_id(key));
                e.plan_key = Some(key.clone());
                e
            })
            .collect());
    }
    if recurring.is_empty() {
        let mut e = common;
        e.attr("reason", "the order holds no recurring items (or the delivery does not list them)");
        return Ok(vec![e]);
    }
    let paid = ["completed", "paid", "succeeded", "fulfilled"].contains(&status.as_str());
    if req.setting("require_paid") == Some("true") && !paid {
        let mut e = common;
        e.attr("reason", format!("order status {status:?} is not paid yet (require_paid = true)"));
        return Ok(vec![e]);
    }
    let last = recurring.len() - 1;
    let mut events = Vec::with_capacity(recurring.len());
    for (i, (key, attrs)) in recurring.into_iter().enumerate() {
        let mut e = if i == last { std::mem::replace(&mut common, Event::new(Kind::Ignore)) } else { common.clone() };
        e.kind = Kind::Subscribe;
        e.subscription_id = Some(sub_id(&key));
        e.plan_key = Some(key);
        for (k, v) in attrs {
            e.attr(k, v);
        }
        events.push(e);
    }
    Ok(events)
}

/// The order-form fields for the customer's choices (`image`, `hostname`, `location`):
/// setting `<choice>_field` names each by id or key (default: the choice's own name); the
/// order's `customFields[]` come first, then the contact's, and a choice takes the first
/// field that matches it.
fn choices(req: &Request, body: &Body) -> Result<[Option<String>; 3]> {
    let wanted = [
        req.setting("image_field").unwrap_or("image"),
        req.setting("hostname_field").unwrap_or("hostname"),
        req.setting("location_field").unwrap_or("location"),
    ];
    // Per choice: `None` until a field matches, then that field's value.
    let mut found: [Option<Option<String>>; 3] = Default::default();
    for path in ["customFields", "contactSnapshot.customFields"] {
        let Some(fields) = body.opt_array(path)? else { continue };
        for (i, f) in fields.iter().enumerate() {
            let names = ["id", "key", "fieldKey", "name"].map(|n| f.get(n).and_then(Value::as_str));
            for (wanted, slot) in wanted.iter().zip(found.iter_mut()) {
                let named = |v: &&str| v == wanted || v.strip_prefix("contact.") == Some(wanted);
                if slot.is_some() || !names.iter().flatten().any(named) {
                    continue;
                }
                *slot = Some(match f.get("value") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.to_string()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    Some(_) => return Err(vmauto_plugin_sdk::wrong(&format!("{path}.{i}.value"), "string")),
                });
            }
        }
    }
    Ok(found.map(Option::flatten))
}

fn invoice(body: &Body, kind: Kind) -> Result<Event> {
    let mut e = Event::new(kind);
    e.customer = Customer {
        id: body.str("contactDetails.id")?,
        name: body.opt_str("contactDetails.name")?.unwrap_or_default(),
        email: body.opt_str("contactDetails.email")?.unwrap_or_default(),
    };
    e.attr("invoice_id", body.str("_id")?);
    if let Some(n) = body.opt_id("invoiceNumber")? {
        e.attr("invoice_number", n);
    }
    for (attr, path) in [("amount_paid", "amountPaid"), ("total", "total"), ("currency", "currency")] {
        if let Some(v) = body.get(path) {
            e.attr(attr, text(v));
        }
    }
    Ok(e)
}

fn tags(req: &Request, body: &Body) -> Result<Event> {
    let customer = Customer {
        id: body.str("id")?,
        name: match body.opt_str("name")? {
            Some(n) => n,
            None => format!(
                "{} {}",
                body.opt_str("firstName")?.unwrap_or_default(),
                body.opt_str("lastName")?.unwrap_or_default()
            )
            .trim()
            .to_string(),
        },
        email: body.opt_str("email")?.unwrap_or_default(),
    };
    let tags: Vec<String> = match body.get("tags") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| vmauto_plugin_sdk::wrong(&format!("tags.{i}"), "string"))
            })
            .collect::<Result<_>>()?,
        Some(Value::String(s)) => list(Some(s)),
        Some(_) => return Err(vmauto_plugin_sdk::wrong("tags", "array")),
    };
    let has = |setting: &str| {
        let wanted = list(req.setting(setting));
        tags.iter().find(|t| wanted.iter().any(|w| w.eq_ignore_ascii_case(t))).cloned()
    };
    let configured =
        ["subscribe_tags", "cancel_tags", "suspend_tags", "resume_tags"].iter().any(|s| req.setting(s).is_some());
    let (kind, tag) = if !configured {
        let mut e =
            Event::ignored("ContactTagUpdate: no tags are configured (settings subscribe_tags, cancel_tags, …)");
        e.customer = customer;
        return Ok(e);
    } else if let Some(t) = has("cancel_tags") {
        (Kind::Cancel, t)
    } else if let Some(t) = has("suspend_tags") {
        (Kind::Suspend, t)
    } else if let Some(t) = has("resume_tags") {
        (Kind::Resume, t)
    } else if let Some(t) = has("subscribe_tags") {
        (Kind::Subscribe, t)
    } else {
        let mut e = Event::ignored("ContactTagUpdate: none of the configured tags is present");
        e.customer = customer;
        e.attr("tags", tags.join(","));
        return Ok(e);
    };
    let mut e = Event::new(kind);
    e.subscription_id = Some(customer.id.clone());
    e.customer = customer;
    e.attr("tag", tag).attr("tags", tags.join(","));
    if let Some(prefix) = req.setting("plan_tag_prefix") {
        e.plan_key = tags.iter().find_map(|t| t.strip_prefix(prefix)).map(str::to_string);
    }
    if e.plan_key.is_none() {
        e.plan_key = req.setting("default_plan").map(str::to_string);
    }
    Ok(e)
}

fn app(kind: &str, body: &Body) -> Result<Event> {
    let subscriber = match body.opt_str("locationId")? {
        Some(l) => l,
        None => body.opt_str("companyId")?.ok_or_else(|| Error::MissingField("locationId".into()))?,
    };
    let mut e = Event::new(match kind {
        "INSTALL" => Kind::Subscribe,
        "UNINSTALL" => Kind::Cancel,
        _ => Kind::ChangePlan,
    });
    e.subscription_id = Some(subscriber.clone());
    e.customer =
        Customer { id: subscriber, name: body.opt_str("companyName")?.unwrap_or_default(), email: String::new() };
    e.plan_key = match kind {
        "INSTALL" => body.opt_str("planId")?,
        "PLAN_CHANGE" => Some(body.str("newPlanId")?),
        _ => None,
    };
    if let Some(app) = body.opt_str("appId")? {
        e.attr("app_id", app);
    }
    if let Some(company) = body.opt_str("companyId")? {
        e.attr("company_id", company);
    }
    if let Some(old) = body.opt_str("currentPlanId")? {
        e.attr("previous_plan", old);
    }
    Ok(e)
}

vmauto_plugin_sdk::export_source!(parse);

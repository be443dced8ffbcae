//! Host bindings of the plugin contract (`plugins/wit`), one module per world, and the
//! conversions between the contract's types and vmauto's.

/// The `billing-source` world.
pub mod source {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "billing-source",
    });
}

/// The `plan-mapper` world.
pub mod mapper {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plan-mapper",
    });
}

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Catalogue, PluginError, Rejection, SourceRequest};
use crate::event::{BillingEvent, Customer, EventKind, OrderChoices};

/// Most events one delivery may produce.
pub const MAX_EVENTS: usize = 100;
/// Longest identifier, name, plan key or attribute value a plugin may return, in bytes.
pub const MAX_TEXT: usize = 4096;
/// Most attributes on one event.
pub const MAX_ATTRIBUTES: usize = 64;

impl SourceRequest {
    pub(super) fn to_wit(&self) -> source::vmauto::plugin::types::Request {
        use source::vmauto::plugin::types::Pair;
        let pairs = |m: &[(String, String)]| -> Vec<Pair> {
            m.iter().map(|(k, v)| Pair { name: k.clone(), value: v.clone() }).collect()
        };
        source::vmauto::plugin::types::Request {
            source: self.source.clone(),
            path: self.path.clone(),
            headers: pairs(&self.headers),
            body: self.body.to_vec(),
            settings: self.settings.iter().map(|(k, v)| Pair { name: k.clone(), value: v.clone() }).collect(),
        }
    }
}

/// The contract's `plugin-error` of one binding (each version and world has its own type).
macro_rules! rejection_from {
    ($name:ident, $types:path) => {
        pub(super) fn $name(e: $types) -> Rejection {
            use $types as W;
            match e {
                W::Malformed(m) => Rejection::Malformed(m),
                W::MissingField(f) => Rejection::MissingField(f),
                W::WrongType(w) => Rejection::WrongType { field: w.field, expected: w.expected },
                W::BadSetting(m) => Rejection::BadSetting(m),
                W::Other(m) => Rejection::Other(m),
            }
        }
    };
}

rejection_from!(rejection_from_source, source::vmauto::plugin::types::PluginError);
rejection_from!(rejection_from_mapper, mapper::vmauto::plugin::types::PluginError);
rejection_from!(rejection_from_source_v1_0, super::v1_0::source::vmauto::plugin::types::PluginError);
rejection_from!(rejection_from_mapper_v1_0, super::v1_0::mapper::vmauto::plugin::types::PluginError);

fn text(plugin: &str, what: &str, s: String) -> Result<String, PluginError> {
    if s.len() > MAX_TEXT {
        return Err(PluginError::BadOutput {
            plugin: plugin.into(),
            reason: format!("{what} is {} bytes long (at most {MAX_TEXT})", s.len()),
        });
    }
    Ok(s)
}

fn opt_text(plugin: &str, what: &str, s: Option<String>) -> Result<Option<String>, PluginError> {
    s.map(|s| text(plugin, what, s)).transpose().map(|s| s.filter(|s| !s.is_empty()))
}

/// Checks and converts a source plugin's output.
pub(super) fn events_from_wit(
    plugin: &str,
    events: Vec<source::vmauto::plugin::types::Event>,
) -> Result<Vec<BillingEvent>, PluginError> {
    use source::vmauto::plugin::types::{EventKind as K, Instant};
    if events.len() > MAX_EVENTS {
        return Err(PluginError::BadOutput {
            plugin: plugin.into(),
            reason: format!("{} events from one delivery (at most {MAX_EVENTS})", events.len()),
        });
    }
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let bad = |reason: String| PluginError::BadOutput {
                plugin: plugin.into(),
                reason: format!("event {i}: {reason}"),
            };
            let occurred_at: Option<DateTime<Utc>> = match e.occurred_at {
                None => None,
                Some(Instant::UnixSeconds(s)) => Some(
                    DateTime::from_timestamp(s, 0).ok_or_else(|| bad(format!("occurred-at {s} is out of range")))?,
                ),
                Some(Instant::Rfc3339(s)) => Some(
                    DateTime::parse_from_rfc3339(&s)
                        .map_err(|err| bad(format!("occurred-at {s:?} is not RFC 3339: {err}")))?
                        .with_timezone(&Utc),
                ),
            };
            if e.attributes.len() > MAX_ATTRIBUTES {
                return Err(bad(format!("{} attributes (at most {MAX_ATTRIBUTES})", e.attributes.len())));
            }
            let mut attributes = BTreeMap::new();
            for p in e.attributes {
                let name = text(plugin, "an attribute name", p.name)?;
                attributes.insert(name, text(plugin, "an attribute value", p.value)?);
            }
            Ok(BillingEvent {
                kind: match e.kind {
                    K::Subscribe => EventKind::Subscribe,
                    K::Cancel => EventKind::Cancel,
                    K::Suspend => EventKind::Suspend,
                    K::Resume => EventKind::Resume,
                    K::ChangePlan => EventKind::ChangePlan,
                    K::Ignore => EventKind::Ignore,
                },
                source_event_id: opt_text(plugin, "source-event-id", e.source_event_id)?,
                occurred_at,
                subscription_id: opt_text(plugin, "subscription-id", e.subscription_id)?,
                customer: Customer {
                    id: text(plugin, "customer.id", e.customer.id)?,
                    name: text(plugin, "customer.name", e.customer.name)?,
                    email: text(plugin, "customer.email", e.customer.email)?,
                },
                plan_key: opt_text(plugin, "plan-key", e.plan_key)?,
                attributes,
                choices: OrderChoices {
                    image: opt_text(plugin, "image", e.image)?,
                    hostname: opt_text(plugin, "hostname", e.hostname)?,
                    location: opt_text(plugin, "location", e.location)?,
                },
            })
        })
        .collect()
}

/// The mapper's request: the event, the catalogue and the source's settings (contracts 1.0
/// and 1.1, which carry the catalogue with every request).
pub(super) fn mapping_request(
    source: &str,
    event: &BillingEvent,
    catalogue: &Catalogue,
    settings: &BTreeMap<String, String>,
) -> mapper::vmauto::plugin::types::MappingRequest {
    let (templates, mappings) = catalogue_to_wit(catalogue);
    mapper::vmauto::plugin::types::MappingRequest {
        source: source.into(),
        event: mapper_event(event),
        templates,
        mappings,
        settings: pairs(settings),
    }
}

/// Name/value pairs as the mapper's contract types.
pub(super) fn pairs(map: &BTreeMap<String, String>) -> Vec<mapper::vmauto::plugin::types::Pair> {
    map.iter().map(|(k, v)| mapper::vmauto::plugin::types::Pair { name: k.clone(), value: v.clone() }).collect()
}

/// An event as the mapper's contract type.
pub(super) fn mapper_event(event: &BillingEvent) -> mapper::vmauto::plugin::types::Event {
    use mapper::vmauto::plugin::types as t;
    t::Event {
        kind: match event.kind {
            EventKind::Subscribe => t::EventKind::Subscribe,
            EventKind::Cancel => t::EventKind::Cancel,
            EventKind::Suspend => t::EventKind::Suspend,
            EventKind::Resume => t::EventKind::Resume,
            EventKind::ChangePlan => t::EventKind::ChangePlan,
            EventKind::Ignore => t::EventKind::Ignore,
        },
        source_event_id: event.source_event_id.clone(),
        occurred_at: event.occurred_at.map(|t| t::Instant::Rfc3339(t.to_rfc3339())),
        subscription_id: event.subscription_id.clone(),
        customer: t::Customer {
            id: event.customer.id.clone(),
            name: event.customer.name.clone(),
            email: event.customer.email.clone(),
        },
        plan_key: event.plan_key.clone(),
        attributes: pairs(&event.attributes),
        image: event.choices.image.clone(),
        hostname: event.choices.hostname.clone(),
        location: event.choices.location.clone(),
    }
}

/// The catalogue as the mapper's contract types: its templates and its plan mappings.
pub(super) fn catalogue_to_wit(
    catalogue: &Catalogue,
) -> (Vec<mapper::vmauto::plugin::types::Template>, Vec<mapper::vmauto::plugin::types::PlanMapping>) {
    use mapper::vmauto::plugin::types as t;
    let templates = catalogue
        .templates
        .iter()
        .map(|tpl| t::Template {
            name: tpl.name.clone(),
            enabled: tpl.enabled,
            cores: tpl.cores,
            memory_mb: tpl.memory_mb,
            disk_gb: tpl.disk_gb,
            extra: pairs(&tpl.extra),
        })
        .collect();
    let mappings = catalogue
        .mappings
        .iter()
        .map(|m| t::PlanMapping {
            source: m.source.clone(),
            plan_key: m.plan_key.clone(),
            template: m.template.clone(),
        })
        .collect();
    (templates, mappings)
}

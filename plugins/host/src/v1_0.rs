//! Contract 1.0 (`plugins/wit-1.0`, frozen): components built for it keep loading. Their
//! requests are the current ones less what 1.0 did not have, and their events the current
//! ones with no order-time choices.

/// The `billing-source` world of 1.0.
pub mod source {
    wasmtime::component::bindgen!({
        path: "../wit-1.0",
        world: "billing-source",
    });
}

/// The `plan-mapper` world of 1.0.
pub mod mapper {
    wasmtime::component::bindgen!({
        path: "../wit-1.0",
        world: "plan-mapper",
    });
}

use super::SourceRequest;
use super::bindings::{mapper as now_mapper, source as now_source};

/// Converts between the same-shaped types of two bindings, field by field.
macro_rules! same_shape {
    (kind $from:path => $to:path, $v:expr) => {{
        use $from as F;
        use $to as T;
        match $v {
            F::Subscribe => T::Subscribe,
            F::Cancel => T::Cancel,
            F::Suspend => T::Suspend,
            F::Resume => T::Resume,
            F::ChangePlan => T::ChangePlan,
            F::Ignore => T::Ignore,
        }
    }};
    (instant $from:path => $to:path, $v:expr) => {{
        use $from as F;
        use $to as T;
        match $v {
            F::UnixSeconds(s) => T::UnixSeconds(s),
            F::Rfc3339(s) => T::Rfc3339(s),
        }
    }};
}

impl SourceRequest {
    pub(super) fn to_wit_v1_0(&self) -> source::vmauto::plugin::types::Request {
        use source::vmauto::plugin::types::{Pair, Request};
        let pairs = |m: &mut dyn Iterator<Item = (&String, &String)>| -> Vec<Pair> {
            m.map(|(k, v)| Pair { name: k.clone(), value: v.clone() }).collect()
        };
        Request {
            source: self.source.clone(),
            path: self.path.clone(),
            headers: pairs(&mut self.headers.iter().map(|(k, v)| (k, v))),
            body: self.body.to_vec(),
            settings: pairs(&mut self.settings.iter()),
        }
    }
}

/// A 1.0 plugin's events as current events, without choices.
pub(super) fn events_to_current(
    events: Vec<source::vmauto::plugin::types::Event>,
) -> Vec<now_source::vmauto::plugin::types::Event> {
    use now_source::vmauto::plugin::types as t;
    events
        .into_iter()
        .map(|e| t::Event {
            kind: same_shape!(kind source::vmauto::plugin::types::EventKind => t::EventKind, e.kind),
            source_event_id: e.source_event_id,
            occurred_at: e
                .occurred_at
                .map(|i| same_shape!(instant source::vmauto::plugin::types::Instant => t::Instant, i)),
            subscription_id: e.subscription_id,
            customer: t::Customer { id: e.customer.id, name: e.customer.name, email: e.customer.email },
            plan_key: e.plan_key,
            attributes: e.attributes.into_iter().map(|p| t::Pair { name: p.name, value: p.value }).collect(),
            image: None,
            hostname: None,
            location: None,
        })
        .collect()
}

/// A current mapping request as a 1.0 mapper reads it (the event's choices left out).
pub(super) fn mapping_request_to_v1_0(
    r: now_mapper::vmauto::plugin::types::MappingRequest,
) -> mapper::vmauto::plugin::types::MappingRequest {
    use mapper::vmauto::plugin::types as t;
    let pairs = |v: Vec<now_mapper::vmauto::plugin::types::Pair>| -> Vec<t::Pair> {
        v.into_iter().map(|p| t::Pair { name: p.name, value: p.value }).collect()
    };
    let e = r.event;
    t::MappingRequest {
        source: r.source,
        event: t::Event {
            kind: same_shape!(kind now_mapper::vmauto::plugin::types::EventKind => t::EventKind, e.kind),
            source_event_id: e.source_event_id,
            occurred_at: e
                .occurred_at
                .map(|i| same_shape!(instant now_mapper::vmauto::plugin::types::Instant => t::Instant, i)),
            subscription_id: e.subscription_id,
            customer: t::Customer { id: e.customer.id, name: e.customer.name, email: e.customer.email },
            plan_key: e.plan_key,
            attributes: pairs(e.attributes),
        },
        templates: r
            .templates
            .into_iter()
            .map(|x| t::Template {
                name: x.name,
                enabled: x.enabled,
                cores: x.cores,
                memory_mb: x.memory_mb,
                disk_gb: x.disk_gb,
                extra: pairs(x.extra),
            })
            .collect(),
        mappings: r
            .mappings
            .into_iter()
            .map(|m| t::PlanMapping { source: m.source, plan_key: m.plan_key, template: m.template })
            .collect(),
        settings: pairs(r.settings),
    }
}

/// A 1.0 mapper's answer as a current one.
pub(super) fn choice_to_current(c: mapper::vmauto::plugin::types::Choice) -> now_mapper::vmauto::plugin::types::Choice {
    use mapper::vmauto::plugin::types::Choice as F;
    use now_mapper::vmauto::plugin::types::Choice as T;
    match c {
        F::Template(name) => T::Template(name),
        F::None(reason) => T::None(reason),
    }
}

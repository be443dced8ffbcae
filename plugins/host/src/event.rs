//! The normalized billing event every billing-source plugin produces.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a billing event asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    Subscribe,
    Cancel,
    Suspend,
    Resume,
    ChangePlan,
    /// Understood, but nothing to do (recorded as ignored).
    Ignore,
}

/// The customer a billing event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// The billing system's customer (contact) id.
    pub id: String,
    pub name: String,
    pub email: String,
}

/// One billing event, as every source plugin produces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingEvent {
    pub kind: EventKind,
    /// The sender's id for this event (dedupe key), when it has one.
    pub source_event_id: Option<String>,
    /// When the billing system says it happened (orders events of one subscription).
    pub occurred_at: Option<DateTime<Utc>>,
    pub subscription_id: Option<String>,
    pub customer: Customer,
    pub plan_key: Option<String>,
    /// Free-form extras the plugin found worth keeping (order id, invoice id, reason, …).
    pub attributes: BTreeMap<String, String>,
    /// What the customer chose at checkout (contract 1.1; empty from 1.0 plugins).
    #[serde(default, skip_serializing_if = "OrderChoices::is_empty")]
    pub choices: OrderChoices,
}

/// What the customer chose at checkout, each `None` when not chosen. The host checks them
/// against the template the plan maps to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderChoices {
    /// An image alias the template allows (`ubuntu-22.04`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// A location name the template places into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl OrderChoices {
    pub fn is_empty(&self) -> bool {
        self.image.is_none() && self.hostname.is_none() && self.location.is_none()
    }
}

impl BillingEvent {
    /// Why an `ignore` event changes nothing: the plugin's `reason` attribute, or a generic
    /// sentence when it gave none.
    pub fn ignore_reason(&self) -> String {
        match self.attributes.get("reason").filter(|r| !r.is_empty()) {
            Some(reason) => format!("ignored by the source: {reason}"),
            None => "the source marked this event as nothing to do".to_string(),
        }
    }
}

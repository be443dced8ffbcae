//! `[stripe]` and `[[stripe.offers]]`: paid upgrades.

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripeConfig {
    pub enabled: bool,
    pub api_base: String,
    pub secret_key: Secret,
    /// Webhook signing secrets (`whsec_…`); several during rotation.
    pub webhook_secrets: Vec<Secret>,
    /// Seconds a signed event may be old.
    pub tolerance_secs: u64,
    pub currency: String,
    /// Hours an upgrade link stays valid.
    pub link_ttl_hours: u64,
    /// Put an upgrade link in the customer's "your VPS is ready" email (needs `enabled`).
    pub link_in_ready_email: bool,
    /// What a customer pays (minor units, in `currency`) to restore a VPS suspended because
    /// its subscription lapsed, from the portal page; 0: not offered.
    pub restore_price: u64,
    /// Upgrade offers written to the store at start-up (an offer edited in the UI since is
    /// left as edited); `[[stripe.offers]]` tables.
    pub offers: Vec<OfferConfig>,
}

/// An upgrade offer as declared in `appliance.toml`: either a move to another template
/// (`to_template`) or a delta (`add_cores`, `add_memory_gb`, `add_disk_gb`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfferConfig {
    /// Stable identifier (letters, digits, `-`, `_`).
    pub id: String,
    /// What the customer sees ("Double the memory").
    pub name: String,
    /// Offered only to VPS of this template; empty: to every VPS.
    pub from_template: String,
    /// The template the VPS grows to; empty for a delta offer.
    pub to_template: String,
    pub add_cores: u32,
    pub add_memory_gb: u64,
    pub add_disk_gb: u64,
    /// Price in minor units (cents).
    pub price: u64,
    /// ISO currency, lower case; empty: `stripe.currency`.
    pub currency: String,
}

impl Default for StripeConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            api_base: "https://api.stripe.com".into(),
            secret_key: Secret::default(),
            webhook_secrets: Vec::new(),
            tolerance_secs: 300,
            currency: "usd".into(),
            link_ttl_hours: 72,
            link_in_ready_email: false,
            restore_price: 0,
            offers: Vec::new(),
        }
    }
}

impl OfferConfig {
    /// Checks one offer; the error starts with the field (`.price: …`) or `: …`.
    pub fn check(&self) -> Result<(), String> {
        if self.id.is_empty()
            || self.id.len() > 64
            || !self.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(".id: {:?} must be 1 to 64 letters, digits, '-' or '_'", self.id));
        }
        if self.name.trim().is_empty() {
            return Err(".name: required (what the customer sees)".into());
        }
        let delta = self.add_cores > 0 || self.add_memory_gb > 0 || self.add_disk_gb > 0;
        if self.to_template.is_empty() != delta {
            return Err(": set either to_template or at least one of add_cores, add_memory_gb, add_disk_gb".into());
        }
        if self.price == 0 {
            return Err(".price: must be at least 1 (minor units, e.g. cents)".into());
        }
        if !self.currency.is_empty() && !is_currency(&self.currency) {
            return Err(format!(".currency: {:?} must be a lower-case ISO code such as \"usd\"", self.currency));
        }
        Ok(())
    }
}

/// A lower-case three-letter currency code.
pub fn is_currency(s: &str) -> bool {
    s.len() == 3 && s.chars().all(|c| c.is_ascii_lowercase())
}

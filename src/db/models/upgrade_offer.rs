//! The `upgrade_offer` table: the upgrades customers can buy (record id = offer id), seeded
//! from `[[stripe.offers]]` and edited by admins. What an offer makes of a VPS, and whether
//! it fits, is decided in `upgrade::offers`.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::template::TemplateName;
use super::vps::VpsId;
use crate::db::Store;

id_type!(
    /// The key of an `upgrade_offer` row: the offer id of `[[stripe.offers]]`.
    OfferId
);

/// A stored offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub id: OfferId,
    pub name: String,
    /// Empty: any template.
    #[serde(default)]
    pub from_template: TemplateName,
    /// Empty: the offer adds to the spec instead.
    #[serde(default)]
    pub to_template: TemplateName,
    #[serde(default)]
    pub add_cores: u32,
    #[serde(default)]
    pub add_memory_gb: u64,
    #[serde(default)]
    pub add_disk_gb: u64,
    /// Minor units (cents).
    pub price: u64,
    pub currency: String,
    #[serde(default)]
    pub enabled: bool,
}

/// The terms of an offer as written: everything but its id, `enabled` and its origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfferTerms<'a> {
    pub name: &'a str,
    pub from_template: &'a str,
    pub to_template: &'a str,
    pub add_cores: u32,
    pub add_memory_gb: u64,
    pub add_disk_gb: u64,
    /// Minor units (cents).
    pub price: u64,
    pub currency: &'a str,
}

const OFFER_FIELDS: &str = "record::id(id) AS id, name, from_template, to_template, add_cores, add_memory_gb, \
    add_disk_gb, price, currency, enabled";

impl Store {
    /// Every offer, enabled or not, by id.
    pub async fn upgrade_offers(&self) -> anyhow::Result<Vec<Offer>> {
        self.query_one(&format!("SELECT {OFFER_FIELDS} FROM upgrade_offer ORDER BY id"), json!({}), 0).await
    }

    /// One offer.
    pub async fn upgrade_offer(&self, id: &OfferId) -> anyhow::Result<Option<Offer>> {
        self.query_first::<Offer>(
            &format!("SELECT {OFFER_FIELDS} FROM type::record('upgrade_offer', $id)"),
            json!({ "id": id }),
            0,
        )
        .await
    }

    /// Creates an enabled offer with these terms; `origin` says who wrote it (`appliance.toml`,
    /// `admin:<user>`…). Fails when the id is taken.
    pub async fn create_upgrade_offer(&self, id: &OfferId, terms: &OfferTerms<'_>, origin: &str) -> anyhow::Result<()> {
        let mut row = serde_json::to_value(terms)?;
        row["enabled"] = json!(true);
        row["origin"] = json!(origin);
        self.execute(
            "CREATE type::record('upgrade_offer', $id) CONTENT object::extend($row, { created_at: time::now(), updated_at: time::now() })",
            json!({ "id": id, "row": row }),
        )
        .await
    }

    /// Replaces an offer's terms; `enabled` and the origin are kept.
    pub async fn update_upgrade_offer(&self, id: &OfferId, terms: &OfferTerms<'_>) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('upgrade_offer', $id) MERGE $row; UPDATE type::record('upgrade_offer', $id) SET updated_at = time::now();",
            json!({ "id": id, "row": terms }),
        )
        .await
    }

    /// Stops selling an offer (`enabled = false`) or sells it again.
    pub async fn set_upgrade_offer_enabled(&self, id: &OfferId, enabled: bool) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('upgrade_offer', $id) SET enabled = $enabled, updated_at = time::now()",
            json!({ "id": id, "enabled": enabled }),
        )
        .await
    }
}

// Reads of the `vps` table that offers need; kept here, with the offers they serve.
impl Store {
    /// The AZ of the template stored with a VPS (`template_row.az_id`), whose free capacity
    /// decides which offers it can buy; `None` when the VPS or the field is missing.
    pub async fn upgrade_vps_az(&self, vps_id: &VpsId) -> anyhow::Result<Option<String>> {
        let zones: Vec<Option<String>> = self
            .query_one("SELECT VALUE template_row.az_id FROM type::record('vps', $id)", json!({ "id": vps_id }), 0)
            .await?;
        Ok(zones.into_iter().next().flatten())
    }
}

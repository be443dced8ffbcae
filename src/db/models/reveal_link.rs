//! The `reveal_link` table: one-time links that show a VPS's root password once, keyed by the
//! SHA-256 of the token (the token itself is never stored), with the VPS, the expiry and
//! whether the link was used.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::vps::VpsId;
use crate::db::Store;

id_type!(
    /// The key of a `reveal_link` row: the SHA-256 of the token, hex.
    RevealLinkId
);

/// A reveal link as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealLink {
    pub vps: VpsId,
    pub used: bool,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Stores a new, unused link under `hash` for VPS `vps`, valid until `expires_at`.
    pub async fn create_reveal_link(
        &self,
        hash: &RevealLinkId,
        vps: &VpsId,
        expires_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.execute(
            "CREATE type::record('reveal_link', $id) CONTENT {
                vps: $vps, used: false, expires_at: <datetime>$expires_at, created_at: time::now()
            }",
            json!({ "id": hash, "vps": vps, "expires_at": expires_at.to_rfc3339() }),
        )
        .await
    }

    /// The link stored under `hash`, if any.
    pub async fn reveal_link(&self, hash: &RevealLinkId) -> anyhow::Result<Option<RevealLink>> {
        self.query_first::<RevealLink>(
            "SELECT vps, used, expires_at FROM type::record('reveal_link', $id)",
            json!({ "id": hash }),
            0,
        )
        .await
    }

    /// Marks the link under `hash` used, in the statement that checks it is still unused and
    /// unexpired: true when this call spent it (of two racing calls, only one does).
    pub async fn spend_reveal_link(&self, hash: &RevealLinkId) -> anyhow::Result<bool> {
        let claimed: Vec<Value> = self
            .query_one(
                "UPDATE type::record('reveal_link', $id) SET used = true, used_at = time::now()
                    WHERE used = false AND expires_at > time::now() RETURN BEFORE",
                json!({ "id": hash }),
                0,
            )
            .await?;
        Ok(!claimed.is_empty())
    }
}

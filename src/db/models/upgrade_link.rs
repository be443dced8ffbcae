//! The `upgrade_link` table: one row per upgrade link, its record id the SHA-256 of the
//! token's random part (the token itself is never stored). Signing, parsing and what a link
//! opens are decided in `upgrade::links`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::payment::PaymentId;
use super::vps::VpsId;
use crate::db::Store;

id_type!(
    /// The key of an `upgrade_link` row: the SHA-256 of the token's random part, hex.
    LinkId
);

/// A stored link.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Link {
    pub id: LinkId,
    pub vps: VpsId,
    #[serde(default)]
    pub issued_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub revoked_by: Option<String>,
    #[serde(default)]
    pub used_at: Option<DateTime<Utc>>,
    /// The Checkout Session whose payment used the link up.
    #[serde(default)]
    pub used_session: Option<PaymentId>,
}

const LINK_FIELDS: &str = "record::id(id) AS id, vps, issued_by, created_at, expires_at, revoked_at, revoked_by, \
    used_at, used_session";

impl Store {
    /// Writes a new link `id` for `vps_id`, issued by `issued_by` and valid until `expires_at`.
    pub async fn create_upgrade_link(
        &self,
        id: &LinkId,
        vps_id: &VpsId,
        issued_by: &str,
        expires_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.execute(
            "CREATE type::record('upgrade_link', $id) CONTENT {
                vps: $vps, issued_by: $by, created_at: time::now(), expires_at: <datetime>$expires_at
             }",
            json!({ "id": id, "vps": vps_id, "by": issued_by, "expires_at": expires_at.to_rfc3339() }),
        )
        .await
    }

    /// Marks a link revoked by `revoked_by`, unless it was revoked before (the first
    /// revocation's time and author are kept).
    pub async fn revoke_upgrade_link(&self, link_id: &LinkId, revoked_by: &str) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('upgrade_link', $id) SET revoked_at = time::now(), revoked_by = $by WHERE !revoked_at",
            json!({ "id": link_id, "by": revoked_by }),
        )
        .await
    }

    /// A link by its record id.
    pub async fn upgrade_link(&self, link_id: &LinkId) -> anyhow::Result<Option<Link>> {
        self.query_first::<Link>(
            &format!("SELECT {LINK_FIELDS} FROM type::record('upgrade_link', $id)"),
            json!({ "id": link_id }),
            0,
        )
        .await
    }

    /// The links of a VPS, newest first (for the admin UI).
    pub async fn upgrade_links_of_vps(&self, vps_id: &VpsId) -> anyhow::Result<Vec<Link>> {
        self.query_one(
            &format!("SELECT {LINK_FIELDS} FROM upgrade_link WHERE vps = $vps ORDER BY created_at DESC"),
            json!({ "vps": vps_id }),
            0,
        )
        .await
    }

    /// Marks the link used by `session` unless another session used it first. Answers whether
    /// `session` is (now) the one that used it.
    pub async fn claim_upgrade_link(&self, link_id: &LinkId, session: &PaymentId) -> anyhow::Result<bool> {
        let rows: Vec<Option<PaymentId>> = self
            .query_one(
                "UPDATE type::record('upgrade_link', $id) SET used_session = $claim, used_at = time::now()
                    WHERE !used_session;
                 SELECT VALUE used_session FROM type::record('upgrade_link', $id);",
                json!({ "id": link_id, "claim": session }),
                1,
            )
            .await?;
        Ok(rows.into_iter().next().flatten().as_ref() == Some(session))
    }
}

// Reads of the `vps` table that the upgrade pages of a link need; kept here, with the links
// they serve.
impl Store {
    /// The name of a link's VPS as its customer knows it; `None` when the VPS or its name is
    /// missing.
    pub async fn upgrade_link_vps_name(&self, vps_id: &VpsId) -> anyhow::Result<Option<String>> {
        let names: Vec<Option<String>> =
            self.query_one("SELECT VALUE name FROM type::record('vps', $id)", json!({ "id": vps_id }), 0).await?;
        Ok(names.into_iter().next().flatten())
    }
}

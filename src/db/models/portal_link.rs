//! The `portal_link` table: one row per customer portal link, its record id the SHA-256 of
//! the token's random part (the token itself is never stored). Signing, parsing and what a
//! link opens are decided in `portal`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::operation::{OpKind, OpState, OperationId};
use super::subscription::SubscriptionId;
use super::template::TemplateName;
use super::vps::{PowerState, Spec, VpsId, VpsState};
use crate::db::Store;

id_type!(
    /// The key of a `portal_link` row: the SHA-256 of the token's random part, hex. Not a
    /// secret: it names the link in the admin UI and in `requested_by = customer:<id>`.
    PortalLinkId
);

/// A stored portal link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortalLink {
    pub id: PortalLinkId,
    pub vps: VpsId,
    #[serde(default)]
    pub issued_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub revoked_by: Option<String>,
    /// When the link was last opened.
    #[serde(default)]
    pub seen_at: Option<DateTime<Utc>>,
}

impl PortalLink {
    /// `active`, `revoked` or `expired` at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= now {
            "expired"
        } else {
            "active"
        }
    }
}

const FIELDS: &str = "record::id(id) AS id, vps, issued_by, created_at, expires_at, revoked_at, revoked_by, seen_at";

impl Store {
    /// Writes a new portal link `id` for `vps_id`, valid until `expires_at`.
    pub async fn create_portal_link(
        &self,
        id: &PortalLinkId,
        vps_id: &VpsId,
        issued_by: &str,
        expires_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.execute(
            "CREATE type::record('portal_link', $id) CONTENT {
                vps: $vps, issued_by: $by, created_at: time::now(), expires_at: <datetime>$expires_at
             }",
            json!({ "id": id, "vps": vps_id, "by": issued_by, "expires_at": expires_at.to_rfc3339() }),
        )
        .await
    }

    /// Marks a link revoked, unless it was before (the first revocation is kept).
    pub async fn revoke_portal_link(&self, id: &PortalLinkId, revoked_by: &str) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('portal_link', $id) SET revoked_at = time::now(), revoked_by = $by WHERE !revoked_at",
            json!({ "id": id, "by": revoked_by }),
        )
        .await
    }

    /// Moves a link's expiry (a renewal); a revoked link stays revoked.
    pub async fn renew_portal_link(&self, id: &PortalLinkId, expires_at: DateTime<Utc>) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('portal_link', $id) SET expires_at = <datetime>$at WHERE !revoked_at",
            json!({ "id": id, "at": expires_at.to_rfc3339() }),
        )
        .await
    }

    /// Notes that a link was opened now (at most once a minute is worth a write).
    pub async fn touch_portal_link(&self, id: &PortalLinkId) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('portal_link', $id) SET seen_at = time::now()
                WHERE !seen_at OR seen_at < time::now() - 1m",
            json!({ "id": id }),
        )
        .await
    }

    pub async fn portal_link(&self, id: &PortalLinkId) -> anyhow::Result<Option<PortalLink>> {
        self.query_first::<PortalLink>(
            &format!("SELECT {FIELDS} FROM type::record('portal_link', $id)"),
            json!({ "id": id }),
            0,
        )
        .await
    }

    /// The links of a VPS, newest first.
    pub async fn portal_links_of_vps(&self, vps_id: &VpsId) -> anyhow::Result<Vec<PortalLink>> {
        self.query_one(
            &format!("SELECT {FIELDS} FROM portal_link WHERE vps = $vps ORDER BY created_at DESC"),
            json!({ "vps": vps_id }),
            0,
        )
        .await
    }
}

/// What the customer's page shows of their VPS: no admin field (no customer record, no
/// subscription, no SCP ids, no template internals).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortalVps {
    pub id: VpsId,
    #[serde(default)]
    pub name: String,
    pub state: VpsState,
    #[serde(default)]
    pub ips: Vec<String>,
    pub spec: Spec,
    /// The plan's template, by name.
    #[serde(default)]
    pub template: TemplateName,
    /// The image the VM runs.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Images a reinstall may choose: the template's own first, then its allowed ones and
    /// those orders may choose.
    #[serde(default, deserialize_with = "present_strings")]
    pub images: Vec<String>,
    /// The template as stored with the VPS (read for `images`; never shown).
    #[serde(default, deserialize_with = "super::lenient", skip_serializing)]
    pub template_row: Option<crate::db::models::template::Template>,
    #[serde(default)]
    pub power: Option<PowerState>,
    #[serde(default)]
    pub delete_after: Option<DateTime<Utc>>,
    /// Whether a VM exists for it (power, console and graphs need one).
    #[serde(default)]
    pub has_vm: bool,
    #[serde(default)]
    pub subscription: Option<SubscriptionId>,
}

/// An operation as the customer's page shows it: what and where it is, never who asked or
/// SCP's error text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortalOperation {
    pub id: OperationId,
    pub kind: OpKind,
    pub state: OpState,
    #[serde(default)]
    pub params: Value,
    /// Asked for through this link.
    #[serde(default)]
    pub mine: bool,
    /// Waits for a later time and has not started (a deletion after the grace period).
    #[serde(default)]
    pub scheduled: bool,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
}

/// A list of strings, leaving out nulls (a VPS without a template row has no image).
fn present_strings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let items: Option<Vec<Option<String>>> = Deserialize::deserialize(d)?;
    Ok(items.unwrap_or_default().into_iter().flatten().filter(|s| !s.is_empty()).collect())
}

impl Store {
    pub async fn portal_vps(&self, id: &VpsId) -> anyhow::Result<Option<PortalVps>> {
        self.query_first::<PortalVps>(
            "SELECT record::id(id) AS id, name, state, ips OR [] AS ips, spec, template,
                image_id OR template_row.image_id AS image_id,
                template_row, power, delete_after, server_id != NONE AS has_vm, subscription
             FROM type::record('vps', $id)",
            json!({ "id": id }),
            0,
        )
        .await
        .map(|v| {
            v.map(|mut v| {
                v.images = v.template_row.as_ref().map(|t| t.rebuild_images()).unwrap_or_default();
                v.images.retain(|i| !i.is_empty());
                v
            })
        })
    }

    /// The VPS's latest operations, newest first; `mine` marks those `who` asked for.
    pub async fn portal_operations(&self, id: &VpsId, who: &str, limit: usize) -> anyhow::Result<Vec<PortalOperation>> {
        self.query_one(
            "SELECT record::id(id) AS id, kind, state, params, requested_by = $who AS mine, created_at, finished_at,
                state = 'queued' AND attempts = 0 AND next_attempt_at > time::now() AS scheduled
             FROM operation WHERE vps = $vps ORDER BY created_at DESC LIMIT $limit",
            json!({ "vps": id, "who": who, "limit": limit }),
            0,
        )
        .await
    }

    /// A root-password change `who` asked for that finished and was not shown yet.
    pub async fn password_to_show(&self, id: &VpsId, who: &str) -> anyhow::Result<Option<OperationId>> {
        self.query_first::<OperationId>(
            "SELECT VALUE record::id(id) FROM operation WHERE vps = $vps AND kind = 'set_password'
                AND requested_by = $who AND state = 'succeeded' AND !params.shown_at
             ORDER BY created_at DESC LIMIT 1",
            json!({ "vps": id, "who": who }),
            0,
        )
        .await
    }

    /// Marks a password change shown, in the statement that checks it was not: true when this
    /// call is the one that may show it (of two racing calls, only one is).
    pub async fn claim_password_shown(&self, op: &OperationId) -> anyhow::Result<bool> {
        let before: Vec<Value> = self
            .query_one(
                "UPDATE type::record('operation', $id) SET params.shown_at = time::now()
                    WHERE !params.shown_at RETURN BEFORE",
                json!({ "id": op }),
                0,
            )
            .await?;
        Ok(!before.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_wins_over_expired() {
        let now = Utc::now();
        let mut l = PortalLink {
            id: "l".into(),
            vps: "v".into(),
            issued_by: "t".into(),
            created_at: now,
            expires_at: now + chrono::Duration::hours(1),
            revoked_at: None,
            revoked_by: None,
            seen_at: None,
        };
        assert_eq!(l.state(now), "active");
        assert_eq!(l.state(now + chrono::Duration::hours(2)), "expired");
        l.revoked_at = Some(now);
        assert_eq!(l.state(now), "revoked");
    }
}

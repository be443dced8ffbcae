//! The `notification` table: what admins were told, for the notifications page and the live
//! stream; and the VPS fields customer notices (ready, upgraded, reveal links) need.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Page;
use super::vps::{Spec, VpsId};
use crate::db::Store;
use crate::notice::{NotifyKind, Severity};

id_type!(
    /// The key of a `notification` row.
    NotificationId
);

/// A notification as the notifications page and the API list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRow {
    pub id: NotificationId,
    pub at: String,
    pub kind: NotifyKind,
    pub severity: Severity,
    pub title: String,
    pub body: String,
    /// The record it is about (`vps:…`, `operation:…`), when there is one.
    pub subject: Option<String>,
}

/// A new notification as the live stream sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationChange {
    pub id: NotificationId,
    pub at: String,
    pub severity: Severity,
    pub title: String,
    pub subject: Option<String>,
}

/// What the notifications page and the live stream read.
impl Store {
    /// Recent notifications, newest first.
    pub async fn recent_notifications(&self, limit: u64) -> anyhow::Result<Vec<NotificationRow>> {
        self
            .query_one(
                "SELECT record::id(id) AS id, <string>created_at AS at, kind, severity, title, body, subject FROM notification
                 ORDER BY created_at DESC LIMIT $limit",
                json!({ "limit": limit }),
                0,
            )
            .await
    }

    /// Notifications after `since`.
    pub async fn notifications_since(&self, since: DateTime<Utc>) -> anyhow::Result<Vec<NotificationChange>> {
        self.query_one(NOTIFICATIONS_SINCE, json!({ "since": since.to_rfc3339() }), 1).await
    }
}

/// Notifications after `$since`, oldest first; the bound cast before the `SELECT` so that it
/// reads a range of `notification_time` (as [`crate::db::models::vps::VPS_CHANGES`]).
pub(crate) const NOTIFICATIONS_SINCE: &str = "LET $since_at = <datetime>$since;
    SELECT record::id(id) AS id, <string>created_at AS at, severity, title, subject FROM notification
    WHERE created_at > $since_at ORDER BY created_at LIMIT 50";

/// Filters of the notification list (all optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NotificationQuery {
    /// `info`, `warning` or `critical`; empty for all.
    #[serde(default)]
    pub severity: String,
    /// A notification kind (`operation_dead`, `event_parked`, …); empty for all.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub page: u64,
}

impl Store {
    /// One page of notifications, newest first.
    pub async fn notifications_page(&self, query: &NotificationQuery) -> anyhow::Result<Page<NotificationRow>> {
        let mut conds = Vec::new();
        if !query.severity.trim().is_empty() {
            conds.push("severity = $severity");
        }
        if !query.kind.trim().is_empty() {
            conds.push("kind = $kind");
        }
        let clause = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
        let b = json!({ "severity": query.severity.trim(), "kind": query.kind.trim() });
        let fields = "record::id(id) AS id, <string>created_at AS at, kind, severity, title, body, subject";
        super::page_of(self, "notification", fields, &clause, b, "at DESC", query.page).await
    }
}

/// The VPS fields the customer's "your VPS is ready" email needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpsContact {
    /// The billing source that ordered the VPS.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub customer_email: Option<String>,
    #[serde(default)]
    pub customer_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub ips: Vec<String>,
}

/// The VPS fields the customer's warnings need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarnedVps {
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub customer_email: Option<String>,
    #[serde(default)]
    pub customer_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub delete_after: Option<chrono::DateTime<chrono::Utc>>,
}

/// The VPS fields the customer's "your upgrade is applied" email needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradedVps {
    #[serde(default)]
    pub customer_email: Option<String>,
    #[serde(default)]
    pub customer_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub spec: Spec,
}

/// What a reveal link shows of its VPS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealedVps {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub ips: Vec<String>,
    /// Sealed (see `secrets::root_password_place`).
    #[serde(default)]
    pub root_password: Option<String>,
}

// VPS rows as notifications need them.
impl Store {
    /// The contact fields of VPS `vps` (the key, without `vps:`), if it exists.
    pub async fn warned_vps(&self, vps: &VpsId) -> anyhow::Result<Option<WarnedVps>> {
        self.query_first::<WarnedVps>(
            "SELECT source, customer_email, customer_name, name, delete_after FROM type::record('vps', $id)",
            json!({ "id": vps }),
            0,
        )
        .await
    }

    /// Claims the VPSs whose scheduled deletion is within `hours` and whose customer was not
    /// reminded of that deletion yet: marked in the same statement (`delete_reminded_for` =
    /// the deletion time), so each scheduled deletion is reminded once, and a later one again.
    pub async fn claim_deletion_reminders(&self, hours: u32) -> anyhow::Result<Vec<VpsId>> {
        self.query_one(
            "UPDATE vps SET delete_reminded_for = delete_after
                WHERE delete_after != NONE AND delete_after > time::now()
                  AND delete_after <= time::now() + type::duration($within)
                  AND state IN ['suspending', 'suspended'] AND delete_reminded_for != delete_after
             RETURN VALUE record::id(id)",
            json!({ "within": format!("{hours}h") }),
            0,
        )
        .await
    }

    pub async fn vps_contact(&self, vps: &VpsId) -> anyhow::Result<Option<VpsContact>> {
        self.query_first::<VpsContact>(
            "SELECT source, customer_email, customer_name, name, ips FROM type::record('vps', $id)",
            json!({ "id": vps }),
            0,
        )
        .await
    }

    /// The contact fields and hardware of upgraded VPS `vps`, if it exists.
    pub async fn upgraded_vps(&self, vps: &VpsId) -> anyhow::Result<Option<UpgradedVps>> {
        self.query_first::<UpgradedVps>(
            "SELECT customer_email, customer_name, name, spec FROM type::record('vps', $id)",
            json!({ "id": vps }),
            0,
        )
        .await
    }

    /// The name of VPS `vps` for the reveal page: None when the VPS or its name is missing.
    pub async fn reveal_vps_name(&self, vps: &VpsId) -> anyhow::Result<Option<String>> {
        let names: Vec<Option<String>> =
            self.query_one("SELECT VALUE name FROM type::record('vps', $id)", json!({ "id": vps }), 0).await?;
        Ok(names.into_iter().next().flatten())
    }

    /// The name, addresses and sealed root password of VPS `vps`, if it exists.
    pub async fn revealed_vps(&self, vps: &VpsId) -> anyhow::Result<Option<RevealedVps>> {
        self.query_first::<RevealedVps>(
            "SELECT name, ips, root_password FROM type::record('vps', $id)",
            json!({ "id": vps }),
            0,
        )
        .await
    }
}

impl Store {
    /// Stores a notice for the notifications page (unread).
    pub async fn record_notification(&self, n: &crate::notice::Notify) -> anyhow::Result<()> {
        self.execute(
            "CREATE notification CONTENT {
                kind: $kind, severity: $severity, title: $title, body: $body, subject: $subject, read: false,
                created_at: time::now()
             }",
            json!({ "kind": n.kind, "severity": n.severity, "title": n.title, "body": n.body, "subject": n.subject }),
        )
        .await
    }
}

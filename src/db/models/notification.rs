//! The `notification` table.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::db::Store;
use serde::{Deserialize, Serialize};

use super::Page;

/// What the notifications page and the live stream read.
impl Store {
    /// Recent notifications, newest first.
    pub async fn recent_notifications(&self, limit: u64) -> anyhow::Result<Vec<Value>> {
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
    pub async fn notifications_since(&self, since: DateTime<Utc>) -> anyhow::Result<Vec<Value>> {
        self.query_one(
            "SELECT record::id(id) AS id, <string>created_at AS at, severity, title, subject FROM notification
                 WHERE created_at > <datetime>$since ORDER BY created_at LIMIT 50",
            json!({ "since": since.to_rfc3339() }),
            0,
        )
        .await
    }
}

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
    pub async fn notifications_page(&self, query: &NotificationQuery) -> anyhow::Result<Page<Value>> {
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

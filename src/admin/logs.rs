//! The activity log, the webhook inbox, notifications, and the changes live pages follow.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::db::Store;
use crate::lifecycle::Level;

use super::*;

/// Filters of the activity log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActivityQuery {
    /// `info`, `warning`, `error`, `critical` or empty for all (`warn` is read as `warning`).
    #[serde(default)]
    pub level: String,
    /// Text in the message or the actor.
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub page: u64,
}

pub async fn activity(store: &Store, query: &ActivityQuery) -> anyhow::Result<Page<Value>> {
    let mut conds = Vec::new();
    let level = match query.level.trim() {
        "" => None,
        l => Some(
            Level::parse(l)
                .ok_or_else(|| anyhow::anyhow!("unknown activity level {l:?}: use info, warning, error or critical"))?,
        ),
    };
    if level.is_some() {
        conds.push("level = $level");
    }
    let q = query.q.trim().to_lowercase();
    if !q.is_empty() {
        conds.push(
            "(string::contains(string::lowercase(message), $q) OR string::contains(string::lowercase(actor), $q))",
        );
    }
    let clause = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    let b = json!({ "level": level.map(Level::as_str), "q": q });
    let fields = "<string>at AS at, level, actor, subject, message, data";
    page_of(store, "activity", fields, &clause, b, "at DESC", query.page).await
}

/// The webhook inbox, newest first; `status` filters.
pub async fn inbox(store: &Store, status: &str, page: u64) -> anyhow::Result<Page<Value>> {
    let clause = if status.is_empty() { "" } else { "WHERE status = $status" };
    let fields = "record::id(id) AS id, source, status, <string>received_at AS received_at, signature, outcomes, error";
    page_of(store, "webhook_event", fields, clause, json!({ "status": status }), "received_at DESC", page).await
}

/// One inbox row with its headers and body.
pub async fn inbox_event(store: &Store, id: &str) -> anyhow::Result<Option<Value>> {
    let rows: Vec<Value> = store
        .query_one(
            "SELECT *, record::id(id) AS id, <string>received_at AS received_at FROM type::record('webhook_event', $id)",
            json!({ "id": id }),
            0,
        )
        .await?;
    Ok(rows.into_iter().next())
}

/// Removes what only admins may read from an inbox row: the request's headers and body (a
/// sender may put secrets there that vmauto does not know to redact).
pub fn hide_raw_request(ev: &mut Value) {
    if let Some(o) = ev.as_object_mut() {
        o.remove("headers");
        o.remove("body");
        o.insert("raw_hidden".into(), json!(true));
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

/// One page of notifications, newest first.
pub async fn notifications_page(store: &Store, query: &NotificationQuery) -> anyhow::Result<Page<Value>> {
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
    page_of(store, "notification", fields, &clause, b, "at DESC", query.page).await
}

/// Recent notifications, newest first.
pub async fn notifications(store: &Store, limit: u64) -> anyhow::Result<Vec<Value>> {
    store
        .query_one(
            "SELECT record::id(id) AS id, <string>created_at AS at, kind, severity, title, body, subject FROM notification
             ORDER BY created_at DESC LIMIT $limit",
            json!({ "limit": limit }),
            0,
        )
        .await
}

/// VPS rows changed after `since` (the live-update stream).
pub async fn vps_changes(store: &Store, since: DateTime<Utc>) -> anyhow::Result<Vec<Value>> {
    store
        .query_one(
            "SELECT record::id(id) AS id, state, ips, <string>updated_at AS updated_at FROM vps
             WHERE updated_at > <datetime>$since ORDER BY updated_at LIMIT 500",
            json!({ "since": since.to_rfc3339() }),
            0,
        )
        .await
}

/// Notifications after `since`.
pub async fn notifications_since(store: &Store, since: DateTime<Utc>) -> anyhow::Result<Vec<Value>> {
    store
        .query_one(
            "SELECT record::id(id) AS id, <string>created_at AS at, severity, title, subject FROM notification
             WHERE created_at > <datetime>$since ORDER BY created_at LIMIT 50",
            json!({ "since": since.to_rfc3339() }),
            0,
        )
        .await
}

/// Operations changed after `since` (the live-update stream).
pub async fn operation_changes(store: &Store, since: DateTime<Utc>) -> anyhow::Result<Vec<Value>> {
    store
        .query_one(
            "SELECT record::id(id) AS id, vps, kind, state, <string>updated_at AS updated_at FROM operation
             WHERE updated_at > <datetime>$since ORDER BY updated_at LIMIT 500",
            json!({ "since": since.to_rfc3339() }),
            0,
        )
        .await
}

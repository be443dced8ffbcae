//! The single timeline of a VPS, read from every table that records what happened to it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::db::Store;
use crate::db::models::activity::Level;
use crate::db::models::operation::{OpKind, OpState, OperationId};
use crate::db::models::vps::VpsId;
use crate::db::models::webhook_event::InboxKey;
use crate::notice::Severity;

/// One entry of a VPS's timeline; `kind` says which table it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimelineEntry {
    Activity(TimelineActivity),
    Operation(TimelineOperation),
    Notification(TimelineNotification),
    Webhook(TimelineWebhook),
}

impl TimelineEntry {
    /// When it happened (the timeline's order).
    pub fn at(&self) -> &str {
        match self {
            Self::Activity(e) => &e.at,
            Self::Operation(e) => &e.at,
            Self::Notification(e) => &e.at,
            Self::Webhook(e) => &e.at,
        }
    }
}

/// A decision or an admin action about the VPS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineActivity {
    pub at: String,
    pub level: Level,
    pub actor: String,
    pub message: String,
    pub data: Value,
}

/// An operation on the VPS, `at` when it was requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineOperation {
    pub at: String,
    pub id: OperationId,
    pub op: OpKind,
    pub state: OpState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub requested_by: String,
    /// The provider task under way.
    pub task_id: Option<String>,
    pub finished_at: Option<String>,
    pub params: Value,
}

/// A notification about the VPS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineNotification {
    pub at: String,
    pub title: String,
    pub severity: Severity,
}

/// A webhook behind one of the VPS's operations, `at` when it arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineWebhook {
    pub at: String,
    /// Its inbox key.
    pub id: InboxKey,
    pub source: String,
    pub status: Option<String>,
    /// Its events' outcomes, as `status: detail` joined by `; `.
    pub decision: String,
}

impl Store {
    /// The single timeline of a VPS: webhook events, decisions and admin actions (activity),
    /// operations with their provider tasks, and notifications; newest first. A part that
    /// cannot be read is left out.
    pub async fn vps_timeline(&self, id: &VpsId) -> anyhow::Result<Vec<TimelineEntry>> {
        let sql = "SELECT <string>at AS at, level, actor, message, data FROM activity
                     WHERE subject = $id OR subject = 'vps:' + $id ORDER BY at DESC LIMIT 200;
                   SELECT <string>created_at AS at, record::id(id) AS id, kind AS op, state, attempts,
                        last_error, requested_by, task_id, IF finished_at { <string>finished_at } AS finished_at, params
                     FROM operation WHERE vps = $id ORDER BY created_at DESC LIMIT 200;
                   SELECT <string>created_at AS at, title, severity FROM notification
                     WHERE subject = $id OR subject = 'vps:' + $id ORDER BY created_at DESC LIMIT 50;";
        let activity: Vec<TimelineActivity> = self.query_one(sql, json!({ "id": id }), 0).await.unwrap_or_default();
        let operations: Vec<TimelineOperation> = self.query_one(sql, json!({ "id": id }), 1).await.unwrap_or_default();
        let notifications: Vec<TimelineNotification> =
            self.query_one(sql, json!({ "id": id }), 2).await.unwrap_or_default();
        // The webhooks behind the operations, with the decisions they caused.
        let keys: BTreeSet<InboxKey> =
            operations.iter().filter_map(|o| o.requested_by.strip_prefix("webhook:").map(InboxKey::from)).collect();
        let mut all: Vec<TimelineEntry> = activity
            .into_iter()
            .map(TimelineEntry::Activity)
            .chain(operations.into_iter().map(TimelineEntry::Operation))
            .chain(notifications.into_iter().map(TimelineEntry::Notification))
            .collect();
        for key in keys {
            if let Some(ev) = self.inbox_event(&key).await? {
                let decisions: Vec<String> =
                    ev.outcomes.iter().flatten().map(|o| format!("{}: {}", o.status, o.detail)).collect();
                all.push(TimelineEntry::Webhook(TimelineWebhook {
                    at: ev.received_at,
                    id: key,
                    source: ev.source,
                    status: ev.status,
                    decision: decisions.join("; "),
                }));
            }
        }
        all.sort_by(|a, b| b.at().cmp(a.at()));
        Ok(all)
    }
}

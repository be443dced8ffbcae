//! The `notify_attempt` table: one row per attempt to deliver an email or an outgoing
//! webhook, with its outcome.

use serde::Serialize;
use serde_json::json;

use crate::db::Store;

/// One attempt to deliver a notification.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryAttempt<'a> {
    /// The delivery's stable id, shared by every attempt.
    pub delivery: &'a str,
    /// `email` or `webhook`.
    pub channel: &'a str,
    /// The URL, or the recipients.
    pub target: &'a str,
    pub kind: &'a str,
    pub attempt: u32,
    pub ok: bool,
    /// The HTTP status or SMTP reply, or the error.
    pub detail: &'a str,
    pub duration_ms: u64,
}

impl Store {
    /// Records an attempt.
    pub async fn record_delivery_attempt(&self, a: &DeliveryAttempt<'_>) -> anyhow::Result<()> {
        self.execute(
            "CREATE notify_attempt CONTENT object::extend($row, { created_at: time::now() })",
            json!({ "row": a }),
        )
        .await
    }
}

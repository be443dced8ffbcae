//! Inbox retention: settled webhooks lose their headers, body and outcomes after
//! `inbox.retention_days` (refused ones are deleted), and their dedupe keys go after
//! `inbox.dedupe_days`. Webhooks that failed, were parked or are not applied yet are kept
//! whatever their age: they still need an admin or the appliance.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Store;
use crate::config::InboxConfig;

/// What one purge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    /// Settled rows reduced to their dedupe key.
    pub compacted: u64,
    /// Refused rows and expired dedupe keys removed.
    pub deleted: u64,
}

/// Statuses of webhooks that need nothing more.
const SETTLED: &[&str] = &["processed", "ignored", "stale"];

/// Purges the inbox as of `now`.
pub async fn purge(store: &Store, config: &InboxConfig, now: DateTime<Utc>) -> anyhow::Result<PurgeReport> {
    if config.retention_days == 0 {
        return Ok(PurgeReport::default());
    }
    let cut = now - chrono::Duration::days(i64::from(config.retention_days));
    let gone = now - chrono::Duration::days(i64::from(config.dedupe_days.max(config.retention_days)));
    let rows: Vec<Value> = store
        .query_one(
            "LET $compact = (SELECT VALUE id FROM webhook_event
                 WHERE status IN $settled AND received_at < <datetime>$cut AND compacted = NONE);
             LET $refused = (SELECT VALUE id FROM webhook_event
                 WHERE status = 'rejected' AND received_at < <datetime>$cut);
             LET $expired = (SELECT VALUE id FROM webhook_event
                 WHERE compacted != NONE AND received_at < <datetime>$gone);
             UPDATE $compact SET headers = NONE, body = NONE, events = NONE, outcomes = NONE, signature = NONE,
                 applied = NONE, error = NONE, compacted = time::now() RETURN NONE;
             DELETE $refused RETURN NONE;
             DELETE $expired RETURN NONE;
             RETURN [{ compacted: array::len($compact), deleted: array::len($refused) + array::len($expired) }];",
            json!({ "settled": SETTLED, "cut": cut.to_rfc3339(), "gone": gone.to_rfc3339() }),
            6,
        )
        .await?;
    let r = rows.first().cloned().unwrap_or_default();
    Ok(PurgeReport { compacted: r["compacted"].as_u64().unwrap_or(0), deleted: r["deleted"].as_u64().unwrap_or(0) })
}

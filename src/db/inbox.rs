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

/// Rows one purge step reads: each change it makes is a transaction of its own, which must fit
/// in the store's write buffer however many webhooks a first purge of years finds.
const PURGE_STEP: usize = 500;

/// The bounds and rows of one purge step. The bounds are datetimes bound beforehand (`$after_at`,
/// `$cut_at`): with a cast in the condition (`received_at >= <datetime>$after`) the planner
/// scans the whole `webhook_event_received` index and filters, so every step read the table
/// from its start (a first purge of a million webhooks peaked at 875 MiB); with bound values it
/// reads the index range, and stops after `$step` rows.
const PURGE_STEP_BOUNDS: &str = "LET $after_at = <datetime>$after; LET $cut_at = <datetime>$cut;";
const PURGE_STEP_ROWS: &str = "SELECT id, status, compacted, received_at FROM webhook_event
    WHERE received_at >= $after_at AND received_at < $cut_at ORDER BY received_at LIMIT $step";

/// Purges the inbox as of `now`: rows older than the retention, oldest first, a step at a
/// time, each step going on from where the last one stopped.
pub async fn purge(store: &Store, config: &InboxConfig, now: DateTime<Utc>) -> anyhow::Result<PurgeReport> {
    if config.retention_days == 0 {
        return Ok(PurgeReport::default());
    }
    let cut = now - chrono::Duration::days(i64::from(config.retention_days));
    let gone = now - chrono::Duration::days(i64::from(config.dedupe_days.max(config.retention_days)));
    let mut report = PurgeReport::default();
    let mut after = Value::from("1970-01-01T00:00:00Z");
    loop {
        let rows: Vec<Value> = store
            .query_one(
                &format!(
                    "{PURGE_STEP_BOUNDS}
                 LET $rows = ({PURGE_STEP_ROWS});
                 LET $compact = array::map(array::filter($rows, |$r| $r.status IN $settled AND $r.compacted = NONE),
                     |$r| $r.id);
                 LET $refused = array::map(array::filter($rows, |$r| $r.status = 'rejected'), |$r| $r.id);
                 LET $expired = array::map(array::filter($rows,
                     |$r| $r.compacted != NONE AND $r.received_at < <datetime>$gone), |$r| $r.id);
                 UPDATE $compact SET headers = NONE, body = NONE, events = NONE, outcomes = NONE, signature = NONE,
                     applied = NONE, error = NONE, compacted = time::now() RETURN NONE;
                 DELETE $refused RETURN NONE;
                 DELETE $expired RETURN NONE;
                 RETURN [{{ compacted: array::len($compact), deleted: array::len($refused) + array::len($expired),
                     seen: array::len($rows), last: array::last($rows).received_at }}];"
                ),
                json!({ "settled": SETTLED, "cut": cut.to_rfc3339(), "gone": gone.to_rfc3339(), "after": after,
                        "step": PURGE_STEP }),
                9,
            )
            .await?;
        let r = rows.first().cloned().unwrap_or_default();
        report.compacted += r["compacted"].as_u64().unwrap_or(0);
        report.deleted += r["deleted"].as_u64().unwrap_or(0);
        let last = r["last"].clone();
        // A short step reached the cut; a full one of rows all received at one instant would
        // find itself again.
        if r["seen"].as_u64().unwrap_or(0) < PURGE_STEP as u64 || last.is_null() || last == after {
            return Ok(report);
        }
        after = last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A purge step reads a range of the `received_at` index and stops after one step's rows,
    /// rather than scanning the whole index and filtering.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_step_reads_an_index_range() {
        let store = Store::in_memory().await;
        store
            .execute(
                "FOR $i IN 0..1200 { CREATE webhook_event CONTENT { status: 'processed', body: 'x',
                     received_at: time::now() - 40d + <duration> string::concat(<string> $i, 's') } };",
                json!({}),
            )
            .await
            .expect("seeded");
        let plan = store
            .plan(
                &format!("{PURGE_STEP_BOUNDS} EXPLAIN {PURGE_STEP_ROWS}"),
                json!({ "after": "1970-01-01T00:00:00Z", "cut": Utc::now().to_rfc3339(), "step": PURGE_STEP }),
                2,
            )
            .await;
        assert!(plan.contains("IndexScan") && plan.contains("webhook_event_received"), "{plan}");
        assert!(plan.contains("access: >=d'1970-01-01T00:00:00Z' <d'"), "not a range of the index: {plan}");
        assert!(plan.contains("limit: $step"), "the step's limit is not in the scan: {plan}");
    }

    /// Many more rows than one step: every old settled row is compacted, every old refused
    /// row and expired key deleted; recent rows and unsettled old ones are kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_goes_through_more_rows_than_one_step() {
        let store = Store::in_memory().await;
        let seed = |n: usize, status: &'static str, days: i64, compacted: bool| {
            let store = store.clone();
            async move {
                let rows: Vec<Value> = (0..n)
                    .map(|i| json!({ "status": status, "body": "x", "compacted": compacted.then_some("2026-01-01T00:00:00Z"),
                                     "at": (Utc::now() - chrono::Duration::days(days) + chrono::Duration::seconds(i as i64)).to_rfc3339() }))
                    .collect();
                store
                    .execute(
                        "FOR $r IN $rows { CREATE webhook_event CONTENT { status: $r.status, body: $r.body,
                             compacted: IF $r.compacted { <datetime> $r.compacted } ELSE { NONE },
                             received_at: <datetime> $r.at } };",
                        json!({ "rows": rows }),
                    )
                    .await
                    .expect("seeded");
            }
        };
        seed(1234, "processed", 40, false).await;
        seed(20, "rejected", 40, false).await;
        seed(300, "ignored", 100, true).await;
        seed(50, "processed", 1, false).await;
        seed(10, "failed", 40, false).await;
        let report = purge(&store, &InboxConfig::default(), Utc::now()).await.expect("purge");
        assert_eq!(report, PurgeReport { compacted: 1234, deleted: 320 });
        let left: Vec<Value> = store
            .query_one(
                "SELECT status, compacted != NONE AS compacted, body != NONE AS body, count() AS n FROM webhook_event
                 GROUP BY status, compacted, body ORDER BY status",
                json!({}),
                0,
            )
            .await
            .expect("rows");
        assert_eq!(
            left,
            vec![
                json!({ "status": "failed", "compacted": false, "body": true, "n": 10 }),
                json!({ "status": "processed", "compacted": false, "body": true, "n": 50 }),
                json!({ "status": "processed", "compacted": true, "body": false, "n": 1234 }),
            ],
            "{left:?}"
        );
    }
}

//! The `webhook_event` table: the inbox. One row per delivery, its record id the dedupe key;
//! written in batches (group commit) before the sender gets a 2xx, its events' outcomes
//! written back once they are applied. Retention is in [`crate::db::inbox`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Page;
use crate::billing::BillingEvent;
use crate::db::Store;

id_type!(
    /// The key of a `webhook_event` row: the delivery's dedupe key.
    InboxKey
);

/// An inbox row to write.
#[derive(Debug, Clone)]
pub struct InboxRow {
    /// The dedupe key, used as the record id.
    pub key: InboxKey,
    pub source: String,
    /// The stored fields (headers, body, signature result, status, events, error, …).
    pub fields: Value,
    /// Events to apply once the row is committed (empty for rejected rows).
    pub events: Vec<BillingEvent>,
}

/// Inbox status of a payment event being applied: start-up recovery applies it again, and so
/// does a redelivery of it.
pub const APPLYING: &str = "applying";

/// An inbox row as it is stored, for a replay or a recovery.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct StoredDelivery {
    pub key: InboxKey,
    pub source: String,
    /// The billing events its source's plugin read (none for a payment event or a compacted row).
    #[serde(default, deserialize_with = "none_as_empty")]
    pub events: Vec<BillingEvent>,
    /// The body as stored (the whole event, for a payment).
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// The body is gone (compacted after `inbox.retention_days`).
    #[serde(default)]
    pub compacted: bool,
}

/// Reads a missing or null list as empty (a malformed one is still an error).
fn none_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<BillingEvent>, D::Error> {
    <Option<Vec<BillingEvent>> as serde::Deserialize>::deserialize(d).map(Option::unwrap_or_default)
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventOutcome {
    /// `processed`, `ignored`, `stale`, `parked` or `failed`; or [`DEFERRED`]: not applied
    /// now, and applied again later.
    pub status: &'static str,
    pub detail: String,
}

/// The status of an event that was not applied now, through no fault of its own: the store's
/// server did not answer, or this node does not hold the work lease. Its row stays (or goes
/// back to) `received`, and the node holding the lease applies it in its turn.
pub const DEFERRED: &str = "deferred";

impl EventOutcome {
    pub fn new(status: &'static str, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into() }
    }

    /// True for [`DEFERRED`].
    pub fn is_deferred(&self) -> bool {
        self.status == DEFERRED
    }
}

/// One status for a row from its events' outcomes: the most serious wins.
pub fn inbox_status(outcomes: &[EventOutcome]) -> &'static str {
    if outcomes.iter().any(EventOutcome::is_deferred) {
        return "received";
    }
    for status in ["failed", "parked", "processed", "stale"] {
        if outcomes.iter().any(|o| o.status == status) {
            return status;
        }
    }
    "ignored"
}

/// Identifies one event of an inbox row, for the `applied` marks decisions leave on the row.
pub fn event_fingerprint(event: &BillingEvent) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_string(event).unwrap_or_default();
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
}

impl Store {
    /// Writes inbox rows that are not there yet, in one transaction; returns the keys that
    /// already existed (duplicates).
    pub async fn insert_inbox(&self, rows: &[&InboxRow]) -> anyhow::Result<Vec<InboxKey>> {
        self.insert_inbox_with_outcomes(rows, &[]).await
    }

    /// [`Store::insert_inbox`], writing in the same transaction the outcomes of rows processed
    /// since the last batch (one commit for both).
    pub async fn insert_inbox_with_outcomes(
        &self,
        rows: &[&InboxRow],
        outcomes: &[(InboxKey, Vec<EventOutcome>)],
    ) -> anyhow::Result<Vec<InboxKey>> {
        // A key twice in one batch is written once; its later copies are duplicates.
        let mut seen = std::collections::HashSet::new();
        let mut repeated = Vec::new();
        let mut firsts = Vec::new();
        for r in rows {
            if !seen.insert(r.key.as_str()) {
                repeated.push(r.key.clone());
                continue;
            }
            let mut f = r.fields.clone();
            f["source"] = json!(r.source);
            f["events"] = serde_json::to_value(&r.events).unwrap_or_default();
            firsts.push(json!({ "key": r.key, "fields": f }));
        }
        let outcomes: Vec<Value> =
            outcomes.iter().map(|(key, o)| json!({ "key": key, "status": inbox_status(o), "outcomes": o })).collect();
        if firsts.is_empty() && outcomes.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction finds the keys already stored and writes the others.
        let existing: Vec<InboxKey> = self
            .query_one(
                "BEGIN TRANSACTION;
                 LET $known = SELECT VALUE record::id(id)
                     FROM array::map($rows, |$r| type::record('webhook_event', $r.key)) WHERE id != NONE;
                 FOR $r IN $rows {
                    IF $r.key NOT IN $known {
                        CREATE type::record('webhook_event', $r.key)
                            CONTENT object::extend($r.fields, { received_at: time::now() });
                    };
                 };
                 FOR $o IN $outcomes {
                    UPDATE type::record('webhook_event', $o.key) SET status = $o.status, outcomes = $o.outcomes,
                        processed_at = time::now();
                 };
                 $known;
                 COMMIT TRANSACTION;",
                json!({ "rows": firsts, "outcomes": outcomes }),
                4,
            )
            .await?;
        let mut dups = existing;
        for key in repeated {
            if !dups.contains(&key) {
                dups.push(key);
            }
        }
        Ok(dups)
    }

    /// The `limit` oldest rows whose events may not all be applied (status still `received`),
    /// each with only the events no decision has marked applied and how many were applied
    /// already.
    pub async fn unapplied_inbox(&self, limit: usize) -> anyhow::Result<Vec<(InboxRow, usize)>> {
        #[derive(serde::Deserialize)]
        struct Row {
            key: InboxKey,
            source: String,
            #[serde(default)]
            events: Vec<BillingEvent>,
            #[serde(default)]
            applied: Option<Vec<String>>,
        }
        let rows: Vec<Row> = self
            .query_one(
                "SELECT record::id(id) AS key, source, events, applied, received_at FROM webhook_event
                 WHERE status = 'received' ORDER BY received_at LIMIT $limit",
                json!({ "limit": limit }),
                0,
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let applied = r.applied.unwrap_or_default();
                let total = r.events.len();
                let events: Vec<BillingEvent> =
                    r.events.into_iter().filter(|e| !applied.contains(&event_fingerprint(e))).collect();
                let done = total - events.len();
                (InboxRow { key: r.key, source: r.source, fields: Value::Null, events }, done)
            })
            .collect())
    }

    /// Writes the outcome of processing onto an inbox row.
    pub async fn record_inbox_outcome(&self, key: &InboxKey, outcomes: &[EventOutcome]) -> anyhow::Result<()> {
        let status = inbox_status(outcomes);
        self.execute(
            "UPDATE type::record('webhook_event', $key) SET status = $status, outcomes = $outcomes,
                processed_at = time::now()",
            json!({ "key": key, "status": status, "outcomes": outcomes }),
        )
        .await
    }

    /// A stored delivery, to apply it again (a replay) or to finish applying it (recovery).
    pub async fn stored_delivery(&self, key: &InboxKey) -> anyhow::Result<Option<StoredDelivery>> {
        self.query_first(
            "SELECT record::id(id) AS key, source, events, body, status, compacted != NONE AS compacted
             FROM type::record('webhook_event', $key)",
            json!({ "key": key }),
            0,
        )
        .await
    }

    /// Payment events whose application a restart interrupted (status still `applying`),
    /// oldest first.
    pub async fn applying_payments(&self) -> anyhow::Result<Vec<StoredDelivery>> {
        self.query_one(
            "SELECT record::id(id) AS key, source, events, body, status, compacted != NONE AS compacted, received_at
             FROM webhook_event WHERE status = $applying ORDER BY received_at",
            json!({ "applying": APPLYING }),
            0,
        )
        .await
    }

    /// The status of an inbox row (`None` when there is no such row).
    pub async fn inbox_status_of(&self, key: &InboxKey) -> anyhow::Result<Option<String>> {
        let status: Vec<Option<String>> = self
            .query_one("SELECT VALUE status FROM type::record('webhook_event', $key)", json!({ "key": key }), 0)
            .await?;
        Ok(status.into_iter().next().flatten())
    }
}

impl Store {
    /// Records a refused delivery (bad signature, unreadable body, …) so an admin sees it.
    pub async fn record_refused_webhook(&self, key: &InboxKey, fields: &Value) -> anyhow::Result<()> {
        self.execute(
            "CREATE type::record('webhook_event', $key) CONTENT object::extend($fields, { received_at: time::now() })",
            json!({ "key": key, "fields": fields }),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are bound, never written into the query: keys full of SurrealQL punctuation are
    /// stored as given and recognised as duplicates the next time.
    #[tokio::test]
    async fn inbox_keys_are_bound_not_formatted() {
        let store = Store::in_memory().await;
        let keys = ["plain", "a], (DELETE webhook_event)", "⟩; REMOVE TABLE webhook_event; --", "x`y'z\"w"];
        let rows: Vec<InboxRow> = keys
            .iter()
            .map(|k| InboxRow { key: InboxKey::from(*k), source: "ghl".into(), fields: json!({}), events: Vec::new() })
            .collect();
        let refs: Vec<&InboxRow> = rows.iter().collect();
        assert!(store.insert_inbox(&refs).await.expect("first batch").is_empty());
        let stored: Vec<InboxKey> =
            store.query_one("SELECT VALUE record::id(id) FROM webhook_event", json!({}), 0).await.expect("rows");
        let mut expected: Vec<InboxKey> = keys.iter().map(|k| InboxKey::from(*k)).collect();
        let mut stored = stored;
        expected.sort();
        stored.sort();
        assert_eq!(stored, expected);
        let mut dups = store.insert_inbox(&refs).await.expect("second batch");
        dups.sort();
        assert_eq!(dups, expected, "every key is known the second time");
    }

    /// A key twice in one batch is written once and its later copy answered as a duplicate,
    /// as is a key stored by an earlier batch.
    #[tokio::test]
    async fn a_key_twice_in_a_batch_is_written_once() {
        let store = Store::in_memory().await;
        let row =
            |k: &str| InboxRow { key: InboxKey::from(k), source: "ghl".into(), fields: json!({}), events: Vec::new() };
        let (a, b, a2, c) = (row("a"), row("b"), row("a"), row("c"));
        assert_eq!(store.insert_inbox(&[&a, &b, &a2]).await.expect("first batch"), [InboxKey::from("a")]);
        assert_eq!(
            store.insert_inbox(&[&c, &b, &c]).await.expect("second batch"),
            [InboxKey::from("b"), InboxKey::from("c")]
        );
        let mut stored: Vec<InboxKey> =
            store.query_one("SELECT VALUE record::id(id) FROM webhook_event", json!({}), 0).await.expect("rows");
        stored.sort();
        assert_eq!(stored, ["a", "b", "c"].map(InboxKey::from));
    }

    /// Reads of the inbox by status are ranges, or counts, of the (status, arrival) index:
    /// schema 17 removed the index of the status alone, which every write kept up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_by_status_use_the_arrival_index() {
        let store = Store::in_memory().await;
        super::super::tests::wait_until_built(&store, "webhook_event", "webhook_event_status_received").await;
        store
            .execute(
                "FOR $i IN 0..30 {
                     CREATE type::record('webhook_event', string::concat('k', <string> $i)) CONTENT {
                         source: 'ghl', events: [],
                         status: IF $i % 3 = 0 { 'received' } ELSE IF $i % 3 = 1 { 'processed' } ELSE { $applying },
                         received_at: time::now() - <duration> string::concat(<string> (100 - $i), 's') } };",
                json!({ "applying": APPLYING }),
            )
            .await
            .expect("seeded");
        let indexes: Vec<Value> = store.query_one("INFO FOR TABLE webhook_event", json!({}), 0).await.expect("info");
        let names: Vec<&String> = indexes[0]["indexes"].as_object().expect("indexes").keys().collect();
        assert_eq!(names, ["webhook_event_received", "webhook_event_status_received"]);

        let plan = store
            .plan(
                &format!("EXPLAIN {}", super::super::count_query("webhook_event", "WHERE status = 'received'")),
                json!({}),
                0,
            )
            .await;
        assert!(plan.contains("IndexCountScan"), "{plan}");
        let page = super::super::page_query("webhook_event", "id", "WHERE status = $status", "received_at DESC");
        let plan =
            store.plan(&format!("EXPLAIN {page}"), json!({ "status": "processed", "limit": 10, "start": 0 }), 0).await;
        assert!(
            plan.contains("index: webhook_event_status_received, access: ['processed'], direction: Backward"),
            "{plan}"
        );

        assert_eq!(store.inbox_pending().await.expect("pending").0, 10);
        assert_eq!(store.inbox_page("processed", 1).await.expect("page").total, 10);
        let waiting = store.unapplied_inbox(3).await.expect("unapplied");
        let keys: Vec<&str> = waiting.iter().map(|(r, _)| r.key.as_str()).collect();
        assert_eq!(keys, ["k0", "k3", "k6"], "the oldest waiting rows first");
        let applying = store.applying_payments().await.expect("applying");
        assert_eq!(applying.len(), 10);
        assert_eq!(applying[0].key.as_str(), "k2");
    }
}

/// What became of one event, as stored on its inbox row ([`EventOutcome`] when written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOutcome {
    pub status: String,
    pub detail: String,
}

/// How a delivery's signature check went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxSignature {
    pub ok: bool,
    /// What authenticated it (scheme, key, signed time), as the check reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

/// An inbox row as the inbox list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxSummary {
    pub id: InboxKey,
    pub source: String,
    pub status: Option<String>,
    pub received_at: String,
    pub signature: Option<InboxSignature>,
    pub outcomes: Option<Vec<StoredOutcome>>,
    pub error: Option<String>,
}

/// One inbox row as stored, request included. Fields the row does not have are left out: a
/// refused request has no outcomes; a compacted row has lost its headers, body, signature,
/// events and outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxEntry {
    pub id: InboxKey,
    pub source: String,
    pub received_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// A refused request's length; only a prefix of its body is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_len: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_truncated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<InboxSignature>,
    /// The status vmauto answered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// A refused request's client address: `Some(None)` when it was not known.
    #[serde(default, deserialize_with = "super::present", skip_serializing_if = "Option::is_none")]
    pub client: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<BillingEvent>>,
    /// Fingerprints of the events whose decisions are written ([`event_fingerprint`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<Vec<StoredOutcome>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<String>,
    /// When retention reduced the row to its dedupe key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted: Option<String>,
    /// The headers and body are left out for a reader who is not an admin.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_hidden: bool,
}

/// What the inbox page reads.
impl Store {
    /// The webhook inbox, newest first; `status` filters.
    pub async fn inbox_page(&self, status: &str, page: u64) -> anyhow::Result<Page<InboxSummary>> {
        let clause = if status.is_empty() { "" } else { "WHERE status = $status" };
        let fields =
            "record::id(id) AS id, source, status, <string>received_at AS received_at, signature, outcomes, error";
        super::page_of(self, "webhook_event", fields, clause, json!({ "status": status }), "received_at DESC", page)
            .await
    }

    /// One inbox row with its headers and body.
    pub async fn inbox_event(&self, id: &InboxKey) -> anyhow::Result<Option<InboxEntry>> {
        self.query_first(
            "SELECT *, record::id(id) AS id, <string>received_at AS received_at FROM type::record('webhook_event', $id)",
            json!({ "id": id }),
            0,
        )
        .await
    }
}

/// When a webhook arrived and how it ended, for the dashboard's hourly series.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Arrival {
    pub at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub status: Option<String>,
}

impl Store {
    /// Webhooks received in the last 24 hours (at most 100,000), oldest first.
    pub async fn webhooks_last_day(&self) -> anyhow::Result<Vec<Arrival>> {
        self.query_one(
            "SELECT received_at AS at, status FROM webhook_event WHERE received_at > time::now() - 24h
             ORDER BY received_at LIMIT 100000",
            json!({}),
            0,
        )
        .await
    }
}

/// The service's key figures and backlog.
impl Store {
    /// Webhooks received in the last hour.
    pub async fn webhooks_received_last_hour(&self) -> anyhow::Result<u64> {
        let n: Vec<u64> = self
            .query_one(
                "SELECT VALUE count() FROM webhook_event WHERE received_at > time::now() - 1h GROUP ALL",
                json!({}),
                0,
            )
            .await?;
        Ok(n.first().copied().unwrap_or(0))
    }

    /// Webhooks stored (`received`) whose events are not applied yet, and the seconds since the
    /// oldest of them arrived (0 when none).
    pub async fn inbox_pending(&self) -> anyhow::Result<(u64, f64)> {
        #[derive(serde::Deserialize)]
        struct Count {
            // An empty selection grouped ALL comes back as one row without the field.
            #[serde(default)]
            n: u64,
        }
        let pending: Vec<Count> = self
            .query_one("SELECT count() AS n FROM webhook_event WHERE status = 'received' GROUP ALL", json!({}), 0)
            .await?;
        let oldest: Vec<f64> = self
            .query_one(
                "SELECT VALUE time::unix(time::now()) - time::unix(received_at) FROM webhook_event
                 WHERE status = 'received' ORDER BY received_at LIMIT 1",
                json!({}),
                0,
            )
            .await?;
        Ok((pending.first().map_or(0, |c| c.n), oldest.first().copied().unwrap_or(0.0)))
    }
}

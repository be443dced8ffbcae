//! The inbox's backlog and recovery: committed deliveries whose events wait to be applied are
//! kept in the store, not in memory, and applied oldest first, a page at a time, after a
//! restart as while running.

use serde_json::{Value, json};
use vmauto::actors::messages::Restart;
use vmauto::actors::webhook::{InboxRow, MAX_QUEUED};
use vmauto::billing::EventKind;

use crate::common::stripe::{send_signed, stripe_config};
use crate::common::{TestApp, event};

/// Waits (at most a minute) until no row is `received`.
async fn drained(t: &TestApp) -> Vec<Value> {
    let store = &t.app.state.store;
    for _ in 0..600 {
        let left: Vec<String> = store
            .query_one("SELECT VALUE record::id(id) FROM webhook_event WHERE status = 'received' LIMIT 1", json!({}), 0)
            .await
            .expect("rows left");
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    store
        .query_one(
            "SELECT record::id(id) AS key, status, received_at, processed_at FROM webhook_event ORDER BY key",
            json!({}),
            0,
        )
        .await
        .expect("rows")
}

/// More committed rows than the in-memory queue holds (as a crash under load leaves them):
/// every one is applied, read back from the store a page at a time, oldest first.
#[actix_web::test]
async fn a_backlog_larger_than_the_queue_is_applied_from_the_store_oldest_first() {
    let t = TestApp::start().await;
    let store = &t.app.state.store;
    let n = MAX_QUEUED * 2 + 100;
    let rows: Vec<InboxRow> = (0..n)
        .map(|i| InboxRow {
            key: format!("backlog{i:05}").into(),
            source: "ghl".into(),
            fields: json!({ "status": "received", "http_status": 202 }),
            events: vec![event(EventKind::Ignore, &format!("sub-{i}"), None, None)],
        })
        .collect();
    for chunk in rows.chunks(256) {
        let refs: Vec<&InboxRow> = chunk.iter().collect();
        assert!(store.insert_inbox(&refs).await.expect("rows").is_empty());
    }
    t.app.handles().webhook.send(Restart).await.expect("delivered");
    let rows = drained(&t).await;
    assert_eq!(rows.len(), n);
    let unapplied: Vec<&Value> = rows.iter().filter(|r| r["status"] != "ignored").collect();
    assert!(unapplied.is_empty(), "{} rows not applied, e.g. {:?}", unapplied.len(), unapplied.first());
    // Oldest first: a row received earlier is never processed after one received later.
    let at = |r: &Value, f: &str| r[f].as_str().expect(f).parse::<chrono::DateTime<chrono::Utc>>().expect("time");
    let mut by_arrival: Vec<&Value> = rows.iter().collect();
    by_arrival.sort_by_key(|r| (at(r, "received_at"), r["key"].as_str().map(str::to_owned)));
    let latest_before: Vec<_> = by_arrival
        .iter()
        .scan(None, |latest: &mut Option<chrono::DateTime<chrono::Utc>>, r| {
            let p = at(r, "processed_at");
            let before = *latest;
            *latest = Some(latest.map_or(p, |l| l.max(p)));
            Some((before, p, r["key"].clone()))
        })
        .collect();
    let out_of_order: Vec<_> = latest_before.iter().filter(|(before, p, _)| before.is_some_and(|b| b > *p)).collect();
    assert!(
        out_of_order.is_empty(),
        "{} rows applied before older ones: {:?}",
        out_of_order.len(),
        out_of_order.first()
    );
}

/// A payment event stored but not applied when the process stopped (its row still `applying`)
/// is applied when the webhook actor starts again, without waiting for Stripe to redeliver it.
#[actix_web::test]
async fn a_payment_event_a_restart_interrupted_is_applied_at_start_up() {
    let t = TestApp::start_with(|c| stripe_config(c, "http://127.0.0.1:9")).await;
    let body = json!({ "id": "evt_cut", "object": "event", "type": "checkout.session.expired",
        "data": { "object": { "id": "cs_cut", "object": "checkout.session" } } })
    .to_string();
    let store = &t.app.state.store;
    let key = vmauto::actors::webhook::key_of(&[b"stripe-upgrades", b"id", b"evt_cut"]);
    store
        .execute(
            "CREATE type::record('webhook_event', $key) CONTENT { source: 'stripe-upgrades', status: 'applying', body: $body,
                http_status: 200, received_at: time::now() }",
            json!({ "key": key, "body": body }),
        )
        .await
        .expect("an interrupted row");
    t.app.handles().webhook.send(vmauto::actors::messages::Restart).await.expect("delivered");
    let mut status = Value::Null;
    for _ in 0..100 {
        let rows: Vec<Value> = store
            .query_one("SELECT VALUE status FROM type::record('webhook_event', $key)", json!({ "key": key }), 0)
            .await
            .expect("row");
        status = rows.first().cloned().unwrap_or_default();
        if status != "applying" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "ignored", "the expired session is applied (nothing to change) and the row finished");
    // Stripe's redelivery of it now changes nothing.
    let (code, out) = send_signed(&t, &body).await;
    assert_eq!((code, out["status"].as_str()), (200, Some("duplicate")), "{out}");
}

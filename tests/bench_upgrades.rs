//! What a paid upgrade costs: Stripe's event POSTed → payment recorded and resize queued.

use std::time::Instant;

use serde_json::json;

use crate::common::Stack;
use crate::common::stripe::send_signed;
use crate::common::stripe::{session_event, stripe_config};
use crate::upgrades::{active_vps, issue};

/// Paid event POST → resize queued, over many distinct sessions, on the in-memory store and
/// on the embedded SurrealKV file store (fsync on commit), as shipped.
/// `cargo test --test integration -- --ignored --nocapture bench_upgrade_paid_to_queued`
#[actix_web::test]
#[ignore = "benchmark: prints figures"]
async fn bench_upgrade_paid_to_queued() {
    for (label, file_store) in [("mem", false), ("surrealkv", true)] {
        bench_paid_to_queued(label, file_store).await;
    }
}

async fn bench_paid_to_queued(label: &str, file_store: bool) {
    const N: usize = 200;
    vmauto::init_crypto();
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        stripe_config(c, "http://127.0.0.1:9");
        if file_store {
            c.database.url = String::new();
        }
    })
    .await;
    let vps = active_vps(&s, "sub-bench").await;
    let mut samples = Vec::with_capacity(N);
    for i in 0..N {
        let link = issue(&s, &vps).await;
        let metadata = json!({ "vmauto_link": link.id, "vmauto_vps": vps, "vmauto_offer": "more-memory",
            "vmauto_cores": "1", "vmauto_memory_mb": "3072", "vmauto_disk_gb": "40" });
        let session = format!("cs_bench_{i}");
        let body = session_event(&format!("evt_bench_{i}"), "checkout.session.completed", &session, "paid", &metadata);
        let started = Instant::now();
        let (code, out) = send_signed(&s.t, &body).await;
        let elapsed = started.elapsed();
        assert_eq!((code, out["status"].as_str()), (200, Some("processed")), "{out}");
        let key = vmauto::upgrade::fulfil::operation_key(&session);
        let op = s.rows(&format!("SELECT VALUE kind FROM operation:{key}")).await;
        assert_eq!(op, vec![json!("resize")], "queued when the POST answered");
        samples.push(elapsed);
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "bench_upgrade_paid_to_queued[{label}]: n={N} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms (target p50 < 50 ms)",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.90).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
}

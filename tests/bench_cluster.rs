//! Benchmarks of vmauto on a SurrealDB server: ingest through a balancer with 1, 2 and 3
//! nodes (with the server's share of the CPU they all used), and webhook → active on
//! `ws://` against the embedded store. They print figures and assert only correctness; run
//! `cargo test --test integration -- --ignored --nocapture bench_cluster` (the nodes are the
//! binary of this build, or `TEST_VMAUTO_BIN`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use vmauto::billing::EventKind;
use vmauto::sim::SimConfig;

use crate::common::surreal::SurrealServer;
use crate::common::{Stack, TOKEN};

/// CPU seconds (user + system) a process has used.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len().max(1) as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
}

#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_cluster"]
async fn bench_cluster_ingest() {
    vmauto::init_crypto();
    let secs: u64 = std::env::var("BENCH_CLUSTER_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let conns: usize = std::env::var("BENCH_CLUSTER_CONNS").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let sim = vmauto::sim::start(SimConfig::default()).await.expect("simulator");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    eprintln!(
        "bench_cluster_ingest: {conns} connections through the balancer, {secs} s per run, `ignore` events \
         (stored, then applied as ignored); server, nodes, balancer and load share {cores} cores"
    );
    for n in 1..=3 {
        let server = SurrealServer::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes = crate::common::cluster::nodes(&server, &sim, dir.path(), n);
        for p in &mut nodes {
            p.start().await;
        }
        let (lb, handle) = crate::common::cluster::balancer(nodes.iter().map(|p| p.port).collect()).await;
        let url = format!("http://127.0.0.1:{lb}/webhooks/ghl/{TOKEN}");
        let pids: Vec<u32> = nodes.iter().filter_map(|p| p.pid()).collect();
        let server_pid = server.pid().expect("server pid");
        let before: (f64, f64) = (cpu_secs(server_pid), pids.iter().map(|p| cpu_secs(*p)).sum());
        let seq = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let deadline = started + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..conns)
            .map(|_| {
                let (url, seq) = (url.clone(), seq.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let (mut ok, mut other, mut lat) = (0usize, 0usize, Vec::new());
                    while Instant::now() < deadline {
                        let i = seq.fetch_add(1, Ordering::Relaxed);
                        let body =
                            json!({ "contact_id": format!("c{i}"), "customData": { "event": "ignore", "n": i } });
                        let t = Instant::now();
                        match http.post(&url).json(&body).send().await {
                            Ok(r) if r.status().is_success() => ok += 1,
                            _ => other += 1,
                        }
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    (ok, other, lat)
                })
            })
            .collect();
        let (mut ok, mut other, mut lat) = (0, 0, Vec::new());
        for t in tasks {
            let (o, x, l) = t.await.expect("sender");
            ok += o;
            other += x;
            lat.extend(l);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let after: (f64, f64) = (cpu_secs(server_pid), pids.iter().map(|p| cpu_secs(*p)).sum());
        lat.sort_by(f64::total_cmp);
        let (server_cpu, nodes_cpu) = (after.0 - before.0, after.1 - before.1);
        // Every acknowledged webhook is in the store.
        let store = vmauto::db::Store::open(&nodes[0].load_config()).await.expect("store");
        let stored: Vec<serde_json::Value> =
            store.query_one("SELECT count() AS n FROM webhook_event GROUP ALL", json!({}), 0).await.expect("count");
        let stored = stored.first().and_then(|r| r["n"].as_u64()).unwrap_or(0) as usize;
        assert!(stored >= ok, "every acknowledged webhook is stored: {stored} < {ok}");
        eprintln!(
            "bench_cluster_ingest: {n} node(s): {:.0} webhooks/s acknowledged ({ok} in {elapsed:.1} s, {other} not 2xx), \
             p50 {:.1} ms, p99 {:.1} ms; CPU: server {server_cpu:.1} s, nodes {nodes_cpu:.1} s, server share {:.0} %; \
             stored {stored}",
            ok as f64 / elapsed,
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            100.0 * server_cpu / (server_cpu + nodes_cpu).max(f64::EPSILON),
        );
        handle.stop(false).await;
        for p in &mut nodes {
            p.stop();
        }
    }
}

/// Webhook → active, one subscription at a time, embedded SurrealKV against `ws://`.
#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_cluster"]
async fn bench_cluster_ws_overhead() {
    let n: usize = std::env::var("BENCH_CLUSTER_SUBS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let server = SurrealServer::start().await;
    for (label, ws) in [("embedded surrealkv", false), ("ws:// server", true)] {
        let store_dir = tempfile::tempdir().expect("tempdir");
        let s = Stack::start_with(SimConfig { task_ms: 0, ip_delay_ms: 0, ..SimConfig::default() }, |c| {
            c.policy.grace_days = 0;
            c.provider.sangfor.get_per_minute = 60000;
            c.provider.sangfor.write_per_minute = 60000;
            if ws {
                server.configure(c);
                c.database.database = crate::common::surreal::fresh_database();
            } else {
                c.database.url = format!("surrealkv://{}", store_dir.path().join("store").display());
            }
        })
        .await;
        let mut times = Vec::new();
        for i in 0..n {
            let sub = format!("ovh-{i}");
            let t = Instant::now();
            let out = s.send(crate::common::event(EventKind::Subscribe, &sub, Some("starter"), None)).await;
            assert_eq!(out[0].status, "processed", "{out:?}");
            let key = vmauto::lifecycle::stable_key("ghl", &sub);
            let sql = format!("SELECT VALUE state FROM vps WHERE subscription = '{key}'");
            loop {
                if s.rows(&sql).await.first().is_some_and(|v| v == "active") {
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(60), "{sub} did not become active");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        eprintln!(
            "bench_cluster_ws_overhead: {label}: event → VPS active, {n} one at a time: mean {mean:.0} ms, \
             p50 {:.0} ms, p99 {:.0} ms (instant simulator, polled every 5 ms)",
            pct(&times, 0.5),
            pct(&times, 0.99)
        );
    }
}

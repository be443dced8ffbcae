//! Benchmarks of vmauto on a SurrealDB server: ingest through a balancer with 1, 2 and 3
//! nodes (with the server's share of the CPU they all used), and webhook → active on
//! `ws://` against the embedded store. They print figures and assert only correctness; run
//! `cargo test --test integration -- --ignored --nocapture bench_cluster` (the nodes are the
//! binary of this build, or `TEST_VMAUTO_BIN`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use vmauto::sim::SimConfig;

use crate::common::TOKEN;
use crate::common::surreal::SurrealServer;

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

/// Webhook → active, one subscription at a time, the appliance binary on its embedded
/// SurrealKV store against the same on a `ws://` server (receipt and activation times as the
/// store recorded them).
#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_cluster"]
async fn bench_cluster_ws_overhead() {
    vmauto::init_crypto();
    let n: usize = std::env::var("BENCH_CLUSTER_SUBS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let server = SurrealServer::start().await;
    let sim = vmauto::sim::start(SimConfig { task_ms: 0, ip_delay_ms: 0, ..SimConfig::default() }).await.expect("sim");
    let limits = "get_per_minute = 1000000\nwrite_per_minute = 1000000\ntask_poll_initial_ms = 20";
    for (label, ws) in [("embedded surrealkv", false), ("ws:// server", true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let extra = match ws {
            true => format!(
                "\n[database]\nurl = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\ndatabase = \"{}\"\n",
                server.url(),
                crate::common::surreal::USER,
                crate::common::surreal::PASS,
                crate::common::surreal::fresh_database()
            ),
            false => String::new(),
        };
        let mut p = crate::common::Proc::new(dir.path(), &sim, limits, &extra);
        let config = p.load_config();
        p.with_store(async |s| vmauto::demo::seed(s, &config, "ghl").await.expect("seeded")).await;
        p.start().await;
        let http = reqwest::Client::new();
        let before = sim.snapshot()["servers"].as_array().map_or(0, Vec::len);
        for i in 0..n {
            let body = crate::common::workflow("subscribe", &format!("ovh-{ws}-{i}"), "starter");
            let r = http.post(p.url(&format!("/webhooks/ghl/{TOKEN}"))).json(&body).send().await.expect("post");
            assert_eq!(r.status().as_u16(), 202);
            // One at a time: the next once this one's VM is built.
            let deadline = Instant::now() + Duration::from_secs(60);
            while sim.snapshot()["servers"].as_array().map_or(0, Vec::len) < before + i + 1 {
                assert!(Instant::now() < deadline, "no VM for subscription {i}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        // The last VPS's row is written just after SCP's last task.
        tokio::time::sleep(Duration::from_secs(2)).await;
        p.stop();
        let mut times = crate::bench_lifecycle::receipt_to_active(&p).await;
        assert_eq!(times.len(), n, "every VPS active");
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        eprintln!(
            "bench_cluster_ws_overhead: {label}: webhook received → VPS active, {n} one at a time (instant \
             simulator): mean {mean:.0} ms, p50 {:.0} ms, p99 {:.0} ms",
            pct(&times, 0.5),
            pct(&times, 0.99)
        );
    }
}

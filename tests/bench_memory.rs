//! Memory against the data kept: the real `vmauto serve` binary (`TEST_VMAUTO_BIN` for a
//! release build) on its embedded SurrealKV store holding 10k, 100k and 1M webhooks of the
//! past year, or 100k VPSs, with the inbox retention off and then on. For each it prints the
//! resident memory after start, its peak during a 30 s ingest of new subscriptions (SCP's
//! real write limit: creates wait in the store) and after, and the store's size on disk; and,
//! before that, the peak anonymous memory of the seeded store's first open alone, when the
//! store compacts what seeding wrote. Run
//! with `cargo test --test integration -- --ignored --nocapture bench_memory`.
//!
//! env: BENCH_MEMORY_WEBHOOKS=10000,100000,1000000 BENCH_MEMORY_VPS=100000 BENCH_MEMORY_SECS=30

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Proc, TOKEN};

/// A process's `field` of `/proc/<pid>/status` in kB (`VmRSS`, `RssAnon`; 0 once it is gone).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS")
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn disk_mib(dir: &std::path::Path) -> f64 {
    fn walk(p: &std::path::Path) -> u64 {
        std::fs::read_dir(p).into_iter().flatten().flatten().fold(0, |n, e| match e.metadata() {
            Ok(m) if m.is_dir() => n + walk(&e.path()),
            Ok(m) => n + m.len(),
            Err(_) => n,
        })
    }
    walk(&dir.join("store")) as f64 / 1048576.0
}

/// `n` settled webhooks as the inbox keeps them (headers, a 1 KB body, the event and its
/// outcome), received over the past year, oldest first.
async fn seed_webhooks(p: &Proc, n: usize) {
    let body = "x".repeat(900);
    let now = chrono::Utc::now();
    p.with_store(async |s| {
        for start in (0..n).step_by(2000) {
            let rows: Vec<Value> = (start..n.min(start + 2000))
                .map(|i| {
                    let age = chrono::Duration::seconds(((n - i) as i64 * 365 * 86400) / n as i64);
                    let sub = format!("seed-{i}");
                    let event = crate::common::event(vmauto::billing::EventKind::Subscribe, &sub, Some("starter"), None);
                    json!({
                        "key": format!("seed{i:08}"),
                        "fields": {
                            "source": "ghl", "path": "/webhooks/ghl/{token}", "status": "processed",
                            "headers": { "content-type": "application/json", "user-agent": "bench", "x-request-id": sub },
                            "body": format!("{{\"subscription\":\"{sub}\",\"pad\":\"{body}\"}}"), "body_len": 950,
                            "body_sha256": format!("{i:064}"), "signature": { "ok": true },
                            "events": [event], "outcomes": [{ "status": "processed", "detail": "VPS created" }],
                            "received_at": now - age, "processed_at": now - age,
                        },
                    })
                })
                .collect();
            s.execute(
                "BEGIN TRANSACTION;
                 FOR $r IN $rows { CREATE type::record('webhook_event', $r.key) CONTENT object::extend($r.fields, {
                     received_at: <datetime> $r.fields.received_at, processed_at: <datetime> $r.fields.processed_at }); };
                 COMMIT TRANSACTION;",
                json!({ "rows": rows }),
            )
            .await
            .expect("webhooks seeded");
        }
    })
    .await;
}

/// `n` active VPSs, each with its subscription.
async fn seed_vps(p: &Proc, n: usize) {
    p.with_store(async |s| {
        for start in (0..n).step_by(2000) {
            let rows: Vec<Value> = (start..n.min(start + 2000)).map(crate::common::active_vps_row).collect();
            s.execute(
                "BEGIN TRANSACTION;
                 FOR $r IN $rows {
                     CREATE type::record('vps', $r.key) CONTENT object::extend($r, {
                         created_at: time::now(), updated_at: time::now() });
                     CREATE type::record('subscription', $r.subscription) CONTENT {
                         source: 'ghl', external_id: $r.subscription, customer: $r.customer, status: 'active',
                         plan_key: 'starter', created_at: time::now() };
                 };
                 COMMIT TRANSACTION;",
                json!({ "rows": rows }),
            )
            .await
            .expect("VPSs seeded");
        }
    })
    .await;
}

/// Opens the seeded store once, alone (`vmauto settings list`), and prints how long that took
/// and the process's peak anonymous memory. The store compacts in the background from its
/// first open, and what seeding wrote is compacted then: this shows what a compaction of the
/// data costs in memory, which the appliance's start (sampled from its readiness on) hides.
async fn first_open(dir: &std::path::Path, label: &str) {
    let t0 = Instant::now();
    let mut child = std::process::Command::new(crate::common::binary())
        .arg("--config")
        .arg(dir.join("appliance.toml"))
        .args(["settings", "list"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("vmauto runs");
    let mut peak = 0;
    while child.try_wait().expect("wait").is_none() {
        peak = peak.max(status_kb(child.id(), "RssAnon"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peak = if peak == 0 { "not sampled (too short)".to_string() } else { format!("{:.0} MiB", mib(peak)) };
    println!(
        "bench_memory: {label}: the store's first open alone (the store compacts what seeding wrote, when a \
         compaction is due): {:.1} s, anonymous memory peak {peak}",
        t0.elapsed().as_secs_f64(),
    );
}

/// Starts the appliance with the inbox retention on or off, ingests new subscriptions from
/// 64 clients for `secs`, and prints one line of figures.
async fn measure(dir: &std::path::Path, sim: &vmauto::sim::SimServer, label: &str, retention: bool, secs: u64) {
    let days = if retention { "retention_days = 30\ndedupe_days = 90" } else { "retention_days = 0\ndedupe_days = 0" };
    let mut p = Proc::new(dir, sim, "", &format!("[inbox]\n{days}\n[database]\n"));
    p.start().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = p.pid().expect("pid");
    let after_start = rss_kb(pid);
    let peak = Arc::new(AtomicU64::new(after_start));
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, running) = (peak.clone(), running.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let url = p.url(&format!("/webhooks/ghl/{TOKEN}"));
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client");
    let sent = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let run = format!("{}-{}", label.replace(' ', ""), retention);
    let clients: Vec<_> = (0..64)
        .map(|c| {
            let (http, url, sent, run) = (http.clone(), url.clone(), sent.clone(), run.clone());
            let logs = dir.join("run-1.log");
            tokio::spawn(async move {
                let mut i = 0;
                while Instant::now() < until {
                    let body = crate::common::workflow("subscribe", &format!("{run}-{c}-{i}"), "starter");
                    let r = http.post(&url).json(&body).send().await.expect("post");
                    let status = r.status();
                    if !status.is_success() {
                        let log = std::fs::read_to_string(&logs).unwrap_or_default();
                        let errors: Vec<&str> =
                            log.lines().filter(|l| l.contains("ERROR") || l.contains("WARN")).collect();
                        panic!(
                            "{status}: {}\n{}",
                            r.text().await.unwrap_or_default(),
                            errors[errors.len().saturating_sub(8)..].join("\n")
                        );
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.store(false, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let after = rss_kb(pid);
    let sent = sent.load(Ordering::Relaxed);
    println!(
        "bench_memory: {label}, retention {}: RSS {:.0} MiB after start, peak {:.0} MiB during a {secs} s ingest \
         ({sent} webhooks acknowledged, {:.0}/s), {:.0} MiB 3 s after; store {:.0} MiB on disk",
        if retention { "30 d / dedupe 90 d" } else { "off" },
        mib(after_start),
        mib(peak.load(Ordering::Relaxed)),
        sent as f64 / secs as f64,
        mib(after),
        disk_mib(dir),
    );
    p.stop();
}

#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_memory"]
async fn bench_memory_against_the_data_kept() {
    let list = |var: &str, default: &str| -> Vec<usize> {
        std::env::var(var).unwrap_or_else(|_| default.into()).split(',').filter_map(|n| n.trim().parse().ok()).collect()
    };
    let secs = std::env::var("BENCH_MEMORY_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    vmauto::init_crypto();
    let sim = vmauto::sim::start(vmauto::sim::SimConfig::default()).await.expect("simulator");
    let cases = list("BENCH_MEMORY_WEBHOOKS", "10000,100000,1000000")
        .into_iter()
        .map(|n| (n, false))
        .chain(list("BENCH_MEMORY_VPS", "100000").into_iter().map(|n| (n, true)));
    for (n, vps) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Proc::new(dir.path(), &sim, "", "[database]\n");
        let config = p.load_config();
        p.with_store(async |s| vmauto::demo::seed(s, &config, "ghl").await.expect("seeded")).await;
        let t0 = Instant::now();
        let label = if vps {
            seed_vps(&p, n).await;
            format!("{n} VPSs")
        } else {
            seed_webhooks(&p, n).await;
            format!("{n} stored webhooks")
        };
        println!("bench_memory: {label} seeded in {:.0} s", t0.elapsed().as_secs_f64());
        drop(p);
        first_open(dir.path(), &label).await;
        measure(dir.path(), &sim, &label, false, secs).await;
        measure(dir.path(), &sim, &label, true, secs).await;
    }
}

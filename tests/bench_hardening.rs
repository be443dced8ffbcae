//! What a flood of refused (unauthenticated) webhooks costs, against the real `vmauto serve`
//! binary on its SurrealKV store: the store's growth per minute and the latency of
//! authenticated webhooks sent at the same time. Two configurations in one run: "every refusal
//! stored whole" (no budget, the whole body kept: how refusals were recorded before the
//! refusal budget) and the defaults. Run with
//! `cargo test --release --test integration -- --ignored --nocapture bench_hardening`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use vmauto::sim::SimConfig;

use crate::common::{Proc, TOKEN};

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Authenticated webhooks (each a new event) from `clients` senders for `secs`; latencies in ms.
async fn authenticated(url: &str, clients: usize, secs: u64, tag: &str) -> Vec<f64> {
    let stop = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (url, tag) = (url.to_string(), tag.to_string());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut out = Vec::new();
                let mut n = 0;
                while Instant::now() < stop {
                    n += 1;
                    let body = json!({ "contact_id": format!("{tag}-{c}-{n}"),
                        "customData": { "event": "ignore", "event_id": format!("{tag}-{c}-{n}") } });
                    let t0 = Instant::now();
                    let r = http.post(&url).json(&body).send().await.expect("sent");
                    assert!(r.status().is_success(), "{}", r.status());
                    out.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("sender"));
    }
    all.sort_by(f64::total_cmp);
    all
}

#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_hardening"]
async fn bench_hardening_junk_flood() {
    vmauto::init_crypto();
    let secs = std::env::var("BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let configs = [
        (
            "every refusal stored whole",
            "[webhooks]\nrefused_per_source_per_minute = 4294967295\nrefused_per_client_per_minute = 4294967295\n\
             refused_body_bytes = 1048576\n",
        ),
        ("defaults (budget 60/source, 10/client a minute, 1 KiB kept)", ""),
    ];
    for (label, extra) in configs {
        let dir = tempfile::tempdir().expect("tempdir");
        let sim = vmauto::sim::start(SimConfig::default()).await.expect("simulator");
        let mut p = Proc::new(dir.path(), &sim, "", extra);
        p.start().await;
        p.warm_up().await;
        let url = p.url(&format!("/webhooks/ghl/{TOKEN}"));
        let alone = authenticated(&url, 8, secs, "alone").await;

        let store = dir.path().join("store");
        let junk: Vec<u8> = serde_json::to_vec(&json!({ "pad": "x".repeat(1_000_000) })).expect("json");
        let junk_url = p.url("/webhooks/ghl/forged-token");
        let flood = |on: Arc<AtomicBool>, sent: Arc<AtomicU64>| -> Vec<tokio::task::JoinHandle<()>> {
            (0..8)
                .map(|_| {
                    let (url, body, on, sent) = (junk_url.clone(), junk.clone(), on.clone(), sent.clone());
                    tokio::spawn(async move {
                        let http = reqwest::Client::new();
                        while on.load(Ordering::Relaxed) {
                            let r = http
                                .post(&url)
                                .header("content-type", "application/json")
                                .body(body.clone())
                                .send()
                                .await;
                            if r.is_ok_and(|r| r.status().as_u16() == 401) {
                                sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                })
                .collect()
        };
        // The flood alone: what it adds to the store.
        let size0 = dir_size(&store);
        let (on, sent) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
        let flooders = flood(on.clone(), sent.clone());
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        on.store(false, Ordering::Relaxed);
        for f in flooders {
            f.await.expect("flooder");
        }
        let flood_secs = t0.elapsed().as_secs_f64();
        let growth = dir_size(&store).saturating_sub(size0) as f64 / 1_048_576.0 / flood_secs * 60.0;
        let junk_rate = sent.load(Ordering::Relaxed) as f64 / flood_secs;
        // The flood and authenticated webhooks together.
        let (on, sent) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
        let flooders = flood(on.clone(), sent.clone());
        let during = authenticated(&url, 8, secs, "flood").await;
        on.store(false, Ordering::Relaxed);
        for f in flooders {
            f.await.expect("flooder");
        }
        p.stop();
        eprintln!(
            "bench_hardening [{label}]: a flood of {junk_rate:.0} refused 1 MB webhooks/s grows the store by \
             {growth:.1} MiB/min; authenticated webhooks alone p50 {:.1} ms p99 {:.1} ms ({} in {secs} s), during \
             the flood p50 {:.1} ms p99 {:.1} ms ({})",
            pct(&alone, 0.5),
            pct(&alone, 0.99),
            alone.len(),
            pct(&during, 0.5),
            pct(&during, 0.99),
            during.len(),
        );
        sim.stop().await;
    }
}

/// A login-form session: the login CSRF cookie and its token.
async fn login_form(http: &reqwest::Client, base: &str) -> (String, String) {
    let page = http.get(format!("{base}/login")).send().await.expect("login page");
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("vmauto_login="))
        .and_then(|c| c.split(';').next())
        .expect("login cookie")
        .to_string();
    let html = page.text().await.expect("html");
    let csrf = html.split("name=\"_csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("csrf");
    (cookie, csrf.to_string())
}

#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_hardening"]
async fn bench_hardening_login_flood() {
    vmauto::init_crypto();
    let secs = std::env::var("BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = vmauto::sim::start(SimConfig::default()).await.expect("simulator");
    let mut p = Proc::new(dir.path(), &sim, "", "");
    p.start().await;
    p.warm_up().await;
    let url = p.url(&format!("/webhooks/ghl/{TOKEN}"));
    let alone = authenticated(&url, 8, secs, "alone").await;
    let base = p.url("");
    let (on, tried) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
    let flood: Vec<_> = (0..32)
        .map(|i| {
            let (base, on, tried) = (base.clone(), on.clone(), tried.clone());
            tokio::spawn(async move {
                let http =
                    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
                let (cookie, csrf) = login_form(&http, &base).await;
                let mut n = 0u64;
                while on.load(Ordering::Relaxed) {
                    n += 1;
                    // A new name each time: every attempt costs a password check.
                    let user = format!("guess-{i}-{n}");
                    let form =
                        [("username", user.as_str()), ("password", "wrong"), ("_csrf", csrf.as_str()), ("next", "/")];
                    let r = http.post(format!("{base}/login")).header("cookie", &cookie).form(&form).send().await;
                    if r.is_ok() {
                        tried.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    let during = authenticated(&url, 8, secs, "logins").await;
    on.store(false, Ordering::Relaxed);
    for f in flood {
        f.await.expect("flooder");
    }
    let rate = tried.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    p.stop();
    eprintln!(
        "bench_hardening [login flood]: authenticated webhooks alone p50 {:.1} ms p99 {:.1} ms ({}); during {rate:.0} \
         failed logins/s from 32 clients: p50 {:.1} ms p99 {:.1} ms ({})",
        pct(&alone, 0.5),
        pct(&alone, 0.99),
        alone.len(),
        pct(&during, 0.5),
        pct(&during, 0.99),
        during.len()
    );
    sim.stop().await;
}

/// The store's size with many settled webhooks, and after the inbox purge compacts them.
#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_hardening"]
async fn bench_hardening_purge_store_size() {
    vmauto::init_crypto();
    let rows: usize = std::env::var("BENCH_INBOX_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = vmauto::config::Config::for_data_dir(dir.path());
    let store = vmauto::db::Store::open(&config).await.expect("store");
    let body = "x".repeat(2_000);
    for chunk in 0..rows.div_ceil(500) {
        let batch: Vec<serde_json::Value> = (0..500.min(rows - chunk * 500))
            .map(|i| {
                json!({ "source": "ghl", "status": "processed", "body": body,
                        "headers": { "content-type": "application/json" }, "events": [], "n": chunk * 500 + i })
            })
            .collect();
        store
            .execute(
                "FOR $r IN $rows { CREATE webhook_event CONTENT object::extend($r, { received_at: time::now() - 40d }) };",
                json!({ "rows": batch }),
            )
            .await
            .expect("rows");
    }
    let path = dir.path().join("store");
    let full = dir_size(&path);
    let t0 = Instant::now();
    let report = vmauto::db::inbox::purge(&store, &config.inbox, chrono::Utc::now()).await.expect("purge");
    let took = t0.elapsed();
    let after = dir_size(&path);
    drop(store);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reopened_store = vmauto::db::Store::open(&config).await.expect("store");
    let reopened = dir_size(&path);
    drop(reopened_store);
    eprintln!(
        "bench_hardening [purge]: {rows} processed webhooks of 2 KB, 40 days old: store {:.1} MiB; purge compacted {} \
         in {:.1} s; store {:.1} MiB right after, {:.1} MiB after a restart",
        full as f64 / 1_048_576.0,
        report.compacted,
        took.as_secs_f64(),
        after as f64 / 1_048_576.0,
        reopened as f64 / 1_048_576.0
    );
    assert_eq!(report.compacted as usize, rows);
}

/// `(sum, count, cumulative buckets)` of a histogram series in a `/metrics` text.
fn histogram(metrics: &str, name: &str, labels: &str) -> (f64, f64, Vec<(f64, f64)>) {
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let mut sum = 0.0;
    let mut count = 0.0;
    let mut buckets = Vec::new();
    for line in metrics.lines().filter(|l| l.contains(labels)) {
        if line.starts_with(&format!("{name}_sum")) {
            sum = value(line);
        } else if line.starts_with(&format!("{name}_count")) {
            count = value(line);
        } else if line.starts_with(&format!("{name}_bucket")) {
            let le = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("+Inf");
            buckets.push((le.parse::<f64>().unwrap_or(f64::INFINITY), value(line)));
        }
    }
    (sum, count, buckets)
}

/// Mean and p99 (the bucket bound it falls in) of what a histogram gained between two scrapes.
fn histogram_delta(before: &str, after: &str, name: &str, labels: &str) -> (f64, f64, f64) {
    let (s0, c0, b0) = histogram(before, name, labels);
    let (s1, c1, b1) = histogram(after, name, labels);
    let n = c1 - c0;
    let mean = if n > 0.0 { (s1 - s0) / n } else { 0.0 };
    let p99 = b1
        .iter()
        .map(|(le, c)| (*le, c - b0.iter().find(|(l, _)| l == le).map_or(0.0, |(_, c)| *c)))
        .find(|(_, c)| *c >= n * 0.99)
        .map_or(0.0, |(le, _)| le);
    (n, mean, p99)
}

fn counter(metrics: &str, name: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// How long operations' SCP reads wait for admission while customers hammer their upgrade
/// pages, against the real binary with SCP's real read budget (600 GETs a minute): provisioning
/// a batch of VPSs alone, then the same batch while 64 clients open upgrade pages as fast as
/// they can. Prints the operations' read wait (mean, p99), the time to provision the batch, what
/// the customers were answered and how many SCP reads they cost.
#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_hardening"]
async fn bench_hardening_customer_pages() {
    vmauto::init_crypto();
    let batch: usize = std::env::var("BENCH_VPS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = vmauto::sim::start(SimConfig { task_ms: 400, ip_delay_ms: 200, ..SimConfig::default() })
        .await
        .expect("simulator");
    let stripe = "[stripe]\nenabled = true\nsecret_key = \"sk_test_bench\"\nwebhook_secrets = [\"whsec_bench\"]\n\
        [[stripe.offers]]\nid = \"more-memory\"\nname = \"+2 GB memory\"\nadd_memory_gb = 2\nprice = 900\n";
    // Writes are not the subject: give them room so reads are the bottleneck.
    let mut p = Proc::new(dir.path(), &sim, "write_per_minute = 6000", stripe);
    let config = p.load_config();
    p.with_store(async |s| vmauto::demo::seed(s, &config, "ghl").await.expect("seeded")).await;
    p.start().await;
    p.warm_up().await;
    let out = std::process::Command::new(crate::common::binary())
        .arg("--config")
        .arg(p.config_path())
        .args(["admin", "token", "create", "bench", "--role", "admin"])
        .env_remove("VMAUTO_CONFIG")
        .output()
        .expect("vmauto runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let token = text.lines().find_map(|l| l.strip_prefix("token: ")).expect("a token").to_string();
    let http = reqwest::Client::new();
    let hook = p.url(&format!("/webhooks/ghl/{TOKEN}"));
    // The first page of active VPSs, with their total.
    let active_page = async |http: &reqwest::Client| -> serde_json::Value {
        let r = http.get(p.url("/api/v1/vps?state=active")).bearer_auth(&token).send().await.expect("api");
        r.json().await.expect("json")
    };
    let active = async |http: &reqwest::Client| -> u64 { active_page(http).await["total"].as_u64().unwrap_or(0) };
    // Provisions `batch` VPSs; answers the seconds it took.
    let provision = async |tag: &str, http: &reqwest::Client| -> f64 {
        let before = active(http).await;
        let t0 = Instant::now();
        for i in 0..batch {
            let body = crate::common::workflow_for("Bench", "subscribe", &format!("{tag}-{i}"), "starter");
            let r = http.post(&hook).json(&body).send().await.expect("webhook");
            assert!(r.status().is_success());
        }
        while active(http).await < before + batch as u64 {
            assert!(t0.elapsed() < Duration::from_secs(600), "the batch provisions");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        t0.elapsed().as_secs_f64()
    };
    let metrics = async |http: &reqwest::Client| -> String {
        http.get(p.url("/metrics")).send().await.expect("metrics").text().await.expect("text")
    };
    let wait = "vmauto_scp_rate_limit_wait_seconds";

    // The customers' links: one per VPS of a first batch.
    provision("base", &http).await;
    let page = active_page(&http).await;
    let mut links = Vec::new();
    for row in page["rows"].as_array().expect("rows") {
        let id = row["id"].as_str().expect("id");
        let r: serde_json::Value = http
            .post(p.url(&format!("/api/v1/vps/{id}/upgrade-links")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("link")
            .json()
            .await
            .expect("json");
        links.push(r["url"].as_str().expect("url").rsplit('/').next().expect("token").to_string());
    }

    let m0 = metrics(&http).await;
    let quiet = provision("quiet", &http).await;
    let m1 = metrics(&http).await;
    let (quiet_n, quiet_mean, quiet_p99) = histogram_delta(&m0, &m1, wait, "class=\"read\"");

    let hammer_start = metrics(&http).await;
    let hammering = Instant::now();
    let on = Arc::new(AtomicBool::new(true));
    let answers = Arc::new(parking_lot::Mutex::new(std::collections::BTreeMap::<u16, u64>::new()));
    let hammer: Vec<_> = (0..64)
        .map(|c| {
            let (on, answers, links) = (on.clone(), answers.clone(), links.clone());
            let base = p.url("/upgrade/");
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut i = c;
                while on.load(Ordering::Relaxed) {
                    i += 1;
                    let url = format!("{base}{}", links[i % links.len()]);
                    if let Ok(r) = http.get(&url).send().await {
                        *answers.lock().entry(r.status().as_u16()).or_default() += 1;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m2 = metrics(&http).await;
    let hammered = provision("hammered", &http).await;
    let m3 = metrics(&http).await;
    on.store(false, Ordering::Relaxed);
    let hammer_secs = hammering.elapsed().as_secs_f64();
    for h in hammer {
        h.await.expect("client");
    }
    let (busy_n, busy_mean, busy_p99) = histogram_delta(&m2, &m3, wait, "class=\"read\"");
    let (cust_n, cust_mean, _) = histogram_delta(&hammer_start, &m3, wait, "class=\"customer\"");
    let scp_capacity_reads = counter(&m3, "vmauto_scp_requests_total", "op=\"overview\"")
        - counter(&hammer_start, "vmauto_scp_requests_total", "op=\"overview\"");
    let answered: Vec<String> = answers.lock().iter().map(|(s, n)| format!("{n}×{s}")).collect();
    let pages: u64 = answers.lock().values().sum();
    p.stop();
    sim.stop().await;
    eprintln!(
        "bench_hardening [customer pages]: provisioning {batch} VPSs alone took {quiet:.1} s, operations' SCP reads \
         waited mean {:.0} ms p99 ≤{:.2} s ({quiet_n:.0} reads); while 64 clients opened {pages} upgrade pages \
         ({:.0}/s; answers {}) it took {hammered:.1} s, operations' reads waited mean {:.0} ms p99 ≤{:.2} s \
         ({busy_n:.0} reads); the pages cost SCP {scp_capacity_reads:.0} capacity reads ({cust_n:.0} customer-lane \
         admissions, mean wait {:.0} ms)",
        quiet_mean * 1000.0,
        quiet_p99,
        pages as f64 / hammer_secs,
        answered.join(", "),
        busy_mean * 1000.0,
        busy_p99,
        cust_mean * 1000.0,
    );
}

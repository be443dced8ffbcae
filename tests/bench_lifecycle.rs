//! Lifecycle benchmarks against the real `vmauto serve` binary with its embedded SurrealKV
//! store (the production default) and the SCP simulator in this process. They print figures
//! and assert only correctness; run them with
//! `cargo test --test integration -- --ignored --nocapture bench_lifecycle`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vmauto::sim::{SimConfig, SimServer};

use crate::common::Proc;

const TOKEN: &str = "crash0123456789abcdef0123456789ab";

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn sim(task_ms: u64, ip_delay_ms: u64, write_per_minute: u32) -> SimServer {
    vmauto::init_crypto();
    // BENCH_SIM_CAPACITY multiplies the simulated cloud (the seeded pool holds ≈190 small VMs).
    let capacity_factor = std::env::var("BENCH_SIM_CAPACITY").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    vmauto::sim::start(SimConfig { task_ms, ip_delay_ms, write_per_minute, capacity_factor, ..SimConfig::default() })
        .await
        .expect("simulator starts")
}

fn workflow(event: &str, sub: &str, plan: &str) -> Value {
    crate::common::workflow_for("Bench", event, sub, plan)
}

/// Sums a Prometheus histogram's `_sum` and `_count` lines.
fn histogram(metrics: &str, name: &str) -> (f64, f64) {
    let get = |suffix: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{suffix}")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    (get("_sum"), get("_count"))
}

async fn seeded(dir: &std::path::Path, sim: &SimServer, provider: &str) -> Proc {
    let p = Proc::new(dir, sim, provider, "");
    let config = p.load_config();
    p.with_store(async |s| vmauto::demo::seed(s, &config, "ghl").await.expect("seeded")).await;
    p
}

/// (a) Durable webhook ingest: distinct webhooks whose event is `ignore`, from concurrent
/// clients, each answered only after its inbox row is committed to SurrealKV.
#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_lifecycle"]
async fn bench_lifecycle_ingest() {
    let total: usize = std::env::var("BENCH_INGEST_N").ok().and_then(|v| v.parse().ok()).unwrap_or(6000);
    let clients: usize = std::env::var("BENCH_INGEST_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim(200, 300, 0).await;
    let mut p = Proc::new(dir.path(), &sim, "", "");
    p.start().await;
    let url = p.url(&format!("/webhooks/ghl/{TOKEN}"));
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().expect("client");
    // Warm-up (connections, plugin instances).
    for i in 0..50 {
        let r = http.post(&url).json(&workflow("ignore", &format!("warm-{i}"), "starter")).send().await.expect("post");
        assert!(r.status().is_success());
    }
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url, next) = (http.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return lat;
                    }
                    let body = workflow("ignore", &format!("ingest-{i}"), "starter");
                    let t = Instant::now();
                    let r = http.post(&url).json(&body).send().await.expect("post");
                    assert_eq!(r.status().as_u16(), 202, "{:?}", r.text().await);
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client"));
    }
    let secs = t0.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let metrics = http.get(p.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let (sum, count) = histogram(&metrics, "vmauto_inbox_batch_size");
    let pid = p.pid().unwrap_or_default();
    println!(
        "bench_lifecycle_ingest: {total} durable webhooks (SurrealKV), {clients} clients: {:.0}/s, latency p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms; inbox batches: {count} (mean {:.1} rows); appliance RSS {} MB; load {}",
        total as f64 / secs,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        sum / count.max(1.0),
        rss_mb(pid),
        load()
    );
    p.stop();
    let n: Vec<Value> = p
        .with_store(async |s| {
            s.query_one("SELECT count() AS n FROM webhook_event GROUP ALL", json!({}), 0).await.expect("count")
        })
        .await;
    assert_eq!(n[0]["n"], json!(total + 50), "every acknowledged webhook is stored");
}

fn rss_mb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's name, which ends with the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

type Instant3 = chrono::DateTime<chrono::FixedOffset>;
/// When a VPS's webhook was received, when its create was decided, when it became active.
type Instants = (Instant3, Instant3, Instant3);

/// Reads when each VPS's webhook was received, when its create was decided (the operation
/// written) and when the VPS became active, from the stopped appliance's store.
async fn receipt_and_active(p: &Proc) -> Vec<Instants> {
    let q = |sql: &'static str| async move {
        p.with_store(async |s| s.query_one::<Vec<Value>>(sql, json!({}), 0).await.expect("rows")).await
    };
    let ops = q("SELECT vps, requested_by, created_at FROM operation WHERE kind = 'create'").await;
    let vps = q("SELECT record::id(id) AS id, active_at FROM vps WHERE state = 'active'").await;
    let inbox = q("SELECT record::id(id) AS id, received_at FROM webhook_event").await;
    let time = |v: &Value| v.as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    let by_id = |rows: &[Value], field: &str| -> std::collections::HashMap<String, Value> {
        rows.iter().map(|r| (r["id"].as_str().unwrap_or_default().to_string(), r[field].clone())).collect()
    };
    let (active, received) = (by_id(&vps, "active_at"), by_id(&inbox, "received_at"));
    ops.iter()
        .filter_map(|o| {
            let webhook = o["requested_by"].as_str()?.strip_prefix("webhook:")?;
            Some((time(received.get(webhook)?)?, time(&o["created_at"])?, time(active.get(o["vps"].as_str()?)?)?))
        })
        .collect()
}

/// Receipt → active per VPS (milliseconds).
pub(crate) async fn receipt_to_active(p: &Proc) -> Vec<f64> {
    receipt_and_active(p)
        .await
        .iter()
        .filter_map(|(r, _, a)| Some((*a - *r).num_microseconds()? as f64 / 1000.0))
        .collect()
}

/// (e) End to end, the counterpart of the reference stack's `bench_e2e.sh`: a burst of
/// subscriptions (BENCH_E2E_N, 500) from 32 concurrent clients against an instant SCP with
/// limits off; webhook received → VPS active, throughput and latency from the store's clocks.
#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_lifecycle"]
async fn bench_lifecycle_e2e_burst() {
    let n: usize = std::env::var("BENCH_E2E_N").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let clients = 32;
    let dir = tempfile::tempdir().expect("tempdir");
    // An instant SCP with room for every VM (the seeded pool holds ≈190 small ones), in a
    // process of its own built like the appliance (as the reference stack's stub is).
    vmauto::init_crypto();
    let sim_port = crate::common::free_port();
    let capacity = n.div_ceil(150).to_string();
    let mut sim = std::process::Command::new(crate::common::binary())
        .args(["sim", "--http", "--listen", &format!("127.0.0.1:{sim_port}"), "--task-ms", "0", "--ip-delay-ms", "0"])
        .args(["--get-per-minute", "0", "--write-per-minute", "0", "--capacity-factor", &capacity])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the simulator starts");
    let sim_url = format!("http://127.0.0.1:{sim_port}");
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().expect("client");
    for _ in 0..200 {
        if http.get(format!("{sim_url}/_sim/state")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let scp = (sim_url.clone(), "vmauto-sim-access-key".to_string(), "vmauto-sim-secret-key".to_string());
    let limits =
        "get_per_minute = 1000000\nwrite_per_minute = 1000000\nmax_concurrency = 64\ntask_poll_initial_ms = 20";
    let mut p = Proc::new_for_scp(dir.path(), &scp, limits, "", "");
    let config = p.load_config();
    p.with_store(async |s| vmauto::demo::seed(s, &config, "ghl").await.expect("seeded")).await;
    p.start().await;
    let url = p.url(&format!("/webhooks/ghl/{TOKEN}"));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu_before = cpu_secs(p.pid().unwrap_or_default());
    let t0 = Instant::now();
    let senders: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url, next) = (http.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                let mut ack = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return ack;
                    }
                    let t = Instant::now();
                    let body = workflow("subscribe", &format!("e2e-{i}"), "starter");
                    let r = http.post(&url).json(&body).send().await.expect("post");
                    assert_eq!(r.status().as_u16(), 202);
                    ack.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    let mut ack = Vec::new();
    for s in senders {
        ack.extend(s.await.expect("sender"));
    }
    let sent = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut peak_rss = 0;
    loop {
        peak_rss = peak_rss.max(rss_mb(p.pid().unwrap_or_default()));
        let state: Value = match http.get(format!("{sim_url}/_sim/state")).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        let servers = state["servers"].as_array().cloned().unwrap_or_default();
        let passwords = state["tasks"]
            .as_array()
            .map_or(0, |t| t.iter().filter(|t| t.to_string().contains("password") && t["status"] != "running").count());
        let ready =
            servers.iter().filter(|s| s["busy_task"].is_null() && s["ips"].as_array().is_some_and(|a| !a.is_empty()));
        if (ready.count() >= n && passwords >= n) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The last VPSs' own rows are written just after SCP's last task, and the search index
    // takes them up within its interval: its CPU time is counted too.
    tokio::time::sleep(vmauto::db::models::vps::INDEX_EVERY + Duration::from_secs(2)).await;
    let cpu = cpu_secs(p.pid().unwrap_or_default()) - cpu_before;
    p.stop();
    let _ = sim.kill();
    let _ = sim.wait();
    let times = receipt_and_active(&p).await;
    if times.len() != n {
        let sql = "SELECT state, count() AS n FROM vps GROUP BY state; SELECT kind, state, last_error FROM operation \
                   WHERE state NOT IN ['succeeded'] LIMIT 5";
        let why: Vec<Value> = p.with_store(async |s| s.query_one(sql, json!({}), 0).await.unwrap_or_default()).await;
        let ops: Vec<Value> = p.with_store(async |s| s.query_one(sql, json!({}), 1).await.unwrap_or_default()).await;
        panic!("{} of {n} VPS active; VPS by state {why:?}; unfinished operations {ops:?}", times.len());
    }
    let first = times.iter().map(|(r, _, _)| *r).min().expect("one");
    let last = times.iter().map(|(_, _, a)| *a).max().expect("one");
    let decided = times.iter().map(|(_, d, _)| *d).max().expect("one");
    let span = (last - first).num_milliseconds() as f64 / 1000.0;
    let ms = |from: &Instant3, to: &Instant3| (*to - *from).num_milliseconds() as f64;
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let lat = sorted(times.iter().map(|(r, _, a)| ms(r, a)).collect());
    let to_decision = sorted(times.iter().map(|(r, d, _)| ms(r, d)).collect());
    let to_active = sorted(times.iter().map(|(_, d, a)| ms(d, a)).collect());
    ack.sort_by(f64::total_cmp);
    println!(
        "bench_lifecycle_e2e_burst: {n} subscriptions, {clients} clients, instant SCP, limits off: sent in {sent:.2} s \
         (ack p50 {:.1} ms, p99 {:.1} ms); all active after {span:.2} s (first receipt → last activation, store clock): \
         {:.1} VPS/s; receipt→active p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms; peak RSS {peak_rss} MB; \
         vmauto CPU {cpu:.2} s ({:.1} ms a VPS); load {}\n  where the time went: every create decided {:.2} s after the first receipt; receipt→decided p50 \
         {:.0} ms, p99 {:.0} ms; decided→active p50 {:.0} ms, p99 {:.0} ms",
        pct(&ack, 0.5),
        pct(&ack, 0.99),
        n as f64 / span,
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        cpu * 1000.0 / n as f64,
        load(),
        (decided - first).num_milliseconds() as f64 / 1000.0,
        pct(&to_decision, 0.5),
        pct(&to_decision, 0.99),
        pct(&to_active, 0.5),
        pct(&to_active, 0.99),
    );
}

/// (b) Webhook → `active` beyond the simulator's own time: tasks of a fixed length and a fixed
/// boot delay, subscriptions paced so they do not queue behind each other.
#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_lifecycle"]
async fn bench_lifecycle_overhead() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (task_ms, ip_ms, n) = (env("BENCH_TASK_MS", 200), env("BENCH_IP_MS", 300), 40usize);
    let poll_ms = env("BENCH_POLL_MS", 100);
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim(task_ms, ip_ms, 0).await;
    let mut p = seeded(
        dir.path(),
        &sim,
        &format!("get_per_minute = 60000\nwrite_per_minute = 60000\ntask_poll_initial_ms = {poll_ms}"),
    )
    .await;
    p.start().await;
    let http = reqwest::Client::new();
    let url = p.url(&format!("/webhooks/ghl/{TOKEN}"));
    for i in 0..n {
        let r =
            http.post(&url).json(&workflow("subscribe", &format!("ovh-{i}"), "starter")).send().await.expect("post");
        assert_eq!(r.status().as_u16(), 202);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = sim.snapshot();
        let servers = state["servers"].as_array().cloned().unwrap_or_default();
        let done = servers.len() == n
            && servers.iter().all(|s| s["busy_task"].is_null() && s["ips"].as_array().is_some_and(|a| !a.is_empty()));
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.stop();
    let mut total = receipt_to_active(&p).await;
    assert_eq!(total.len(), n, "every VPS active");
    total.sort_by(f64::total_cmp);
    // The simulator's task takes 0.2 × task_ms queued plus factor × task_ms running: a create
    // has factor 2, a password change 1; the VM reports its IP `ip_ms` after the create ends.
    let (create, password) = (2.2 * task_ms as f64, 1.2 * task_ms as f64);
    let floor = create + ip_ms as f64 + password;
    let over: Vec<f64> = total.iter().map(|t| t - floor).collect();
    println!(
        "bench_lifecycle_overhead: {n} subscriptions paced 10/s, SCP task_ms {task_ms}, boot {ip_ms} ms, first task poll \
         after {poll_ms} ms: simulator time \
         (create {create:.0} + boot {ip_ms} + set-password {password:.0}) = {floor:.0} ms; receipt→active p50 {:.0} ms, \
         p99 {:.0} ms; beyond the simulator (polling and the appliance's own work) p50 {:.0} ms, p99 {:.0} ms; load {}",
        pct(&total, 0.5),
        pct(&total, 0.99),
        pct(&over, 0.5),
        pct(&over, 0.99),
        load()
    );
}

/// (c) Many subscriptions at once against an SCP allowing 100 writes a minute: time to all
/// `active` against the rate-limit bound, and the 429s the simulator answered.
#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_lifecycle"]
async fn bench_lifecycle_rate_limited_burst() {
    let n: usize = std::env::var("BENCH_BURST_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim(100, 100, 100).await;
    let mut p = seeded(dir.path(), &sim, "").await;
    p.start().await;
    let http = reqwest::Client::new();
    let url = p.url(&format!("/webhooks/ghl/{TOKEN}"));
    let t0 = Instant::now();
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let r = http
                    .post(&url)
                    .json(&workflow("subscribe", &format!("burst-{i}"), "starter"))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status().as_u16(), 202);
            })
        })
        .collect();
    for s in sends {
        s.await.expect("send");
    }
    let deadline = Instant::now() + Duration::from_secs(40 * 60);
    let elapsed = loop {
        let state = sim.snapshot();
        let servers = state["servers"].as_array().cloned().unwrap_or_default();
        let pw_done = state["tasks"]
            .as_array()
            .map_or(0, |t| t.iter().filter(|t| t.to_string().contains("password") && t["status"] != "running").count());
        let done = servers.len() == n
            && servers.iter().all(|s| s["busy_task"].is_null() && s["ips"].as_array().is_some_and(|a| !a.is_empty()))
            && pw_done >= n;
        if done || Instant::now() > deadline {
            break t0.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = sim.snapshot();
    let metrics = http.get(p.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    p.stop();
    let active: Vec<f64> = receipt_to_active(&p).await;
    let scp: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("vmauto_scp_requests_total") || l.starts_with("vmauto_scp_retries_total"))
        .collect();
    let writes = state["counts"]["tasks"].as_u64().unwrap_or(0);
    // The gateway's write bucket: 100 a minute with a burst of 10 (provider/traffic.rs).
    let bound = (writes.saturating_sub(10)) as f64 * 60.0 / 100.0;
    println!(
        "bench_lifecycle_rate_limited_burst: {n} subscriptions at once, SCP 100 writes/min: all VMs ready after {:.1} s; \
         {writes} writes (create + set-password each); rate-limit bound (writes - burst 10) / 100 per min = {bound:.1} s \
         ({:+.1}%); {} VPS active in the store; simulator requests {}; appliance {scp:?}; load {}",
        elapsed.as_secs_f64(),
        (elapsed.as_secs_f64() / bound - 1.0) * 100.0,
        active.len(),
        state["requests"],
        load()
    );
    assert_eq!(active.len(), n, "every VPS active");
}

/// (d) Start-up with 100,000 VPS records: time to `/readyz` and resident memory.
#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_lifecycle"]
async fn bench_lifecycle_startup_100k() {
    let n: usize = std::env::var("BENCH_VPS_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = sim(200, 300, 0).await;
    let mut p = Proc::new(dir.path(), &sim, "", "");
    let t0 = Instant::now();
    p.with_store(async |s| {
        for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
            let rows: Vec<Value> = chunk.iter().map(|i| crate::common::active_vps_row(*i)).collect();
            s.execute(
                "BEGIN TRANSACTION;
                 FOR $r IN $rows { CREATE type::record('vps', $r.key) CONTENT object::extend($r, {
                     created_at: time::now(), updated_at: time::now() }); };
                 COMMIT TRANSACTION;",
                json!({ "rows": rows }),
            )
            .await
            .expect("insert");
        }
    })
    .await;
    let insert = t0.elapsed();
    let ready = p.start().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = p.pid().unwrap_or_default();
    let rss = rss_mb(pid);
    let http = reqwest::Client::new();
    let _ = http.get(p.url("/metrics")).send().await;
    println!(
        "bench_lifecycle_startup_100k: {n} VPS rows inserted in {:.1} s; vmauto serve ready (/readyz 200) in {:.2} s; \
         RSS {rss} MB 2 s after ready; load {}",
        insert.as_secs_f64(),
        ready.as_secs_f64(),
        load()
    );
    p.stop();
}

//! Chaos test: the real `vmauto serve` on its SurrealKV file store, fed a stream of mixed
//! webhooks (subscribes, cancels, cancels delivered before their subscribe, duplicates) by
//! concurrent senders, against an SCP simulator that fails on purpose — 5xx and forced 429 on
//! writes and reads, latency, failed tasks of every passing cause on every action, creates
//! that leave a broken VM behind — while the appliance is SIGKILLed and started again.
//!
//! Then the faults are removed and nothing else is done: no admin retries, no restarts. The
//! test waits for SCP to settle and checks that the appliance converged by itself: every live
//! subscription has exactly one active VPS with one running VM and its address, every
//! cancelled one (grace 0) has none, no VM is doubled or orphaned, no operation is dead.
//!
//! `CHAOS_SUBS` sizes the run (150 subscriptions, ≈300 events by default); the figures are
//! printed at the end. `CHAOS_KEEP=1` keeps the run's data directory (store and logs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;
use vmauto::lifecycle::{VpsId, stable_key};
use vmauto::sim::SimConfig;
use vmauto::sim::fault::FaultRule;

use crate::common::{Proc, TOKEN};

const SENDERS: usize = 8;
const KILLS: usize = 6;

fn subs() -> usize {
    std::env::var("CHAOS_SUBS").ok().and_then(|v| v.parse().ok()).unwrap_or(150)
}

fn sub_name(i: usize) -> String {
    format!("chaos-{i:03}")
}

/// Cancelled after its subscribe.
fn cancelled_after(i: usize) -> bool {
    i.is_multiple_of(4)
}

/// Cancelled, the cancel delivered before the subscribe (stamped later, so it still wins).
fn cancelled_before(i: usize) -> bool {
    i % 4 == 1
}

fn live(i: usize) -> bool {
    !cancelled_after(i) && !cancelled_before(i)
}

fn body(event: &str, i: usize) -> Value {
    // Subscribes are stamped in the morning, cancels in the afternoon of the same day.
    let at = if event == "subscribe" {
        format!("2026-12-01T08:{:02}:{:02}Z", i / 60, i % 60)
    } else {
        format!("2026-12-01T15:{:02}:{:02}Z", i / 60, i % 60)
    };
    let plan = ["starter", "business", "pro"][i % 3];
    json!({
        "contact_id": format!("CNT-{i}"), "full_name": "Chaos Test", "email": "chaos@example.com",
        "customData": { "event": event, "plan": plan, "subscription_id": sub_name(i), "occurred_at": at }
    })
}

/// The webhooks, in the order the senders take them.
fn events(n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for i in (0..n).filter(|i| cancelled_before(*i)) {
        out.push(body("cancel", i));
    }
    for i in 0..n {
        out.push(body("subscribe", i));
        // A duplicate of every other subscribe, as a sender that retries does.
        if i.is_multiple_of(2) {
            out.push(body("subscribe", i));
        }
    }
    for i in (0..n).filter(|i| cancelled_after(*i)) {
        out.push(body("cancel", i));
        if i.is_multiple_of(8) {
            out.push(body("cancel", i));
        }
    }
    out
}

fn fault(spec: &str) -> FaultRule {
    FaultRule::parse(spec).expect("fault spec")
}

/// Failures on every write, of every passing cause, and on reads.
fn faults() -> Vec<FaultRule> {
    let writes = "error_rate=0.25 status=500,502,503 rate_limit_rate=0.05 latency_ms=15 task_failure_rate=0.08 \
                  task_failure_kinds=generic,timeout,host_busy,lost failed_create_leaves_vm=0.5";
    vec![
        fault(&format!("POST /janus/* {writes}")),
        fault(&format!("PUT /janus/* {writes}")),
        fault(&format!("DELETE /janus/* {writes}")),
        fault("GET /janus/* error_rate=0.05 status=500,503 rate_limit_rate=0.03 latency_ms=5"),
    ]
}

/// Sends webhooks from `queue` until it is empty, each until it gets a 2xx.
async fn sender(url: String, queue: Arc<Mutex<Vec<Value>>>, acked: Arc<AtomicUsize>, tries: Arc<AtomicUsize>) {
    let http = reqwest::Client::new();
    loop {
        let Some(body) = queue.lock().await.pop() else { return };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            tries.fetch_add(1, Ordering::SeqCst);
            match http.post(&url).json(&body).timeout(Duration::from_secs(5)).send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => assert!(matches!(r.status().as_u16(), 429 | 503), "unexpected answer {}", r.status()),
                Err(_) => {} // down, or killed with the request in flight
            }
            assert!(Instant::now() < deadline, "a webhook never got a 2xx");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        acked.fetch_add(1, Ordering::SeqCst);
    }
}

/// Live (not recycled) VMs in the simulator: (tag, status, has an address, busy).
fn sim_vms(sim: &vmauto::sim::SimServer) -> Vec<(String, String, bool, bool)> {
    sim.snapshot()["servers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|s| s["recycled"] != json!(true))
        .map(|s| {
            let tag = crate::common::vm_tag(s);
            let ip = s["ips"].as_array().is_some_and(|a| !a.is_empty());
            (tag, s["status"].as_str().unwrap_or_default().to_string(), ip, !s["busy_task"].is_null())
        })
        .collect()
}

/// The simulator has exactly `live` VMs, all running with an address, no task running
/// anywhere, and has stayed so for `quiet`.
async fn settled(sim: &vmauto::sim::SimServer, live: usize, quiet: Duration, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut since: Option<Instant> = None;
    while t0.elapsed() < limit {
        let vms = sim_vms(sim);
        let busy = sim.snapshot()["servers"].as_array().is_some_and(|a| a.iter().any(|s| !s["busy_task"].is_null()));
        let ok = vms.len() == live && vms.iter().all(|v| v.1 == "running" && v.2) && !busy;
        if ok {
            let at = *since.get_or_insert_with(Instant::now);
            if at.elapsed() >= quiet {
                return Some(at - t0);
            }
        } else {
            since = None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

#[actix_web::test]
async fn scp_faults_and_kills_converge_without_an_admin() {
    vmauto::init_crypto();
    let started = Instant::now();
    let n = subs();
    // CHAOS_KEEP=1 keeps the data directory (the store, each start's log) and prints where.
    let keep = std::env::var_os("CHAOS_KEEP").is_some();
    let dir = tempfile::Builder::new().disable_cleanup(keep).tempdir().expect("tempdir");
    if keep {
        eprintln!("chaos: data directory {}", dir.path().display());
    }
    let sim =
        vmauto::sim::start(SimConfig { task_ms: 150, ip_delay_ms: 100, capacity_factor: 8, ..SimConfig::default() })
            .await
            .expect("simulator starts");
    let mut p = Proc::new_with_policy(
        dir.path(),
        &sim,
        "get_per_minute = 60000\nwrite_per_minute = 60000\nbreaker_cooldown_secs = 2\nrequest_timeout_secs = 5",
        "max_attempts = 25",
        "",
    );
    let config = p.load_config();
    p.with_store(async |s| vmauto::demo::seed(s, &config, "ghl").await.expect("seeded")).await;
    let install = p.with_store(async |s| s.install_id().await.expect("install id")).await;
    for rule in faults() {
        sim.add_fault(rule);
    }

    // Deliver everything from concurrent senders, killing the appliance as acknowledgements
    // pass thresholds spread over the run.
    let mut all = events(n);
    let total = all.len();
    all.reverse(); // senders pop from the end
    let queue = Arc::new(Mutex::new(all));
    let (acked, tries) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    p.start().await;
    p.warm_up().await;
    let url = p.url(&format!("/webhooks/ghl/{TOKEN}"));
    let senders: Vec<_> =
        (0..SENDERS).map(|_| tokio::spawn(sender(url.clone(), queue.clone(), acked.clone(), tries.clone()))).collect();
    let mut kills = 0;
    for k in 1..KILLS {
        let threshold = total * k / KILLS;
        let deadline = Instant::now() + Duration::from_secs(180);
        while acked.load(Ordering::SeqCst) < threshold {
            assert!(
                Instant::now() < deadline,
                "only {} of {total} webhooks acknowledged",
                acked.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        p.kill();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
        p.start().await;
    }
    for s in senders {
        s.await.expect("sender");
    }
    // Once more in the middle of provisioning, with every fault still on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.kill();
    kills += 1;
    p.start().await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    // The faults go away; nobody does anything else.
    sim.clear_faults();
    let expected_live = (0..n).filter(|i| live(*i)).count();
    let converged = settled(&sim, expected_live, Duration::from_secs(3), Duration::from_secs(240)).await;
    p.stop();

    let (vps, ops, inbox) = p
        .with_store(async |s| {
            let vps: Vec<Value> = s
                .query_one("SELECT record::id(id) AS id, subscription, state, server_id, ips FROM vps", json!({}), 0)
                .await
                .expect("vps");
            let ops: Vec<Value> = s
                .query_one(
                    "SELECT record::id(id) AS id, vps, kind, state, attempts, attempt_seq, last_error FROM operation",
                    json!({}),
                    0,
                )
                .await
                .expect("operations");
            let inbox: Vec<Value> = s
                .query_one(
                    "SELECT record::id(id) AS key, status, outcomes, applied, events.map(|$e| $e.subscription_id) AS subs,
                        <string>received_at AS received_at FROM webhook_event",
                    json!({}),
                    0,
                )
                .await
                .expect("inbox");
            (vps, ops, inbox)
        })
        .await;
    // What the inbox holds of a subscription's webhooks, for the messages below.
    let story = |i: usize| -> Vec<&Value> {
        inbox.iter().filter(|r| r["subs"].as_array().is_some_and(|a| a.contains(&json!(sub_name(i))))).collect()
    };
    let open: Vec<&Value> =
        ops.iter().filter(|o| !matches!(o["state"].as_str(), Some("succeeded" | "cancelled"))).collect();
    assert!(open.is_empty(), "every operation finished by itself, none dead: {open:?}");

    // What follows says which VPS or VM differs when SCP did not settle; the settling is
    // checked last, so a failure names the subscription rather than only the wait.
    let vms = sim_vms(&sim);
    let mut by_tag: BTreeMap<&str, Vec<&(String, String, bool, bool)>> = BTreeMap::new();
    for vm in &vms {
        by_tag.entry(vm.0.as_str()).or_default().push(vm);
    }
    for i in 0..n {
        let key = stable_key("ghl", &sub_name(i));
        let mine: Vec<&Value> =
            vps.iter().filter(|v| v["subscription"] == json!(key) && v["state"] != "deleted").collect();
        if live(i) {
            assert_eq!(mine.len(), 1, "{}: exactly one VPS: {mine:?}; its webhooks: {:?}", sub_name(i), story(i));
            let v = mine[0];
            assert_eq!(v["state"], "active", "{}: {v}", sub_name(i));
            assert!(v["ips"].as_array().is_some_and(|a| !a.is_empty()), "{}: its address: {v}", sub_name(i));
            let tag = vmauto::lifecycle::owner_tag(&install, &VpsId::from(v["id"].as_str().expect("id")));
            let found = by_tag.get(tag.as_str()).map_or(0, Vec::len);
            assert_eq!(found, 1, "{}: exactly one running VM with tag {tag}", sub_name(i));
        } else {
            assert!(
                mine.is_empty(),
                "{}: a cancelled subscription keeps no VPS: {mine:?}; its webhooks: {:?}",
                sub_name(i),
                story(i)
            );
        }
    }
    let active: Vec<String> = vps
        .iter()
        .filter(|v| v["state"] == "active")
        .map(|v| vmauto::lifecycle::owner_tag(&install, &VpsId::from(v["id"].as_str().unwrap_or_default())))
        .collect();
    for vm in &vms {
        assert!(active.contains(&vm.0), "orphan VM {vm:?}");
    }
    assert_eq!(vms.len(), expected_live, "live VMs");
    let unsettled: Vec<_> = vms.iter().filter(|v| v.1 != "running" || !v.2 || v.3).collect();
    assert!(
        converged.is_some(),
        "SCP did not settle within 240 s of the faults ending; VMs not running, without an address or busy: {unsettled:?}"
    );

    let attempts: Vec<u64> = ops.iter().map(|o| o["attempt_seq"].as_u64().unwrap_or(1)).collect();
    let retried = attempts.iter().filter(|a| **a > 1).count();
    let tasks = sim.snapshot()["tasks"].as_array().cloned().unwrap_or_default();
    let failed_tasks = tasks.iter().filter(|t| t["status"] == "failure").count();
    eprintln!(
        "chaos: {n} subscriptions, {total} webhooks ({} sends), {kills} SIGKILLs, {} operations \
         (attempts: max {}, mean {:.2}; {retried} needed more than one), {} SCP tasks ({failed_tasks} failed), \
         {expected_live} live VMs; converged {:.1} s after the faults ended; whole run {:.1} s",
        tries.load(Ordering::SeqCst),
        ops.len(),
        attempts.iter().max().copied().unwrap_or(0),
        attempts.iter().sum::<u64>() as f64 / attempts.len().max(1) as f64,
        tasks.len(),
        converged.map_or(f64::NAN, |d| d.as_secs_f64()),
        started.elapsed().as_secs_f64()
    );
    sim.stop().await;
}

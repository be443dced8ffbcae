//! Crash test: the real `vmauto serve` process is killed with SIGKILL at several points of a
//! stream of subscribe and cancel webhooks and started again on the same SurrealKV store. The
//! SCP simulator runs in this test process, so it outlives every appliance restart.
//!
//! A sender that loses an answer retries the same webhook until it gets a 2xx, as billing
//! systems do. Once everything settled, the appliance is stopped and its store is read here:
//! every live subscription has exactly one tagged VM and an `active` VPS, every cancelled one
//! has no VM and a `deleted` VPS, no VM lacks its VPS, no tag was created twice, and every
//! acknowledged webhook is in the inbox with its events applied.
//!
//! Templates are seeded by opening the store in this process before the first start (the
//! embedded store is single-process, so it is only ever opened while the appliance is down).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;
use vmauto::lifecycle::{VpsId, stable_key};
use vmauto::sim::{SimConfig, SimServer};

use crate::common::{Proc, TOKEN, workflow_for};

const SUBS: usize = 30;
/// Cancels whose first answer the sender loses.
const LOST: usize = 5;

fn crash_workflow(event: &str, sub: &str, plan: &str) -> Value {
    workflow_for("Crash Test", event, sub, plan)
}

fn sub_name(i: usize) -> String {
    format!("crash-sub-{i:02}")
}

fn cancelled(i: usize) -> bool {
    i.is_multiple_of(3)
}

/// What the senders saw: the inbox id of every webhook that got a 2xx.
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<String, (u16, String)>,
    attempts: usize,
}

/// Sends one webhook until it gets a 2xx (retrying lost answers and 429s, as a sender would).
async fn deliver(
    http: reqwest::Client,
    url: String,
    name: String,
    body: Value,
    ledger: Arc<Mutex<Ledger>>,
    ok: Arc<AtomicUsize>,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        ledger.lock().await.attempts += 1;
        match http.post(&url).json(&body).timeout(Duration::from_secs(5)).send().await {
            Ok(r) if r.status().is_success() => {
                let status = r.status().as_u16();
                let answer: Value = r.json().await.unwrap_or(Value::Null);
                let id = answer["id"].as_str().unwrap_or_default().to_string();
                let mut l = ledger.lock().await;
                // A retry after a lost answer may see 200 duplicate; the first 2xx's id stands
                // and both must name the same row.
                if let Some((_, first)) = l.acked.get(&name) {
                    assert_eq!(first, &id, "a retried webhook maps to the same inbox row");
                } else {
                    l.acked.insert(name, (status, id));
                }
                ok.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(r) => assert!(
                r.status().as_u16() == 429 || r.status().as_u16() == 503,
                "unexpected answer {} for {name}",
                r.status()
            ),
            Err(_) => {} // the appliance is down, or was killed with the request in flight
        }
        assert!(Instant::now() < deadline, "{name} never got a 2xx");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends webhooks concurrently; returns their tasks and the counter of 2xx answers.
fn send_all(
    p: &Proc,
    items: Vec<(String, Value)>,
    stagger_ms: u64,
    ledger: &Arc<Mutex<Ledger>>,
) -> (Vec<tokio::task::JoinHandle<()>>, Arc<AtomicUsize>) {
    let http = reqwest::Client::new();
    let ok = Arc::new(AtomicUsize::new(0));
    let url = p.url(&format!("/webhooks/ghl/{TOKEN}"));
    let tasks = items
        .into_iter()
        .enumerate()
        .map(|(n, (name, body))| {
            let (http, url, ledger, ok) = (http.clone(), url.clone(), ledger.clone(), ok.clone());
            tokio::spawn(async move {
                // Staggered, so kills land between answers.
                tokio::time::sleep(Duration::from_millis(stagger_ms * n as u64)).await;
                deliver(http, url, name, body, ledger, ok).await;
            })
        })
        .collect();
    (tasks, ok)
}

async fn until(n: usize, ok: &AtomicUsize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ok.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "only {} of {n} webhooks acknowledged", ok.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        t.await.expect("sender");
    }
}

/// Servers in the simulator (recycled ones included) with their tag (`vmauto:…` in the
/// description), whether they are in the recycle bin, and whether a task runs on them.
fn sim_servers(sim: &SimServer) -> Vec<(Option<String>, bool, bool, bool)> {
    let state = sim.snapshot();
    state["servers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let tag = s["description"]
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
                .find(|w| w.starts_with("vmauto:"))
                .map(str::to_owned);
            let has_ip = s["ips"].as_array().is_some_and(|a| !a.is_empty());
            (tag, s["recycled"] == json!(true), !s["busy_task"].is_null(), has_ip)
        })
        .collect()
}

/// Prints what the simulator and the appliance's logs say about unfinished operations.
fn explain(p: &Proc, sim: &SimServer, install: &str, open_ops: &[Value]) {
    let state = sim.snapshot();
    let servers = state["servers"].as_array().cloned().unwrap_or_default();
    let tasks = state["tasks"].as_array().cloned().unwrap_or_default();
    for op in open_ops {
        let vps = op["vps"].as_str().unwrap_or_default();
        let tag = vmauto::lifecycle::owner_tag(install, &VpsId::from(vps));
        for s in servers.iter().filter(|s| s["description"].as_str().is_some_and(|d| d.contains(&tag))) {
            eprintln!(
                "  vps {vps}: VM {} status {} ips {} busy {} recycled {}",
                s["id"], s["status"], s["ips"], s["busy_task"], s["recycled"]
            );
            let id = s["id"].as_str().unwrap_or_default();
            for t in tasks.iter().filter(|t| t.to_string().contains(id)) {
                eprintln!("    task {t}");
            }
        }
        let op_id = op["id"].as_str().unwrap_or_default();
        for n in 1..=p.starts {
            let log = std::fs::read_to_string(p.dir.join(format!("run-{n}.log"))).unwrap_or_default();
            for line in log.lines().filter(|l| l.contains(vps) || l.contains(op_id)) {
                eprintln!("    run {n}: {line}");
            }
        }
    }
}

/// Why a subscription ended in the wrong state: its webhooks as acknowledged, their inbox
/// rows, and every appliance log line about it.
fn explain_subscription(p: &Proc, sub: &str, vps: &Value, ledger: &Ledger, inbox: &[Value]) {
    eprintln!("crash test: {sub} ended as {vps}");
    let vps_id = vps["id"].as_str().unwrap_or_default();
    let mut needles = vec![sub.to_string(), vps_id.to_string()];
    for (label, (status, key)) in ledger.acked.iter().filter(|(label, _)| label.ends_with(sub)) {
        eprintln!("  {label}: answered {status}, inbox row {key}");
        for row in inbox.iter().filter(|r| r["id"] == json!(key)) {
            eprintln!("    {row}");
        }
        needles.push(key.clone());
    }
    for n in 1..=p.starts {
        let log = std::fs::read_to_string(p.dir.join(format!("run-{n}.log"))).unwrap_or_default();
        for line in log.lines().filter(|l| needles.iter().any(|k| !k.is_empty() && l.contains(k.as_str()))) {
            eprintln!("    run {n}: {line}");
        }
    }
}

/// The simulator shows the expected end state and has for `quiet` (no task running, the
/// expected number of live VMs, each with an IP).
async fn wait_sim_quiet(sim: &SimServer, live: usize, quiet: Duration, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut since: Option<Instant> = None;
    while Instant::now() < deadline {
        let servers = sim_servers(sim);
        let running: Vec<_> = servers.iter().filter(|s| !s.1).collect();
        let settled = running.len() == live && running.iter().all(|s| !s.2 && s.3) && servers.iter().all(|s| !s.2);
        if settled {
            let t = *since.get_or_insert_with(Instant::now);
            if t.elapsed() >= quiet {
                return true;
            }
        } else {
            since = None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[actix_web::test]
async fn sigkill_at_any_point_loses_and_duplicates_nothing() {
    vmauto::init_crypto();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = vmauto::sim::start(SimConfig {
        task_ms: 400,
        ip_delay_ms: 300,
        state_file: Some(dir.path().join("sim-state.json")),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let mut p = Proc::new(dir.path(), &sim, "get_per_minute = 60000\nwrite_per_minute = 60000", "");
    let config = p.load_config();
    let seeded = p.with_store(async |s| vmauto::demo::seed(s, &config, "ghl").await.expect("seeded")).await;
    assert_eq!(seeded, 3);
    let install = p.with_store(async |s| s.install_id().await.expect("install id")).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let plans = ["starter", "business", "pro"];
    let subscribe = |r: std::ops::Range<usize>| -> Vec<(String, Value)> {
        r.map(|i| (format!("subscribe {}", sub_name(i)), crash_workflow("subscribe", &sub_name(i), plans[i % 3])))
            .collect()
    };
    let mut kills = 0;

    // 1. Ten subscribes, SIGKILL the moment the last is acknowledged: rows are committed but
    //    their events may not be applied yet.
    p.start().await;
    p.warm_up().await;
    let (tasks, ok) = send_all(&p, subscribe(0..10), 15, &ledger);
    until(10, &ok).await;
    p.kill();
    kills += 1;
    join(tasks).await;
    p.start().await;
    p.warm_up().await;

    // 2. Ten more, SIGKILL after five answers, with requests in flight: their answers are
    //    lost and the senders retry against the restarted process.
    let (tasks, ok) = send_all(&p, subscribe(10..20), 15, &ledger);
    until(5, &ok).await;
    p.kill();
    kills += 1;
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.start().await;
    p.warm_up().await;
    join(tasks).await;

    // 3. During the creates (tasks take 400 ms, IPs 300 ms more): kill twice.
    tokio::time::sleep(Duration::from_millis(450)).await;
    p.kill();
    kills += 1;
    p.start().await;
    p.warm_up().await;
    let (tasks, ok) = send_all(&p, subscribe(20..30), 15, &ledger);
    until(10, &ok).await;
    join(tasks).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    p.kill();
    kills += 1;
    p.start().await;
    p.warm_up().await;

    // 4. Cancel a third of them (some still provisioning), killing at the first answer,
    //    then again during the deletions.
    let cancels: Vec<(String, Value)> = (0..SUBS)
        .filter(|i| cancelled(*i))
        .map(|i| (format!("cancel {}", sub_name(i)), crash_workflow("cancel", &sub_name(i), plans[i % 3])))
        .collect();
    // Five of them are committed and answered, but the sender never sees the answer (it is
    // lost on the way); the process dies right after.
    let http = reqwest::Client::new();
    for (_, body) in cancels.iter().take(LOST) {
        let r = http.post(p.url(&format!("/webhooks/ghl/{TOKEN}"))).json(body).send().await.expect("sent");
        assert_eq!(r.status().as_u16(), 202);
    }
    p.kill();
    kills += 1;
    p.start().await;
    p.warm_up().await;
    // The sender retries those with the other five, all at once; killed at the first answer.
    let (tasks, ok) = send_all(&p, cancels, 0, &ledger);
    until(1, &ok).await;
    p.kill();
    kills += 1;
    p.start().await;
    p.warm_up().await;
    join(tasks).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.kill();
    kills += 1;
    p.start().await;
    p.warm_up().await;

    // 5. Settle: the simulator quiet with the expected VMs, then the store says every
    //    operation finished (restart and wait again otherwise, a bounded number of times).
    let live = (0..SUBS).filter(|i| !cancelled(*i)).count();
    let mut open_ops = Vec::new();
    for round in 0..3 {
        let quiet = wait_sim_quiet(&sim, live, Duration::from_secs(2), 40).await;
        p.stop();
        open_ops = p
            .with_store(async |s| {
                s.query_one::<Vec<Value>>(
                    "SELECT record::id(id) AS id, vps, kind, state, attempts, last_error FROM operation
                     WHERE state NOT IN ['succeeded', 'cancelled']",
                    json!({}),
                    0,
                )
                .await
                .expect("operations")
            })
            .await;
        if quiet && open_ops.is_empty() {
            break;
        }
        eprintln!("crash test: round {round}: sim quiet = {quiet}, open operations: {open_ops:?}");
        explain(&p, &sim, &install, &open_ops);
        if round < 2 {
            p.start().await;
            p.warm_up().await;
        }
    }
    assert!(open_ops.is_empty(), "operations left unfinished: {open_ops:?}");

    // 6. The checks, against the store and the simulator.
    let ledger = ledger.lock().await;
    let (vps, inbox) = p
        .with_store(async |s| {
            let vps: Vec<Value> = s
                .query_one("SELECT record::id(id) AS id, subscription, state, server_id FROM vps", json!({}), 0)
                .await
                .expect("vps");
            let ids: Vec<&String> = ledger.acked.values().map(|(_, id)| id).collect();
            let inbox: Vec<Value> = s
                .query_one(
                    "SELECT record::id(id) AS id, status, outcomes FROM webhook_event WHERE record::id(id) IN $ids",
                    json!({ "ids": ids }),
                    0,
                )
                .await
                .expect("inbox");
            (vps, inbox)
        })
        .await;
    let servers = sim_servers(&sim);
    let mut tags_live: BTreeMap<String, usize> = BTreeMap::new();
    let mut tags_all: BTreeMap<String, usize> = BTreeMap::new();
    for (tag, recycled, _, _) in &servers {
        let tag = tag.clone().unwrap_or_else(|| "(untagged)".into());
        *tags_all.entry(tag.clone()).or_default() += 1;
        if !recycled {
            *tags_live.entry(tag).or_default() += 1;
        }
    }
    for (tag, n) in &tags_all {
        assert_eq!(*n, 1, "VM tag {tag} was created {n} times (duplicate create)");
    }
    let by_id: BTreeMap<String, &Value> =
        vps.iter().map(|v| (v["id"].as_str().unwrap_or_default().to_string(), v)).collect();
    for i in 0..SUBS {
        let key = stable_key("ghl", &sub_name(i));
        let mine: Vec<&Value> = vps.iter().filter(|v| v["subscription"] == json!(key)).collect();
        assert_eq!(mine.len(), 1, "{}: exactly one VPS record: {mine:?}", sub_name(i));
        let v = mine[0];
        let expected_state = if cancelled(i) { "deleted" } else { "active" };
        if v["state"] != expected_state {
            explain_subscription(&p, &sub_name(i), v, &ledger, &inbox);
        }
        let tag = vmauto::lifecycle::owner_tag(&install, &VpsId::from(v["id"].as_str().expect("id")));
        if cancelled(i) {
            assert_eq!(v["state"], "deleted", "{}: {v}", sub_name(i));
            assert!(!tags_live.contains_key(&tag), "{}: its VM is still there", sub_name(i));
        } else {
            assert_eq!(v["state"], "active", "{}: {v}", sub_name(i));
            assert_eq!(tags_live.get(&tag), Some(&1), "{}: exactly one live VM with tag {tag}", sub_name(i));
        }
    }
    for tag in tags_live.keys() {
        let id = tag.rsplit(':').next().unwrap_or_default();
        let owner = by_id.get(id);
        assert!(
            tag.starts_with(&format!("vmauto:{install}:")) && owner.is_some_and(|v| v["state"] == "active"),
            "orphan VM {tag}: {owner:?}"
        );
    }
    assert_eq!(tags_live.len(), live, "live VMs: {tags_live:?}");
    let expected: BTreeSet<&String> = ledger.acked.values().map(|(_, id)| id).collect();
    assert_eq!(ledger.acked.len(), SUBS + SUBS / 3, "every webhook acknowledged");
    assert_eq!(expected.len(), ledger.acked.len(), "distinct inbox rows");
    let found: BTreeSet<String> = inbox.iter().filter_map(|r| r["id"].as_str().map(str::to_owned)).collect();
    for id in &expected {
        assert!(found.contains(*id), "acknowledged webhook {id} is not in the inbox");
    }
    for row in &inbox {
        assert_eq!(row["status"], "processed", "every acknowledged webhook was applied: {row}");
    }
    let dup_answers = ledger.acked.values().filter(|(s, _)| *s == 200).count();
    assert!(dup_answers >= LOST, "a webhook whose answer was lost is a duplicate when retried ({dup_answers})");
    eprintln!(
        "crash test: {kills} SIGKILLs, {} starts, {} webhooks acknowledged ({} first answered as duplicates after a lost \
         answer), {} send attempts, {} VMs created, {live} live, in {:.1} s",
        p.starts,
        ledger.acked.len(),
        dup_answers,
        ledger.attempts,
        tags_all.len(),
        started.elapsed().as_secs_f64()
    );
    sim.stop().await;
}

/// Sends `bodies` one at a time until each gets a 2xx; answers their inbox ids.
async fn acknowledged(p: &Proc, bodies: &[Value]) -> Vec<String> {
    let http = reqwest::Client::new();
    let url = p.url(&format!("/webhooks/ghl/{TOKEN}"));
    let mut ids = Vec::new();
    for body in bodies {
        let answer: Value = loop {
            match http.post(&url).json(body).timeout(Duration::from_secs(5)).send().await {
                Ok(r) if r.status().is_success() => break r.json().await.expect("answer"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        ids.push(answer["id"].as_str().expect("inbox id").to_string());
    }
    ids
}

/// A crash can cut the last record of the store's log short; the next start repairs the log.
/// What that start acknowledges must survive the crash after it as well (the storage engine
/// wrote it to the log file the repair had replaced, until the appliance opened such a store
/// twice).
#[actix_web::test]
async fn what_a_start_after_a_torn_log_acknowledges_survives_the_next_crash() {
    if crate::common::surreal::shared_url().is_some() {
        return; // the embedded store's log; a server keeps its own
    }
    vmauto::init_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = vmauto::sim::start(SimConfig::default()).await.expect("simulator starts");
    let mut p = Proc::new(dir.path(), &sim, "", "");
    let batch = |from: usize| -> Vec<Value> {
        (from..from + 5).map(|i| crash_workflow("subscribe", &format!("torn-{i}"), "no-such-plan")).collect()
    };
    p.start().await;
    let mut ids = acknowledged(&p, &batch(0)).await;
    p.kill();

    // The tail of a record the crash cut short: a header whose length runs past its block.
    let wal = dir.path().join("store/wal");
    let segment = std::fs::read_dir(&wal)
        .expect("the store's log")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a log segment");
    let mut bytes = std::fs::read(&segment).expect("segment");
    const BLOCK: usize = 32 * 1024;
    if BLOCK - bytes.len() % BLOCK < 16 {
        bytes.resize(bytes.len().next_multiple_of(BLOCK), 0);
    }
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x7f, 0xff, 1, 42, 42, 42]);
    std::fs::write(&segment, bytes).expect("torn tail written");

    p.start().await;
    let logs = || {
        let mut all = String::new();
        for e in std::fs::read_dir(dir.path()).expect("data dir").flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        all
    };
    assert!(logs().contains("Attempting repair"), "the start found the torn record and repaired the log");
    ids.extend(acknowledged(&p, &batch(5)).await);
    p.kill();

    p.start().await;
    p.stop();
    let stored: Vec<String> = p
        .with_store(async |s| {
            s.query_one("SELECT VALUE record::id(id) FROM webhook_event", json!({}), 0).await.expect("inbox")
        })
        .await;
    let missing: Vec<&String> = ids.iter().filter(|id| !stored.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged webhooks missing from the inbox: {missing:?} of {ids:?}");
    sim.stop().await;
}

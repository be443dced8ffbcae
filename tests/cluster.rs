//! Cluster test (`tests/run-cluster.sh`): three `vmauto serve` processes on one SurrealDB
//! server, behind a small HTTP balancer in this test that sends each request to the next
//! node and, when a node does not answer, to the one after it. A burst of 200 subscribes
//! with one follower SIGKILLed in the middle, then 100 cancels with the node holding the work
//! lease SIGKILLed in the middle, then a rolling restart of the two that are left while more
//! webhooks arrive. Afterwards: every acknowledged webhook is in the inbox and applied, every
//! subscription has one VPS in the state its events ask for, no VM was created twice, no VM
//! is without its VPS, every operation finished. Prints how long the takeover took.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;
use vmauto::lifecycle::{VpsId, stable_key};
use vmauto::sim::SimConfig;

use crate::common::surreal::SurrealServer;
use crate::common::{Proc, TOKEN, workflow_for};

const SUBS: usize = 200;
const CANCELS: usize = 100;
const LATE: usize = 60;

fn sub(i: usize) -> String {
    format!("cl-{i:03}")
}

/// Sends one webhook through the balancer until it gets a 2xx; records the inbox id.
async fn deliver(url: String, name: String, body: Value, acked: Arc<Mutex<BTreeMap<String, String>>>) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.post(&url).json(&body).timeout(Duration::from_secs(15)).send().await {
            let status = r.status().as_u16();
            if r.status().is_success() {
                let answer: Value = r.json().await.unwrap_or(Value::Null);
                let id = answer["id"].as_str().unwrap_or_default().to_string();
                acked.lock().await.insert(name, id);
                return;
            }
            assert!(matches!(status, 429 | 502 | 503), "{name}: unexpected answer {status}");
        }
        assert!(Instant::now() < deadline, "{name} never got a 2xx");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn send_all(
    url: &str,
    items: Vec<(String, Value)>,
    acked: &Arc<Mutex<BTreeMap<String, String>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    items
        .into_iter()
        .enumerate()
        .map(|(n, (name, body))| {
            let (url, acked) = (url.to_string(), acked.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5 * n as u64)).await;
                deliver(url, name, body, acked).await;
            })
        })
        .collect()
}

async fn until(n: usize, acked: &Mutex<BTreeMap<String, String>>, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().await.keys().filter(|k| k.starts_with(prefix)).count() < n {
        assert!(Instant::now() < deadline, "not {n} {prefix} acknowledged");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn readyz(port: u16) -> Option<Value> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await.ok()?;
    r.json().await.ok()
}

/// The node holding the work lease, among `nodes` (index), waiting for one.
async fn leader(nodes: &[Proc], alive: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for &i in alive {
            if readyz(nodes[i].port).await.is_some_and(|r| r["leader"] == json!(true)) {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no node took the work lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
#[ignore = "cluster test: tests/run-cluster.sh"]
async fn three_nodes_lose_a_follower_and_the_leader_and_nothing_is_lost() {
    vmauto::init_crypto();
    let server = SurrealServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sim =
        vmauto::sim::start(SimConfig { task_ms: 300, ip_delay_ms: 200, capacity_factor: 20, ..SimConfig::default() })
            .await
            .expect("simulator starts");
    let mut nodes = crate::common::cluster::nodes(&server, &sim, dir.path(), 3);
    let config = nodes[0].load_config();
    let store = vmauto::db::Store::open(&config).await.expect("the server's store");
    vmauto::demo::seed(&store, &config, "ghl").await.expect("seeded");
    let install = store.install_id().await.expect("install id");
    for n in &mut nodes {
        n.start().await;
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let (lb, lb_handle) = crate::common::cluster::balancer(ports).await;
    let url = format!("http://127.0.0.1:{lb}/webhooks/ghl/{TOKEN}");
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let plans = ["starter", "business", "pro"];
    let first = leader(&nodes, &[0, 1, 2]).await;
    let mut alive: Vec<usize> = vec![0, 1, 2];

    // 1. 200 subscribes; a node that does not hold the lease is killed after 50 answers.
    let items = (0..SUBS)
        .map(|i| (format!("subscribe {}", sub(i)), workflow_for("Cluster", "subscribe", &sub(i), plans[i % 3])))
        .collect();
    let tasks = send_all(&url, items, &acked);
    until(50, &acked, "subscribe").await;
    let follower = *alive.iter().find(|&&i| i != first).expect("a follower");
    nodes[follower].kill();
    alive.retain(|&i| i != follower);
    for t in tasks {
        t.await.expect("sender");
    }

    // 2. 100 cancels; the leader is killed after 30 answers, while VMs are still being built.
    let items = (0..CANCELS)
        .map(|i| (format!("cancel {}", sub(i)), workflow_for("Cluster", "cancel", &sub(i), plans[i % 3])))
        .collect();
    let tasks = send_all(&url, items, &acked);
    until(30, &acked, "cancel").await;
    nodes[first].kill();
    let killed_at = Instant::now();
    alive.retain(|&i| i != first);
    let next = leader(&nodes, &alive).await;
    let takeover = killed_at.elapsed();
    for t in tasks {
        t.await.expect("sender");
    }

    // 3. A rolling restart of the two nodes left (stop, start; then the other) while 60 more
    //    subscribes arrive through the balancer.
    let items = (SUBS..SUBS + LATE)
        .map(|i| (format!("late {}", sub(i)), workflow_for("Cluster", "subscribe", &sub(i), plans[i % 3])))
        .collect();
    let tasks = send_all(&url, items, &acked);
    for &i in &alive.clone() {
        nodes[i].stop();
        nodes[i].start().await;
    }
    for t in tasks {
        t.await.expect("sender");
    }

    // 4. Settle: every operation finished.
    let open = "SELECT record::id(id) AS id, vps, kind, state, last_error FROM operation
                WHERE state NOT IN ['succeeded', 'cancelled']";
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut unapplied: Vec<Value>;
    loop {
        let ops: Vec<Value> = store.query_one(open, json!({}), 0).await.expect("operations");
        unapplied = store
            .query_one("SELECT record::id(id) AS id FROM webhook_event WHERE status = 'received'", json!({}), 0)
            .await
            .expect("inbox");
        if ops.is_empty() && unapplied.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left unfinished: operations {ops:?}, webhooks {unapplied:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    lb_handle.stop(false).await;

    // 5. The checks.
    let acked = acked.lock().await;
    assert_eq!(acked.len(), SUBS + CANCELS + LATE, "every webhook was acknowledged");
    let ids: Vec<&String> = acked.values().collect();
    let inbox: Vec<Value> = store
        .query_one(
            "SELECT record::id(id) AS id, status FROM webhook_event WHERE record::id(id) IN $ids",
            json!({ "ids": ids }),
            0,
        )
        .await
        .expect("inbox");
    let distinct: std::collections::BTreeSet<&String> = acked.values().collect();
    assert_eq!(inbox.len(), distinct.len(), "every acknowledged webhook is in the inbox (0 lost)");
    let not_applied: Vec<&Value> = inbox.iter().filter(|r| r["status"] != "processed").collect();
    if let Some(first) = not_applied.first() {
        let key = first["id"].as_str().unwrap_or_default();
        let row: Vec<Value> = store
            .query_one("SELECT status, outcomes, events FROM type::record('webhook_event', $k)", json!({ "k": key }), 0)
            .await
            .expect("row");
        panic!("{} webhooks not applied as processed; the first: {row:?}", not_applied.len());
    }
    let vps: Vec<Value> =
        store.query_one("SELECT record::id(id) AS id, subscription, state FROM vps", json!({}), 0).await.expect("vps");
    let sim_state = sim.snapshot();
    let servers = sim_state["servers"].as_array().cloned().unwrap_or_default();
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    let mut live: BTreeMap<String, usize> = BTreeMap::new();
    for s in &servers {
        let tag = crate::common::vm_tag(s);
        *created.entry(tag.clone()).or_default() += 1;
        if s["recycled"] != json!(true) {
            *live.entry(tag).or_default() += 1;
        }
    }
    let duplicates: Vec<_> = created.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "VMs created twice: {duplicates:?}");
    let mut expected_tags = std::collections::BTreeSet::new();
    for i in 0..SUBS + LATE {
        let key = stable_key("ghl", &sub(i));
        let mine: Vec<&Value> = vps.iter().filter(|v| v["subscription"] == json!(key)).collect();
        assert_eq!(mine.len(), 1, "{}: one VPS: {mine:?}", sub(i));
        let tag = vmauto::lifecycle::owner_tag(&install, &VpsId::from(mine[0]["id"].as_str().expect("id")));
        if i < CANCELS {
            assert_eq!(mine[0]["state"], "deleted", "{}", sub(i));
            assert!(!live.contains_key(&tag), "{}: its VM is still there", sub(i));
        } else {
            assert_eq!(mine[0]["state"], "active", "{}", sub(i));
            assert_eq!(live.get(&tag), Some(&1), "{}: one live VM", sub(i));
            expected_tags.insert(tag);
        }
    }
    let orphans: Vec<_> = live.keys().filter(|t| !expected_tags.contains(*t)).collect();
    assert!(orphans.is_empty(), "VMs without their VPS: {orphans:?}");
    eprintln!(
        "cluster test: {} webhooks acknowledged through the balancer, 0 lost, 0 duplicate VMs, 0 orphans; \
         {} VMs live; takeover by {} {:.1} s after the leader was killed (lease_secs = 4)",
        acked.len(),
        live.len(),
        ["n1", "n2", "n3"][next],
        takeover.as_secs_f64()
    );
    for n in &mut nodes {
        n.stop();
    }
}

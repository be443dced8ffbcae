//! The lifecycle under SCP faults injected by the simulator: every operation converges or
//! ends `dead` with an alert; ordering rules hold under out-of-order and overlapping events.

use serde_json::json;
use vmauto::billing::{BillingEvent, EventKind};
use vmauto::sim::SimConfig;
use vmauto::sim::fault::FaultRule;

use crate::common::{Stack, event};

async fn send(s: &Stack, e: BillingEvent) -> Vec<vmauto::actors::subscription::EventOutcome> {
    s.send(e).await
}

fn vps_of(sub: &str) -> String {
    format!(
        "SELECT record::id(id) AS id, state FROM vps WHERE subscription = '{}'",
        vmauto::lifecycle::stable_key("ghl", sub)
    )
}

fn fault(spec: &str) -> FaultRule {
    FaultRule::parse(spec).expect("fault spec")
}

async fn converges_despite(spec: &str) {
    let s = Stack::start_with(SimConfig::default(), |c| c.provider.sangfor.request_timeout_secs = 1).await;
    s.sim.add_fault(fault(spec));
    send(&s, event(EventKind::Subscribe, "sub-f", Some("starter"), None)).await;
    s.wait_for("VPS active despite the fault", 90, &vps_of("sub-f"), |r| r.len() == 1 && r[0]["state"] == "active")
        .await;
    assert_eq!(s.sim_servers().await.len(), 1, "exactly one VM under fault {spec}");
    let dead = s.rows("SELECT * FROM operation WHERE state = 'dead'").await;
    assert!(dead.is_empty(), "{dead:?}");
}

#[actix_web::test]
async fn a_5xx_burst_on_create_converges_to_one_vm() {
    converges_despite("POST /janus/*/servers error_rate=1 status=500,503 times=3").await;
}

#[actix_web::test]
async fn a_429_storm_converges() {
    converges_despite("* /janus/* rate_limit_rate=1 times=6").await;
}

#[actix_web::test]
async fn timeouts_converge() {
    converges_despite("* /janus/*/servers* latency_ms=1500 times=2").await;
}

#[actix_web::test]
async fn dropped_connections_converge() {
    converges_despite("POST /janus/*/servers drop_rate=1 times=2").await;
}

#[actix_web::test]
async fn a_failed_task_ends_dead_with_an_alert() {
    let s = Stack::start().await;
    // A cause only an admin can remove (the pool is full): dead at once, not retried.
    s.sim.add_fault(fault("POST /janus/*/servers task_failure_rate=1 task_failure_kinds=capacity"));
    send(&s, event(EventKind::Subscribe, "sub-t", Some("starter"), None)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ops = s.rows("SELECT VALUE state FROM operation").await;
        if ops == vec![json!("dead")] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "operation did not end dead: {ops:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(s.rows(&vps_of("sub-t")).await[0]["state"], "failed");
    let notes = s
        .wait_for("the alert", 30, "SELECT VALUE kind FROM notification", |r| r.contains(&json!("operation_dead")))
        .await;
    assert!(notes.contains(&json!("operation_dead")), "{notes:?}");
}

#[actix_web::test]
async fn a_persistent_outage_exhausts_retries_and_ends_dead() {
    let s = Stack::start_with(SimConfig::default(), |c| {
        c.policy.max_attempts = 2;
        c.provider.sangfor.max_retries = 1;
    })
    .await;
    s.sim.add_fault(fault("POST /janus/*/servers error_rate=1 status=503"));
    send(&s, event(EventKind::Subscribe, "sub-o", Some("starter"), None)).await;
    let rows = s
        .wait_for("operation dead", 90, "SELECT state, attempts, last_error FROM operation", |r| {
            r.len() == 1 && r[0]["state"] == "dead"
        })
        .await;
    assert_eq!(rows[0]["attempts"], 2, "{rows:?}");
    assert!(s.sim_servers().await.is_empty());
    let notes = s
        .wait_for("the alert", 30, "SELECT VALUE kind FROM notification", |r| r.contains(&json!("operation_dead")))
        .await;
    assert!(notes.contains(&json!("operation_dead")), "{notes:?}");
}

#[actix_web::test]
async fn an_older_event_arriving_late_is_stale() {
    let s = Stack::start_with(SimConfig::default(), |c| c.policy.grace_days = 0).await;
    let out = send(&s, event(EventKind::Subscribe, "sub-o3", Some("starter"), Some("2026-03-01T10:00:00Z"))).await;
    assert_eq!(out[0].status, "processed");
    s.wait_for("VPS active", 60, &vps_of("sub-o3"), |r| r.len() == 1 && r[0]["state"] == "active").await;
    // A cancel stamped before the subscribe arrives after it: stale, nothing deleted.
    let out = send(&s, event(EventKind::Cancel, "sub-o3", None, Some("2026-03-01T09:00:00Z"))).await;
    assert_eq!(out[0].status, "stale", "{out:?}");
    assert_eq!(s.rows(&vps_of("sub-o3")).await[0]["state"], "active");
    assert_eq!(s.sim_servers().await.len(), 1);
}

#[actix_web::test]
async fn a_cancel_during_the_create_is_honoured_once_the_create_settles() {
    let slow = SimConfig { task_ms: 1500, ..SimConfig::default() };
    let s = Stack::start_with(slow, |c| c.policy.grace_days = 0).await;
    send(&s, event(EventKind::Subscribe, "sub-cc", Some("starter"), None)).await;
    let out = send(&s, event(EventKind::Cancel, "sub-cc", None, None)).await;
    assert_eq!(out[0].status, "processed", "{out:?}");
    s.wait_for("VPS deleted", 90, &vps_of("sub-cc"), |r| r.len() == 1 && r[0]["state"] == "deleted").await;
    assert!(s.sim_servers().await.is_empty(), "no VM is left behind");
    let ops = s.rows("SELECT kind, state FROM operation ORDER BY created_at").await;
    assert_eq!(
        ops,
        vec![json!({"kind": "create", "state": "succeeded"}), json!({"kind": "delete", "state": "succeeded"})]
    );
}

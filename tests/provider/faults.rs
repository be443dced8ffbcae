//! Failure handling against injected faults: retries, idempotent writes, the breaker.

use std::time::Duration;

use actix::Actor;
use serde_json::json;
use vmauto::actors::gateway::*;
use vmauto::actors::messages::NotifyKind;
use vmauto::config::SangforAuth;
use vmauto::provider::ProviderError;
use vmauto::provider::traffic::{BreakerState, TrafficPolicy};

use super::harness::{Gw, Inbox, Scp, op, quick_policy, spec, unlimited};

#[actix_web::test]
async fn create_is_idempotent_under_retries_and_resumption() {
    let scp = Scp::start().await;
    let mut config = scp.config(SangforAuth::Ec2);
    config.provider.sangfor.request_timeout_secs = 1;
    let gw = Gw::quick(&config);
    let tag = "vmauto:test:idempotent";
    // First attempt: the answer comes too late (client timeout) although SCP may act on it;
    // then two server errors; the fourth attempt gets through. All carry the same token.
    scp.fault(json!({"method": "POST", "path": "/janus/*/servers", "latency_ms": 1500, "times": 1})).await;
    scp.fault(
        json!({"method": "POST", "path": "/janus/*/servers", "error_rate": 1.0, "statuses": [500, 503], "times": 2}),
    )
    .await;
    let first = gw
        .addr
        .send(CreateServer { spec: spec("idem", tag), op: op("idem") })
        .await
        .unwrap()
        .expect("create succeeds after retries");
    assert!(scp.requests("POST /janus/{v}/servers").await >= 4);
    assert_eq!(gw.metric("vmauto_scp_retries_total{cause=\"timeout\",op=\"create_server\"}"), 1.0);
    assert_eq!(gw.metric("vmauto_scp_retries_total{cause=\"server_error\",op=\"create_server\"}"), 2.0);
    // Let a late first attempt land, if the simulator still runs it.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    gw.wait(&first.task_id).await;
    // A resumed operation (same operation id) sends the same token: the same VM comes back.
    let again =
        gw.addr.send(CreateServer { spec: spec("idem", tag), op: op("idem") }).await.unwrap().expect("replayed create");
    assert_eq!(again, first);
    assert_eq!(scp.servers_tagged(tag).await.len(), 1, "exactly one VM");
}

#[actix_web::test]
async fn storms_of_429_are_ridden_out_honouring_retry_after() {
    let scp = Scp::start().await;
    let config = scp.config(SangforAuth::Ec2);
    let gw = Gw::quick(&config);
    scp.fault(json!({"method": "GET", "path": "/janus/*/azs", "rate_limit_rate": 1.0, "times": 3})).await;
    let zones = gw.addr.send(ListZones).await.unwrap().expect("zones after the storm");
    assert!(!zones.is_empty());
    assert_eq!(scp.requests("GET /janus/{v}/azs").await, 4);
    assert_eq!(gw.metric("vmauto_scp_retries_total{cause=\"rate_limited\",op=\"list_azs\"}"), 3.0);
}

#[actix_web::test]
async fn bursts_of_5xx_timeouts_and_dropped_connections_are_retried() {
    let scp = Scp::start().await;
    let mut config = scp.config(SangforAuth::Ec2);
    config.provider.sangfor.request_timeout_secs = 1;
    let gw = Gw::quick(&config);
    let created = gw
        .addr
        .send(CreateServer { spec: spec("faulty", "vmauto:test:faulty"), op: op("faulty") })
        .await
        .unwrap()
        .expect("create");
    let id = created.server_id.clone().expect("id");
    gw.wait(&created.task_id).await;

    let get = "/janus/*/servers/*";
    scp.fault(json!({"method": "GET", "path": get, "error_rate": 1.0, "statuses": [500, 502, 503], "times": 3})).await;
    gw.addr.send(GetServer { server_id: id.clone() }).await.unwrap().expect("after 5xx burst");
    assert_eq!(gw.metric("vmauto_scp_retries_total{cause=\"server_error\",op=\"get_server\"}"), 3.0);

    scp.fault(json!({"method": "GET", "path": get, "latency_ms": 1500, "times": 2})).await;
    gw.addr.send(GetServer { server_id: id.clone() }).await.unwrap().expect("after timeouts");
    assert_eq!(gw.metric("vmauto_scp_retries_total{cause=\"timeout\",op=\"get_server\"}"), 2.0);

    scp.fault(json!({"method": "GET", "path": get, "drop_rate": 1.0, "times": 2})).await;
    gw.addr.send(GetServer { server_id: id.clone() }).await.unwrap().expect("after dropped connections");
    assert_eq!(gw.metric("vmauto_scp_retries_total{cause=\"connection\",op=\"get_server\"}"), 2.0);

    // A write after a dropped connection: retried with its token, done once.
    scp.fault(json!({"method": "POST", "path": "/janus/*/servers/*/stop", "drop_rate": 1.0, "times": 1})).await;
    let t = gw
        .addr
        .send(StopServer { server_id: id.clone(), op: op("faulty-stop"), force: true })
        .await
        .unwrap()
        .expect("stop after a dropped connection");
    gw.wait(&t).await;
    assert_eq!(scp.requests("POST /janus/{v}/servers/{id}/stop").await, 2);
}

#[actix_web::test]
async fn permanent_errors_are_not_retried() {
    let scp = Scp::start().await;
    let config = scp.config(SangforAuth::Ec2);
    let gw = Gw::quick(&config);
    let r = gw.addr.send(GetServer { server_id: "no-such-server".into() }).await.unwrap();
    assert!(matches!(r, Err(ProviderError::NotFound { .. })), "{r:?}");
    assert_eq!(scp.requests("GET /janus/{v}/servers/{id}").await, 1);

    for (status, check) in [(400u16, "bad_request"), (403, "forbidden"), (409, "conflict")] {
        scp.clear_faults().await;
        scp.fault(json!({"method": "GET", "path": "/janus/*/azs", "error_rate": 1.0, "statuses": [status]})).await;
        let before = scp.requests("GET /janus/{v}/azs").await;
        let r = gw.addr.send(ListZones).await.unwrap().expect_err("fails");
        assert_eq!(r.kind(), check);
        assert!(!r.is_transient());
        assert_eq!(scp.requests("GET /janus/{v}/azs").await - before, 1, "{status} sent once");
    }
    // A create refused as invalid is not retried either (and makes no VM).
    scp.clear_faults().await;
    let mut bad = spec("bad", "vmauto:test:bad");
    bad.image_id = "no-such-image".into();
    let r = gw.addr.send(CreateServer { spec: bad, op: op("bad") }).await.unwrap();
    assert!(r.as_ref().is_err_and(|e| !e.is_transient()), "{r:?}");
    assert_eq!(scp.requests("POST /janus/{v}/servers").await, 1);
}

#[actix_web::test]
async fn breaker_opens_fails_fast_reports_and_closes_after_a_probe() {
    let scp = Scp::start().await;
    let config = scp.config(SangforAuth::Ec2);
    let inbox = Inbox::default();
    let notes = inbox.0.clone();
    let policy = TrafficPolicy {
        max_retries: 0,
        breaker_threshold: 3,
        breaker_cooldown: Duration::from_millis(500),
        ..quick_policy(&config)
    };
    let gw = Gw::start(&config, unlimited(policy), Some(inbox.start().recipient()));
    scp.fault(json!({"method": "GET", "path": "/janus/*/azs", "error_rate": 1.0, "statuses": [503], "times": 3})).await;
    for _ in 0..3 {
        let r = gw.addr.send(ListZones).await.unwrap();
        assert!(matches!(r, Err(ProviderError::Server { status: 503, .. })), "{r:?}");
    }
    let status = gw.addr.send(GetGatewayStatus).await.unwrap();
    assert_eq!(status.breaker, BreakerState::Open);
    assert_eq!(gw.metric("vmauto_scp_breaker_state"), 2.0);
    let r = gw.addr.send(ListZones).await.unwrap();
    assert!(matches!(r, Err(ProviderError::CircuitOpen { .. })), "{r:?}");
    assert_eq!(scp.requests("GET /janus/{v}/azs").await, 3, "nothing sent while open");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(notes.lock().iter().any(|n| n.kind == NotifyKind::BreakerOpen), "open reported");

    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.addr.send(ListZones).await.unwrap().expect("the probe goes through");
    assert_eq!(gw.addr.send(GetGatewayStatus).await.unwrap().breaker, BreakerState::Closed);
    assert_eq!(gw.metric("vmauto_scp_breaker_state"), 0.0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(notes.lock().iter().any(|n| n.kind == NotifyKind::BreakerClosed), "close reported");
}

#[actix_web::test]
async fn gateway_limits_keep_the_simulator_from_refusing() {
    // The simulator refuses beyond 30 writes a minute; the gateway is told the same limit
    // and queues instead of provoking 429s (its burst is 3, then one write every 2 s).
    let scp = Scp::start_with(|c| c.write_per_minute = 30).await;
    let mut config = scp.config(SangforAuth::Ec2);
    config.provider.sangfor.write_per_minute = 30;
    let gw = Gw::quick(&config);
    let mut creates = Vec::new();
    for i in 0..5 {
        let g = gw.addr.clone();
        creates.push(async move {
            g.send(CreateServer { spec: spec(&format!("lim-{i}"), "vmauto:test:limited"), op: op(&format!("lim-{i}")) })
                .await
        });
    }
    for r in futures::future::join_all(creates).await {
        r.unwrap().expect("create");
    }
    assert_eq!(gw.metric("vmauto_scp_requests_total{op=\"create_server\",outcome=\"rate_limited\"}"), 0.0);
    assert_eq!(gw.metric("vmauto_scp_rate_limit_wait_seconds_count{class=\"write\"}"), 5.0);
    assert_eq!(scp.servers_tagged("vmauto:test:limited").await.len(), 5);
}

#[actix_web::test]
async fn power_off_forces_when_the_graceful_stop_fails() {
    let scp = Scp::start().await;
    let config = scp.config(SangforAuth::Ec2);
    let gw = Gw::quick(&config);
    let created = gw
        .addr
        .send(CreateServer { spec: spec("stubborn", "vmauto:test:stubborn"), op: op("stubborn") })
        .await
        .unwrap()
        .expect("create");
    let id = created.server_id.clone().expect("id");
    gw.wait(&created.task_id).await;
    // The guest ignores the ACPI request: the graceful stop task fails.
    scp.fault(json!({"method": "POST", "path": "/janus/*/servers/*/stop", "task_failure_rate": 1.0, "times": 1})).await;
    let done = gw.addr.send(PowerOff { server_id: id.clone(), op: op("stubborn-off") }).await.unwrap().expect("off");
    assert!(done.is_some());
    let server = gw.addr.send(GetServer { server_id: id }).await.unwrap().expect("get");
    assert_eq!(server.status, vmauto::provider::ServerStatus::Stopped);
    assert_eq!(scp.requests("POST /janus/{v}/servers/{id}/stop").await, 2, "graceful, then forced");
    let stops: Vec<_> = scp.state().await["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["action"].as_str().is_some_and(|a| a.contains("stop") || a.contains("off")))
        .map(|t| t["status"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(stops, vec!["failure", "finish"], "the forced stop finished the job");
}

#[actix_web::test]
async fn a_queue_of_writes_does_not_hold_back_reads() {
    let scp = Scp::start().await;
    let mut config = scp.config(SangforAuth::Ec2);
    // One write every 10 s: the second and later creates queue for a long time.
    config.provider.sangfor.write_per_minute = 6;
    let gw = Gw::quick(&config);
    let mut pending = Vec::new();
    for i in 0..6 {
        let g = gw.addr.clone();
        pending.push(actix::spawn(async move {
            let _ = g
                .send(CreateServer { spec: spec(&format!("q-{i}"), "vmauto:test:queue"), op: op(&format!("q-{i}")) })
                .await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        gw.addr.send(ListZones).await.unwrap().expect("reads pass the queued writes");
    }
    assert!(gw.metric("vmauto_scp_queue_depth{class=\"write\"}") >= 4.0, "writes still queued while reads ran");
    assert_eq!(gw.metric("vmauto_scp_queue_depth{class=\"read\"}"), 0.0);
    for p in pending {
        p.abort();
    }
}

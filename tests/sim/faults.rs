//! Each fault kind, set from the command-line syntax and through `/_sim/faults`.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use vmauto::sim::fault::FaultRule;

use super::{Sim, assert_error, create_body};

const S: &str = "/janus/20180725/servers";

#[actix_web::test]
async fn error_rate_with_given_statuses_and_times() {
    let rule = FaultRule::parse("GET /janus/*/azs error_rate=1 status=503 times=2").expect("rule");
    let sim = Sim::start_with(|c| c.faults = vec![rule]).await;
    for _ in 0..2 {
        let (st, v) = sim.get("/janus/20180725/azs").await;
        assert_error(st, &v, 503);
    }
    // `times` spent: back to normal. Other paths were never touched.
    assert_eq!(sim.get("/janus/20180725/azs").await.0, 200);
    assert_eq!(sim.get(S).await.0, 200);
    // Added at run time through the control endpoint.
    let (st, _) = sim
        .control(
            Method::POST,
            "/_sim/faults",
            Some(json!({"method": "POST", "path": "/janus/*/servers", "error_rate": 1.0, "statuses": [500]})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, v) = sim.post(S, create_body("f-1")).await;
    assert_error(st, &v, 500);
    assert_eq!(sim.data(Method::GET, S, None).await["total_size"], 0, "no VM behind an injected error");
    let (st, v) = sim.control(Method::POST, "/_sim/faults", Some(json!({"path": "/x", "error_rate": 3.0}))).await;
    assert_eq!(st, 400, "{v}");
    let (st, _) = sim.control(Method::DELETE, "/_sim/faults", None).await;
    assert_eq!(st, 200);
    assert_eq!(sim.post(S, create_body("f-1")).await.0, 200);
    // Requests are counted per endpoint pattern.
    let state = sim.state().await;
    assert_eq!(state["requests"]["GET /janus/{v}/azs"], 3);
    assert_eq!(state["requests"]["POST /janus/{v}/servers"], 2);
    sim.stop().await;
}

#[actix_web::test]
async fn latency_delays_but_keeps_the_answer_right() {
    let sim = Sim::start().await;
    sim.control(
        Method::POST,
        "/_sim/faults",
        Some(json!({"method": "GET", "path": "/janus/*/azs", "latency_ms": 300})),
    )
    .await;
    let started = Instant::now();
    let (st, v) = sim.get("/janus/20180725/azs").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(st, 200);
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
    sim.stop().await;
}

#[actix_web::test]
async fn task_failure_fails_the_task_and_undoes_its_effect() {
    let sim = Sim::start().await;
    let id = sim.running_vm("tf-1").await;
    sim.control(
        Method::POST,
        "/_sim/faults",
        Some(json!({"method": "POST", "path": "/janus/*/servers/*/stop", "task_failure_rate": 1.0})),
    )
    .await;
    let d = sim.data(Method::POST, &format!("{S}/{id}/stop"), Some(json!({}))).await;
    let t = sim.wait_task(d["task_id"].as_str().expect("task")).await;
    assert_eq!(t["status"], "failure");
    assert!(t["description"].as_str().is_some_and(|m| m.contains("injected")), "{t}");
    assert_eq!(sim.data(Method::GET, &format!("{S}/{id}"), None).await["status"], "running");
    // A failed create leaves no VM.
    sim.control(
        Method::POST,
        "/_sim/faults",
        Some(json!({"method": "POST", "path": "/janus/*/servers", "task_failure_rate": 1.0})),
    )
    .await;
    let (new_id, task) = sim.create("tf-2", json!({})).await;
    assert_eq!(sim.wait_task(&task).await["status"], "failure");
    assert_eq!(sim.get(&format!("{S}/{new_id}")).await.0, 404);
    assert_eq!(sim.state().await["counts"]["tasks_failed"], 2);
    sim.stop().await;
}

#[actix_web::test]
async fn dropped_connections_are_connection_errors() {
    let sim = Sim::start().await;
    sim.control(Method::POST, "/_sim/faults", Some(json!({"path": "/janus/*/servers", "drop_rate": 1.0, "times": 1})))
        .await;
    let err = sim
        .http
        .get(format!("{}{S}", sim.base))
        .header("Authorization", format!("Token {}", sim.token))
        .send()
        .await
        .expect_err("the connection is closed without an answer");
    assert!(!err.is_status() && !err.is_decode(), "{err:?}");
    // The next request (new connection) is served.
    assert_eq!(sim.get(S).await.0, 200);
    sim.stop().await;
}

#[actix_web::test]
async fn forced_429_and_regex_patterns() {
    let rule = FaultRule::parse(r"* re:^/janus/\d+/images$ rate_limit_rate=1").expect("rule");
    let sim = Sim::start_with(|c| c.faults = vec![rule]).await;
    let r = sim
        .http
        .get(format!("{}/janus/20180725/images", sim.base))
        .header("Authorization", format!("Token {}", sim.token))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let v: serde_json::Value = r.json().await.expect("json");
    assert_error(429, &v, 429);
    assert_eq!(sim.get("/janus/20180725/images/x").await.0, 404, "regex is anchored");
    sim.control(Method::POST, "/_sim/reset", None).await;
    assert_eq!(sim.get("/janus/20180725/images").await.0, 200, "reset clears faults");
    sim.stop().await;
}

#[actix_web::test]
async fn in_process_fault_and_state_helpers() {
    let sim = Sim::start().await;
    sim.server.add_fault(FaultRule::parse("GET /janus/*/images error_rate=1 status=502").expect("rule"));
    let (st, v) = sim.get("/janus/20180725/images").await;
    assert_error(st, &v, 502);
    sim.server.clear_faults();
    assert_eq!(sim.get("/janus/20180725/images").await.0, 200);
    sim.running_vm("helper-1").await;
    let snap = sim.server.snapshot();
    assert_eq!(snap["counts"]["servers"], 1);
    assert_eq!(snap["requests"]["GET /janus/{v}/images"], 2);
    sim.server.reset();
    assert_eq!(sim.server.snapshot()["counts"]["servers"], 0);
    sim.stop().await;
}

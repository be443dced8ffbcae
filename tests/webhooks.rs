//! The webhook inbox over HTTP: durable before the 2xx, deduplicated, authenticated, capped,
//! and driving the lifecycle end to end against the simulator.

use serde_json::{Value, json};
use vmauto::actors::webhook::Replay;
use vmauto::config::{Secret, SignatureScheme, SourceConfig};

use crate::common::Stack;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

async fn stack() -> Stack {
    Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        c.policy.grace_days = 0;
        c.server.body_limit_bytes = 4096;
        c.sources.insert(
            "ghl".into(),
            SourceConfig {
                plugin: "ghl-workflow".into(),
                signature: SignatureScheme::SharedToken,
                token: Secret::new(TOKEN),
                token_in: "path".into(),
                ..SourceConfig::default()
            },
        );
    })
    .await
}

fn workflow(event: &str, sub: &str, plan: &str) -> Value {
    json!({
        "contact_id": format!("CNT-{sub}"), "full_name": "Dana <script>alert(1)</script>", "email": "dana@example.com",
        "customData": { "event": event, "plan": plan, "subscription_id": sub }
    })
}

async fn post(s: &Stack, path: &str, body: &Value) -> (u16, Value) {
    let resp = s.t.http.post(s.t.url(path)).json(body).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn vps_of(sub: &str) -> String {
    format!(
        "SELECT record::id(id) AS id, state FROM vps WHERE subscription = '{}'",
        vmauto::lifecycle::store::stable_key("ghl", sub)
    )
}

#[actix_web::test]
async fn a_webhook_provisions_a_vps_and_its_duplicate_changes_nothing() {
    let s = stack().await;
    let body = workflow("subscribe", "sub-w1", "starter");
    let (status, answer) = post(&s, &format!("/webhooks/ghl/{TOKEN}"), &body).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().expect("inbox id").to_string();
    s.wait_for("VPS active", 60, &vps_of("sub-w1"), |r| r.len() == 1 && r[0]["state"] == "active").await;

    let (status, answer) = post(&s, &format!("/webhooks/ghl/{TOKEN}"), &body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["status"], "duplicate");
    assert_eq!(answer["id"], id.as_str());
    assert_eq!(s.sim_servers().await.len(), 1, "the duplicate created nothing");

    let inbox = s.rows(&format!("SELECT status, path, body, events, outcomes FROM webhook_event:{id}")).await;
    assert_eq!(inbox[0]["status"], "processed", "{inbox:?}");
    assert_eq!(inbox[0]["path"], "/webhooks/ghl", "the secret token is not stored");
    assert!(!inbox[0].to_string().contains(TOKEN));
    assert_eq!(inbox[0]["events"][0]["kind"], "subscribe");

    // The seed endpoint for GHL workflows cancels.
    let (status, _) = post(
        &s,
        &format!("/api/vps/deprovision/{TOKEN}"),
        &json!({
            "contact_id": "CNT-sub-w1", "customData": { "subscription_id": "sub-w1" }
        }),
    )
    .await;
    assert_eq!(status, 202);
    s.wait_for("VPS deleted", 60, &vps_of("sub-w1"), |r| r.len() == 1 && r[0]["state"] == "deleted").await;
    assert!(s.sim_servers().await.is_empty());

    let (_, metrics) = s.t.get("/metrics").await;
    assert!(metrics.contains(r#"vmauto_webhooks_total{result="stored",source="ghl"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"vmauto_webhooks_total{result="duplicate",source="ghl"} 1"#), "{metrics}");
    let parsed = sample(&metrics, r#"vmauto_plugin_calls_total{call="parse",outcome="ok",plugin="ghl-workflow"}"#);
    assert!(parsed >= 2.0, "both webhooks went through the source's plugin: {metrics}");
    let chosen = sample(&metrics, r#"vmauto_plugin_calls_total{call="choose",outcome="ok",plugin="plan-table"}"#);
    assert_eq!(chosen, 1.0, "one template chosen: {metrics}");
    let timed = sample(&metrics, r#"vmauto_plugin_call_duration_seconds_count{call="parse",plugin="ghl-workflow"}"#);
    assert_eq!(timed, parsed, "every successful call is timed");
}

/// The value of the sample named exactly `series` (name and labels) in a Prometheus text page.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no sample {series} in {metrics}"))
}

#[actix_web::test]
async fn bad_requests_get_clear_errors_and_are_recorded() {
    let s = stack().await;
    let body = workflow("subscribe", "sub-bad", "starter");

    let (status, answer) = post(&s, "/webhooks/ghl/wrong-token", &body).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["code"], "invalid_signature");
    assert!(answer["message"].as_str().unwrap_or_default().contains("token"), "{answer}");

    let (status, answer) = post(&s, "/webhooks/ghl", &body).await;
    assert_eq!(status, 401, "a missing token is refused: {answer}");

    let resp =
        s.t.http
            .post(s.t.url(&format!("/webhooks/ghl/{TOKEN}")))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    let answer: Value = resp.json().await.expect("json error");
    assert!(answer["message"].as_str().unwrap_or_default().contains("ghl-workflow"), "{answer}");

    let big = json!({ "customData": { "event": "subscribe", "pad": "x".repeat(5000) } });
    let (status, answer) = post(&s, &format!("/webhooks/ghl/{TOKEN}"), &big).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["code"], "payload_too_large");

    let (status, answer) = post(&s, "/webhooks/nobody", &body).await;
    assert_eq!(status, 404, "{answer}");

    let rejected =
        s.rows("SELECT http_status, error FROM webhook_event WHERE status = 'rejected' ORDER BY http_status").await;
    let codes: Vec<&Value> = rejected.iter().map(|r| &r["http_status"]).collect();
    assert_eq!(codes, vec![&json!(400), &json!(401), &json!(401), &json!(413)], "{rejected:?}");
    assert!(s.sim_servers().await.is_empty());
    assert!(s.rows("SELECT * FROM vps").await.is_empty());
    let (_, metrics) = s.t.get("/metrics").await;
    let refused =
        sample(&metrics, r#"vmauto_plugin_calls_total{call="parse",outcome="plugin_rejected",plugin="ghl-workflow"}"#);
    assert_eq!(refused, 1.0, "the body the plugin could not read is counted: {metrics}");
}

#[actix_web::test]
async fn a_parked_event_is_replayed_once_its_plan_is_mapped() {
    let s = stack().await;
    let (status, answer) = post(&s, &format!("/webhooks/ghl/{TOKEN}"), &workflow("subscribe", "sub-p", "gold")).await;
    assert_eq!(status, 202);
    let id = answer["id"].as_str().expect("id").to_string();
    s.wait_for("event parked", 30, &format!("SELECT status AS state FROM webhook_event:{id}"), |r| {
        r.len() == 1 && r[0]["state"] == "parked"
    })
    .await;
    s.t.app
        .state
        .store
        .create("plan_mapping", json!({ "source": "ghl", "plan_key": "gold", "template": "vps-large" }))
        .await
        .expect("mapping");
    let outcomes =
        s.t.app
            .handles()
            .webhook
            .send(Replay { key: id.clone(), requested_by: "admin:test".into() })
            .await
            .expect("delivered")
            .expect("replayed");
    assert_eq!(outcomes[0].status, "processed", "{outcomes:?}");
    s.wait_for("VPS active", 60, &vps_of("sub-p"), |r| r.len() == 1 && r[0]["state"] == "active").await;
    let inbox = s.rows(&format!("SELECT VALUE status FROM webhook_event:{id}")).await;
    assert_eq!(inbox, vec![json!("processed")]);
}

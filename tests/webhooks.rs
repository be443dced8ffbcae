//! The webhook inbox over HTTP: durable before the 2xx, deduplicated, authenticated, capped,
//! and driving the lifecycle end to end against the simulator.

use serde_json::{Value, json};
use vmauto::actors::webhook::{InboxKey, Replay};
use vmauto::config::{Secret, SignatureScheme, SourceConfig};

use crate::common::Stack;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

async fn stack() -> Stack {
    stack_with(|c| c.server.body_limit_bytes = 4096).await
}

/// A stack with source `ghl` (the workflow plugin, token in the path), grace 0, and `edit`.
async fn stack_with(edit: impl FnOnce(&mut vmauto::config::Config)) -> Stack {
    Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        c.policy.grace_days = 0;
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
        edit(c);
    })
    .await
}

/// A workflow webhook whose customer name is markup (shown as text everywhere).
fn workflow(event: &str, sub: &str, plan: &str) -> Value {
    crate::common::workflow_for("Dana <script>alert(1)</script>", event, sub, plan)
}

async fn post(s: &Stack, path: &str, body: &Value) -> (u16, Value) {
    let resp = s.t.http.post(s.t.url(path)).json(body).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn vps_of(sub: &str) -> String {
    format!(
        "SELECT record::id(id) AS id, state FROM vps WHERE subscription = '{}'",
        vmauto::lifecycle::stable_key("ghl", sub)
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
    let id = InboxKey::from(answer["id"].as_str().expect("id"));
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

#[actix_web::test]
async fn refused_webhooks_cost_a_bounded_prefix_within_a_budget() {
    let s = stack_with(|c| {
        c.server.body_limit_bytes = 1 << 20;
        c.webhooks.refused_per_client_per_minute = 3;
    })
    .await;
    // Ten forged webhooks of 200 KB from one address.
    let junk = json!({ "customData": { "event": "subscribe", "pad": "x".repeat(200_000) } });
    for _ in 0..10 {
        let (status, answer) = post(&s, "/webhooks/ghl/forged-token", &junk).await;
        assert_eq!(status, 401, "{answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains("could not be authenticated") && !message.contains("mismatch"), "{answer}");
    }
    let rows = s
        .rows(
            "SELECT string::len(body) AS kept, body_len, body_truncated, body_sha256, error FROM webhook_event
             WHERE status = 'rejected'",
        )
        .await;
    assert_eq!(rows.len(), 3, "only the client's budget of refusals is stored: {}", rows.len());
    let sent = serde_json::to_vec(&junk).expect("json").len() as u64;
    for r in &rows {
        assert_eq!(r["kept"], 1024, "a prefix of the body");
        assert_eq!(r["body_len"].as_u64(), Some(sent));
        assert_eq!(r["body_truncated"], true);
        assert!(r["error"].as_str().is_some_and(|e| e.contains("token")), "the cause is kept for admins: {r}");
    }
    let (_, metrics) = s.t.get("/metrics").await;
    assert_eq!(sample(&metrics, r#"vmauto_webhooks_total{result="refusal_unrecorded",source="ghl"}"#), 7.0);
    // A real webhook still goes through.
    let (status, answer) =
        post(&s, &format!("/webhooks/ghl/{TOKEN}"), &workflow("subscribe", "sub-ok", "starter")).await;
    assert_eq!(status, 202, "{answer}");
}

#[actix_web::test]
async fn the_inbox_keeps_settled_webhooks_only_as_long_as_it_is_told() {
    use vmauto::config::InboxConfig;
    use vmauto::db::inbox::{PurgeReport, purge};

    let s = stack().await;
    let ok = workflow("subscribe", "sub-keep", "starter");
    let (status, answer) = post(&s, &format!("/webhooks/ghl/{TOKEN}"), &ok).await;
    assert_eq!(status, 202, "{answer}");
    let key = InboxKey::from(answer["id"].as_str().expect("id"));
    let (status, _) =
        post(&s, &format!("/webhooks/ghl/{TOKEN}"), &workflow("subscribe", "sub-park", "no-such-plan")).await;
    assert_eq!(status, 202);
    let (status, _) = post(&s, "/webhooks/ghl/forged", &ok).await;
    assert_eq!(status, 401);
    s.wait_for("settled", 30, "SELECT VALUE status FROM webhook_event", |r| {
        r.contains(&json!("processed")) && r.contains(&json!("parked"))
    })
    .await;
    let store = &s.t.app.state.store;
    let config = InboxConfig { retention_days: 30, dedupe_days: 90 };
    let now = chrono::Utc::now();
    assert_eq!(purge(store, &config, now).await.expect("purge"), PurgeReport::default(), "nothing is old yet");

    // A month on: the processed webhook keeps only its key, the refused one is gone, the
    // parked one (an admin still has to act) is kept whole.
    let later = now + chrono::Duration::days(31);
    assert_eq!(purge(store, &config, later).await.expect("purge"), PurgeReport { compacted: 1, deleted: 1 });
    let rows = s.rows("SELECT record::id(id) AS id, status, body, compacted FROM webhook_event ORDER BY status").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let kept = rows.iter().find(|r| r["id"] == json!(key)).expect("the processed webhook's key");
    assert!(kept["body"].is_null() && !kept["compacted"].is_null(), "{kept}");
    let parked = rows.iter().find(|r| r["status"] == "parked").expect("the parked webhook");
    assert!(parked["body"].is_string(), "{parked}");
    // Its sender retrying late is still a duplicate, and the compacted row cannot be replayed.
    let (status, answer) = post(&s, &format!("/webhooks/ghl/{TOKEN}"), &ok).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("duplicate")), "{answer}");
    let replay = vmauto::http::replay_inbox(&s.t.app.state, &key, "admin:test").await;
    assert!(replay.as_ref().is_err_and(|e| e.to_string().contains("compacted")), "{replay:?}");
    // Past the dedupe window the key goes too.
    let much_later = now + chrono::Duration::days(91);
    assert_eq!(purge(store, &config, much_later).await.expect("purge"), PurgeReport { compacted: 0, deleted: 1 });
    assert_eq!(s.rows("SELECT VALUE status FROM webhook_event").await, vec![json!("parked")]);
}

#[actix_web::test]
async fn the_seed_endpoint_without_its_token_says_where_the_token_goes() {
    let s = stack().await;
    let body = workflow("subscribe", "sub-seed", "starter");
    let (status, answer) = post(&s, "/api/vps/provision", &body).await;
    assert_eq!(status, 401, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("/api/vps/provision/<token>"), "{answer}");
    assert!(!message.contains(TOKEN), "never the token itself: {answer}");
    let (status, answer) = post(&s, &format!("/api/vps/provision/{TOKEN}"), &body).await;
    assert_eq!(status, 202, "{answer}");
}

#[actix_web::test]
async fn a_token_in_the_body_is_never_stored_and_only_admins_read_raw_requests() {
    const BODY_TOKEN: &str = "body-token-0123456789abcdef";
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        c.sources.insert(
            "ghl".into(),
            SourceConfig {
                plugin: "ghl-workflow".into(),
                signature: SignatureScheme::SharedToken,
                token: Secret::new(BODY_TOKEN),
                token_in: "body".into(),
                token_field: "auth_token".into(),
                ..SourceConfig::default()
            },
        );
    })
    .await;
    let mut body = workflow("subscribe", "sub-body-token", "starter");
    body["auth_token"] = json!(BODY_TOKEN);
    let (status, answer) = post(&s, "/webhooks/ghl", &body).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().expect("id").to_string();
    let stored = s.rows("SELECT VALUE body FROM webhook_event").await;
    let text = stored[0].as_str().unwrap_or_default();
    assert!(!text.contains(BODY_TOKEN) && text.contains("***"), "{text}");

    let auth = &s.t.app.state.auth;
    let viewer = auth.create_token("reader", vmauto::auth::Role::Viewer, "admin:test").await.expect("token");
    let admin = auth.create_token("boss", vmauto::auth::Role::Admin, "admin:test").await.expect("token");
    let read = |token: String| {
        let req = s.t.http.get(s.t.url(&format!("/api/v1/inbox/{id}"))).bearer_auth(token);
        async move { req.send().await.expect("api").json::<Value>().await.expect("json") }
    };
    let as_viewer = read(viewer).await;
    assert!(as_viewer.get("body").is_none() && as_viewer.get("headers").is_none(), "{as_viewer}");
    assert_eq!(as_viewer["raw_hidden"], true);
    assert!(as_viewer["status"].is_string() && as_viewer["events"].is_array(), "the rest is there: {as_viewer}");
    let as_admin = read(admin).await;
    assert!(as_admin["body"].as_str().is_some_and(|b| b.contains("sub-body-token")), "{as_admin}");
}

#[actix_web::test]
async fn a_body_that_trickles_in_too_slowly_is_refused() {
    let s = stack_with(|c| {
        c.server.body_timeout_secs = 1;
    })
    .await;
    // A body announced as 1000 bytes and sent one byte every 300 ms: it would take minutes.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.t.app.base_url().trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let (mut rd, mut wr) = tokio::io::split(stream);
    let head = format!(
        "POST /webhooks/ghl/{TOKEN} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n"
    );
    wr.write_all(head.as_bytes()).await.expect("head");
    let writer = tokio::spawn(async move {
        for _ in 0..1000 {
            if wr.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("request_timeout") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    let text = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "no answer while the body trickled in");
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
}

#[actix_web::test]
async fn plan_mappings_are_listed_set_and_removed_through_the_api() {
    let s = stack().await;
    let auth = &s.t.app.state.auth;
    let admin = auth.create_token("boss", vmauto::auth::Role::Admin, "admin:test").await.expect("token");
    let viewer = auth.create_token("reader", vmauto::auth::Role::Viewer, "admin:test").await.expect("token");
    let call = |method: reqwest::Method, path: &str, token: &str, body: Option<Value>| {
        let mut r = s.t.http.request(method, s.t.url(&format!("/api/v1{path}"))).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let resp = r.send().await.expect("api");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, list) = call(reqwest::Method::GET, "/plan-mappings", &viewer, None).await;
    assert_eq!(status, 200);
    assert!(list.as_array().is_some_and(|l| l.iter().any(|m| m["plan_key"] == "starter")), "{list}");
    let mapping = json!({ "source": "ghl", "plan_key": "gold", "template": "vps-large" });
    let (status, _) = call(reqwest::Method::PUT, "/plan-mappings", &viewer, Some(mapping.clone())).await;
    assert_eq!(status, 403, "only admins map plans");
    let (status, body) = call(reqwest::Method::PUT, "/plan-mappings", &admin, Some(mapping.clone())).await;
    assert_eq!(status, 200, "{body}");
    let bad = json!({ "source": "nobody", "plan_key": "gold", "template": "vps-large" });
    let (status, body) = call(reqwest::Method::PUT, "/plan-mappings", &admin, Some(bad)).await;
    assert_eq!(status, 400, "an unknown source is named: {body}");
    let bad = json!({ "source": "ghl", "plan_key": "gold", "template": "nope" });
    let (status, body) = call(reqwest::Method::PUT, "/plan-mappings", &admin, Some(bad)).await;
    assert_eq!(status, 400, "an unknown template is named: {body}");
    // The new mapping provisions.
    let (status, _) = post(&s, &format!("/webhooks/ghl/{TOKEN}"), &workflow("subscribe", "sub-gold", "gold")).await;
    assert_eq!(status, 202);
    let key = vmauto::lifecycle::stable_key("ghl", "sub-gold");
    s.wait_for("gold VPS", 60, &format!("SELECT template FROM vps WHERE subscription = '{key}'"), |r| {
        r.len() == 1 && r[0]["template"] == "vps-large"
    })
    .await;
    let (status, _) = call(reqwest::Method::DELETE, "/plan-mappings?source=ghl&plan_key=gold", &admin, None).await;
    assert_eq!(status, 204);
    let (status, _) = call(reqwest::Method::DELETE, "/plan-mappings?source=ghl&plan_key=gold", &admin, None).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn a_marketplace_app_install_is_recorded_and_ignored() {
    let s = stack_with(|c| {
        c.sources.insert(
            "market".into(),
            SourceConfig {
                plugin: "ghl-marketplace".into(),
                signature: SignatureScheme::SharedToken,
                token: Secret::new(TOKEN),
                token_in: "path".into(),
                ..SourceConfig::default()
            },
        );
    })
    .await;
    let install: Value = serde_json::from_str(include_str!("fixtures/webhooks/ghl-install.json")).expect("fixture");
    let uninstall: Value = serde_json::from_str(include_str!("fixtures/webhooks/ghl-uninstall.json")).expect("fixture");
    let mut ids = Vec::new();
    for body in [&install, &uninstall] {
        let (status, answer) = post(&s, &format!("/webhooks/market/{TOKEN}"), body).await;
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["id"].as_str().expect("id").to_string());
    }
    for id in &ids {
        let rows = s
            .wait_for("row settled", 30, &format!("SELECT status, outcomes FROM webhook_event:{id}"), |r| {
                r.len() == 1 && r[0]["status"] != "received"
            })
            .await;
        assert_eq!(rows[0]["status"], "ignored", "recorded, not parked: {rows:?}");
        let detail = rows[0]["outcomes"][0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("not a VPS subscription"), "the plugin's reason is the outcome: {rows:?}");
    }
    assert!(s.rows("SELECT * FROM vps").await.is_empty());
    assert!(s.rows("SELECT * FROM notification").await.is_empty(), "no alert for an app install");
}

#[actix_web::test]
async fn sources_and_settings_are_configured_through_the_api() {
    let s = stack().await;
    let auth = &s.t.app.state.auth;
    let admin = auth.create_token("boss", vmauto::auth::Role::Admin, "admin:test").await.expect("token");
    let operator = auth.create_token("robot", vmauto::auth::Role::Operator, "admin:test").await.expect("token");
    let call = |method: reqwest::Method, path: &str, token: &str, body: Option<String>| {
        let mut r = s.t.http.request(method, s.t.url(&format!("/api/v1{path}"))).bearer_auth(token);
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b);
        }
        async move {
            let resp = r.send().await.expect("api");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Sources and their test box.
    let (status, list) = call(reqwest::Method::GET, "/sources", &admin, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["sources"][0]["name"], "ghl");
    assert!(!list.to_string().contains(TOKEN), "no secret in the list: {list}");
    let payload = workflow("subscribe", "sub-try", "starter").to_string();
    let (status, tried) = call(reqwest::Method::POST, "/sources/ghl/test", &admin, Some(payload.clone())).await;
    assert_eq!(status, 200, "{tried}");
    assert_eq!(tried["events"][0]["kind"], "subscribe", "{tried}");
    assert_eq!(tried["events"][0]["plan_key"], "starter", "{tried}");
    assert!(s.rows("SELECT * FROM webhook_event").await.is_empty(), "a test stores nothing");
    let (status, err) = call(reqwest::Method::POST, "/sources/ghl/test", &admin, Some("{not json".into())).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["message"].as_str().is_some_and(|m| m.contains("refused")), "{err}");
    let (status, _) = call(reqwest::Method::POST, "/sources/nobody/test", &admin, Some(payload.clone())).await;
    assert_eq!(status, 404);
    let (status, _) = call(reqwest::Method::POST, "/sources/ghl/test", &operator, Some(payload)).await;
    assert_eq!(status, 403, "only admins configure sources");

    // Settings: read, change, refuse what cannot be changed; secrets never shown.
    let (status, _) = call(reqwest::Method::GET, "/settings", &operator, None).await;
    assert_eq!(status, 403);
    let change = json!({ "policy.grace_days": 5, "smtp.admin_recipients": ["ops@example.com", "cto@example.com"],
        "notify.webhook_secret": "whsec-of-our-own" });
    let (status, body) = call(reqwest::Method::PUT, "/settings", &admin, Some(change.to_string())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["restart_required"], true);
    assert_eq!(body["changed"].as_array().map(Vec::len), Some(3), "{body}");
    let (status, list) = call(reqwest::Method::GET, "/settings", &admin, None).await;
    assert_eq!(status, 200);
    let find = |key: &str| list["settings"].as_array().and_then(|l| l.iter().find(|v| v["key"] == key)).cloned();
    assert_eq!(find("notify.webhook_secret").expect("listed")["saved"], true);
    assert!(!list.to_string().contains("whsec-of-our-own"), "a secret is never shown: {list}");
    let grace = find("policy.grace_days").expect("listed");
    assert_eq!((grace["saved"].clone(), grace["pending"].clone()), (json!(true), json!("5")), "{grace}");
    let stored = vmauto::settings::stored(&s.t.app.state.store).await.expect("stored");
    assert_eq!(stored["policy.grace_days"], "5");
    assert_eq!(stored["smtp.admin_recipients"], "ops@example.com,cto@example.com");
    for (bad, why) in [
        (json!({ "server.listen": "0.0.0.0:1" }), "cannot be changed here"),
        (json!({ "policy.grace_days": "soon" }), "not a whole number"),
        (json!({ "policy.grace_days": true }), "not a string"),
    ] {
        let (status, err) = call(reqwest::Method::PUT, "/settings", &admin, Some(bad.to_string())).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert!(err["message"].as_str().is_some_and(|m| m.contains(why)), "{bad}: {err}");
    }
    let acts = s.rows("SELECT VALUE message FROM activity WHERE string::contains(message, 'changed settings')").await;
    assert_eq!(acts.len(), 1, "one change, one entry: {acts:?}");
    assert!(!acts[0].to_string().contains("whsec"), "values never reach the activity log");
}

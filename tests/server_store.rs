//! vmauto on a real SurrealDB server (`database.url = ws://…`, root credentials): the schema
//! is migrated there, and the lifecycle runs on it as on the embedded store.

use vmauto::billing::EventKind;

use crate::common::Stack;
use crate::common::surreal::SurrealServer;

#[actix_web::test]
async fn the_lifecycle_runs_on_a_surrealdb_server() {
    let server = SurrealServer::start().await;
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        server.configure(c);
        c.policy.grace_days = 0;
    })
    .await;
    let store = &s.t.app.state.store;
    assert_eq!(store.schema_version().await.expect("version"), vmauto::db::SCHEMA_VERSION);
    let out = s.send(crate::common::event(EventKind::Subscribe, "sub-ws", Some("starter"), None)).await;
    assert_eq!(out[0].status, "processed", "{out:?}");
    let key = vmauto::lifecycle::stable_key("ghl", "sub-ws");
    let sql = format!("SELECT VALUE state FROM vps WHERE subscription = '{key}'");
    s.wait_for("VPS active", 60, &sql, |r| r.first().is_some_and(|v| v == "active")).await;
    assert_eq!(s.sim_servers().await.len(), 1);
    s.send(crate::common::event(EventKind::Cancel, "sub-ws", None, None)).await;
    s.wait_for("VPS deleted", 60, &sql, |r| r.first().is_some_and(|v| v == "deleted")).await;
    assert!(s.sim_servers().await.is_empty());
    // The rows are on the server: a second client sees them.
    let mut other = crate::common::test_config(s.t.dir.path());
    server.configure(&mut other);
    let direct = vmauto::db::Store::connect(&other).await.expect("a second client");
    let rows: Vec<serde_json::Value> = direct.query_one(&sql, serde_json::json!({}), 0).await.expect("query");
    assert_eq!(rows, vec![serde_json::json!("deleted")]);
}

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Posts a workflow webhook; `None` when no answer came within 20 s.
async fn post(s: &Stack, event: &str, sub: &str) -> Option<u16> {
    let body = crate::common::workflow(event, sub, "starter");
    let request = s.t.http.post(s.t.url(&format!("/webhooks/ghl/{TOKEN}"))).json(&body);
    let resp = request.timeout(std::time::Duration::from_secs(20)).send().await.ok()?;
    Some(resp.status().as_u16())
}

/// The server goes away (SIGKILL) and comes back on the same store: while it is away
/// webhooks are answered 429 (GHL retries those), never 5xx and never 2xx; readiness says
/// the store does not answer; once it is back the client has reconnected by itself, the
/// refused webhook goes in, and the work that was under way when the server died finishes,
/// with no VM created twice.
#[actix_web::test]
async fn webhooks_get_429_while_the_server_is_away_and_work_resumes() {
    let mut server = SurrealServer::start().await;
    // SCP's tasks take 3 s, so the server can die while a VM's creation runs on SCP.
    let sim = vmauto::sim::SimConfig { task_ms: 3000, ..Default::default() };
    let s = Stack::start_with(sim, |c| {
        server.configure(c);
        c.policy.grace_days = 0;
        c.database.timeout_secs = 2;
        c.sources.insert(
            "ghl".into(),
            vmauto::config::SourceConfig {
                plugin: "ghl-workflow".into(),
                signature: vmauto::config::SignatureScheme::SharedToken,
                token: vmauto::config::Secret::new(TOKEN),
                token_in: "path".into(),
                ..Default::default()
            },
        );
    })
    .await;
    let state_of = |sub: &str| {
        format!("SELECT VALUE state FROM vps WHERE subscription = '{}'", vmauto::lifecycle::stable_key("ghl", sub))
    };
    let active = |r: &[serde_json::Value]| r.first().is_some_and(|v| v == "active");
    assert_eq!(post(&s, "subscribe", "sub-before").await, Some(202));
    // The server dies while SCP creates this VPS's VM; the webhook after it was stored and
    // not applied yet.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while s.sim_servers().await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "SCP was not asked for the VM");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(post(&s, "subscribe", "sub-stored").await, Some(202));
    server.kill();

    let status = post(&s, "subscribe", "sub-away").await;
    assert_eq!(status, Some(429), "a webhook while the store is away is answered 429 at once");
    let (ready, body) = s.t.get("/readyz").await;
    assert_eq!(ready, 503, "{body}");
    assert!(body.contains("store does not answer"), "{body}");
    assert_eq!(post(&s, "subscribe", "sub-away").await, Some(429), "{}", server.log());

    server.up().await;
    let mut answers = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = post(&s, "subscribe", "sub-away").await.expect("an answer");
        answers.push(status);
        if status == 202 || status == 200 {
            break;
        }
        assert_eq!(status, 429, "while reconnecting: 429, never anything else: {answers:?}");
        assert!(std::time::Instant::now() < deadline, "the webhook was not taken after the server came back");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    s.wait_for("the VPS under way when the server died", 90, &state_of("sub-before"), active).await;
    s.wait_for("the VPS stored before the server died", 90, &state_of("sub-stored"), active).await;
    s.wait_for("the VPS refused while it was away", 90, &state_of("sub-away"), active).await;
    assert_eq!(s.sim_servers().await.len(), 3, "one VM each, none twice");
    let inbox = s.rows("SELECT VALUE status FROM webhook_event ORDER BY received_at").await;
    assert_eq!(inbox, vec!["processed"; 3], "every stored webhook applied, once");
    let (ready, body) = s.t.get("/readyz").await;
    assert_eq!(ready, 200, "{body}");
    let losses = s.t.app.state.store.link().expect("a server link").losses();
    assert!(losses >= 1, "the loss was noticed");
}

/// `wss://`: the server speaks only TLS with a certificate of its own; vmauto trusts it
/// through `database.ca_file`, and without it refuses the server.
#[actix_web::test]
async fn the_store_runs_over_tls_with_the_servers_certificate_trusted() {
    let server = SurrealServer::start_tls().await;
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| server.configure(c)).await;
    let store = &s.t.app.state.store;
    assert_eq!(store.schema_version().await.expect("version"), vmauto::db::SCHEMA_VERSION);
    let out = s.send(crate::common::event(EventKind::Subscribe, "sub-wss", Some("starter"), None)).await;
    assert_eq!(out[0].status, "processed", "{out:?}");
    let key = vmauto::lifecycle::stable_key("ghl", "sub-wss");
    let sql = format!("SELECT VALUE state FROM vps WHERE subscription = '{key}'");
    s.wait_for("VPS active", 60, &sql, |r| r.first().is_some_and(|v| v == "active")).await;

    // Without the CA file the system's trust store does not know the certificate.
    let mut untrusted = crate::common::test_config(s.t.dir.path());
    server.configure(&mut untrusted);
    untrusted.database.ca_file.clear();
    let err = match vmauto::db::Store::connect(&untrusted).await {
        Ok(_) => panic!("a server whose certificate is not trusted is refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("database.url"), "the error names the setting: {err}");
}

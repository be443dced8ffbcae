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
        c.sources.insert("ghl".into(), crate::common::ghl_path_source(TOKEN));
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

/// Appliances starting at once on a new database: selecting it defines it, and the selections
/// may conflict; every one of them opens the store all the same.
#[actix_web::test]
async fn appliances_starting_together_all_open_the_store() {
    let server = SurrealServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = crate::common::test_config(dir.path());
    server.configure(&mut config);
    config.database.namespace = "together".into();
    let opened = futures::future::join_all((0..6).map(|_| vmauto::db::Store::connect(&config))).await;
    for store in opened {
        store.expect("the store opens");
    }
}

/// Two nodes on one server (in this process): one holds the work lease and says so, a
/// webhook sent to the other is applied by it, a duplicate sent to both is stored once, every
/// metric names its node, and when the holder stops the other takes over.
#[actix_web::test]
async fn two_nodes_share_the_work_through_the_lease() {
    let server = SurrealServer::start().await;
    let sim = vmauto::sim::start(vmauto::sim::SimConfig::default()).await.expect("simulator");
    let shared = tempfile::tempdir().expect("tempdir");
    let node = |name: &'static str| node_config(&server, &sim, shared.path(), name);
    let a = crate::common::TestApp::start_with(node("a")).await;
    vmauto::demo::seed(&a.app.state.store, &a.app.state.config, "ghl").await.expect("seeded");
    let b = crate::common::TestApp::start_with(node("b")).await;
    let leader_of = async |t: &crate::common::TestApp| {
        let (status, body) = t.get("/readyz").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        v["leader"] == serde_json::json!(true)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (leader, follower) = loop {
        match (leader_of(&a).await, leader_of(&b).await) {
            (true, false) => break (a, b),
            (false, true) => break (b, a),
            (true, true) => panic!("two nodes hold the lease"),
            (false, false) => assert!(std::time::Instant::now() < deadline, "no node took the lease"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // The API and the dashboard say which node this is and who holds the lease.
    let api = follower.api_get(vmauto::auth::Role::Viewer, "/cluster").await;
    let (leader_id, follower_id) =
        (&leader.app.state.config.cluster.node_id, &follower.app.state.config.cluster.node_id);
    assert_eq!(api["cluster"]["node"], serde_json::json!(follower_id), "{api}");
    assert_eq!(api["cluster"]["holds_lease"], serde_json::json!(false), "{api}");
    assert_eq!(api["cluster"]["lease_node"], serde_json::json!(leader_id), "{api}");
    follower.app.state.auth.add_user("root", crate::ui::PW, vmauto::auth::Role::Admin).await.expect("user");
    let session = crate::ui::login(&follower.app.base_url(), "root").await;
    let (_, page) = crate::ui::get(&follower.app.base_url(), &session, "/").await;
    assert!(page.contains(&format!("held by {leader_id}")), "the dashboard names the holder");
    // So does `vmauto cluster`, from the store.
    let url = follower.app.state.config.database.url.clone();
    let args = [
        format!("--set=database.url={url}"),
        format!("--set=database.username={}", crate::common::surreal::USER),
        format!("--set=database.password={}", crate::common::surreal::PASS),
        "--set=database.database=two".to_string(),
        "--set=cluster.node_id=c".to_string(),
        "cluster".to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(crate::common::binary()).args(&args).env_remove("VMAUTO_CONFIG").output()
    })
    .await
    .expect("ran")
    .expect("vmauto runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("work lease: held by {leader_id}")), "{text}");
    let (_, metrics) = follower.get("/metrics").await;
    let own = format!("vmauto_leader{{node=\"{}\"}} 0", follower.app.state.config.cluster.node_id);
    assert!(metrics.contains(&own), "every series names the node: {own}");

    // A webhook sent to the follower, and the same one to both at once.
    let post = async |t: &crate::common::TestApp, sub: &str| {
        let body = crate::common::workflow("subscribe", sub, "starter");
        t.http.post(t.url(&format!("/webhooks/ghl/{TOKEN}"))).json(&body).send().await.expect("sent").status().as_u16()
    };
    assert_eq!(post(&follower, "sub-f").await, 202);
    let (x, y) = tokio::join!(post(&leader, "sub-both"), post(&follower, "sub-both"));
    let mut answers = [x, y];
    answers.sort();
    assert_eq!(answers, [200, 202], "stored once, the other a duplicate");
    let store = &follower.app.state.store;
    for sub in ["sub-f", "sub-both"] {
        wait_active(store, sub).await;
    }

    // The holder stops (and gives the lease up): the other takes over and applies.
    leader.app.stop().await.expect("stopped");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !leader_of(&follower).await {
        assert!(std::time::Instant::now() < deadline, "the lease was not taken over");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(post(&follower, "sub-after").await, 202);
    wait_active(store, "sub-after").await;
    let servers = sim.snapshot()["servers"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(servers, 3, "one VM per subscription");
}

/// The configuration of cluster node `name` on `server` (database `two`), SCP `sim`, the
/// appliance key in `dir`, source `ghl` with the path token.
fn node_config(
    server: &SurrealServer,
    sim: &vmauto::sim::SimServer,
    dir: &std::path::Path,
    name: &'static str,
) -> impl FnOnce(&mut vmauto::config::Config) {
    let (url, ak, sk) = (sim.base_url(), sim.access_key().to_string(), sim.secret_key().to_string());
    let key = dir.join("appliance.key");
    let (db_url, user) = (server.url(), crate::common::surreal::USER);
    move |c: &mut vmauto::config::Config| {
        c.database.url = db_url;
        c.database.username = user.into();
        c.database.password = vmauto::config::Secret::new(crate::common::surreal::PASS);
        c.database.database = "two".into();
        c.cluster.node_id = name.into();
        c.cluster.lease_secs = 3;
        c.security.key_file = key.display().to_string();
        c.provider.sangfor.base_url = url;
        c.provider.sangfor.access_key = ak;
        c.provider.sangfor.secret_key = vmauto::config::Secret::new(sk);
        c.policy.grace_days = 0;
        c.sources.insert("ghl".into(), crate::common::ghl_path_source(TOKEN));
    }
}

/// SCP's limits hold for the nodes together: each node's own read bucket lets 54 reads go at
/// once (540 a minute, a tenth of it at once), two nodes 108; the budget they share in the
/// store lets 60 go at once and then one each 100 ms. A slow machine only lowers the count
/// seen at any moment, so the bound cannot fail for slowness.
#[actix_web::test]
async fn nodes_together_stay_within_scps_limits() {
    let server = SurrealServer::start().await;
    let sim =
        vmauto::sim::start(vmauto::sim::SimConfig { get_per_minute: 0, ..Default::default() }).await.expect("sim");
    let shared = tempfile::tempdir().expect("tempdir");
    let a = crate::common::TestApp::start_with(node_config(&server, &sim, shared.path(), "a")).await;
    let b = crate::common::TestApp::start_with(node_config(&server, &sim, shared.path(), "b")).await;
    assert_eq!(a.app.state.config.provider.sangfor.get_per_minute, 600);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut calls = Vec::new();
    for t in [&a, &b] {
        for _ in 0..60 {
            let (gw, done) = (t.app.handles().gateway.clone(), done.clone());
            calls.push(tokio::spawn(async move {
                let zones = gw.send(vmauto::actors::gateway::ListZones).await.expect("gateway");
                assert!(zones.is_ok(), "{zones:?}");
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }));
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let early = done.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("reads done within 1.5 s: {early}");
    assert!(early <= 60 + 20, "{early} reads went to SCP within 1.5 s: the nodes did not share the budget");
    for c in calls {
        c.await.expect("call");
    }
    assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 120, "every read went through in the end");
}

/// Waits (through any node's store handle) until subscription `sub` of source `ghl` has an
/// active VPS.
async fn wait_active(store: &vmauto::db::Store, sub: &str) {
    let sql =
        format!("SELECT VALUE state FROM vps WHERE subscription = '{}'", vmauto::lifecycle::stable_key("ghl", sub));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s: Vec<String> = store.query_one(&sql, serde_json::json!({}), 0).await.expect("query");
        if s == ["active"] {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{sub}: {s:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

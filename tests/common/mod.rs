//! Shared test harness: an appliance in-process on port 0 with an in-memory store
//! ([`TestApp`], [`Stack`] with the simulator), the appliance as a separate process
//! ([`process::Proc`]), Python tools in virtualenvs ([`python::venv`]), free ports and
//! webhook bodies.

#![allow(dead_code, reason = "each test module uses a different part of the harness")]

pub mod cluster;
pub mod process;
pub mod python;
pub mod stripe;
pub mod surreal;

use std::path::Path;

pub use process::{Proc, TOKEN, binary, free_port};

/// A GoHighLevel workflow webhook body (source plugin `ghl-workflow`) for `sub` on `plan`.
pub fn workflow(event: &str, sub: &str, plan: &str) -> serde_json::Value {
    workflow_for("Test Customer", event, sub, plan)
}

/// [`workflow`] for a customer called `name`.
pub fn workflow_for(name: &str, event: &str, sub: &str, plan: &str) -> serde_json::Value {
    serde_json::json!({
        "contact_id": format!("CNT-{sub}"), "full_name": name, "email": "customer@example.com",
        "customData": { "event": event, "plan": plan, "subscription_id": sub }
    })
}

use vmauto::app::Appliance;
use vmauto::config::Config;

/// The ownership tag (`vmauto:…`) in a simulator server's description, or `(untagged)`.
pub fn vm_tag(server: &serde_json::Value) -> String {
    server["description"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .find(|w| w.starts_with("vmauto:"))
        .unwrap_or("(untagged)")
        .to_string()
}

/// Source `ghl` as a GoHighLevel workflow sends: the workflow plugin, `token` in the path.
pub fn ghl_path_source(token: &str) -> vmauto::config::SourceConfig {
    vmauto::config::SourceConfig {
        plugin: "ghl-workflow".into(),
        signature: vmauto::config::SignatureScheme::SharedToken,
        token: vmauto::config::Secret::new(token),
        token_in: "path".into(),
        ..Default::default()
    }
}

/// A configuration for tests: `mem://` store (or a database of its own on the server of
/// `TEST_DATABASE_URL`), port 0, key and plugins under `dir`.
pub fn test_config(dir: &Path) -> Config {
    let mut c = Config::for_data_dir(dir);
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.server.workers = 1;
    c.server.shutdown_timeout_secs = 5;
    c.database.url = "mem://".into();
    surreal::use_shared(&mut c);
    c
}

/// A running appliance and the temporary directory it owns.
pub struct TestApp {
    pub app: Appliance,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Self {
        vmauto::init_crypto();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        edit(&mut config);
        let app = vmauto::app::start(config, false).await.expect("appliance starts");
        Self { app, dir, http: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.app.base_url(), path)
    }

    /// GET `/api/v1{path}` with a new API token of `role`; returns the JSON answer.
    pub async fn api_get(&self, role: vmauto::auth::Role, path: &str) -> serde_json::Value {
        let token = self.app.state.auth.create_token("robot", role, "admin:root").await.expect("token");
        let resp = self.http.get(self.url(&format!("/api/v1{path}"))).bearer_auth(&token).send().await.expect("api");
        resp.json().await.expect("json")
    }

    /// GET `path`; returns the status and the body as text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.http.get(self.url(path)).send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }
}

/// An appliance wired to a simulator, with the demo templates seeded for source `ghl`.
pub struct Stack {
    pub t: TestApp,
    pub sim: vmauto::sim::SimServer,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(vmauto::sim::SimConfig::default(), |_| {}).await
    }

    pub async fn start_with(sim: vmauto::sim::SimConfig, edit: impl FnOnce(&mut Config)) -> Self {
        vmauto::init_crypto();
        let sim = vmauto::sim::start(sim).await.expect("simulator starts");
        let (url, ak, sk) = (sim.base_url(), sim.access_key().to_string(), sim.secret_key().to_string());
        let t = TestApp::start_with(move |c| {
            c.provider.sangfor.base_url = url;
            c.provider.sangfor.access_key = ak;
            c.provider.sangfor.secret_key = vmauto::config::Secret::new(sk);
            c.policy.retry_base_secs = 1;
            c.policy.retry_max_secs = 2;
            edit(c);
        })
        .await;
        vmauto::demo::seed(&t.app.state.store, &t.app.state.config, "ghl").await.expect("seeded");
        Self { t, sim }
    }

    /// The simulator's full state.
    pub async fn sim_state(&self) -> serde_json::Value {
        reqwest::get(format!("{}/_sim/state", self.sim.base_url()))
            .await
            .expect("sim state")
            .json()
            .await
            .expect("json")
    }

    /// Simulator servers that are not in the recycle bin.
    pub async fn sim_servers(&self) -> Vec<serde_json::Value> {
        let state = self.sim_state().await;
        state["servers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["recycled"] != serde_json::json!(true))
            .collect()
    }

    /// Runs a query on the appliance's store.
    pub async fn rows(&self, sql: &str) -> Vec<serde_json::Value> {
        self.t.app.state.store.query_one(sql, serde_json::json!({}), 0).await.expect("query")
    }

    /// Polls `sql` (returning one JSON value) until `pred` holds; panics after `secs`.
    pub async fn wait_for(
        &self,
        what: &str,
        secs: u64,
        sql: &str,
        pred: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let rows = self.rows(sql).await;
            if pred(&rows) {
                return rows;
            }
            if std::time::Instant::now() >= deadline || rows.iter().any(|r| r["state"] == "failed") {
                let ops =
                    self.rows("SELECT kind, state, attempts, last_error FROM operation ORDER BY created_at").await;
                panic!("gave up waiting for {what}; last: {rows:?}; operations: {ops:?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// An active VPS row numbered `i`, as benchmarks seed them by the thousand.
pub fn active_vps_row(i: usize) -> serde_json::Value {
    serde_json::json!({
        "key": format!("v{i:07}"), "name": format!("vps-c-{i}"), "state": "active",
        "subscription": format!("s{i:07}"), "source": "ghl", "customer": format!("c{i:07}"),
        "template": "vps-small", "spec": { "cores": 1, "memory_mb": 1024, "disk_gb": 40 },
        "server_id": format!("srv-{i}"), "ips": ["10.0.0.1"],
    })
}

/// A billing event for subscription `sub` of customer `cust-<sub>`.
pub fn event(
    kind: vmauto::billing::EventKind,
    sub: &str,
    plan: Option<&str>,
    at: Option<&str>,
) -> vmauto::billing::BillingEvent {
    vmauto::billing::BillingEvent {
        kind,
        source_event_id: None,
        occurred_at: at.map(|t| t.parse().expect("time")),
        subscription_id: Some(sub.into()),
        customer: vmauto::billing::Customer {
            id: format!("cust-{sub}"),
            name: "Dana <b>Reyes</b>".into(),
            email: "dana@example.com".into(),
        },
        plan_key: plan.map(Into::into),
        attributes: std::collections::BTreeMap::new(),
        choices: Default::default(),
    }
}

impl Stack {
    /// Applies one event from source `ghl` through the subscription actor.
    pub async fn send(&self, e: vmauto::billing::BillingEvent) -> Vec<vmauto::actors::subscription::EventOutcome> {
        let msg = vmauto::actors::subscription::HandleEvents {
            source: "ghl".into(),
            requested_by: "test".into(),
            events: vec![e],
        };
        self.t.app.handles().subscription.send(msg).await.expect("delivered")
    }
}

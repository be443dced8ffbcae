//! A simulator per test, a gateway pointed at it, and helpers to drive `/_sim/…`.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler};
use parking_lot::Mutex;
use serde_json::Value;
use vmauto::actors::gateway::{GatewaySettings, SangforGateway, WaitTask};
use vmauto::actors::messages::Notify;
use vmauto::config::{Config, SangforAuth, Secret};
use vmauto::provider::traffic::{Rate, TrafficPolicy};
use vmauto::provider::{NicSpec, OpKey, PollPolicy, ServerSpec, TaskId, TaskState};
use vmauto::sim::world::{AZ_A, IMG_UBUNTU, SUBNET_A1, TAG_A_SSD, VPC_A};
use vmauto::sim::{SimConfig, SimServer};
use vmauto::telemetry::metrics::Metrics;

/// A running simulator and a plain HTTP client for its control endpoint.
pub struct Scp {
    pub sim: SimServer,
    http: reqwest::Client,
}

impl Scp {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut SimConfig)) -> Self {
        vmauto::init_crypto();
        let mut cfg = SimConfig { task_ms: 50, ip_delay_ms: 20, ..SimConfig::default() };
        edit(&mut cfg);
        let sim = vmauto::sim::start(cfg).await.expect("simulator starts");
        let http = reqwest::Client::builder().tls_danger_accept_invalid_certs(true).build().expect("control client");
        Self { sim, http }
    }

    /// An appliance configuration pointing at this simulator.
    pub fn config(&self, auth: SangforAuth) -> Config {
        let mut c = Config::default();
        let s = &mut c.provider.sangfor;
        s.base_url = self.sim.base_url();
        s.auth = auth;
        s.access_key = self.sim.access_key().into();
        s.secret_key = Secret::new(self.sim.secret_key());
        s.username = self.sim.username().into();
        s.password = Secret::new(self.sim.password());
        s.request_timeout_secs = 5;
        s.soft_stop_timeout_secs = 5;
        c
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.sim.base_url()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("control request");
        assert!(resp.status().is_success(), "control {path}: {}", resp.status());
        resp.json().await.expect("control JSON")
    }

    pub async fn state(&self) -> Value {
        self.control(reqwest::Method::GET, "/_sim/state", None).await
    }

    /// Requests the simulator saw for an endpoint pattern (`GET /janus/{v}/azs`).
    pub async fn requests(&self, pattern: &str) -> u64 {
        let r = self.control(reqwest::Method::GET, "/_sim/requests", None).await;
        r.get(pattern).and_then(Value::as_u64).unwrap_or(0)
    }

    pub async fn fault(&self, rule: Value) {
        self.control(reqwest::Method::POST, "/_sim/faults", Some(rule)).await;
    }

    pub async fn clear_faults(&self) {
        self.control(reqwest::Method::DELETE, "/_sim/faults", None).await;
    }

    pub async fn expire_tokens(&self) -> u64 {
        let v = self.control(reqwest::Method::POST, "/_sim/tokens/expire", None).await;
        v["expired"].as_u64().unwrap_or(0)
    }

    /// A new platform key pair (a reinstalled or upgraded SCP).
    pub async fn rotate_key(&self) {
        self.control(reqwest::Method::POST, "/_sim/key/rotate", None).await;
    }

    /// Live (not recycled) servers whose description carries `tag`.
    pub async fn servers_tagged(&self, tag: &str) -> Vec<Value> {
        let state = self.state().await;
        state["servers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["description"].as_str().is_some_and(|d| d.split_whitespace().any(|w| w == tag)))
            .filter(|s| s["recycled"] != Value::Bool(true))
            .collect()
    }
}

/// A traffic policy for tests: limits as configured, quick retries, breaker as configured.
pub fn quick_policy(config: &Config) -> TrafficPolicy {
    TrafficPolicy {
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(200),
        ..TrafficPolicy::from_config(&config.provider.sangfor)
    }
}

/// No client-side limits (for tests that want to see the simulator's own answers).
pub fn unlimited(policy: TrafficPolicy) -> TrafficPolicy {
    let none = Rate { per_minute: 0, burst: 0 };
    TrafficPolicy { read: none, write: none, customer: none, ..policy }
}

pub fn quick_settings(config: &Config) -> GatewaySettings {
    GatewaySettings {
        poll: PollPolicy { initial: Duration::from_millis(20), max: Duration::from_millis(200), factor: 1.5 },
        ..GatewaySettings::from_config(config)
    }
}

/// A started gateway with its metrics registry.
pub struct Gw {
    pub addr: Addr<SangforGateway>,
    pub metrics: Arc<Metrics>,
}

impl Gw {
    pub fn start(config: &Config, policy: TrafficPolicy, notify: Option<actix::Recipient<Notify>>) -> Self {
        let metrics = Arc::new(Metrics::new());
        let gw = SangforGateway::with_policy(config, Arc::clone(&metrics), notify, policy, quick_settings(config));
        Self { addr: gw.start(), metrics }
    }

    /// A gateway with quick retries.
    pub fn quick(config: &Config) -> Self {
        Self::start(config, quick_policy(config), None)
    }

    /// The value of a `vmauto_scp_*` sample line, e.g. `vmauto_scp_retries_total{cause="timeout",op="get_server"}`,
    /// summed over providers (the `provider` label is left out of the comparison).
    pub fn metric(&self, needle: &str) -> f64 {
        let text = self.metrics.render();
        text.lines()
            .map(without_provider)
            .filter(|l| l.starts_with(needle))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub async fn wait(&self, task_id: &TaskId) -> TaskState {
        self.addr
            .send(WaitTask { task_id: task_id.clone(), timeout: Some(Duration::from_secs(30)) })
            .await
            .expect("mailbox")
            .unwrap_or_else(|e| panic!("task {task_id} failed: {e}"))
    }
}

/// A spec that fits the seeded simulator.
pub fn spec(name: &str, tag: &str) -> ServerSpec {
    ServerSpec {
        name: name.into(),
        zone_id: AZ_A.into(),
        image_id: IMG_UBUNTU.into(),
        storage_tag_id: TAG_A_SSD.into(),
        cores: 2,
        sockets: 1,
        memory_mb: 2048,
        disk_mb: None,
        nics: vec![NicSpec { network_id: VPC_A.into(), subnet_id: SUBNET_A1.into(), ip: None }],
        owner_tag: tag.into(),
        power_on: true,
        hostname: None,
    }
}

pub fn op(name: &str) -> OpKey {
    OpKey::new(format!("operation:{name}"))
}

/// Collects what the gateway tells the notifier.
#[derive(Default, Clone)]
pub struct Inbox(pub Arc<Mutex<Vec<Notify>>>);

impl Actor for Inbox {
    type Context = Context<Self>;
}

impl Handler<Notify> for Inbox {
    type Result = ();

    fn handle(&mut self, msg: Notify, _: &mut Self::Context) {
        self.0.lock().push(msg);
    }
}

/// A sample line without its `provider="…"` label (`name{provider="x"} 1` becomes `name 1`).
pub fn without_provider(line: &str) -> String {
    let Some(at) = line.find("provider=\"") else { return line.to_string() };
    let end = line[at + 10..].find('"').map_or(line.len(), |e| at + 10 + e + 1);
    let mut out = format!("{}{}", &line[..at], &line[end..]);
    out = out.replace(",}", "}").replace("{,", "{").replace("{}", "");
    out
}

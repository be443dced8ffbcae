//! Tests of the SCP simulator over real HTTP, plus the conformance check with the public
//! `sangfor-scp` Python client and the GET throughput benchmark.

mod auth;
mod bench;
mod conformance;
pub mod console;
mod faults;
mod metrics;
mod misc;
mod servers;

use std::time::{Duration, Instant};

use reqwest::Method;
use rsa::{BigUint, Pkcs1v15Encrypt, RsaPublicKey};
use serde_json::{Value, json};
use vmauto::sim::world::{AZ_A, IMG_UBUNTU, SUBNET_A1, TAG_A_SSD, VPC_A};
use vmauto::sim::{SimConfig, SimServer};

/// A running simulator, an HTTP client and a token for its admin user.
pub struct Sim {
    pub server: SimServer,
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

/// Encrypts `plain` with the simulator's public key, as SCP clients do (§2.2).
pub async fn encrypt(http: &reqwest::Client, base: &str, plain: &str) -> String {
    let body: Value = http
        .get(format!("{base}/janus/v2/public-key"))
        .send()
        .await
        .expect("public key request")
        .json()
        .await
        .expect("public key JSON");
    let modulus = body["data"]["public_key"].as_str().expect("public_key in data");
    let n = BigUint::from_bytes_be(&hex::decode(modulus).expect("hex modulus"));
    let key = RsaPublicKey::new(n, BigUint::from(65_537u32)).expect("public key");
    hex::encode(key.encrypt(&mut rand::rngs::OsRng, Pkcs1v15Encrypt, plain.as_bytes()).expect("encrypt"))
}

/// A rustls client config (ring provider) that trusts exactly the simulator's certificate.
pub fn trusting(pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("add root");
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// `POST /janus/authenticate`; returns the status and body.
pub async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> (u16, Value) {
    let cipher = encrypt(http, base, password).await;
    let body = json!({"auth": {"passwordCredentials": {"username": user, "password": cipher}}});
    let resp = http
        .post(format!("{base}/janus/authenticate"))
        .header("Cookie", format!("aCMPAuthToken={}", uuid::Uuid::new_v4().simple()))
        .json(&body)
        .send()
        .await
        .expect("authenticate");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

impl Sim {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut SimConfig)) -> Self {
        let mut config = SimConfig::default();
        edit(&mut config);
        Self::from_config(config).await
    }

    pub async fn from_config(config: SimConfig) -> Self {
        vmauto::init_crypto();
        let server = vmauto::sim::start(config).await.expect("simulator starts");
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(20));
        if let Some(pem) = server.cert_pem() {
            builder = builder.use_preconfigured_tls(trusting(&pem));
        }
        let http = builder.build().expect("client");
        let base = server.base_url();
        let (status, body) = login(&http, &base, server.username(), server.password()).await;
        assert_eq!(status, 200, "login: {body}");
        let token = body["data"]["access"]["token"]["id"].as_str().expect("token id").to_string();
        Self { server, http, base, token }
    }

    /// A request with token auth; returns status and JSON body (Null when empty).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        req = req.header("Authorization", format!("Token {}", self.token));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// The `data` of a 200 answer, failing the test otherwise.
    pub async fn data(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method.clone(), path, body).await;
        assert_eq!(status, 200, "{method} {path}: {v}");
        assert_eq!(v["code"], 0, "{method} {path}: envelope {v}");
        v["data"].clone()
    }

    /// Polls a task until it is over (bounded) and returns it.
    pub async fn wait_task(&self, task_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = self.data(Method::GET, &format!("/janus/20180725/tasks/{task_id}"), None).await;
            if t["status"] == "finish" || t["status"] == "failure" {
                return t;
            }
            assert!(Instant::now() < deadline, "task {task_id} never ended: {t}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a task and asserts it finished.
    pub async fn finish(&self, task_id: &str) -> Value {
        let t = self.wait_task(task_id).await;
        assert_eq!(t["status"], "finish", "task failed: {t}");
        assert_eq!(t["progress"], 100);
        t
    }

    /// Polls a server until `check` holds (bounded).
    pub async fn server_until(&self, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.data(Method::GET, &format!("/janus/20180725/servers/{id}"), None).await;
            if check(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "server {id} never got {what}: {s}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates one VM in POOL-A and returns (server id, task id).
    pub async fn create(&self, name: &str, extra: Value) -> (String, String) {
        let mut body = create_body(name);
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        let d = self.data(Method::POST, "/janus/20180725/servers", Some(body)).await;
        let id = d["uuids"][0].as_str().expect("uuids[0]").to_string();
        (id, d["task_id"].as_str().expect("task_id").to_string())
    }

    /// Creates a VM and waits for it to run.
    pub async fn running_vm(&self, name: &str) -> String {
        let (id, task) = self.create(name, json!({})).await;
        self.finish(&task).await;
        id
    }

    /// A control endpoint call (no auth, plain JSON).
    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("control request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn state(&self) -> Value {
        let (status, v) = self.control(Method::GET, "/_sim/state", None).await;
        assert_eq!(status, 200);
        v
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// A create body in the shape `sangfor-scp` sends (§5.1.1).
pub fn create_body(name: &str) -> Value {
    json!({
        "az_id": AZ_A, "image_id": IMG_UBUNTU, "storage_tag_id": TAG_A_SSD,
        "cores": 2, "sockets": 1, "memory_mb": 2048, "count": 1, "name": name,
        "description": "", "power_on": 1, "location": {"id": "cluster"},
        "networks": [{"vif_id": "net0", "vpc_id": VPC_A, "subnet_id": SUBNET_A1, "connect": 1, "model": "virtio"}],
    })
}

/// Asserts an SCP error envelope with the given status.
pub fn assert_error(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "body: {body}");
    assert!(body["errcode"].as_str().is_some_and(|c| c.starts_with("0x")), "errcode in {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "message in {body}");
}

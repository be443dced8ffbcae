//! The bundled `stripe-billing` source against localstripe, a stateful fake Stripe that signs
//! and delivers real subscription webhooks: a subscription provisions a VPS, its cancellation
//! deprovisions it.

use std::time::Instant;

use serde_json::{Value, json};
use vmauto::config::Secret;

use crate::common::Stack;
use crate::common::stripe::{SECRET_KEY, WHSEC};

/// The `localstripe` command.
fn localstripe_bin() -> std::path::PathBuf {
    crate::common::python::venv("localstripe-venv", &["localstripe==1.15.10"], "localstripe").join("bin/localstripe")
}

/// A running localstripe: a stateful fake Stripe that signs and delivers webhooks.
struct LocalStripe {
    child: std::process::Child,
    base: String,
    http: reqwest::Client,
}

impl LocalStripe {
    async fn start() -> Self {
        let bin = localstripe_bin();
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let child = std::process::Command::new(bin)
            .args(["--port", &port.to_string(), "--from-scratch"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("localstripe starts");
        let me = Self { child, base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let up = me.http.get(format!("{}/v1/customers", me.base)).bearer_auth(SECRET_KEY).send().await;
            if up.is_ok_and(|r| r.status().is_success()) {
                return me;
            }
            assert!(Instant::now() < deadline, "localstripe did not come up on port {port}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> Value {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(SECRET_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("localstripe answers");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap_or(Value::Null)
    }
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn localstripe_subscription_provisions_a_vps_and_its_cancellation_deprovisions_it() {
    use reqwest::Method;
    vmauto::init_crypto();
    let ls = LocalStripe::start().await;
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        c.policy.grace_days = 0;
        c.sources.insert(
            "stripe".into(),
            vmauto::config::SourceConfig {
                plugin: "stripe-billing".into(),
                signature: vmauto::config::SignatureScheme::Stripe,
                secrets: vec![Secret::new(WHSEC)],
                ..Default::default()
            },
        );
    })
    .await;
    s.t.app
        .state
        .store
        .create("plan_mapping", json!({ "source": "stripe", "plan_key": "starter", "template": "vps-small" }))
        .await
        .expect("plan mapping");
    let hook = s.t.url("/webhooks/stripe");
    ls.call(Method::POST, "/_config/webhooks/vmauto", &[("url", &hook), ("secret", WHSEC)]).await;
    ls.call(
        Method::POST,
        "/v1/plans",
        &[("id", "starter"), ("amount", "0"), ("currency", "usd"), ("interval", "month"), ("name", "Starter")],
    )
    .await;
    let customer =
        ls.call(Method::POST, "/v1/customers", &[("email", "dana@example.com"), ("name", "Dana Reyes")]).await;
    let cus = customer["id"].as_str().expect("customer id");
    let sub = ls.call(Method::POST, "/v1/subscriptions", &[("customer", cus), ("items[0][plan]", "starter")]).await;
    assert_eq!(sub["status"], "active", "{sub}");
    let sub_id = sub["id"].as_str().expect("subscription id");

    let key = vmauto::lifecycle::stable_key("stripe", sub_id);
    let sql = format!("SELECT state, spec FROM vps WHERE subscription = '{key}'");
    let rows = s
        .wait_for("VPS from the localstripe subscription", 60, &sql, |r| r.len() == 1 && r[0]["state"] == "active")
        .await;
    assert_eq!(rows[0]["spec"]["cores"], 1);
    assert_eq!(s.sim_servers().await.len(), 1);

    ls.call(Method::DELETE, &format!("/v1/subscriptions/{sub_id}"), &[]).await;
    s.wait_for("VPS deleted after the cancellation", 60, &sql, |r| r.len() == 1 && r[0]["state"] == "deleted").await;
    assert!(s.sim_servers().await.is_empty(), "the VM went to the recycle bin");

    // Every delivery was signed by localstripe and verified; none was refused.
    let inbox = s.rows("SELECT VALUE status FROM webhook_event WHERE source = 'stripe'").await;
    assert!(inbox.len() >= 2, "{inbox:?}");
    assert!(!inbox.contains(&json!("rejected")), "{inbox:?}");
}

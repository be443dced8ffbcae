//! A local stand-in for Stripe's API and hosted checkout page ([`FakeStripe`]), the Stripe
//! configuration tests use, and signed Checkout Session events as Stripe sends them.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::Sha256;
use vmauto::config::{Config, OfferConfig, Secret};

use super::TestApp;

pub const SECRET_KEY: &str = "sk_test_vmauto";
pub const OLD_WHSEC: &str = "whsec_old_rotated";
pub const WHSEC: &str = "whsec_test_secret";

/// One request the fake Stripe API received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub form: Vec<(String, String)>,
}

impl Recorded {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A local stand-in for `api.stripe.com`: `POST /v1/checkout/sessions` records the
/// form-encoded request and answers a Checkout Session shaped like Stripe's.
pub struct FakeStripe {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// While set, every request is refused the way Stripe refuses one.
    pub refuse: Arc<std::sync::atomic::AtomicBool>,
    hosted: Hosted,
    server: actix_web::dev::ServerHandle,
}

async fn create_session(
    req: HttpRequest,
    body: web::Bytes,
    log: web::Data<Arc<Mutex<Vec<Recorded>>>>,
    refuse: web::Data<Arc<std::sync::atomic::AtomicBool>>,
    hosted: web::Data<Hosted>,
) -> HttpResponse {
    let hosted = &hosted.base;
    if refuse.load(std::sync::atomic::Ordering::SeqCst) {
        return HttpResponse::BadRequest().json(json!({ "error": {
            "type": "invalid_request_error", "code": "account_invalid", "message": "Your account cannot accept payments." } }));
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let headers = req
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_string())))
        .collect();
    let n = {
        let mut l = log.lock();
        l.push(Recorded { path: req.path().to_string(), headers, form: form.clone() });
        l.len()
    };
    let get = |k: &str| form.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    if get("line_items[0][price_data][unit_amount]").is_none() {
        return HttpResponse::BadRequest().json(json!({ "error": {
            "type": "invalid_request_error", "message": "Missing required param: line_items[0][price_data][unit_amount]." } }));
    }
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[").and_then(|r| r.strip_suffix(']')).map(|m| (m.to_string(), json!(v)))
        })
        .collect();
    let id = format!("cs_test_fake{n:04}");
    let now = chrono::Utc::now().timestamp();
    HttpResponse::Ok().json(json!({
        "id": id, "object": "checkout.session", "mode": "payment", "status": "open", "payment_status": "unpaid",
        "url": format!("{}/c/pay/{id}", hosted.lock().clone().unwrap_or_else(|| "https://checkout.stripe.test".into())),
        "client_reference_id": get("client_reference_id"),
        "metadata": metadata, "amount_subtotal": get("line_items[0][price_data][unit_amount]").and_then(|a| a.parse::<i64>().ok()),
        "amount_total": get("line_items[0][price_data][unit_amount]").and_then(|a| a.parse::<i64>().ok()),
        "currency": get("line_items[0][price_data][currency]"), "customer": null, "customer_email": null,
        "created": now, "expires_at": now + 86_400, "livemode": false,
        "success_url": get("success_url"), "cancel_url": get("cancel_url"),
        "automatic_tax": { "enabled": false, "liability": null, "provider": null, "status": null },
        "custom_fields": [], "custom_text": { "after_submit": null, "shipping_address": null, "submit": null,
            "terms_of_service_acceptance": null },
        "payment_method_types": ["card"], "shipping_options": [], "payment_intent": null, "invoice": null,
    }))
}

/// The hosted checkout page, when a test turns it on ([`FakeStripe::host_checkout`]): its
/// base URL (the session's `url` points there) and where a payment's signed
/// `checkout.session.completed` event is delivered.
#[derive(Clone, Default)]
pub struct Hosted {
    base: Arc<Mutex<Option<String>>>,
    webhook: Arc<Mutex<Option<String>>>,
}

/// `GET /c/pay/{id}`: a minimal stand-in of Stripe's hosted checkout page.
async fn checkout_page(id: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html><title>Fake Stripe Checkout</title><link rel=icon href=\"data:,\"><h1>Pay for {id}</h1>\
         <form method=post><button id=pay type=submit>Pay</button></form>"
    ))
}

/// `POST /c/pay/{id}`: "pays": delivers the signed paid event to vmauto, then sends the
/// browser to the session's success URL, as Stripe does.
async fn checkout_pay(
    id: web::Path<String>,
    log: web::Data<Arc<Mutex<Vec<Recorded>>>>,
    hosted: web::Data<Hosted>,
) -> HttpResponse {
    let n: usize = id.trim_start_matches("cs_test_fake").parse().unwrap_or(0);
    let Some(rec) = log.lock().get(n.saturating_sub(1)).cloned() else {
        return HttpResponse::NotFound().body("no such session");
    };
    let metadata: serde_json::Map<String, Value> = rec
        .form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[").and_then(|r| r.strip_suffix(']')).map(|m| (m.to_string(), json!(v)))
        })
        .collect();
    let body =
        session_event(&format!("evt_paid_{id}"), "checkout.session.completed", &id, "paid", &Value::Object(metadata));
    let target = hosted.webhook.lock().clone().unwrap_or_default();
    let t = chrono::Utc::now().timestamp();
    let sent = reqwest::Client::new()
        .post(target)
        .header("stripe-signature", signature(WHSEC, t, &body))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    if !sent.is_ok_and(|r| r.status().is_success()) {
        return HttpResponse::BadGateway().body("the webhook was not accepted");
    }
    let success = rec.field("success_url").unwrap_or_default().replace("{CHECKOUT_SESSION_ID}", &id);
    HttpResponse::SeeOther().insert_header(("location", success)).finish()
}

impl FakeStripe {
    pub async fn start() -> Self {
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let refuse: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let hosted = Hosted::default();
        let data = web::Data::new(requests.clone());
        let refusing = web::Data::new(refuse.clone());
        let hosting = web::Data::new(hosted.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(refusing.clone())
                .app_data(hosting.clone())
                .route("/v1/checkout/sessions", web::post().to(create_session))
                .route("/c/pay/{id}", web::get().to(checkout_page))
                .route("/c/pay/{id}", web::post().to(checkout_pay))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("bind");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Self { url: format!("http://{addr}"), requests, refuse, hosted, server: handle }
    }

    /// Serves a hosted checkout page whose "Pay" delivers the paid event to `webhook`.
    pub fn host_checkout(&self, webhook: &str) {
        *self.hosted.base.lock() = Some(self.url.clone());
        *self.hosted.webhook.lock() = Some(webhook.to_string());
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().clone()
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        let h = self.server.clone();
        actix_rt::spawn(async move { h.stop(false).await });
    }
}

fn offer(id: &str, name: &str, edit: impl FnOnce(&mut OfferConfig)) -> OfferConfig {
    let mut o = OfferConfig { id: id.into(), name: name.into(), price: 900, ..OfferConfig::default() };
    edit(&mut o);
    o
}

pub fn stripe_config(c: &mut Config, api_base: &str) {
    c.stripe.enabled = true;
    c.stripe.api_base = api_base.into();
    c.stripe.secret_key = Secret::new(SECRET_KEY);
    c.stripe.webhook_secrets = vec![Secret::new(OLD_WHSEC), Secret::new(WHSEC)];
    c.stripe.offers = vec![
        offer("more-memory", "+2 GB memory", |o| o.add_memory_gb = 2),
        offer("to-large", "Move to Large", |o| {
            o.to_template = "vps-large".into();
            o.from_template = "vps-small".into();
            o.price = 2900;
        }),
        offer("enormous", "+100000 vCPU", |o| o.add_cores = 100_000),
    ];
}

/// Stripe's `Stripe-Signature` for `body` at `t` with `secret`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A Checkout Session event as Stripe sends it, with the metadata of a recorded session.
/// A Checkout Session event paying the price of the offer its metadata names.
pub fn session_event(event_id: &str, kind: &str, session: &str, paid: &str, metadata: &Value) -> String {
    let amount = if metadata["vmauto_offer"] == "to-large" { 2900 } else { 900 };
    json!({
        "id": event_id, "object": "event", "api_version": "2026-10-28.endive", "type": kind,
        "created": chrono::Utc::now().timestamp(), "livemode": false, "pending_webhooks": 1,
        "data": { "object": {
            "id": session, "object": "checkout.session", "mode": "payment", "status": "complete",
            "payment_status": paid, "client_reference_id": metadata["vmauto_link"], "metadata": metadata,
            "payment_intent": format!("pi_{session}"), "amount_total": amount, "currency": "usd",
            "customer_details": { "email": "dana@example.com", "name": "Dana Reyes" },
        } }
    })
    .to_string()
}

/// POSTs `body` to `/stripe/webhook` with `header` as its `Stripe-Signature`.
pub async fn post_event(t: &TestApp, body: &str, header: Option<String>) -> (u16, Value) {
    let mut req =
        t.http.post(t.url("/stripe/webhook")).header("content-type", "application/json").body(body.to_string());
    if let Some(h) = header {
        req = req.header("Stripe-Signature", h);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// POSTs `body` to `/stripe/webhook` signed now with the current webhook secret.
pub async fn send_signed(t: &TestApp, body: &str) -> (u16, Value) {
    let now = chrono::Utc::now().timestamp();
    post_event(t, body, Some(signature(WHSEC, now, body))).await
}

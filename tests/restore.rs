//! Pay to restore, end to end: a VPS suspended because its subscription was cancelled shows
//! "Restore" on its portal page; the button opens a Stripe Checkout (the local fake Stripe
//! API) for `stripe.restore_price`; the signed paid event resumes the VM on the simulator,
//! cancels the scheduled deletion and tells the admins; nothing is applied twice for one
//! suspension (redeliveries, a second paid session, a mismatched amount); a VPS an admin
//! suspended is not the customer's to restore.

use serde_json::{Value, json};
use vmauto::admin::{Action, request_action};
use vmauto::billing::EventKind;

use crate::common::Stack;
use crate::common::stripe::{FakeStripe, send_signed, session_event, stripe_config};
use crate::upgrades::active_vps;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn form_token(html: &str) -> String {
    let at = html.find("name=\"form_token\" value=\"").unwrap_or_else(|| panic!("no form token in {html}"));
    let rest = &html[at + 25..];
    rest[..rest.find('"').expect("closing quote")].to_string()
}

async fn page(s: &Stack, path: &str) -> String {
    let resp = s.t.http.get(s.t.url(path)).send().await.expect("page");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("html")
}

/// POSTs the restore form; answers where the browser is sent.
async fn restore(s: &Stack, path: &str, token: &str) -> String {
    let body = url::form_urlencoded::Serializer::new(String::new()).append_pair("form_token", token).finish();
    let resp = no_redirects()
        .post(s.t.url(&format!("{path}/restore")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("restore");
    assert_eq!(resp.status(), 303);
    resp.headers()["location"].to_str().expect("location").to_string()
}

/// A paid `checkout.session.completed` for `session`, paying `amount` cents.
fn paid(event_id: &str, session: &str, metadata: &Value, amount: u64) -> String {
    let mut ev: Value =
        serde_json::from_str(&session_event(event_id, "checkout.session.completed", session, "paid", metadata))
            .expect("json");
    ev["data"]["object"]["amount_total"] = json!(amount);
    ev.to_string()
}

#[actix_web::test]
async fn a_lapsed_customer_pays_once_and_gets_their_server_back() {
    vmauto::init_crypto();
    let fake = FakeStripe::start().await;
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        stripe_config(c, &fake.url);
        c.stripe.restore_price = 1500;
        c.policy.grace_days = 3;
    })
    .await;
    let st = &s.t.app.state;
    let vps = active_vps(&s, "sub-lapse").await;
    let link = vmauto::portal::issue(&st.store, &st.config, &st.sealer, &vps.as_str().into(), "admin:t")
        .await
        .expect("portal link");
    let path = format!("/my/{}", link.url.rsplit('/').next().expect("token"));
    let html = page(&s, &path).await;
    assert!(!html.contains("Restore now"), "nothing to restore while active: {html}");

    // The subscription is cancelled: the VPS is suspended, its deletion scheduled.
    s.send(crate::common::event(EventKind::Cancel, "sub-lapse", None, None)).await;
    let vps_sql = format!("SELECT state, delete_after FROM vps:`{vps}`");
    s.wait_for("VPS suspended", 60, &vps_sql, |r| r.len() == 1 && r[0]["state"] == "suspended").await;
    let suspension = s
        .rows(&format!("SELECT VALUE record::id(id) FROM operation WHERE vps = '{vps}' AND kind = 'suspend'"))
        .await[0]
        .as_str()
        .expect("suspend op")
        .to_string();
    let html = page(&s, &path).await;
    assert!(html.contains("Restore now for 15.00 USD"), "the restore is offered: {html}");
    let token = form_token(&html);

    // The button opens a Checkout Session for the restore price; a double click, the same.
    let first = restore(&s, &path, &token).await;
    assert_eq!(first, "https://checkout.stripe.test/c/pay/cs_test_fake0001");
    restore(&s, &path, &token).await;
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    let r = &reqs[0];
    assert_eq!(r.field("line_items[0][price_data][unit_amount]"), Some("1500"));
    assert_eq!(r.field("line_items[0][price_data][currency]"), Some("usd"));
    for prefix in ["metadata", "payment_intent_data[metadata]"] {
        assert_eq!(r.field(&format!("{prefix}[vmauto_purpose]")), Some("restore"), "{:?}", r.form);
        assert_eq!(r.field(&format!("{prefix}[vmauto_vps]")), Some(vps.as_str()));
        assert_eq!(r.field(&format!("{prefix}[vmauto_restore]")), Some(suspension.as_str()));
        assert_eq!(r.field(&format!("{prefix}[vmauto_fee]")), Some("1500"));
        assert_eq!(r.field(&format!("{prefix}[vmauto_portal_link]")), Some(link.id.as_str()));
    }
    let key = r.headers["idempotency-key"].clone();
    assert!(key.starts_with("vmauto-restore-"), "{key}");
    assert_eq!(reqs[1].headers["idempotency-key"], key, "a double click asks Stripe for the same session");
    assert!(r.field("success_url").is_some_and(|u| u.ends_with(&format!("{path}?m=restore_paid"))), "{:?}", r.form);
    let metadata: Value = r
        .form
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("metadata[").and_then(|m| m.strip_suffix(']')).map(|m| (m, v)))
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into();

    // Paid the wrong amount: nothing applied, an admin is asked to refund.
    let (code, body) = send_signed(&s.t, &paid("evt_cheap", "cs_cheap", &metadata, 100)).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("failed")), "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("1.00 USD was paid but the restore was offered at 15.00 USD"), "{body}");
    assert!(detail.contains("Refund"), "{body}");
    assert_eq!(s.rows(&vps_sql).await[0]["state"], "suspended");

    // Paid: the deletion is cancelled, the VM is resumed, the subscription is active again.
    let session = "cs_test_fake0001";
    let event = paid("evt_restore", session, &metadata, 1500);
    let (code, body) = send_signed(&s.t, &event).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("processed")), "{body}");
    s.wait_for("VPS restored", 60, &vps_sql, |r| r[0]["state"] == "active" && r[0]["delete_after"].is_null()).await;
    assert_eq!(s.sim_servers().await[0]["status"], "running");
    let ops = s
        .rows(&format!(
            "SELECT kind, state, requested_by FROM operation WHERE vps = '{vps}' AND kind IN ['delete', 'resume']"
        ))
        .await;
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert!(ops.iter().any(|o| o["kind"] == "delete" && o["state"] == "cancelled"), "{ops:?}");
    assert!(ops.iter().any(|o| o["kind"] == "resume" && o["requested_by"] == format!("stripe:{session}")), "{ops:?}");
    let sub = vmauto::lifecycle::stable_key("ghl", "sub-lapse");
    assert_eq!(s.rows(&format!("SELECT VALUE status FROM subscription:`{sub}`")).await, vec![json!("active")]);
    let payments = s
        .rows("SELECT record::id(id) AS id, purpose, status, restore_of FROM payment WHERE status != 'mismatch'")
        .await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!((payments[0]["purpose"].as_str(), payments[0]["status"].as_str()), (Some("restore"), Some("queued")));
    assert_eq!(payments[0]["restore_of"], suspension.as_str());
    let told = s
        .wait_for(
            "the admins are told",
            30,
            "SELECT kind, title, body FROM notification WHERE kind = 'restore_paid'",
            |r| !r.is_empty(),
        )
        .await;
    assert!(told[0]["body"].as_str().is_some_and(|b| b.contains("15.00 USD") && b.contains(session)), "{told:?}");
    let timeline = st.store.vps_timeline(&vps.as_str().into()).await.expect("timeline");
    let said = serde_json::to_string(&timeline).expect("json");
    assert!(said.contains("restore paid; resume queued") && said.contains("restore checkout started"), "{said}");

    // The same event again, and a second paid session for the same suspension: nothing more.
    let (code, body) = send_signed(&s.t, &event).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("duplicate")), "{body}");
    let (code, body) = send_signed(&s.t, &paid("evt_second", "cs_second", &metadata, 1500)).await;
    assert_eq!(code, 200);
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("Refund") && d.contains("nothing to restore")),
        "{body}"
    );
    let resumes = format!("SELECT * FROM operation WHERE vps = '{vps}' AND kind = 'resume'");
    assert_eq!(s.rows(&resumes).await.len(), 1, "one resume for one suspension");
    let second = s.rows("SELECT VALUE status FROM type::record('payment', 'cs_second')").await;
    assert_eq!(second, vec![json!("duplicate")]);
    let html = page(&s, &path).await;
    assert!(!html.contains("Restore now"), "an active VPS offers no restore: {html}");

    // A refund of the restore payment is reported as such; the VPS stays restored.
    let refund = json!({ "id": "evt_refund", "object": "event", "type": "charge.refunded", "livemode": false,
        "created": chrono::Utc::now().timestamp(),
        "data": { "object": { "id": "ch_1", "object": "charge", "payment_intent": format!("pi_{session}"),
            "amount_refunded": 1500, "currency": "usd" } } })
    .to_string();
    let (code, body) = send_signed(&s.t, &refund).await;
    assert_eq!(code, 200);
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("restore payment") && d.contains("stays restored")),
        "{body}"
    );

    // Suspended by an admin while the subscription runs: not the customer's to restore.
    request_action(&st.store, &st.handles.registry, &vps.as_str().into(), Action::Suspend, json!({}), "admin:t")
        .await
        .expect("suspend");
    s.wait_for("VPS suspended by the admin", 60, &vps_sql, |r| r[0]["state"] == "suspended").await;
    let html = page(&s, &path).await;
    assert!(!html.contains("Restore now") && html.contains("Contact your provider"), "{html}");
    let to = restore(&s, &path, &vmauto::portal::form_token(&st.sealer, &link.id)).await;
    assert_eq!(to, format!("{path}?m=restore_unavailable"));
    assert_eq!(fake.requests().len(), 2, "no payment page for it");
}

#[actix_web::test]
async fn the_restore_is_not_offered_without_a_price() {
    let fake = FakeStripe::start().await;
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        stripe_config(c, &fake.url);
        c.policy.grace_days = 3;
    })
    .await;
    let st = &s.t.app.state;
    let vps = active_vps(&s, "sub-free").await;
    let link = vmauto::portal::issue(&st.store, &st.config, &st.sealer, &vps.as_str().into(), "admin:t")
        .await
        .expect("portal link");
    let path = format!("/my/{}", link.url.rsplit('/').next().expect("token"));
    s.send(crate::common::event(EventKind::Cancel, "sub-free", None, None)).await;
    let vps_sql = format!("SELECT state FROM vps:`{vps}`");
    s.wait_for("VPS suspended", 60, &vps_sql, |r| r.len() == 1 && r[0]["state"] == "suspended").await;
    let html = page(&s, &path).await;
    assert!(!html.contains("Restore now") && html.contains("Contact your provider"), "{html}");
    assert!(html.contains("scheduled"), "the deletion shows as scheduled, not as running: {html}");
    let token = vmauto::portal::form_token(&st.sealer, &link.id);
    assert_eq!(restore(&s, &path, &token).await, format!("{path}?m=restore_unavailable"));
    assert!(fake.requests().is_empty());
}

//! Stripe upgrades end to end: upgrade links and the customer page, a Checkout Session sent
//! to a local fake Stripe API, signed events driving fulfilment (duplicates, out-of-order,
//! unpaid, async success and failure, expiry, refund, dispute, bad and stale signatures),
//! and the VM resized on the simulator.

use std::time::Instant;

use serde_json::{Value, json};
use vmauto::billing::EventKind;
use vmauto::config::OfferConfig;
use vmauto::upgrade::issue_link;

use crate::common::stripe::{
    FakeStripe, OLD_WHSEC, SECRET_KEY, WHSEC, post_event, send_signed, session_event, signature, stripe_config,
};
use crate::common::{Stack, TestApp};

/// The token of an issued link's URL.
pub(crate) fn token_of(url: &str) -> String {
    url.rsplit('/').next().expect("token").to_string()
}

/// The value of `<input … name="NAME" value="…">` in a page.
fn input_value(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').expect("closing quote")].to_string()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

async fn pay(t: &TestApp, token: &str, offer: &str, form_token: &str) -> reqwest::Response {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("offer", offer)
        .append_pair("form_token", form_token)
        .finish();
    no_redirects()
        .post(t.url(&format!("/upgrade/{token}/pay")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("pay")
}

pub(crate) async fn active_vps(s: &Stack, sub: &str) -> String {
    s.send(crate::common::event(EventKind::Subscribe, sub, Some("starter"), None)).await;
    let key = vmauto::lifecycle::stable_key("ghl", sub);
    let sql = format!("SELECT record::id(id) AS id, state FROM vps WHERE subscription = '{key}'");
    let rows = s.wait_for("VPS active", 60, &sql, |r| r.len() == 1 && r[0]["state"] == "active").await;
    rows[0]["id"].as_str().expect("id").to_string()
}

pub(crate) async fn issue(s: &Stack, vps: &str) -> vmauto::upgrade::IssuedLink {
    let st = &s.t.app.state;
    issue_link(&st.store, &st.config, &st.sealer, &vps.into(), "test").await.expect("link issued")
}

#[actix_web::test]
async fn paid_checkout_resizes_the_vm_once_whatever_stripe_redelivers() {
    vmauto::init_crypto();
    let fake = FakeStripe::start().await;
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| stripe_config(c, &fake.url)).await;
    let vps = active_vps(&s, "sub-up").await;
    let link = issue(&s, &vps).await;
    let token = token_of(&link.url);

    // The page: current spec, the offers that apply and fit; no script.
    let resp = s.t.http.get(s.t.url(&format!("/upgrade/{token}"))).send().await.expect("page");
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().expect("csp").to_string();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    let html = resp.text().await.expect("html");
    assert!(html.contains("+2 GB memory") && html.contains("9.00 USD"), "{html}");
    assert!(html.contains("Move to Large") && html.contains("29.00 USD"), "{html}");
    assert!(!html.contains("+100000 vCPU"), "an offer SCP has no capacity for is not sold: {html}");
    assert!(html.contains("1 vCPU, 1 GB memory"), "the current spec: {html}");
    assert!(!html.contains("<script"), "no script on the customer page");
    let form_token = input_value(&html, "form_token");

    // Paying creates a Checkout Session at the fake Stripe and redirects there.
    let resp = pay(&s.t, &token, "more-memory", &form_token).await;
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().expect("location").to_string();
    assert_eq!(location, "https://checkout.stripe.test/c/pay/cs_test_fake0001");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/v1/checkout/sessions");
    assert_eq!(r.headers["authorization"], format!("Bearer {SECRET_KEY}"));
    assert!(r.headers["content-type"].starts_with("application/x-www-form-urlencoded"), "{:?}", r.headers);
    assert!(r.headers.get("idempotency-key").is_some_and(|k| k.starts_with("vmauto-upgrade-")), "{:?}", r.headers);
    assert_eq!(r.field("mode"), Some("payment"));
    assert_eq!(r.field("line_items[0][price_data][unit_amount]"), Some("900"));
    assert_eq!(r.field("line_items[0][price_data][currency]"), Some("usd"));
    assert_eq!(r.field("line_items[0][quantity]"), Some("1"));
    assert!(r.field("line_items[0][price_data][product_data][name]").is_some_and(|n| n.contains("+2 GB memory")));
    assert_eq!(r.field("client_reference_id"), Some(link.id.as_str()));
    for prefix in ["metadata", "payment_intent_data[metadata]"] {
        assert_eq!(r.field(&format!("{prefix}[vmauto_link]")), Some(link.id.as_str()), "{:?}", r.form);
        assert_eq!(r.field(&format!("{prefix}[vmauto_vps]")), Some(vps.as_str()));
        assert_eq!(r.field(&format!("{prefix}[vmauto_offer]")), Some("more-memory"));
        assert_eq!(r.field(&format!("{prefix}[vmauto_memory_mb]")), Some("3072"));
    }
    let success = r.field("success_url").expect("success_url");
    assert!(success.ends_with(&format!("/upgrade/{token}/done?session_id={{CHECKOUT_SESSION_ID}}")), "{success}");
    assert!(r.field("cancel_url").is_some_and(|u| u.contains(&format!("/upgrade/{token}"))));
    assert!(!r.form.iter().any(|(_, v)| v.contains(SECRET_KEY)), "the secret key travels only in the header");

    let metadata: Value = r
        .form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[").and_then(|m| m.strip_suffix(']')).map(|m| (m.to_string(), json!(v)))
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    let session = "cs_test_fake0001";

    // Before payment the progress page waits and refreshes itself.
    let (code, done) = s.t.get(&format!("/upgrade/{token}/done?session_id={session}")).await;
    assert_eq!(code, 200);
    assert!(done.contains("http-equiv=\"refresh\"") && done.contains("Confirming your payment"), "{done}");

    // A completion that is not paid yet changes nothing.
    let unpaid = session_event("evt_unpaid", "checkout.session.completed", session, "unpaid", &metadata);
    let (code, body) = send_signed(&s.t, &unpaid).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("ignored")), "{body}");
    assert!(s.rows("SELECT * FROM payment").await.is_empty());

    // A paid session that does not pay for its offer applies nothing: another amount, another
    // currency, or a live-mode event reaching an appliance with a test key. An admin is told.
    let odd = |id: &str, edit: &dyn Fn(&mut Value)| {
        let mut ev: Value = serde_json::from_str(&session_event(
            &format!("evt_{id}"),
            "checkout.session.completed",
            &format!("cs_{id}"),
            "paid",
            &metadata,
        ))
        .expect("json");
        edit(&mut ev);
        ev.to_string()
    };
    for (event, why) in [
        (
            odd("cheap", &|e| e["data"]["object"]["amount_total"] = json!(1)),
            "0.01 USD was paid but offer more-memory costs 9.00 USD",
        ),
        (odd("euro", &|e| e["data"]["object"]["currency"] = json!("eur")), "9.00 EUR was paid"),
        (odd("live", &|e| e["livemode"] = json!(true)), "live mode but stripe.secret_key is a test key"),
    ] {
        let (code, body) = send_signed(&s.t, &event).await;
        assert_eq!((code, body["status"].as_str()), (200, Some("failed")), "{body}");
        assert!(body["detail"].as_str().is_some_and(|d| d.contains(why) && d.contains("Refund")), "{body}");
    }
    let parked = s.rows("SELECT VALUE status FROM payment").await;
    assert_eq!(parked, vec![json!("mismatch"); 3]);
    assert!(s.rows("SELECT * FROM operation WHERE kind = 'resize'").await.is_empty(), "nothing applied");
    let (code, _) = s.t.get(&format!("/upgrade/{token}")).await;
    assert_eq!(code, 200, "the link is not used up by a payment that does not match");
    s.t.app.state.store.execute("DELETE payment", json!({})).await.expect("clear the parked payments");

    // The asynchronous success fulfils: payment recorded, resize queued, link used.
    let ok = session_event("evt_async_ok", "checkout.session.async_payment_succeeded", session, "paid", &metadata);
    let (code, body) = send_signed(&s.t, &ok).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("processed")), "{body}");
    let payments = s.rows("SELECT record::id(id) AS id, status, operation, link, vps FROM payment").await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["id"], session);
    assert_eq!(payments[0]["link"], link.id.as_str());
    let resizes = "SELECT record::id(id) AS id, state, requested_by FROM operation WHERE kind = 'resize'";
    let ops = s.rows(resizes).await;
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["requested_by"], format!("stripe:{session}"));

    // The same event again, and a late paid `completed` for the same session: nothing more.
    let (code, body) = send_signed(&s.t, &ok).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("duplicate")), "{body}");
    let late = session_event("evt_late_completed", "checkout.session.completed", session, "paid", &metadata);
    let (code, _) = send_signed(&s.t, &late).await;
    assert_eq!(code, 200);
    assert_eq!(s.rows(resizes).await.len(), 1, "one resize whatever Stripe redelivers");
    // An admin's replay from the inbox is as harmless as a redelivery.
    let key = body["id"].as_str().expect("inbox key").into();
    let replayed = vmauto::http::replay_inbox(&s.t.app.state, &key, "admin:t").await.expect("replay");
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    let replayed = &replayed[0];
    assert_eq!(replayed.status, "processed", "{replayed:?}");
    assert!(replayed.detail.contains("before"), "{replayed:?}");
    assert_eq!(s.rows(resizes).await.len(), 1);
    let paid_notes = s.rows("SELECT * FROM activity WHERE message = 'upgrade paid; resize queued'").await;
    assert_eq!(paid_notes.len(), 1, "one activity entry per payment: {paid_notes:?}");
    assert_eq!(s.rows("SELECT * FROM payment").await.len(), 1);

    // The VM really grows on the simulator and the record follows.
    let vps_sql = format!("SELECT state, spec FROM type::record('vps', '{vps}')");
    s.wait_for("VPS resized", 60, &vps_sql, |r| {
        r.len() == 1 && r[0]["state"] == "active" && r[0]["spec"]["memory_mb"] == 3072
    })
    .await;
    let vm = &s.sim_servers().await[0];
    assert_eq!(vm["memory_mb"], 3072, "{vm}");
    assert_eq!(vm["cores"], 1, "{vm}");
    s.wait_for("resize succeeded", 30, resizes, |r| r.len() == 1 && r[0]["state"] == "succeeded").await;
    let (code, done) = s.t.get(&format!("/upgrade/{token}/done?session_id={session}")).await;
    assert_eq!(code, 200);
    assert!(done.contains("Upgrade complete") && !done.contains("http-equiv=\"refresh\""), "{done}");
    let status: Value =
        s.t.http
            .get(s.t.url(&format!("/upgrade/{token}/status")))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
    assert_eq!(status["state"], "done", "{status}");
    s.wait_for("upgrade notification", 10, "SELECT VALUE kind FROM notification WHERE kind = 'upgrade_applied'", |r| {
        r.len() == 1
    })
    .await;

    // The link is used up: the page explains itself.
    let (code, page) = s.t.get(&format!("/upgrade/{token}")).await;
    assert_eq!(code, 410);
    assert!(page.contains("already used"), "{page}");

    // A second paid session for the same link is not applied; an admin is told to refund it.
    let second = session_event("evt_second", "checkout.session.completed", "cs_test_second", "paid", &metadata);
    let (code, body) = send_signed(&s.t, &second).await;
    assert_eq!(code, 200, "{body}");
    let dup = s.rows("SELECT VALUE status FROM payment:cs_test_second").await;
    assert_eq!(dup, vec![json!("duplicate")]);
    assert_eq!(s.rows(resizes).await.len(), 1);

    // A refund and a dispute notify an admin; nothing is downgraded.
    let refund = json!({ "id": "evt_refund", "object": "event", "type": "charge.refunded", "created": 1,
        "data": { "object": { "id": "ch_1", "object": "charge", "amount": 900, "amount_refunded": 900, "refunded": true,
            "currency": "usd", "payment_intent": format!("pi_{session}"), "metadata": metadata } } })
    .to_string();
    let (code, body) = send_signed(&s.t, &refund).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("processed")), "{body}");
    let dispute = json!({ "id": "evt_dispute", "object": "event", "type": "charge.dispute.created", "created": 1,
        "data": { "object": { "id": "dp_1", "object": "dispute", "amount": 900, "currency": "usd",
            "charge": "ch_1", "payment_intent": format!("pi_{session}") } } })
    .to_string();
    let (code, _) = send_signed(&s.t, &dispute).await;
    assert_eq!(code, 200);
    let paid = s.rows(&format!("SELECT refunded_at, disputed_at FROM payment:{session}")).await;
    assert!(paid[0]["refunded_at"].is_string() && paid[0]["disputed_at"].is_string(), "{paid:?}");
    // Notifications are stored by the notifier as they arrive: three mismatches, second
    // payment, refund, dispute.
    let issues = "SELECT VALUE title FROM notification WHERE kind = 'payment_issue'";
    let issues = s.wait_for("six payment issues", 10, issues, |r| r.len() >= 6).await;
    assert_eq!(issues.len(), 6, "{issues:?}");
    let mismatches = issues.iter().filter(|t| t.as_str().is_some_and(|t| t.contains("does not match its offer")));
    assert_eq!(mismatches.count(), 3, "{issues:?}");
    assert!(issues.iter().any(|t| t.as_str().is_some_and(|t| t.contains("disputed"))), "{issues:?}");
    assert_eq!(s.rows(&vps_sql).await[0]["spec"]["memory_mb"], 3072, "no automatic downgrade");
}

#[actix_web::test]
async fn failed_and_expired_sessions_change_nothing_and_template_offers_move_the_vps() {
    vmauto::init_crypto();
    let fake = FakeStripe::start().await;
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| stripe_config(c, &fake.url)).await;
    let vps = active_vps(&s, "sub-tpl").await;
    let link = issue(&s, &vps).await;
    let token = token_of(&link.url);
    let (_, html) = s.t.get(&format!("/upgrade/{token}")).await;
    let form_token = input_value(&html, "form_token");

    // Stripe refusing the session: 502, nothing charged, the reason in the activity log.
    fake.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    let resp = pay(&s.t, &token, "to-large", &form_token).await;
    assert_eq!(resp.status(), 502);
    assert!(resp.text().await.expect("page").contains("Nothing was charged"));
    let acts = s.rows("SELECT VALUE data.reason FROM activity WHERE message = 'an upgrade payment was refused'").await;
    assert!(acts.iter().any(|r| r.as_str().is_some_and(|r| r.contains("cannot accept payments"))), "{acts:?}");
    fake.refuse.store(false, std::sync::atomic::Ordering::SeqCst);

    let resp = pay(&s.t, &token, "to-large", &form_token).await;
    assert_eq!(resp.status(), 303);
    let r = &fake.requests()[0];
    assert_eq!(r.field("metadata[vmauto_template]"), Some("vps-large"));
    assert_eq!(r.field("line_items[0][price_data][unit_amount]"), Some("2900"));
    let metadata = json!({ "vmauto_link": link.id, "vmauto_vps": vps, "vmauto_offer": "to-large",
        "vmauto_cores": r.field("metadata[vmauto_cores]"), "vmauto_memory_mb": r.field("metadata[vmauto_memory_mb]"),
        "vmauto_disk_gb": r.field("metadata[vmauto_disk_gb]"), "vmauto_template": "vps-large" });

    for (id, kind, paid) in [
        ("evt_fail", "checkout.session.async_payment_failed", "unpaid"),
        ("evt_exp", "checkout.session.expired", "unpaid"),
        ("evt_unpaid2", "checkout.session.completed", "unpaid"),
    ] {
        let (code, body) = send_signed(&s.t, &session_event(id, kind, "cs_test_fake0001", paid, &metadata)).await;
        assert_eq!((code, body["status"].as_str()), (200, Some("ignored")), "{kind}: {body}");
    }
    assert!(s.rows("SELECT * FROM payment").await.is_empty());
    assert!(s.rows("SELECT * FROM operation WHERE kind = 'resize'").await.is_empty());
    let (code, _) = s.t.get(&format!("/upgrade/{token}")).await;
    assert_eq!(code, 200, "the link still works after a failed payment");
    let inbox = s.rows("SELECT VALUE status FROM webhook_event WHERE source = 'stripe-upgrades'").await;
    assert_eq!(inbox, vec![json!("ignored"); 3], "every event is in the inbox");

    // Paid: the VPS moves to the large template.
    let (code, _) = send_signed(
        &s.t,
        &session_event("evt_ok", "checkout.session.completed", "cs_test_fake0001", "paid", &metadata),
    )
    .await;
    assert_eq!(code, 200);
    let sql = format!("SELECT state, spec, template FROM type::record('vps', '{vps}')");
    s.wait_for("VPS on the large template", 60, &sql, |r| {
        r.len() == 1 && r[0]["state"] == "active" && r[0]["template"] == "vps-large"
    })
    .await;
    let vm = &s.sim_servers().await[0];
    assert_eq!(vm["cores"], 4, "{vm}");
}

#[actix_web::test]
async fn bad_stale_and_unsigned_events_are_refused_and_recorded() {
    let t = TestApp::start_with(|c| stripe_config(c, "http://127.0.0.1:9")).await;
    let body = json!({ "id": "evt_sig", "object": "event", "type": "checkout.session.completed",
        "data": { "object": { "id": "cs_x", "payment_status": "paid" } } })
    .to_string();
    let now = chrono::Utc::now().timestamp();

    let (code, err) = post_event(&t, &body, None).await;
    assert_eq!(code, 401, "{err}");
    // The answer is the same for every cause (the cause is in the inbox row, checked below).
    assert!(err["message"].as_str().is_some_and(|m| !m.contains("stripe-signature") && m.contains("inbox")), "{err}");
    let (code, err) = post_event(&t, &body, Some(signature("whsec_wrong", now, &body))).await;
    assert_eq!((code, err["code"].as_str()), (401, Some("invalid_signature")), "{err}");
    let (code, err) = post_event(&t, &body, Some(signature(WHSEC, now - 3_600, &body))).await;
    assert_eq!(code, 401, "{err}");
    assert!(err["message"].as_str().is_some_and(|m| !m.contains("tolerance")), "{err}");
    // A body changed after signing.
    let (code, _) = post_event(&t, &body.replace("cs_x", "cs_y"), Some(signature(WHSEC, now, &body))).await;
    assert_eq!(code, 401);
    // The old secret still verifies during rotation; any v1 of several may match.
    let header = format!("{},v1={}", signature(OLD_WHSEC, now, &body), "0".repeat(64));
    let (code, ok) = post_event(&t, &body, Some(header)).await;
    assert_eq!(code, 200, "{ok}");
    // Signed, but not an event.
    let junk = "not json";
    let (code, err) = post_event(&t, junk, Some(signature(WHSEC, now, junk))).await;
    assert_eq!(code, 400, "{err}");

    let store = &t.app.state.store;
    let rows: Vec<Value> = store
        .query_one(
            "SELECT status, http_status, error FROM webhook_event WHERE source = 'stripe-upgrades' ORDER BY received_at",
            json!({}),
            0,
        )
        .await
        .expect("inbox");
    let rejected: Vec<i64> =
        rows.iter().filter(|r| r["status"] == "rejected").filter_map(|r| r["http_status"].as_i64()).collect();
    assert_eq!(rejected, vec![401, 401, 401, 401, 400], "{rows:?}");
    assert!(rows.iter().any(|r| r["error"].as_str().is_some_and(|e| e.contains("tolerance"))), "{rows:?}");
    assert!(rows.iter().any(|r| r["error"].as_str().is_some_and(|e| e.contains("stripe-signature"))), "{rows:?}");
}

#[actix_web::test]
async fn the_stripe_endpoint_is_not_there_while_stripe_is_off() {
    let t = TestApp::start().await;
    let body = json!({ "id": "evt_off", "type": "checkout.session.completed" }).to_string();
    let (code, err) = post_event(&t, &body, Some(signature(WHSEC, chrono::Utc::now().timestamp(), &body))).await;
    assert_eq!(code, 404, "{err}");
    assert!(err["message"].as_str().is_some_and(|m| m.contains("stripe.enabled")), "{err}");
    let (code, _) = post_event(&t, &"x".repeat(10_000), None).await;
    assert_eq!(code, 404);
    let rows: Vec<Value> =
        t.app.state.store.query_one("SELECT * FROM webhook_event", json!({}), 0).await.expect("inbox");
    assert!(rows.is_empty(), "nothing is stored for an endpoint that is off: {rows:?}");
}

#[actix_web::test]
async fn expired_revoked_forged_and_unknown_links_explain_themselves() {
    let t = TestApp::start_with(|c| stripe_config(c, "http://127.0.0.1:9")).await;
    let st = &t.app.state;
    st.store
        .execute(
            "CREATE vps:v1 CONTENT { state: 'active', template: 'vps-small', name: 'web <1>',
                spec: { cores: 1, memory_mb: 1024, disk_gb: 20 } };
             CREATE vps:gone CONTENT { state: 'deleted', template: 'vps-small', spec: { cores: 1, memory_mb: 1024, disk_gb: 20 } };",
            json!({}),
        )
        .await
        .expect("vps rows");
    let err = issue_link(&st.store, &st.config, &st.sealer, &"gone".into(), "test").await.expect_err("deleted");
    assert!(format!("{err:#}").contains("deleted"), "{err:#}");
    assert!(issue_link(&st.store, &st.config, &st.sealer, &"nope".into(), "test").await.is_err());

    // Without SCP capacity nothing is sold, and the page says so (escaped name, no admin data).
    let link = issue_link(&st.store, &st.config, &st.sealer, &"v1".into(), "test").await.expect("link");
    let token = token_of(&link.url);
    let (code, html) = t.get(&format!("/upgrade/{token}")).await;
    assert_eq!(code, 503, "capacity cannot be read: try again later");
    assert!(html.contains("web &lt;1&gt;") && !html.contains("web <1>"), "escaped: {html}");
    assert!(html.contains("cannot be checked right now"), "{html}");
    assert!(!html.contains("vps-small") && !html.contains("v1\""), "no internal names: {html}");

    // A pay request without the page's form token is refused and recorded.
    let resp = pay(&t, &token, "more-memory", "forged").await;
    assert_eq!(resp.status(), 403);
    let acts: Vec<Value> = st
        .store
        .query_one("SELECT message, data FROM activity WHERE subject = 'vps:v1' AND level = 'warning'", json!({}), 0)
        .await
        .expect("activity");
    assert!(acts.iter().any(|a| a["data"]["reason"].as_str().is_some_and(|r| r.contains("form token"))), "{acts:?}");
    // The right form token, but the offer cannot be sold (no capacity answer): 503, nothing charged.
    let form_token = vmauto::upgrade::links::form_token(&st.sealer, &link.id);
    let resp = pay(&t, &token, "more-memory", &form_token).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.text().await.expect("body").contains("Nothing was charged"));

    assert!(vmauto::upgrade::revoke_link(&st.store, &link.id, "test").await.expect("revoke"));
    let (code, html) = t.get(&format!("/upgrade/{token}")).await;
    assert_eq!(code, 410);
    assert!(html.contains("withdrawn"), "{html}");
    let resp = pay(&t, &token, "more-memory", &form_token).await;
    assert_eq!(resp.status(), 410, "a revoked link sells nothing");

    let link2 = issue_link(&st.store, &st.config, &st.sealer, &"v1".into(), "test").await.expect("link");
    st.store
        .execute(
            "UPDATE type::record('upgrade_link', $id) SET expires_at = time::now() - 1h",
            json!({ "id": link2.id }),
        )
        .await
        .expect("expire");
    let (code, html) = t.get(&format!("/upgrade/{}", token_of(&link2.url))).await;
    assert_eq!(code, 410);
    assert!(html.contains("expired"), "{html}");

    // A token of the right shape whose signature is wrong, and garbage, are unknown.
    let mut forged = token_of(&link2.url);
    let last = forged.pop().expect("char");
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [forged.as_str(), "nonsense", "a.b"] {
        let (code, html) = t.get(&format!("/upgrade/{bad}")).await;
        assert_eq!(code, 404, "{bad}");
        assert!(html.contains("not valid"), "{html}");
    }
    let (code, _) = t.get(&format!("/upgrade/{forged}/status")).await;
    assert_eq!(code, 404);
}

#[actix_web::test]
async fn offers_are_seeded_from_config_and_edited_through_the_library() {
    let t = TestApp::start_with(|c| stripe_config(c, "http://127.0.0.1:9")).await;
    let (store, config) = (&t.app.state.store, &t.app.state.config);
    let offers = vmauto::upgrade::list_offers(store).await.expect("list");
    let ids: Vec<&str> = offers.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, vec!["enormous", "more-memory", "to-large"]);
    assert!(offers.iter().all(|o| o.enabled && o.currency == "usd"));

    let mut edit = config.stripe.offers[0].clone();
    edit.price = 1200;
    edit.name = "+2 GB RAM".into();
    let changed = vmauto::upgrade::update_offer(store, config, &edit, "admin:root").await.expect("update");
    assert_eq!((changed.price, changed.name.as_str()), (1200, "+2 GB RAM"));
    assert!(vmauto::upgrade::disable_offer(store, &"more-memory".into(), "admin:root").await.expect("disable"));
    assert!(!vmauto::upgrade::disable_offer(store, &"nope".into(), "admin:root").await.expect("missing"));
    let new = OfferConfig {
        id: "disk".into(),
        name: "+50 GB disk".into(),
        add_disk_gb: 50,
        price: 500,
        ..Default::default()
    };
    vmauto::upgrade::create_offer(store, config, &new, "admin:root").await.expect("create");
    assert!(vmauto::upgrade::create_offer(store, config, &new, "admin:root").await.is_err(), "ids are unique");
    let bad = OfferConfig { id: "bad".into(), name: "x".into(), price: 0, add_cores: 1, ..Default::default() };
    let err = vmauto::upgrade::create_offer(store, config, &bad, "admin:root").await.expect_err("price 0");
    assert!(format!("{err:#}").contains("price"), "{err:#}");

    // A restart does not overwrite an admin's edits.
    let written = vmauto::upgrade::offers::sync_config_offers(store, config).await.expect("sync");
    assert_eq!(written, 0);
    let o = vmauto::upgrade::offers::get_offer(store, &"more-memory".into()).await.expect("get").expect("exists");
    assert_eq!((o.price, o.enabled), (1200, false));
}

#[actix_web::test]
async fn the_ready_email_carries_an_upgrade_link_and_the_applied_upgrade_is_emailed() {
    use crate::notifier::{SmtpSink, part};
    vmauto::init_crypto();
    let sink = SmtpSink::start();
    let fake = FakeStripe::start().await;
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        stripe_config(c, &fake.url);
        c.stripe.link_in_ready_email = true;
        sink.configure(c);
        c.sources.insert(
            "ghl".into(),
            vmauto::config::SourceConfig {
                plugin: "ghl-workflow".into(),
                signature: vmauto::config::SignatureScheme::None,
                customer_email: true,
                ..Default::default()
            },
        );
    })
    .await;
    let vps = active_vps(&s, "sub-mail").await;
    let ready = sink.wait_for("dana@example.com", 30).await;
    let public = s.t.app.state.config.server.public_url.clone();
    let text = part(&ready, "text/plain");
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{public}/upgrade/")))
        .unwrap_or_else(|| panic!("no upgrade link in {text}"))
        .to_string();
    assert!(part(&ready, "text/html").contains(&link), "the HTML part carries the same link");
    let token = token_of(&link);
    let (code, html) = s.t.get(&format!("/upgrade/{token}")).await;
    assert_eq!(code, 200, "{html}");

    let resp = pay(&s.t, &token, "more-memory", &input_value(&html, "form_token")).await;
    assert_eq!(resp.status(), 303);
    let r = &fake.requests()[0];
    let metadata: Value = r
        .form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[").and_then(|m| m.strip_suffix(']')).map(|m| (m.to_string(), json!(v)))
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    assert_eq!(metadata["vmauto_vps"], vps.as_str());
    let (code, _) = send_signed(
        &s.t,
        &session_event("evt_mail", "checkout.session.completed", "cs_test_fake0001", "paid", &metadata),
    )
    .await;
    assert_eq!(code, 200);
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let upgraded = loop {
        let found = sink
            .messages()
            .into_iter()
            .find(|m| m["subject"].as_str().is_some_and(|s| s.contains("has been upgraded")));
        if let Some(m) = found {
            break m;
        }
        assert!(Instant::now() < deadline, "no upgrade email; got {:?}", sink.messages());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(upgraded["rcpt_tos"].to_string().contains("dana@example.com"), "{upgraded}");
    let text = part(&upgraded, "text/plain");
    assert!(text.contains("3 GB memory") && text.contains("1 vCPU"), "{text}");
}

#[actix_web::test]
async fn a_hammered_customer_link_costs_scp_one_read_and_gets_429_and_a_slow_scp_503() {
    vmauto::init_crypto();
    let fake = FakeStripe::start().await;
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| stripe_config(c, &fake.url)).await;
    let page = |token: String, client: String| {
        let req = s.t.http.get(s.t.url(&format!("/upgrade/{token}"))).header("x-forwarded-for", client);
        async move { req.send().await.expect("page") }
    };

    // SCP too slow to answer: the page says so (503) within seconds; nothing waits on it.
    let slow = token_of(&issue(&s, &active_vps(&s, "sub-slow").await).await.url);
    s.sim.add_fault(vmauto::sim::fault::FaultRule::parse("GET /janus/*/overview latency_ms=10000").expect("fault"));
    let r = page(slow, "198.51.100.1".into()).await;
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.text().await.expect("html").contains("Try this link again"));
    s.sim.clear_faults();

    // A link opened far more often than a person would: one SCP read serves every view, and
    // past the link's budget (counted per minute of the clock: a run that crosses into the
    // next minute is made again, with a new link from a new address) the page answers 429.
    let overview = |state: &Value| state["requests"]["GET /janus/{v}/overview"].as_u64().unwrap_or(0);
    let (mut statuses, mut before, per_minute) = (Vec::new(), 0, vmauto::http::upgrade::LINK_REQUESTS_PER_MINUTE);
    for run in 0..3u8 {
        let token = token_of(&issue(&s, &active_vps(&s, &format!("sub-hammer-{run}")).await).await.url);
        let started = chrono::Utc::now().timestamp() / 60;
        (before, statuses) = (overview(&s.sim_state().await), Vec::new());
        for _ in 0..per_minute + 5 {
            statuses.push(page(token.clone(), format!("198.51.100.{}", 2 + run)).await.status().as_u16());
        }
        if chrono::Utc::now().timestamp() / 60 == started {
            break;
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count() as u32, per_minute, "{statuses:?}");
    assert!(statuses.ends_with(&[429, 429, 429, 429, 429]), "past the link's budget: {statuses:?}");
    assert_eq!(overview(&s.sim_state().await) - before, 1, "one capacity read served every page view");
}

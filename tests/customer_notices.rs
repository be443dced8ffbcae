//! What the customer is told, with their portal link: "VPS ready" (email and the `vps_ready`
//! webhook), the warning when a cancellation schedules a suspension and deletion
//! (`customer_warning`), and the reminder before the deletion (`deletion_reminder`, once).

use std::time::{Duration, Instant};

use serde_json::Value;
use vmauto::actors::subscription::HandleEvents;
use vmauto::billing::{BillingEvent, EventKind};
use vmauto::config::{Secret, SignatureScheme, SourceConfig};

use crate::common::Stack;
use crate::notifier::{PUBLIC_URL, Received, SmtpSink, part, receiver, rows, subscribe};

/// The payloads the receiver got so far, by kind.
fn payloads(got: &[Received], kind: &str) -> Vec<Value> {
    got.iter().filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok()).filter(|v| v["kind"] == kind).collect()
}

async fn receive_until(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Received>, got: &mut Vec<Received>, kind: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while payloads(got, kind).is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let r =
            tokio::time::timeout(left, rx.recv()).await.unwrap_or_else(|_| panic!("no {kind} webhook")).expect("open");
        got.push(r);
    }
}

/// The first URL in `text` under `prefix`.
fn link_in(text: &str, prefix: &str) -> Option<String> {
    text.split_whitespace().find(|w| w.starts_with(prefix)).map(str::to_string)
}

#[actix_web::test]
async fn the_customer_gets_their_portal_link_when_ready_when_warned_and_when_reminded() {
    let sink = SmtpSink::start();
    let (url, mut rx) = receiver().await;
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        sink.configure(c);
        c.sources.insert(
            "ghl".into(),
            SourceConfig {
                plugin: "ghl-workflow".into(),
                signature: SignatureScheme::None,
                customer_email: true,
                ..SourceConfig::default()
            },
        );
        c.portal.enabled = true;
        c.policy.grace_days = 3;
        c.policy.warn_before_delete_hours = 100;
        c.notify.webhook_urls = vec![url.clone()];
        c.notify.allow_private_webhook_urls = true;
        c.notify.webhook_secret = Secret::new("notify-signing-secret");
        c.notify.retry_max_secs = 1;
    })
    .await;
    let send = |e: BillingEvent| {
        s.t.app.handles().subscription.send(HandleEvents {
            source: "ghl".into(),
            requested_by: "test".into(),
            events: vec![e],
        })
    };
    assert_eq!(send(subscribe("sub-w")).await.expect("delivered")[0].status, "processed");
    s.wait_for("VPS active", 60, "SELECT state FROM vps", |r| r.len() == 1 && r[0]["state"] == "active").await;
    let prefix = format!("{PUBLIC_URL}/my/");

    // Ready: the email and the outgoing webhook carry the same portal link, which opens the page.
    let ready = sink.wait_for("dana@example.com", 30).await;
    let portal = link_in(part(&ready, "text/plain"), &prefix).expect("a portal link in the ready email");
    assert!(part(&ready, "text/html").contains(&portal));
    let mut got = Vec::new();
    receive_until(&mut rx, &mut got, "vps_ready").await;
    assert_eq!(payloads(&got, "vps_ready")[0]["portal_url"], portal.as_str());
    let (status, page) = s.t.get(portal.trim_start_matches(PUBLIC_URL)).await;
    assert_eq!(status, 200, "{page}");
    let stored = rows(&s.t.app.state.store, "SELECT * FROM notification").await;
    let token = portal.rsplit('/').next().expect("token");
    assert!(!serde_json::to_string(&stored).expect("json").contains(token), "the token is stored nowhere");

    // A cancellation: suspended now, deleted in 3 days; the customer is told when, with the link.
    let cancel = crate::common::event(EventKind::Cancel, "sub-w", None, None);
    assert_eq!(send(cancel).await.expect("delivered")[0].status, "processed");
    let deadline = Instant::now() + Duration::from_secs(30);
    let warning = loop {
        let m = sink
            .messages()
            .into_iter()
            .find(|m| m["subject"].as_str().unwrap_or_default().contains("will be deleted on"));
        if let Some(m) = m {
            break m;
        }
        assert!(Instant::now() < deadline, "no warning email: {:?}", sink.messages());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let text = part(&warning, "text/plain").to_string();
    let due =
        rows(&s.t.app.state.store, "SELECT VALUE delete_after FROM vps").await[0].as_str().expect("due").to_string();
    assert!(text.contains("suspended (powered off)") && text.contains(&due[..10]), "what and when: {text}");
    let warned_link = link_in(&text, &prefix).expect("a portal link in the warning");
    receive_until(&mut rx, &mut got, "customer_warning").await;
    assert_eq!(payloads(&got, "customer_warning")[0]["portal_url"], warned_link.as_str());

    // The reminder: the deletion is within policy.warn_before_delete_hours, so it goes out
    // once however often the scheduler looks.
    s.wait_for("suspended", 60, "SELECT state FROM vps", |r| r[0]["state"] == "suspended").await;
    for _ in 0..3 {
        s.t.app.handles().scheduler.send(vmauto::actors::scheduler::Remind).await.expect("remind");
    }
    receive_until(&mut rx, &mut got, "deletion_reminder").await;
    let reminder = sink.wait_for_subject("Reminder:", 30).await;
    assert!(part(&reminder, "text/plain").contains(&prefix), "the reminder has a portal link");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reminders = sink
        .messages()
        .into_iter()
        .filter(|m| m["subject"].as_str().unwrap_or_default().starts_with("Reminder:"))
        .count();
    assert_eq!(reminders, 1, "one reminder per scheduled deletion");
}

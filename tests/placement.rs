//! Several SCPs and placement, over two simulators: a location's candidates fill or spread as
//! configured, counting VMs being created right now, so a burst never oversubscribes an AZ;
//! a provider that fails is skipped; when no candidate has room the subscribe is parked with
//! "no capacity" and an alert, not created to fail later; a create that dies gives its room
//! back.

use serde_json::{Value, json};
use vmauto::billing::{BillingEvent, EventKind};
use vmauto::config::{Candidate, LocationConfig, PlacementPolicy};
use vmauto::sim::world::AZ_A;

use crate::common::Stack;

/// The appliance on simulator A (`default`) and simulator B (provider `b`), with locations
/// `fill` and `spread` over (default, AZ A) then (b, AZ A), offered by template vps-small.
async fn two_scps() -> (Stack, vmauto::sim::SimServer) {
    let b = vmauto::sim::start(vmauto::sim::SimConfig::default()).await.expect("simulator B");
    let b_url = b.base_url();
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), move |c| {
        let mut other = c.provider.sangfor.clone();
        other.base_url = b_url;
        other.max_retries = 0;
        other.breaker_threshold = 1;
        other.breaker_cooldown_secs = 600;
        c.providers.insert("b".into(), other);
        let candidates =
            ["default", "b"].map(|p| Candidate { provider: p.into(), az: AZ_A.into(), ..Candidate::default() });
        for (name, policy) in [("fill", PlacementPolicy::Fill), ("spread", PlacementPolicy::Spread)] {
            c.locations.insert(name.into(), LocationConfig { candidates: candidates.to_vec(), policy });
        }
    })
    .await;
    let store = &s.t.app.state.store;
    let mut t = store.template_by_name(&"vps-small".into()).await.expect("q").expect("vps-small");
    t.locations = vec!["fill".into(), "spread".into()];
    vmauto::admin::save_template(store, &t, "admin:t").await.expect("saved");
    (s, b)
}

async fn set_vcpus(sim: &str, vcpus: u64) {
    let resp = reqwest::Client::new()
        .put(format!("{sim}/_sim/azs/{AZ_A}/capacity"))
        .json(&json!({ "vcpu_total": vcpus }))
        .send()
        .await
        .expect("capacity");
    assert!(resp.status().is_success());
}

fn order(sub: &str, location: &str) -> BillingEvent {
    let mut e = crate::common::event(EventKind::Subscribe, sub, Some("starter"), None);
    e.choices.location = Some(location.into());
    e
}

/// (VPS on the default SCP, on b) among `subs`, once every one of them is active.
async fn placed(s: &Stack, subs: &[String]) -> (usize, usize) {
    let keys: Vec<String> = subs.iter().map(|sub| vmauto::lifecycle::stable_key("ghl", sub).to_string()).collect();
    let sql = format!(
        "SELECT state, template_row.provider AS provider FROM vps WHERE subscription IN {}",
        serde_json::to_string(&keys).expect("json")
    );
    let rows = s
        .wait_for("VPS active", 120, &sql, |r| r.len() == subs.len() && r.iter().all(|v| v["state"] == "active"))
        .await;
    let on_b = rows.iter().filter(|r| r["provider"] == "b").count();
    (rows.len() - on_b, on_b)
}

async fn vms(sim: &str) -> usize {
    let state: Value = reqwest::get(format!("{sim}/_sim/state")).await.expect("state").json().await.expect("json");
    state["servers"].as_array().map_or(0, |a| a.iter().filter(|s| s["recycled"] != json!(true)).count())
}

#[actix_web::test]
async fn fill_spills_over_then_parks_and_a_burst_never_oversubscribes() {
    let (s, b) = two_scps().await;
    set_vcpus(&s.sim.base_url(), 2).await;
    set_vcpus(&b.base_url(), 3).await;
    // A burst of five orders at once: two fit on A, three on B.
    let subs: Vec<String> = (0..5).map(|i| format!("sub-fill-{i}")).collect();
    let events: Vec<BillingEvent> = subs.iter().map(|sub| order(sub, "fill")).collect();
    let outcomes = s.t.app.state.handles.subscription.send(vmauto::actors::subscription::HandleEvents {
        source: "ghl".into(),
        requested_by: "system".into(),
        events,
    });
    let outcomes = outcomes.await.expect("applied");
    assert!(outcomes.iter().all(|o| o.status == "processed"), "{outcomes:?}");
    assert_eq!(placed(&s, &subs).await, (2, 3), "fill: A first, then B");
    assert_eq!((vms(&s.sim.base_url()).await, vms(&b.base_url()).await), (2, 3));

    // Both full: parked with the reason, and an alert.
    let out = s.send(order("sub-fill-6", "fill")).await;
    assert_eq!(out[0].status, "parked", "{out:?}");
    assert!(out[0].detail.contains("no capacity for vps-small in location fill"), "{out:?}");
    let sql = "SELECT VALUE body FROM notification WHERE kind = 'event_parked'";
    let alerts = s.wait_for("the alert", 30, sql, |r| !r.is_empty()).await;
    assert!(alerts[0].as_str().is_some_and(|b| b.contains("no capacity")), "{alerts:?}");
    assert_eq!(vms(&s.sim.base_url()).await + vms(&b.base_url()).await, 5, "nothing created to fail later");
}

#[actix_web::test]
async fn spread_alternates_and_a_failing_provider_is_skipped() {
    let (s, b) = two_scps().await;
    set_vcpus(&s.sim.base_url(), 10).await;
    set_vcpus(&b.base_url(), 10).await;
    let subs: Vec<String> = (0..4).map(|i| format!("sub-spread-{i}")).collect();
    for sub in &subs {
        let out = s.send(order(sub, "spread")).await;
        assert_eq!(out[0].status, "processed", "{out:?}");
    }
    assert_eq!(placed(&s, &subs).await, (2, 2), "spread: the emptier AZ each time");

    // B fails every request: its breaker opens, and new VMs go to A although B has more room.
    let fault = json!({ "method": "*", "path": "*", "error_rate": 1.0, "statuses": [503] });
    let resp = reqwest::Client::new().post(format!("{}/_sim/faults", b.base_url())).json(&fault).send().await;
    assert!(resp.expect("fault").status().is_success());
    set_vcpus(&s.sim.base_url(), 8).await;
    // The capacity B last answered is kept a while; once it is asked again, it fails.
    tokio::time::sleep(std::time::Duration::from_secs(16)).await;
    let more: Vec<String> = (4..7).map(|i| format!("sub-spread-{i}")).collect();
    for sub in &more {
        let out = s.send(order(sub, "spread")).await;
        assert_eq!(out[0].status, "processed", "{out:?}");
    }
    assert_eq!(placed(&s, &more).await, (3, 0), "the failing provider is skipped");
    let status = s.t.app.state.handles.gateways.statuses().await;
    let b_state = status.iter().find(|(n, _)| n == "b").map(|(_, st)| format!("{:?}", st.breaker));
    assert_eq!(b_state.as_deref(), Some("Open"), "{status:?}");

    // The dashboard shows each provider's health and the capacity of its AZ.
    crate::ui::users(&s.t).await;
    let base = s.t.app.base_url();
    let session = crate::ui::login(&base, "view").await;
    let (code, html) = crate::ui::get(&base, &session, "/").await;
    assert_eq!(code, 200);
    let section = html.split("id=\"providers\"").nth(1).expect("the providers section");
    assert!(section.contains("<h3>default <span class=\"breaker-closed\">breaker closed"), "{section}");
    assert!(section.contains("<h3>b <span class=\"breaker-open\">breaker open"), "{section}");
    assert!(section.contains("class=\"cap-used\"") && section.contains(&format!("AZ {AZ_A}")), "{section}");
}

#[actix_web::test]
async fn a_create_that_dies_gives_its_room_back() {
    let (s, b) = two_scps().await;
    set_vcpus(&s.sim.base_url(), 1).await;
    set_vcpus(&b.base_url(), 0).await;
    // The first create fails for good on A (a permanent cause): its VPS fails, its room returns.
    let fault = json!({ "method": "POST", "path": "*/servers", "task_failure_rate": 1.0,
        "task_failure_kinds": ["quota"], "latency_ms": 1500, "times": 1 });
    let resp = reqwest::Client::new().post(format!("{}/_sim/faults", s.sim.base_url())).json(&fault).send().await;
    assert!(resp.expect("fault").status().is_success());
    let out = s.send(order("sub-dies", "fill")).await;
    assert_eq!(out[0].status, "processed", "{out:?}");
    // While it is being created, the one vCPU of A is taken: another order is parked.
    let key = vmauto::lifecycle::stable_key("ghl", "sub-dies");
    let sql = format!("SELECT VALUE state FROM vps WHERE subscription = '{key}'");
    let parked = s.send(order("sub-waits", "fill")).await;
    assert_eq!(parked[0].status, "parked", "the room is reserved: {parked:?}");
    s.wait_for("the create died", 60, &sql, |r| r.first().is_some_and(|v| v == "failed")).await;
    let out = s.send(order("sub-after", "fill")).await;
    assert_eq!(out[0].status, "processed", "the dead create's room is free again: {out:?}");
    assert_eq!(placed(&s, &["sub-after".to_string()]).await, (1, 0));
}

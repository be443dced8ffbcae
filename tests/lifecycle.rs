//! The lifecycle against the simulator over HTTP: billing events → decisions → operations →
//! VMs, with ownership tags, sealed passwords, grace periods and the blast-radius guard.

use serde_json::{Value, json};
use vmauto::billing::{BillingEvent, EventKind};
use vmauto::lifecycle::VpsId;

use crate::common::Stack;

fn event(kind: EventKind, sub: &str, plan: Option<&str>) -> BillingEvent {
    crate::common::event(kind, sub, plan, None)
}

async fn send(s: &Stack, e: BillingEvent) -> Vec<vmauto::actors::subscription::EventOutcome> {
    s.send(e).await
}

fn vps_of(sub: &str) -> String {
    format!(
        "SELECT record::id(id) AS id, state, server_id, ips, root_password, spec FROM vps WHERE subscription = '{}'",
        vmauto::lifecycle::stable_key("ghl", sub)
    )
}

fn one_in(state: &'static str) -> impl Fn(&[Value]) -> bool {
    move |rows: &[Value]| rows.len() == 1 && rows[0]["state"] == state
}

#[actix_web::test]
async fn subscribe_creates_one_tagged_vm_with_ip_and_sealed_password_then_cancel_deletes_it() {
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| c.policy.grace_days = 0).await;
    let out = send(&s, event(EventKind::Subscribe, "sub-a", Some("starter"))).await;
    assert_eq!(out[0].status, "processed", "{out:?}");
    let rows = s.wait_for("VPS active", 60, &vps_of("sub-a"), one_in("active")).await;
    let vps = &rows[0];
    assert!(!vps["ips"].as_array().expect("ips").is_empty(), "{vps}");
    assert_eq!(vps["spec"]["cores"], 1);
    let sealed = vps["root_password"].as_str().expect("sealed password");
    let sealer = vmauto::secrets::Sealer::from_file(&s.t.app.state.config.key_file()).expect("key");
    assert_eq!(
        sealer
            .open(sealed, &vmauto::secrets::root_password_place(vps["id"].as_str().expect("id")))
            .expect("opens")
            .expose()
            .len(),
        20
    );

    let servers = s.sim_servers().await;
    assert_eq!(servers.len(), 1, "exactly one VM: {servers:?}");
    let install = s.t.app.state.store.install_id().await.expect("install id");
    let tag = vmauto::lifecycle::owner_tag(&install, &VpsId::from(vps["id"].as_str().expect("id")));
    assert!(servers[0]["description"].as_str().unwrap_or_default().contains(&tag), "{}", servers[0]);
    assert_eq!(servers[0]["id"], vps["server_id"]);

    // A repeated subscribe changes nothing.
    let out = send(&s, event(EventKind::Subscribe, "sub-a", Some("starter"))).await;
    assert_eq!(out[0].status, "ignored");

    let out = send(&s, event(EventKind::Cancel, "sub-a", None)).await;
    assert_eq!(out[0].status, "processed", "{out:?}");
    s.wait_for("VPS deleted", 60, &vps_of("sub-a"), one_in("deleted")).await;
    assert!(s.sim_servers().await.is_empty(), "the VM went to the recycle bin");
    let ops = s.rows("SELECT kind, state FROM operation ORDER BY created_at").await;
    assert_eq!(ops.iter().filter(|o| o["state"] == "succeeded").count(), 2, "{ops:?}");
    let both = |r: &[Value]| r.contains(&json!("vps_ready")) && r.contains(&json!("vps_deleted"));
    let notes = s.wait_for("both notices", 30, "SELECT VALUE kind FROM notification", both).await;
    assert!(both(&notes), "{notes:?}");
}

#[actix_web::test]
async fn cancel_with_grace_suspends_and_resume_inside_grace_cancels_the_deletion() {
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| c.policy.grace_days = 3).await;
    send(&s, event(EventKind::Subscribe, "sub-g", Some("business"))).await;
    s.wait_for("VPS active", 60, &vps_of("sub-g"), one_in("active")).await;
    send(&s, event(EventKind::Cancel, "sub-g", None)).await;
    let rows = s.wait_for("VPS suspended", 60, &vps_of("sub-g"), one_in("suspended")).await;
    assert_eq!(rows[0]["spec"]["cores"], 2);
    let sim = s.sim_servers().await;
    assert_eq!(sim.len(), 1);
    assert_eq!(sim[0]["status"], "stopped", "suspended means powered off: {}", sim[0]);
    let pending = s.rows("SELECT state, next_attempt_at FROM operation WHERE kind = 'delete'").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["state"], "queued", "the deletion waits for the grace period");

    send(&s, event(EventKind::Resume, "sub-g", None)).await;
    s.wait_for("VPS active again", 60, &vps_of("sub-g"), one_in("active")).await;
    let pending = s.rows("SELECT VALUE state FROM operation WHERE kind = 'delete'").await;
    assert_eq!(pending, vec![json!("cancelled")]);
    assert_eq!(s.sim_servers().await[0]["status"], "running");

    // Cancelled again, then resumed by an admin: the resume cancels the scheduled deletion too.
    send(&s, event(EventKind::Cancel, "sub-g", None)).await;
    let rows = s.wait_for("VPS suspended again", 60, &vps_of("sub-g"), one_in("suspended")).await;
    let id = VpsId::from(rows[0]["id"].as_str().expect("id"));
    let st = &s.t.app.state;
    let (store, registry) = (&st.store, &st.handles.registry);
    vmauto::admin::request_action(store, registry, &id, vmauto::admin::Action::Resume, json!({}), "admin:t")
        .await
        .expect("resume queued");
    s.wait_for("VPS active after the admin's resume", 60, &vps_of("sub-g"), one_in("active")).await;
    let deletes = s.rows("SELECT VALUE state FROM operation WHERE kind = 'delete' ORDER BY created_at").await;
    assert_eq!(deletes, vec![json!("cancelled"), json!("cancelled")], "no deletion is left to run");
    let delete_after = s.rows(&format!("SELECT VALUE delete_after FROM vps:`{id}`")).await;
    assert_eq!(delete_after, vec![Value::Null]);
}

#[actix_web::test]
async fn unknown_plan_is_parked_with_a_notification() {
    let s = Stack::start().await;
    let out = send(&s, event(EventKind::Subscribe, "sub-u", Some("platinum"))).await;
    assert_eq!(out[0].status, "parked", "{out:?}");
    assert!(out[0].detail.contains("platinum"));
    assert!(s.rows(&vps_of("sub-u")).await.is_empty());
    // The notifier writes its row after the decision answers.
    let notes = s.wait_for("the notification", 30, "SELECT VALUE kind FROM notification", |r| !r.is_empty()).await;
    assert_eq!(notes, vec![json!("event_parked")]);
}

#[actix_web::test]
async fn an_event_the_store_refuses_fails_loudly_and_applies_after_a_replay() {
    let s = Stack::start().await;
    let store = &s.t.app.state.store;
    // The store refuses any customer with this email, as a broken schema or disk would.
    let refuse = "DEFINE FIELD OVERWRITE email ON customer ASSERT $value != 'refused@example.com'";
    store.execute(refuse, json!({})).await.expect("assertion defined");
    let mut e = event(EventKind::Subscribe, "sub-f", Some("starter"));
    e.customer.email = "refused@example.com".into();
    let out = send(&s, e.clone()).await;
    assert_eq!(out[0].status, "failed", "{out:?}");
    assert!(out[0].detail.contains("refused@example.com"), "the store's reason is kept: {out:?}");
    assert!(s.rows(&vps_of("sub-f")).await.is_empty(), "nothing half-applied");
    let notes = s
        .wait_for("a critical notification", 30, "SELECT kind, severity, body FROM notification", |rows| {
            !rows.is_empty()
        })
        .await;
    assert_eq!(notes[0]["kind"], "event_failed");
    assert_eq!(notes[0]["severity"], "critical");
    assert!(notes[0]["body"].as_str().is_some_and(|b| b.contains("sub-f")), "{}", notes[0]);
    let activity = s.rows("SELECT VALUE message FROM activity WHERE level = 'error'").await;
    assert!(activity.iter().any(|m| m.as_str().is_some_and(|m| m.contains("event not applied"))), "{activity:?}");

    // Once the cause is gone the same event applies.
    store.execute("REMOVE FIELD email ON customer", json!({})).await.expect("assertion removed");
    let out = send(&s, e).await;
    assert_eq!(out[0].status, "processed", "{out:?}");
    s.wait_for("VPS active", 60, &vps_of("sub-f"), one_in("active")).await;
}

#[actix_web::test]
async fn change_plan_resizes_the_vm() {
    let s = Stack::start().await;
    send(&s, event(EventKind::Subscribe, "sub-r", Some("starter"))).await;
    s.wait_for("VPS active", 60, &vps_of("sub-r"), one_in("active")).await;
    let out = send(&s, event(EventKind::ChangePlan, "sub-r", Some("pro"))).await;
    assert_eq!(out[0].status, "processed", "{out:?}");
    s.wait_for("VPS resized", 60, &vps_of("sub-r"), |r| {
        r.len() == 1 && r[0]["state"] == "active" && r[0]["spec"]["cores"] == 4
    })
    .await;
    let vm = &s.sim_servers().await[0];
    assert_eq!(vm["cores"], 4, "{vm}");
    assert_eq!(vm["memory_mb"], 8192, "{vm}");
}

#[actix_web::test]
async fn the_guard_holds_destructive_operations_over_the_threshold() {
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        c.policy.grace_days = 0;
        c.policy.max_destructive_per_hour = 1;
    })
    .await;
    for sub in ["g1", "g2"] {
        send(&s, event(EventKind::Subscribe, sub, Some("starter"))).await;
    }
    for sub in ["g1", "g2"] {
        s.wait_for("VPS active", 60, &vps_of(sub), one_in("active")).await;
    }
    send(&s, event(EventKind::Cancel, "g1", None)).await;
    let out = send(&s, event(EventKind::Cancel, "g2", None)).await;
    assert!(out[0].detail.contains("blast-radius"), "{out:?}");
    s.wait_for("first VPS deleted", 60, &vps_of("g1"), one_in("deleted")).await;
    let held = s.rows("SELECT VALUE state FROM operation WHERE kind = 'delete' AND state = 'held'").await;
    assert_eq!(held.len(), 1);
    assert_eq!(s.rows(&vps_of("g2")).await[0]["state"], "active", "the held deletion did not run");
    let notes = s
        .wait_for("the alert", 30, "SELECT VALUE kind FROM notification", |r| r.contains(&json!("guard_tripped")))
        .await;
    assert!(notes.contains(&json!("guard_tripped")), "{notes:?}");
    // The dashboard says the guard tripped and lists what waits for approval.
    crate::ui::users(&s.t).await;
    let base = s.t.app.base_url();
    let session = crate::ui::login(&base, "root").await;
    let (code, html) = crate::ui::get(&base, &session, "/").await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("tripped: 1 operation(s) wait for approval"), "{html}");
}

#[actix_web::test]
async fn the_reconciler_reports_orphans_missing_vms_and_drift_without_touching_them() {
    use vmauto::actors::gateway::{CreateServer, DeleteServer, UpdateCompute, WaitTask};
    use vmauto::actors::reconciler::{Finding, Reconcile};
    use vmauto::provider::{OpKey, ServerId, ServerSpec};

    let s = Stack::start().await;
    for sub in ["sub-m", "sub-d"] {
        send(&s, event(EventKind::Subscribe, sub, Some("starter"))).await;
    }
    let missing = s.wait_for("VPS active", 60, &vps_of("sub-m"), one_in("active")).await;
    let drifted = s.wait_for("VPS active", 60, &vps_of("sub-d"), one_in("active")).await;
    let gw = s.t.app.handles().gateway.clone();
    let wait = |task| WaitTask { task_id: task, timeout: None };

    // A VM removed behind vmauto's back.
    let sid = ServerId::new(missing[0]["server_id"].as_str().expect("server id"));
    let task = gw
        .send(DeleteServer { server_id: sid, op: OpKey::random(), permanent: Some(true) })
        .await
        .expect("sent")
        .expect("delete");
    gw.send(wait(task)).await.expect("sent").expect("deleted");
    // A VM resized behind vmauto's back.
    let sid = ServerId::new(drifted[0]["server_id"].as_str().expect("server id"));
    let task = gw
        .send(UpdateCompute { server_id: sid, op: OpKey::random(), cores: Some(3), memory_mb: None })
        .await
        .expect("sent")
        .expect("update");
    gw.send(wait(task)).await.expect("sent").expect("updated");
    // A VM carrying this installation's tag that no VPS claims.
    let missing_id = VpsId::from(missing[0]["id"].as_str().expect("id"));
    let template = s.t.app.state.store.vps_template(&missing_id).await.expect("q").expect("t");
    let install = s.t.app.state.store.install_id().await.expect("install");
    let spec = ServerSpec {
        name: "ghost".into(),
        zone_id: template.az_id.clone(),
        image_id: template.image_id.clone(),
        storage_tag_id: template.storage_tag_id.clone(),
        cores: 1,
        sockets: 1,
        memory_mb: 1024,
        disk_mb: Some(template.disk_gb * 1024),
        nics: vec![],
        owner_tag: vmauto::lifecycle::owner_tag(&install, &VpsId::from("ghost")),
        power_on: false,
        hostname: None,
    };
    let created = gw.send(CreateServer { spec, op: OpKey::random() }).await.expect("sent").expect("create");
    gw.send(wait(created.task_id)).await.expect("sent").expect("created");

    let findings = s.t.app.handles().reconciler.send(Reconcile).await.expect("sent").expect("reconciled");
    assert_eq!(findings.len(), 3, "{findings:?}");
    assert!(
        findings.iter().any(|f| matches!(f, Finding::Orphan { tag, .. } if tag.ends_with(":ghost"))),
        "{findings:?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| matches!(f, Finding::Missing { vps, .. } if Some(vps.as_str()) == missing[0]["id"].as_str()))
    );
    assert!(
        findings
            .iter()
            .any(|f| matches!(f, Finding::Drift { vps, .. } if Some(vps.as_str()) == drifted[0]["id"].as_str()))
    );
    // Nothing was changed: the orphan still exists, the records keep their state.
    assert_eq!(s.sim_servers().await.len(), 2);
    assert_eq!(s.rows(&vps_of("sub-m")).await[0]["state"], "active");
    let logged = s.rows("SELECT VALUE data.kind FROM activity WHERE actor = 'reconciler'").await;
    assert_eq!(logged.len(), 3, "{logged:?}");
}

#[actix_web::test]
async fn key_figures_reflect_the_lifecycle() {
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| c.policy.grace_days = 0).await;
    let empty = vmauto::lifecycle::kpi::compute(&s.t.app.state.store).await.expect("kpis");
    assert_eq!(empty.automation_success_rate, 1.0);
    assert_eq!(empty.avg_provisioning_secs, None);
    send(&s, event(EventKind::Subscribe, "sub-k", Some("starter"))).await;
    s.wait_for("VPS active", 60, &vps_of("sub-k"), one_in("active")).await;
    send(&s, event(EventKind::Cancel, "sub-k", None)).await;
    s.wait_for("VPS deleted", 60, &vps_of("sub-k"), one_in("deleted")).await;
    let k = vmauto::lifecycle::kpi::compute(&s.t.app.state.store).await.expect("kpis");
    assert_eq!(k.succeeded_operations, 2);
    assert_eq!(k.dead_operations, 0);
    assert_eq!(k.automation_success_rate, 1.0);
    assert!(k.avg_provisioning_secs.expect("measured") > 0.0);
    assert!(k.avg_deprovisioning_secs.is_some());
    let (_, metrics) = s.t.get("/metrics").await;
    assert!(metrics.contains(r#"vmauto_kpi{name="automation_success_rate"} 1"#), "{metrics}");
}

#[actix_web::test]
async fn an_admin_restores_a_deleted_vps_from_the_recycle_bin_with_its_addresses() {
    let s = crate::common::Stack::start().await;
    let vps = crate::upgrades::active_vps(&s, "sub-restore").await;
    let before = s.rows(&format!("SELECT server_id, ips, name FROM vps:`{vps}`")).await.remove(0);
    let token =
        s.t.app.state.auth.create_token("robot", vmauto::auth::Role::Operator, "admin:root").await.expect("token");
    let act = |body: serde_json::Value| {
        let req = s.t.http.post(s.t.url(&format!("/api/v1/vps/{vps}/actions"))).bearer_auth(&token).json(&body);
        async move {
            let r = req.send().await.expect("action");
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let (code, err) = act(serde_json::json!({ "action": "restore" })).await;
    assert_eq!(code, 400, "an active VPS is not restored: {err}");
    assert!(err["message"].as_str().unwrap_or_default().contains("only a deleted VPS"), "{err}");

    let (code, _) = act(serde_json::json!({ "action": "delete", "confirm": before["name"] })).await;
    assert_eq!(code, 202);
    s.wait_for("deleted", 60, &format!("SELECT state FROM vps:`{vps}`"), |r| r[0]["state"] == "deleted").await;
    let recycled = s.sim_state().await["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .any(|v| v["id"] == before["server_id"] && v["recycled"] == true);
    assert!(recycled, "the VM waits in the recycle bin");

    let (code, body) = act(serde_json::json!({ "action": "restore" })).await;
    assert_eq!(code, 202, "{body}");
    let after = s
        .wait_for("restored", 60, &format!("SELECT state, server_id, ips, delete_after FROM vps:`{vps}`"), |r| {
            r[0]["state"] == "active"
        })
        .await
        .remove(0);
    assert_eq!(after["server_id"], before["server_id"], "the same VM");
    assert_eq!(after["ips"], before["ips"], "with its addresses");
    let vm = s.sim_servers().await.into_iter().find(|v| v["id"] == before["server_id"]).expect("back from the bin");
    assert_eq!(vm["status"], "running");
    let ops = s.rows(&format!("SELECT VALUE state FROM operation WHERE vps = '{vps}' AND kind = 'restore'")).await;
    assert_eq!(ops, vec![serde_json::json!("succeeded")]);
}

#[actix_web::test]
async fn a_restore_is_refused_when_deleted_vms_are_not_kept() {
    let s = crate::common::Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        c.provider.sangfor.delete_mode = vmauto::config::DeleteMode::Permanent;
    })
    .await;
    let vps = crate::upgrades::active_vps(&s, "sub-no-restore").await;
    let token =
        s.t.app.state.auth.create_token("robot", vmauto::auth::Role::Operator, "admin:root").await.expect("token");
    let r =
        s.t.http
            .post(s.t.url(&format!("/api/v1/vps/{vps}/actions")))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "action": "restore" }))
            .send()
            .await
            .expect("action");
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(body["message"].as_str().unwrap_or_default().contains("delete_mode is permanent"), "{body}");
}

//! The failure path: SCP task failures are classified, transient ones are retried as new
//! attempts (never replays of the failed task), steps are retried alone, a retry is a decision,
//! and rebuild and reset do what their labels say — each checked in the simulator's state.

use serde_json::{Value, json};
use vmauto::auth::Role;
use vmauto::billing::EventKind;
use vmauto::lifecycle::VpsId;
use vmauto::sim::SimConfig;
use vmauto::sim::fault::FaultRule;

use crate::common::{Stack, event};

fn fault(spec: &str) -> FaultRule {
    FaultRule::parse(spec).expect("fault spec")
}

fn vps_of(sub: &str) -> String {
    format!(
        "SELECT record::id(id) AS id, state, ips, server_id, name FROM vps WHERE subscription = '{}'",
        vmauto::lifecycle::stable_key("ghl", sub)
    )
}

/// Subscribes `sub` and waits for its VPS to be active; answers the VPS row.
async fn active(s: &Stack, sub: &str) -> Value {
    s.send(event(EventKind::Subscribe, sub, Some("starter"), None)).await;
    s.wait_for("VPS active", 90, &vps_of(sub), |r| r.len() == 1 && r[0]["state"] == "active").await.remove(0)
}

/// Tasks the simulator ran, with their action and status.
async fn sim_tasks(s: &Stack) -> Vec<(String, String, String)> {
    s.sim_state().await["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let f = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            (f("action"), f("status"), f("object_id"))
        })
        .collect()
}

async fn api(s: &Stack, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let auth = &s.t.app.state.auth;
    let token = auth.create_token("ops-robot", Role::Operator, "admin:test").await.expect("token");
    let mut r = s.t.http.request(method, s.t.url(&format!("/api/v1{path}"))).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("api");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[actix_web::test]
async fn a_transient_task_failure_is_retried_as_a_new_attempt() {
    let s = Stack::start().await;
    // Two create tasks fail the way SCP fails when it is overloaded; the third attempt works.
    s.sim.add_fault(fault("POST /janus/*/servers task_failure_rate=1 task_failure_kinds=generic,host_busy times=2"));
    let vps = active(&s, "sub-retry").await;
    let ops = s.rows("SELECT state, attempts, attempt_seq FROM operation").await;
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["state"], "succeeded");
    assert_eq!(ops[0]["attempts"], 3, "two failed attempts and a good one: {ops:?}");
    let creates: Vec<_> = sim_tasks(&s).await.into_iter().filter(|t| t.0 == "create_server").collect();
    assert_eq!(creates.iter().filter(|t| t.1 == "failure").count(), 2, "{creates:?}");
    assert_eq!(creates.iter().filter(|t| t.1 == "finish").count(), 1, "a new task, not a replay: {creates:?}");
    assert_eq!(s.sim_servers().await.len(), 1);
    assert!(vps["ips"].as_array().is_some_and(|a| !a.is_empty()), "{vps}");
}

#[actix_web::test]
async fn a_permanent_task_failure_ends_dead_at_once_and_says_what_to_change() {
    let s = Stack::start().await;
    s.sim.add_fault(fault("POST /janus/*/servers task_failure_rate=1 task_failure_kinds=quota"));
    s.send(event(EventKind::Subscribe, "sub-quota", Some("starter"), None)).await;
    let op = s
        .wait_for("the create dead", 60, "SELECT state, attempts, last_error FROM operation", |r| {
            r.len() == 1 && r[0]["state"] == "dead"
        })
        .await
        .remove(0);
    assert_eq!(op["attempts"], 1, "no retry of a failure only an admin can fix: {op}");
    let error = op["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("quota") && error.contains("raise the quota"), "{error}");
    // The notifier writes the admins' notice just after the operation is marked dead.
    s.wait_for("the admins told what to change", 30, "SELECT kind, severity, body FROM notification", |notes| {
        notes.iter().any(|n| n["kind"] == "operation_dead" && n["body"].as_str().is_some_and(|b| b.contains("quota")))
    })
    .await;
}

#[actix_web::test]
async fn a_failed_password_step_is_retried_alone_and_the_vps_shows_its_address_meanwhile() {
    let s = Stack::start_with(SimConfig::default(), |c| {
        c.policy.retry_base_secs = 3;
        c.policy.retry_max_secs = 3;
    })
    .await;
    s.sim.add_fault(fault("POST /janus/*/servers/*/server-password task_failure_rate=1 times=1"));
    s.send(event(EventKind::Subscribe, "sub-pw", Some("starter"), None)).await;
    // Between the failed password task and the retry, the VPS has its VM and address.
    let row = s
        .wait_for("the address shown while the password step waits", 60, &vps_of("sub-pw"), |r| {
            r.len() == 1 && r[0]["ips"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await
        .remove(0);
    assert_ne!(row["state"], "failed", "{row}");
    let row = s.wait_for("VPS active", 60, &vps_of("sub-pw"), |r| r[0]["state"] == "active").await.remove(0);
    let tasks = sim_tasks(&s).await;
    let creates = tasks.iter().filter(|t| t.0 == "create_server").count();
    let passwords: Vec<_> = tasks.iter().filter(|t| t.0 == "change_password").collect();
    assert_eq!(creates, 1, "the VM is not created again: {tasks:?}");
    assert_eq!(passwords.len(), 2, "{passwords:?}");
    assert_eq!(passwords.iter().filter(|t| t.1 == "finish").count(), 1);
    assert!(passwords.iter().all(|t| t.2 == row["server_id"].as_str().unwrap_or_default()));
    assert_eq!(s.sim_servers().await.len(), 1);
}

#[actix_web::test]
async fn a_create_that_leaves_a_broken_vm_is_cleaned_up_and_built_again() {
    let s = Stack::start().await;
    s.sim.add_fault(fault("POST /janus/*/servers task_failure_rate=1 failed_create_leaves_vm=1 times=1"));
    let vps = active(&s, "sub-broken").await;
    let servers = s.sim_servers().await;
    assert_eq!(servers.len(), 1, "the half-built VM is gone: {servers:?}");
    assert_eq!(servers[0]["id"], vps["server_id"]);
    assert_eq!(servers[0]["status"], "running");
    let deletes = sim_tasks(&s).await.into_iter().filter(|t| t.0 == "delete_server").count();
    assert_eq!(deletes, 1, "the broken VM was deleted");
    let activity = s.rows("SELECT VALUE message FROM activity WHERE level = 'warning'").await;
    assert!(activity.iter().any(|m| m.as_str().is_some_and(|m| m.starts_with("removing VM"))), "{activity:?}");
}

#[actix_web::test]
async fn a_failed_delete_task_is_retried_until_the_vm_is_gone() {
    let s = Stack::start_with(SimConfig::default(), |c| c.policy.grace_days = 0).await;
    active(&s, "sub-del").await;
    s.sim.add_fault(fault("DELETE /janus/*/servers/* task_failure_rate=1 times=2"));
    s.send(event(EventKind::Cancel, "sub-del", None, None)).await;
    s.wait_for("VPS deleted", 90, &vps_of("sub-del"), |r| r[0]["state"] == "deleted").await;
    assert!(s.sim_servers().await.is_empty(), "the cancelled customer's VM is gone");
    let deletes: Vec<_> = sim_tasks(&s).await.into_iter().filter(|t| t.0 == "delete_server").collect();
    assert_eq!(deletes.iter().filter(|t| t.1 == "failure").count(), 2, "{deletes:?}");
}

#[actix_web::test]
async fn a_delete_whose_vm_is_already_gone_completes() {
    let s = Stack::start_with(SimConfig::default(), |c| c.policy.grace_days = 0).await;
    let vps = active(&s, "sub-gone").await;
    // The VM disappears behind vmauto's back (deleted on SCP by hand).
    let id = vps["server_id"].as_str().expect("server id");
    let gateway = &s.t.app.handles().gateway;
    let task = gateway
        .send(vmauto::actors::gateway::DeleteServer {
            server_id: vmauto::provider::ServerId::new(id),
            op: vmauto::provider::OpKey::random(),
            permanent: Some(true),
        })
        .await
        .expect("gateway")
        .expect("deleted by hand");
    gateway
        .send(vmauto::actors::gateway::WaitTask { task_id: task, timeout: None })
        .await
        .expect("gateway")
        .expect("task");
    assert!(!s.sim_servers().await.iter().any(|v| v["id"] == id));
    s.send(event(EventKind::Cancel, "sub-gone", None, None)).await;
    s.wait_for("VPS deleted", 60, &vps_of("sub-gone"), |r| r[0]["state"] == "deleted").await;
    let dead = s.rows("SELECT * FROM operation WHERE state = 'dead'").await;
    assert!(dead.is_empty(), "{dead:?}");
}

#[actix_web::test]
async fn retry_refuses_to_bring_a_vm_back_to_a_cancelled_customer() {
    let s = Stack::start_with(SimConfig::default(), |c| c.policy.grace_days = 0).await;
    s.sim.add_fault(fault("POST /janus/*/servers task_failure_rate=1 task_failure_kinds=capacity"));
    s.send(event(EventKind::Subscribe, "sub-409", Some("starter"), None)).await;
    let op = s
        .wait_for("create dead", 60, "SELECT record::id(id) AS id, state FROM operation", |r| {
            r.len() == 1 && r[0]["state"] == "dead"
        })
        .await
        .remove(0);
    let op_id = op["id"].as_str().expect("id").to_string();
    s.send(event(EventKind::Cancel, "sub-409", None, None)).await;
    s.wait_for("VPS deleted", 60, &vps_of("sub-409"), |r| r[0]["state"] == "deleted").await;
    s.sim.clear_faults();
    let before = s.rows("SELECT state, attempts, attempt_seq FROM operation ORDER BY created_at").await;
    let (status, body) = api(&s, reqwest::Method::POST, &format!("/operations/{op_id}/retry"), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("deleted") || m.contains("cancelled")), "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let after = s.rows("SELECT state, attempts, attempt_seq FROM operation ORDER BY created_at").await;
    assert_eq!(before, after, "nothing changed");
    assert_eq!(s.rows(&vps_of("sub-409")).await[0]["state"], "deleted");
    assert!(s.sim_servers().await.is_empty(), "no VM came back");
    // A retry of an operation that is not dead is refused too; an unknown one is 404.
    let done = s.rows("SELECT VALUE record::id(id) FROM operation WHERE kind = 'delete' AND state = 'succeeded'").await;
    let done = done[0].as_str().expect("the cancel's delete");
    let (status, body) = api(&s, reqwest::Method::POST, &format!("/operations/{done}/retry"), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("only a dead operation")), "{body}");
    let (status, _) = api(&s, reqwest::Method::POST, "/operations/nope/retry", None).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn scp_broken_then_healed_one_retry_of_each_dead_operation_converges() {
    let s = Stack::start_with(SimConfig::default(), |c| {
        c.policy.max_attempts = 2;
        c.policy.grace_days = 0;
    })
    .await;
    // Every task fails, for every reason SCP gives that passes.
    s.sim.add_fault(fault("* /janus/* task_failure_rate=1 task_failure_kinds=generic,timeout,host_busy,lost"));
    let subs = ["sub-b1", "sub-b2", "sub-b3"];
    for sub in subs {
        s.send(event(EventKind::Subscribe, sub, Some("starter"), None)).await;
    }
    let dead = s
        .wait_for("every create dead", 90, "SELECT record::id(id) AS id, state, attempts FROM operation", |r| {
            r.len() == 3 && r.iter().all(|o| o["state"] == "dead")
        })
        .await;
    assert!(dead.iter().all(|o| o["attempts"] == 2), "max_attempts were used: {dead:?}");
    let alerts = "SELECT VALUE kind FROM notification WHERE kind = 'operation_dead'";
    let notes = s.wait_for("an alert each", 30, alerts, |r| r.len() >= 3).await;
    assert_eq!(notes.len(), 3, "one alert each: {notes:?}");
    // SCP heals; one retry each.
    s.sim.clear_faults();
    for op in &dead {
        let (status, body) =
            api(&s, reqwest::Method::POST, &format!("/operations/{}/retry", op["id"].as_str().expect("id")), None)
                .await;
        assert_eq!(status, 202, "{body}");
    }
    for sub in subs {
        s.wait_for("VPS active after the retry", 60, &format!("{} AND state = 'active'", vps_of(sub)), |r| {
            r.len() == 1
        })
        .await;
    }
    assert_eq!(s.sim_servers().await.len(), 3);
    let states = s.rows("SELECT VALUE state FROM operation").await;
    assert!(states.iter().all(|st| st == "succeeded"), "{states:?}");
}

#[actix_web::test]
async fn rebuild_makes_a_new_vm_from_the_image_and_deletes_the_old_one_after() {
    let s = Stack::start().await;
    let vps = active(&s, "sub-rb").await;
    let (old, name) =
        (vps["server_id"].as_str().expect("sid").to_string(), vps["name"].as_str().unwrap_or("").to_string());
    let id = VpsId::from(vps["id"].as_str().expect("id"));
    // The template allows a second image; pick it.
    let template = s.t.app.state.store.vps_template(&id).await.expect("store").expect("template");
    let other = if template.image_id == "img-debian-12-0002" { "img-rocky-9-0003" } else { "img-debian-12-0002" };
    let (status, body) = api(
        &s,
        reqwest::Method::POST,
        &format!("/vps/{id}/actions"),
        Some(json!({ "action": "rebuild", "image_id": other, "confirm": name })),
    )
    .await;
    assert_eq!(status, 400, "an image the template does not allow is refused: {body}");
    let mut t = template.clone();
    t.allowed_images = vec![other.to_string()];
    vmauto::admin::save_template(&s.t.app.state.store, &t, "admin:test").await.expect("template saved");
    let (status, body) = api(
        &s,
        reqwest::Method::POST,
        &format!("/vps/{id}/actions"),
        Some(json!({ "action": "rebuild", "image_id": other })),
    )
    .await;
    assert_eq!(status, 409, "a rebuild needs the name typed: {body}");
    let (status, body) = api(
        &s,
        reqwest::Method::POST,
        &format!("/vps/{id}/actions"),
        Some(json!({ "action": "rebuild", "image_id": other, "confirm": name })),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let sql = format!("SELECT state, server_id, image_id, ips FROM type::record('vps', '{id}')");
    let row = s
        .wait_for("rebuilt", 90, &sql, |r| r[0]["state"] == "active" && r[0]["server_id"] != json!(old))
        .await
        .remove(0);
    let servers = s.sim_servers().await;
    assert_eq!(servers.len(), 1, "the old VM is gone: {servers:?}");
    assert_eq!(servers[0]["id"], row["server_id"]);
    assert_eq!(servers[0]["image_id"], json!(other), "built from the chosen image");
    assert_eq!(row["image_id"], json!(other));
    let all = s.sim_state().await["servers"].as_array().cloned().unwrap_or_default();
    assert!(!all.iter().any(|v| v["id"] == json!(old)), "the old VM was deleted for good");
    let ops = s.rows("SELECT kind, state FROM operation WHERE kind = 'rebuild'").await;
    assert_eq!(ops, vec![json!({"kind": "rebuild", "state": "succeeded"})]);
}

#[actix_web::test]
async fn reset_power_cycles_and_sets_a_new_password() {
    let s = Stack::start().await;
    let vps = active(&s, "sub-reset").await;
    let id = vps["id"].as_str().expect("id").to_string();
    let sid = vps["server_id"].as_str().expect("sid").to_string();
    let sealed_before = s.rows(&format!("SELECT VALUE root_password FROM type::record('vps', '{id}')")).await;
    let (status, body) =
        api(&s, reqwest::Method::POST, &format!("/vps/{id}/actions"), Some(json!({ "action": "reset" }))).await;
    assert_eq!(status, 202, "{body}");
    s.wait_for("reset done", 60, "SELECT kind, state FROM operation WHERE kind = 'reset'", |r| {
        r.len() == 1 && r[0]["state"] == "succeeded"
    })
    .await;
    let tasks = sim_tasks(&s).await;
    assert!(tasks.iter().any(|t| t.0 == "reboot_server" && t.1 == "finish" && t.2 == sid), "{tasks:?}");
    let passwords = tasks.iter().filter(|t| t.0 == "change_password" && t.2 == sid).count();
    assert_eq!(passwords, 2, "the create's and the reset's: {tasks:?}");
    let sealed_after = s.rows(&format!("SELECT VALUE root_password FROM type::record('vps', '{id}')")).await;
    assert_ne!(sealed_before, sealed_after, "a new password is stored");
    assert_eq!(s.sim_servers().await[0]["status"], "running");
}

#[actix_web::test]
async fn activity_levels_have_one_spelling_and_notifications_page() {
    let s = Stack::start().await;
    let (status, body) = api(&s, reqwest::Method::GET, "/activity?level=warn", None).await;
    assert_eq!(status, 200, "the old spelling still filters: {body}");
    let (status, body) = api(&s, reqwest::Method::GET, "/activity?level=loud", None).await;
    assert_eq!(status, 400, "{body}");
    s.sim.add_fault(fault("POST /janus/*/servers task_failure_rate=1 times=1"));
    active(&s, "sub-lvl").await;
    let levels = s.rows("SELECT VALUE level FROM activity").await;
    assert!(
        levels.iter().all(|l| ["info", "warning", "error", "critical"].contains(&l.as_str().unwrap_or(""))),
        "{levels:?}"
    );
    let (status, page) = api(&s, reqwest::Method::GET, "/activity?level=warning", None).await;
    assert_eq!(status, 200);
    assert!(page["total"].as_u64().unwrap_or(0) >= 1, "the retried attempt is a warning: {page}");
    let (status, page) = api(&s, reqwest::Method::GET, "/notifications?page=1", None).await;
    assert_eq!(status, 200, "{page}");
    assert!(page["rows"].is_array() && page["pages"].as_u64() >= Some(1) && page["total"].is_u64(), "{page}");
    let (status, _) = api(&s, reqwest::Method::GET, "/notifications?severity=loud", None).await;
    assert_eq!(status, 400);
}

#[actix_web::test]
async fn actions_refuse_a_shrinking_disk_and_a_vps_that_does_not_exist() {
    let s = Stack::start().await;
    let vps = active(&s, "sub-shrink").await;
    let id = VpsId::from(vps["id"].as_str().expect("id"));
    let disk = s.t.app.state.store.vps(&id).await.expect("store").expect("the VPS").spec.disk_gb;
    let spec = json!({ "cores": 2, "memory_mb": 2048, "disk_gb": disk - 1 });
    let (status, body) = api(
        &s,
        reqwest::Method::POST,
        &format!("/vps/{id}/actions"),
        Some(json!({ "action": "resize", "spec": spec })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("disks only grow"), "{body}");
    let (status, body) =
        api(&s, reqwest::Method::POST, "/vps/no-such-vps/actions", Some(json!({ "action": "reset" }))).await;
    assert_eq!(status, 404, "{body}");
    assert!(s.rows("SELECT VALUE id FROM operation WHERE kind IN ['resize', 'reset']").await.is_empty());
}

//! Every operation through the gateway, both authentications, paging, TLS, `provider check`.

use std::time::Duration;

use serde_json::json;
use vmauto::actors::gateway::*;
use vmauto::config::{SangforAuth, Secret};
use vmauto::provider::{Power, ProviderError, ServerSpec, ServerStatus, TaskStatus};
use vmauto::sim::world::{AZ_A, VPC_A};

use super::harness::{Gw, Scp, op, quick_policy, spec, unlimited};

#[actix_web::test]
async fn every_operation_with_ec2_signatures() {
    let scp = Scp::start().await;
    let config = scp.config(SangforAuth::Ec2);
    let gw = Gw::quick(&config);
    let g = &gw.addr;

    // Inventory an admin needs for a template.
    let version = g.send(GetVersion).await.unwrap().expect("version");
    assert!(version.starts_with("SCP"), "{version}");
    let zones = g.send(ListZones).await.unwrap().expect("zones");
    assert!(zones.iter().any(|z| z.id == AZ_A), "{zones:?}");
    let cap = g.send(GetCapacity { zone_id: Some(AZ_A.into()) }).await.unwrap().expect("capacity");
    assert!(cap.cpu.as_ref().is_some_and(|c| c.total > 0.0), "{cap:?}");
    assert!(cap.memory.as_ref().is_some_and(|m| m.total > 0.0), "{cap:?}");
    let tags = g.send(ListStorageTags { zone_id: AZ_A.into() }).await.unwrap().expect("tags");
    assert!(!tags.is_empty());
    let images = g.send(ListImages { zone_id: None }).await.unwrap().expect("images");
    assert!(images.iter().any(|i| i.status == "active"), "{images:?}");
    let nets = g.send(ListNetworks { zone_id: Some(AZ_A.into()) }).await.unwrap().expect("vpcs");
    assert!(nets.iter().any(|n| n.id == VPC_A));
    let subnets = g.send(ListSubnets { network_id: VPC_A.into() }).await.unwrap().expect("subnets");
    assert!(!subnets.is_empty() && subnets.iter().all(|s| s.network_id == VPC_A), "{subnets:?}");

    // Create answers at once with the id and the task; the wait is a separate message.
    let tag = "vmauto:test:every-op";
    let created =
        g.send(CreateServer { spec: spec("every-op", tag), op: op("create") }).await.unwrap().expect("create");
    let id = created.server_id.clone().expect("SCP returns the new id");
    let done = gw.wait(&created.task_id).await;
    assert_eq!(done.status, TaskStatus::Finished);
    let s = g.send(GetServer { server_id: id.clone() }).await.unwrap().expect("get");
    assert_eq!((s.status.clone(), s.power, s.cores, s.memory_mb), (ServerStatus::Running, Power::On, 2, 2048));
    assert!(s.has_tag(tag));
    let found = g.send(FindServersByTag { tag: tag.into() }).await.unwrap().expect("find");
    assert_eq!(found.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![id.clone()]);

    // Power: stop, start, reboot, and the soft-then-forced power-off.
    let t = g.send(StopServer { server_id: id.clone(), op: op("stop"), force: false }).await.unwrap().expect("stop");
    gw.wait(&t).await;
    let s = g.send(GetServer { server_id: id.clone() }).await.unwrap().unwrap();
    assert_eq!(s.status, ServerStatus::Stopped);
    let t = g.send(StartServer { server_id: id.clone(), op: op("start") }).await.unwrap().expect("start");
    gw.wait(&t).await;
    let t =
        g.send(RebootServer { server_id: id.clone(), op: op("reboot"), force: false }).await.unwrap().expect("reboot");
    gw.wait(&t).await;
    assert_eq!(g.send(GetServer { server_id: id.clone() }).await.unwrap().unwrap().status, ServerStatus::Running);
    let off = g.send(PowerOff { server_id: id.clone(), op: op("poweroff") }).await.unwrap().expect("power off");
    assert!(off.is_some(), "a running server needs a stop task");
    assert_eq!(g.send(GetServer { server_id: id.clone() }).await.unwrap().unwrap().status, ServerStatus::Stopped);
    let again = g.send(PowerOff { server_id: id.clone(), op: op("poweroff-2") }).await.unwrap().expect("noop");
    assert!(again.is_none(), "already off: nothing to do");

    // Resize while off: cores/memory, then the system disk (grow only).
    let t = g
        .send(UpdateCompute { server_id: id.clone(), op: op("resize"), cores: Some(4), memory_mb: Some(4096) })
        .await
        .unwrap()
        .expect("update");
    gw.wait(&t).await;
    let before = g.send(GetServer { server_id: id.clone() }).await.unwrap().unwrap();
    assert_eq!((before.cores, before.memory_mb), (4, 4096));
    let bigger = before.disk_mb + 10 * 1024;
    let t = g.send(ResizeDisk { server_id: id.clone(), op: op("disk"), size_mb: bigger }).await.unwrap().expect("disk");
    gw.wait(&t).await;
    assert_eq!(g.send(GetServer { server_id: id.clone() }).await.unwrap().unwrap().disk_mb, bigger);
    let shrink = g.send(ResizeDisk { server_id: id.clone(), op: op("shrink"), size_mb: 1 }).await.unwrap();
    assert!(matches!(shrink, Err(ProviderError::BadRequest { .. })), "{shrink:?}");

    // Root password needs a running guest.
    let t = g.send(StartServer { server_id: id.clone(), op: op("start-2") }).await.unwrap().expect("start");
    gw.wait(&t).await;
    let t = g
        .send(SetPassword { server_id: id.clone(), op: op("password"), password: Secret::new("N3w-Passw0rd!") })
        .await
        .unwrap()
        .expect("password");
    gw.wait(&t).await;

    // Delete to the recycle bin, restore, then delete for good.
    let t = g.send(PowerOff { server_id: id.clone(), op: op("off-3") }).await.unwrap().expect("off");
    assert!(t.is_some());
    let t =
        g.send(DeleteServer { server_id: id.clone(), op: op("delete"), permanent: None }).await.unwrap().expect("del");
    gw.wait(&t).await;
    let gone = g.send(GetServer { server_id: id.clone() }).await.unwrap();
    assert!(matches!(gone, Err(ProviderError::NotFound { .. })), "{gone:?}");
    assert_eq!(scp.state().await["counts"]["recycled"], 1);
    let t = g.send(RestoreServer { server_id: id.clone(), op: op("restore") }).await.unwrap().expect("restore");
    gw.wait(&t).await;
    assert!(g.send(GetServer { server_id: id.clone() }).await.unwrap().is_ok());
    let t = g
        .send(DeleteServer { server_id: id.clone(), op: op("delete-2"), permanent: Some(true) })
        .await
        .unwrap()
        .expect("delete for good");
    gw.wait(&t).await;
    let state = scp.state().await;
    assert_eq!((state["counts"]["servers"].clone(), state["counts"]["recycled"].clone()), (json!(0), json!(0)));
    let task = g.send(GetTask { task_id: t.clone() }).await.unwrap().expect("task");
    assert_eq!((task.status, task.progress), (TaskStatus::Finished, 100));
    assert!(gw.metric("vmauto_scp_requests_total{op=\"create_server\",outcome=\"ok\"}") >= 1.0);
    assert!(gw.metric("vmauto_scp_request_duration_seconds_count{op=\"get_server\"}") >= 1.0);
}

#[actix_web::test]
async fn token_auth_logs_in_and_survives_expiry_mid_run() {
    let scp = Scp::start().await;
    let config = scp.config(SangforAuth::Token);
    let gw = Gw::quick(&config);
    // An older SCP without the v2 key path: the client falls back to /janus/public-key.
    scp.fault(
        json!({"method": "GET", "path": "/janus/v2/public-key", "error_rate": 1.0, "statuses": [404], "times": 1}),
    )
    .await;
    let zones = gw.addr.send(ListZones).await.unwrap().expect("zones with a token");
    assert_eq!(scp.requests("GET /janus/public-key").await, 2, "v2 refused, then the older path");
    assert!(!zones.is_empty());
    assert_eq!(gw.metric("vmauto_scp_token_refreshes_total{outcome=\"ok\"}"), 1.0);
    // The token is reused, not fetched per request.
    gw.addr.send(ListImages { zone_id: None }).await.unwrap().expect("images");
    assert_eq!(gw.metric("vmauto_scp_token_refreshes_total{outcome=\"ok\"}"), 1.0);
    // SCP forgets the token (expiry, restart): the next call logs in again once and succeeds.
    assert!(scp.expire_tokens().await >= 1);
    let created = gw
        .addr
        .send(CreateServer { spec: spec("token-vm", "vmauto:test:token"), op: op("token-create") })
        .await
        .unwrap()
        .expect("create after the token expired");
    assert_eq!(gw.metric("vmauto_scp_token_refreshes_total{outcome=\"ok\"}"), 2.0);
    assert_eq!(gw.metric("vmauto_scp_requests_total{op=\"create_server\",outcome=\"unauthorized\"}"), 1.0);
    gw.wait(&created.task_id).await;
    assert_eq!(scp.servers_tagged("vmauto:test:token").await.len(), 1);
}

#[actix_web::test]
async fn the_public_key_is_kept_and_fetched_again_when_scp_has_a_new_one() {
    let scp = Scp::start().await;
    let gw = Gw::quick(&scp.config(SangforAuth::Token));
    let g = &gw.addr;
    let created = g
        .send(CreateServer { spec: spec("key-vm", "vmauto:test:key"), op: op("key-create") })
        .await
        .unwrap()
        .expect("create");
    gw.wait(&created.task_id).await;
    let id = created.server_id.expect("a server id");
    let t = g.send(StartServer { server_id: id.clone(), op: op("key-start") }).await.unwrap().expect("start");
    gw.wait(&t).await;
    let password = |n: &str| SetPassword { server_id: id.clone(), op: op(n), password: Secret::new("N3w-Passw0rd!") };
    for n in ["key-pw-1", "key-pw-2", "key-pw-3"] {
        let t = g.send(password(n)).await.unwrap().expect("password");
        gw.wait(&t).await;
    }
    assert_eq!(scp.requests("GET /janus/public-key").await, 1, "one fetch for the login and three passwords");
    // SCP gets a new key pair: the kept key's cipher is refused once, the key is fetched again
    // and the password set with it; a new login uses the new key too.
    scp.rotate_key().await;
    let t = g.send(password("key-pw-4")).await.unwrap().expect("password after the platform's key changed");
    assert_eq!(gw.wait(&t).await.status, TaskStatus::Finished);
    assert_eq!(scp.requests("GET /janus/public-key").await, 2);
    assert_eq!(gw.metric("vmauto_scp_requests_total{op=\"set_password\",outcome=\"bad_request\"}"), 1.0);
    assert!(scp.expire_tokens().await >= 1);
    g.send(ListZones).await.unwrap().expect("a login with the new key");
    assert_eq!(gw.metric("vmauto_scp_token_refreshes_total{outcome=\"ok\"}"), 2.0);
    assert_eq!(scp.requests("GET /janus/public-key").await, 2, "still the kept key");
}

#[actix_web::test]
async fn short_lived_tokens_are_renewed_before_they_expire() {
    let scp = Scp::start_with(|c| c.token_ttl_secs = 2).await;
    let config = scp.config(SangforAuth::Token);
    let gw = Gw::quick(&config);
    gw.addr.send(ListZones).await.unwrap().expect("first");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    gw.addr.send(ListZones).await.unwrap().expect("after the lifetime");
    assert_eq!(gw.metric("vmauto_scp_token_refreshes_total{outcome=\"ok\"}"), 2.0);
    assert_eq!(gw.metric("vmauto_scp_token_refreshes_total{outcome=\"error\"}"), 0.0);
    assert_eq!(
        gw.metric("vmauto_scp_requests_total{op=\"list_azs\",outcome=\"unauthorized\"}"),
        0.0,
        "renewed before, not after, expiry"
    );
}

#[actix_web::test]
async fn wrong_credentials_fail_without_retries() {
    let scp = Scp::start().await;
    let mut config = scp.config(SangforAuth::Ec2);
    config.provider.sangfor.secret_key = Secret::new("wrong");
    let gw = Gw::quick(&config);
    let r = gw.addr.send(ListZones).await.unwrap();
    assert!(matches!(r, Err(ProviderError::Unauthorized { .. })), "{r:?}");
    assert_eq!(scp.requests("GET /janus/{v}/azs").await, 1, "a 401 is not retried");

    let mut config = scp.config(SangforAuth::Token);
    config.provider.sangfor.password = Secret::new("wrong");
    let gw = Gw::quick(&config);
    let r = gw.addr.send(ListZones).await.unwrap();
    assert!(matches!(r, Err(ProviderError::Auth(_))), "{r:?}");
    assert_eq!(gw.metric("vmauto_scp_token_refreshes_total{outcome=\"error\"}"), 1.0);
}

#[actix_web::test]
async fn listings_walk_every_page() {
    let scp = Scp::start().await;
    let config = scp.config(SangforAuth::Ec2);
    let gw = Gw::start(&config, unlimited(quick_policy(&config)), None);
    let tag = "vmauto:test:paging";
    let mut creates = Vec::new();
    for i in 0..130 {
        let g = gw.addr.clone();
        creates.push(async move {
            // Small VMs: all 130 fit the AZ, so none is removed by a task failing for capacity.
            let small = ServerSpec { cores: 1, memory_mb: 512, ..spec(&format!("page-{i}"), tag) };
            g.send(CreateServer { spec: small, op: op(&format!("page-{i}")) }).await
        });
    }
    for r in futures::future::join_all(creates).await {
        r.unwrap().expect("create");
    }
    // Let every create task finish (50 ms each here), so the listing sees the settled world.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = scp.requests("GET /janus/{v}/servers").await;
    let found = gw.addr.send(FindServersByTag { tag: tag.into() }).await.unwrap().expect("find");
    assert_eq!(found.len(), 130);
    let mut ids: Vec<_> = found.iter().map(|s| s.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 130, "no server listed twice");
    assert_eq!(scp.requests("GET /janus/{v}/servers").await - before, 2, "two pages of 100");
}

#[actix_web::test]
async fn https_with_ca_file_system_roots_and_opt_out() {
    let scp = Scp::start_with(|c| c.https = true).await;
    let pem = scp.sim.cert_pem().expect("https sim has a certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("scp.pem");
    std::fs::write(&ca, pem).expect("write pem");

    let mut config = scp.config(SangforAuth::Ec2);
    config.provider.sangfor.ca_file = ca.display().to_string();
    let gw = Gw::quick(&config);
    assert!(gw.addr.send(ListZones).await.unwrap().is_ok(), "trusted through ca_file");

    let config = scp.config(SangforAuth::Ec2);
    let gw = Gw::quick(&config);
    let r = gw.addr.send(ListZones).await.unwrap();
    assert!(matches!(r, Err(ProviderError::Tls(_))), "self-signed is refused by default: {r:?}");

    let mut config = scp.config(SangforAuth::Ec2);
    config.provider.sangfor.verify_tls = false;
    let gw = Gw::quick(&config);
    assert!(gw.addr.send(ListZones).await.unwrap().is_ok(), "explicit opt-out connects");
}

#[actix_web::test]
async fn provider_check_reports_inventory_and_explains_failures() {
    let scp = Scp::start().await;
    let config = scp.config(SangforAuth::Ec2);
    let report = vmauto::provider::check::check(&config).await.expect("check passes");
    assert!(report.version.starts_with("SCP"));
    assert!(report.zones.iter().any(|z| z.zone.id == AZ_A && z.capacity.is_some() && !z.storage_tags.is_empty()));
    assert!(!report.images.is_empty());
    assert!(report.networks.iter().any(|(n, subnets)| n.id == VPC_A && !subnets.is_empty()));
    let text = report.to_string();
    assert!(text.contains("authenticated") && text.contains(AZ_A) && text.contains(VPC_A), "{text}");

    let mut bad = config.clone();
    bad.provider.sangfor.secret_key = Secret::new("wrong");
    let e = vmauto::provider::check::check(&bad).await.unwrap_err().to_string();
    assert!(e.contains("secret_key"), "{e}");

    let mut token = scp.config(SangforAuth::Token);
    token.provider.sangfor.password = Secret::new("wrong");
    let e = vmauto::provider::check::check(&token).await.unwrap_err().to_string();
    assert!(e.contains("password"), "{e}");

    let mut nowhere = config.clone();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    nowhere.provider.sangfor.base_url = format!("http://127.0.0.1:{port}");
    nowhere.provider.sangfor.max_retries = 0;
    let e = vmauto::provider::check::check(&nowhere).await.unwrap_err().to_string();
    assert!(e.contains("cannot reach"), "{e}");

    let mut empty = config.clone();
    empty.provider.sangfor.base_url.clear();
    let e = vmauto::provider::check::check(&empty).await.unwrap_err().to_string();
    assert!(e.contains("not configured"), "{e}");
}

#[actix_web::test]
async fn failed_tasks_surface_their_reason() {
    let scp = Scp::start().await;
    let config = scp.config(SangforAuth::Ec2);
    let gw = Gw::quick(&config);
    scp.fault(json!({"method": "POST", "path": "/janus/*/servers", "task_failure_rate": 1.0, "times": 1})).await;
    let created = gw
        .addr
        .send(CreateServer { spec: spec("doomed", "vmauto:test:doomed"), op: op("doomed") })
        .await
        .unwrap()
        .expect("create accepted");
    let r = gw.addr.send(WaitTask { task_id: created.task_id, timeout: Some(Duration::from_secs(30)) }).await.unwrap();
    match r {
        Err(ProviderError::TaskFailed { reason, .. }) => assert!(reason.contains("injected"), "{reason}"),
        other => panic!("expected a failed task, got {other:?}"),
    }
}

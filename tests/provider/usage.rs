//! What the customer portal asks of SCP through the gateway: a console URL that opens a VNC
//! session, usage series, and a VM brought back from the recycle bin.

use std::time::{Duration, Instant};

use vmauto::actors::gateway::*;
use vmauto::config::SangforAuth;
use vmauto::provider::{Power, ProviderError, Server, ServerId, ServerStatus, TimeGap, metric};

use super::harness::{Gw, Scp, op, spec};
use crate::sim::console::Vnc;

/// Creates a running VM and waits until it reports its IP.
async fn running(gw: &Gw, name: &str) -> Server {
    let created = gw
        .addr
        .send(CreateServer { spec: spec(name, &format!("vmauto:test:{name}")), op: op(name) })
        .await
        .unwrap()
        .expect("create");
    gw.wait(&created.task_id).await;
    let id = created.server_id.expect("the new id");
    until_ip(gw, &id).await
}

async fn until_ip(gw: &Gw, id: &ServerId) -> Server {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = gw.addr.send(GetServer { server_id: id.clone() }).await.unwrap().expect("get");
        if !s.ips.is_empty() {
            return s;
        }
        assert!(Instant::now() < deadline, "no IP: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn console_urls_open_a_vnc_session_and_stay_out_of_logs() {
    let scp = Scp::start().await;
    let gw = Gw::quick(&scp.config(SangforAuth::Ec2));
    let vm = running(&gw, "portal-console").await;
    let url = gw.addr.send(GetConsoleUrl { server_id: vm.id.clone() }).await.unwrap().expect("console");
    assert!(url.expose().starts_with(&scp.sim.base_url()) && url.expose().contains("token="), "{url:?}");
    let token = url.expose().split("token=").nth(1).expect("token");
    assert!(!format!("{url:?}").contains(token), "Debug hides the token: {url:?}");
    let mut vnc = Vnc::connect(url.expose()).await.expect("the URL opens");
    assert_eq!(vnc.handshake().await.name, "portal-console");
    // Each call is a new console with its own token.
    let again = gw.addr.send(GetConsoleUrl { server_id: vm.id.clone() }).await.unwrap().expect("console");
    assert_ne!(again, url);
    assert_eq!(scp.requests("POST /janus/{v}/servers/{id}/remote-consoles").await, 2);
    let gone = gw.addr.send(GetConsoleUrl { server_id: ServerId::new("no-such-vm") }).await.unwrap();
    assert!(matches!(gone, Err(ProviderError::NotFound { .. })), "{gone:?}");
    assert!(gw.metric("vmauto_scp_requests_total{op=\"remote_console\",outcome=\"ok\"}") >= 2.0);
}

#[actix_web::test]
async fn server_metrics_are_typed_series() {
    let scp = Scp::start().await;
    let gw = Gw::quick(&scp.config(SangforAuth::Token));
    let vm = running(&gw, "portal-metrics").await;
    let names: Vec<String> =
        [metric::CPU_UTIL, metric::MEMORY_UTIL, metric::NET_IN_BPS, metric::NET_OUT_BPS].map(String::from).into();
    let ask = |timegap, granularity, customer| GetServerMetrics {
        server_id: vm.id.clone(),
        names: names.clone(),
        timegap,
        granularity,
        customer,
    };
    let series = gw.addr.send(ask(TimeGap::Hours(1), None, true)).await.unwrap().expect("metrics");
    assert_eq!(series.keys().map(String::as_str).collect::<Vec<_>>(), {
        let mut n: Vec<&str> = names.iter().map(String::as_str).collect();
        n.sort_unstable();
        n
    });
    let cpu = &series[metric::CPU_UTIL];
    assert_eq!((cpu.unit.as_str(), cpu.granularity_secs), ("%", 60));
    assert!(cpu.latest().is_some_and(|v| v > 0.0), "{cpu:?}");
    assert!(cpu.points.windows(2).all(|w| w[0].0 < w[1].0), "oldest first");
    assert_eq!(series[metric::NET_IN_BPS].unit, "bps");
    assert!(series[metric::NET_OUT_BPS].latest().is_some_and(|v| v > 0.0));
    // Finer than SCP serves for a day: the client asks for the minimum instead of a 400.
    let day = gw.addr.send(ask(TimeGap::Hours(24), Some(10), false)).await.unwrap().expect("a day");
    assert_eq!(day[metric::CPU_UTIL].granularity_secs, 300);
    assert!(scp.requests("GET /janus/{v}/metrics/{id}").await >= 2);

    // Stopped: no load in the newest point.
    gw.addr.send(PowerOff { server_id: vm.id.clone(), op: op("metrics-off") }).await.unwrap().expect("off");
    let off = gw.addr.send(ask(TimeGap::Hours(1), None, true)).await.unwrap().expect("metrics");
    assert_eq!(off[metric::CPU_UTIL].latest(), Some(0.0));

    let none = GetServerMetrics { names: Vec::new(), ..ask(TimeGap::Hours(1), None, false) };
    let err = gw.addr.send(none).await.unwrap();
    assert!(matches!(err, Err(ProviderError::BadRequest { .. })), "{err:?}");
    let disk = GetServerMetrics { names: vec!["disk.util".into()], ..ask(TimeGap::Hours(1), None, false) };
    let err = gw.addr.send(disk).await.unwrap();
    assert!(matches!(err, Err(ProviderError::BadRequest { .. })), "servers have no disk.util: {err:?}");
    let missing = GetServerMetrics { server_id: ServerId::new("no-such-vm"), ..ask(TimeGap::Days(7), None, false) };
    let err = gw.addr.send(missing).await.unwrap();
    assert!(matches!(err, Err(ProviderError::NotFound { .. })), "{err:?}");
}

#[actix_web::test]
async fn a_deleted_vm_comes_back_from_the_recycle_bin_powered_off_with_its_ips() {
    let scp = Scp::start().await;
    let gw = Gw::quick(&scp.config(SangforAuth::Ec2));
    let g = &gw.addr;
    let vm = running(&gw, "portal-restore").await;
    let id = vm.id.clone();
    let t = g.send(DeleteServer { server_id: id.clone(), op: op("bin"), permanent: Some(false) }).await.unwrap();
    gw.wait(&t.expect("delete")).await;
    let gone = g.send(GetServer { server_id: id.clone() }).await.unwrap();
    assert!(matches!(gone, Err(ProviderError::NotFound { .. })), "in the bin: {gone:?}");
    assert_eq!(scp.state().await["counts"]["recycled"], 1);

    let t = g.send(RestoreServer { server_id: id.clone(), op: op("restore") }).await.unwrap().expect("restore");
    gw.wait(&t).await;
    let back = g.send(GetServer { server_id: id.clone() }).await.unwrap().expect("back");
    assert_eq!((back.status, back.power), (ServerStatus::Stopped, Power::Off));
    assert_eq!((back.name.as_str(), back.cores, back.memory_mb), ("portal-restore", vm.cores, vm.memory_mb));
    assert_eq!(scp.state().await["counts"]["recycled"], 0);
    // Restoring what is not in the bin is refused.
    let twice = g.send(RestoreServer { server_id: id.clone(), op: op("restore-2") }).await.unwrap();
    assert!(matches!(twice, Err(ProviderError::BadRequest { .. })), "{twice:?}");

    // Started again, the guest reports the addresses it had.
    let t = g.send(StartServer { server_id: id.clone(), op: op("start") }).await.unwrap().expect("start");
    gw.wait(&t).await;
    assert_eq!(until_ip(&gw, &id).await.ips, vm.ips);
}

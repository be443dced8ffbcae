//! Placement over two SCPs, against the real `vmauto serve` binary: a burst of subscriptions
//! to a location spread over two simulators, each allowing 100 writes a minute. Prints the
//! time until every VM is ready against the two-provider rate-limit bound, SCP's 429s and each
//! AZ's allocation against its size; asserts only correctness. Run with
//! `cargo test --test integration -- --ignored --nocapture bench_placement`
//! (`BENCH_PLACEMENT_N`, default 1000: about ten minutes at SCP's write limit).

use std::time::{Duration, Instant};

use serde_json::Value;
use vmauto::sim::world::AZ_A;
use vmauto::sim::{SimConfig, SimServer};

use crate::common::Proc;
use crate::common::process::TOKEN;

async fn sim(capacity_factor: u64) -> SimServer {
    vmauto::init_crypto();
    let cfg =
        SimConfig { task_ms: 100, ip_delay_ms: 100, write_per_minute: 100, capacity_factor, ..SimConfig::default() };
    vmauto::sim::start(cfg).await.expect("simulator starts")
}

/// (VMs ready, set-password tasks finished, writes, vCPUs allocated in AZ A, its vCPUs).
fn progress(sim: &SimServer) -> (usize, usize, u64, u64, u64) {
    let state = sim.snapshot();
    let servers = state["servers"].as_array().cloned().unwrap_or_default();
    let ready = servers
        .iter()
        .filter(|s| s["busy_task"].is_null() && s["ips"].as_array().is_some_and(|a| !a.is_empty()))
        .count();
    let pw = state["tasks"]
        .as_array()
        .map_or(0, |t| t.iter().filter(|t| t.to_string().contains("password") && t["status"] != "running").count());
    let writes = state["counts"]["tasks"].as_u64().unwrap_or(0);
    let cpu = state["azs"]
        .as_array()
        .and_then(|azs| azs.iter().find(|a| a["id"] == AZ_A))
        .and_then(|a| a["virtual_resources"].as_array())
        .and_then(|r| r.iter().find(|x| x["name"] == "CPU"))
        .cloned()
        .unwrap_or_default();
    (ready, pw, writes, cpu["allocated"].as_u64().unwrap_or(0), cpu["total"].as_u64().unwrap_or(0))
}

#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_placement"]
async fn bench_placement_two_scps() {
    let n: usize = std::env::var("BENCH_PLACEMENT_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    // Each simulator's pool holds ≈190 small VMs per capacity factor.
    let factor = (n as u64).div_ceil(2 * 150).max(1);
    let (a, b) = (sim(factor).await, sim(factor).await);
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        r#"
[providers.b]
base_url = "{}"
access_key = "{}"
secret_key = "{}"
write_per_minute = 100

[locations.both]
policy = "spread"
candidates = [{{ provider = "default", az = "{AZ_A}" }}, {{ provider = "b", az = "{AZ_A}" }}]
"#,
        b.base_url(),
        b.access_key(),
        b.secret_key()
    );
    let mut p = Proc::new(dir.path(), &a, "write_per_minute = 100", &extra);
    let config = p.load_config();
    p.with_store(async |s| {
        vmauto::demo::seed(s, &config, "ghl").await.expect("seeded");
        let mut t = s.template_by_name(&"vps-small".into()).await.expect("q").expect("vps-small");
        t.locations = vec!["both".into()];
        vmauto::admin::save_template(s, &t, "bench").await.expect("saved");
    })
    .await;
    p.start().await;
    let http = reqwest::Client::new();
    let url = p.url(&format!("/webhooks/ghl/{TOKEN}"));
    let t0 = Instant::now();
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let mut body = crate::common::workflow_for("Bench", "subscribe", &format!("place-{i}"), "starter");
                body["customData"]["location"] = Value::from("both");
                let r = http.post(&url).json(&body).send().await.expect("post");
                assert_eq!(r.status().as_u16(), 202);
            })
        })
        .collect();
    for s in sends {
        s.await.expect("send");
    }
    let deadline = Instant::now() + Duration::from_secs(60 * 60);
    let elapsed = loop {
        let (pa, pb) = (progress(&a), progress(&b));
        if (pa.0 + pb.0 >= n && pa.1 + pb.1 >= n) || Instant::now() > deadline {
            break t0.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let metrics = http.get(p.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    p.stop();
    let (pa, pb) = (progress(&a), progress(&b));
    let rate_limited: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("vmauto_scp_requests_total") && l.contains("outcome=\"rate_limited\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        + 0.0;
    // Each gateway's write bucket: 100 a minute with a burst of 10; the two work in parallel,
    // so the bound is the busier SCP's.
    let bound = |writes: u64| writes.saturating_sub(10) as f64 * 60.0 / 100.0;
    let bound = bound(pa.2).max(bound(pb.2));
    println!(
        "bench_placement_two_scps: {n} subscriptions at once, location spread over two SCPs of 100 writes/min: all VMs \
         ready after {:.1} s; bound {bound:.1} s ({:+.1}%); SCP A {} VMs, {} writes, AZ vCPU {}/{}; SCP B {} VMs, {} \
         writes, AZ vCPU {}/{}; 429s seen by the appliance {rate_limited}",
        elapsed.as_secs_f64(),
        (elapsed.as_secs_f64() / bound - 1.0) * 100.0,
        pa.0,
        pa.2,
        pa.3,
        pa.4,
        pb.0,
        pb.2,
        pb.3,
        pb.4,
    );
    assert_eq!(pa.0 + pb.0, n, "every VM ready");
    assert!(pa.3 <= pa.4 && pb.3 <= pb.4, "no AZ over its size");
    assert_eq!(rate_limited, 0.0, "no 429 from either SCP");
}

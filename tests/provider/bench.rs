//! Figures, not checks of correctness (ignored by default). Run with
//! `cargo test --test integration -- --ignored --nocapture bench_gateway`.

use std::time::{Duration, Instant};

use vmauto::actors::gateway::{CreateServer, ListZones};
use vmauto::config::SangforAuth;
use vmauto::provider::sangfor::sign::{SigningScope, authorization};

use super::harness::{Gw, Scp, op, quick_policy, spec, unlimited};

/// 1,000 creates submitted at once against a simulator that allows 100 writes a minute: the
/// gateway must keep the write rate at ≥95 % of the limit and never provoke a 429. Takes
/// about ten minutes by nature.
#[actix_web::test]
#[ignore = "benchmark: ~10 minutes"]
async fn bench_gateway_write_throughput_at_the_limit() {
    const N: usize = 1000;
    const LIMIT: u32 = 100;
    let scp = Scp::start_with(|c| {
        c.write_per_minute = LIMIT;
        c.get_per_minute = 600;
        c.task_ms = 10;
    })
    .await;
    let mut config = scp.config(SangforAuth::Ec2);
    config.provider.sangfor.write_per_minute = LIMIT;
    let gw = Gw::quick(&config);
    let started = Instant::now();
    let mut creates = Vec::with_capacity(N);
    for i in 0..N {
        let g = gw.addr.clone();
        creates.push(async move {
            let mut s = spec(&format!("bench-{i}"), "vmauto:bench:write");
            s.power_on = false;
            let r = g.send(CreateServer { spec: s, op: op(&format!("bench-{i}")) }).await;
            (r, started.elapsed())
        });
    }
    let results = futures::future::join_all(creates).await;
    let elapsed = started.elapsed();
    let ok = results.iter().filter(|(r, _)| matches!(r, Ok(Ok(_)))).count();
    let mut done: Vec<Duration> = results.iter().map(|(_, t)| *t).collect();
    done.sort();
    let rate_limited = gw.metric("vmauto_scp_requests_total{op=\"create_server\",outcome=\"rate_limited\"}") as u64;
    let sent = scp.requests("POST /janus/{v}/servers").await;
    let minutes = elapsed.as_secs_f64() / 60.0;
    let rate = ok as f64 / minutes;
    // Steady state: after the gateway's initial burst, from the 11th to the last completion.
    let steady = (done.len() - 11) as f64 / ((done[done.len() - 1] - done[10]).as_secs_f64() / 60.0);
    println!(
        "bench_gateway_write_throughput: {ok}/{N} creates in {:.1} s; {rate:.1}/min overall ({:.1} % of {LIMIT}), \
         {steady:.1}/min steady ({:.1} %); 429 responses: {rate_limited}; POSTs seen by SCP: {sent}",
        elapsed.as_secs_f64(),
        rate / f64::from(LIMIT) * 100.0,
        steady / f64::from(LIMIT) * 100.0,
    );
    assert_eq!(ok, N);
    assert_eq!(rate_limited, 0, "the gateway must not provoke 429s");
    assert_eq!(sent, N as u64, "no retries were needed");
    assert!(steady >= 0.95 * f64::from(LIMIT), "steady write rate {steady:.1}/min below 95 % of {LIMIT}");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The gateway's own cost per call (actor hop, admission, breaker, metrics, envelope), with
/// limits off: the same signed GET timed through the gateway and with a bare HTTP client.
#[actix_web::test]
#[ignore = "benchmark"]
async fn bench_gateway_added_latency() {
    const N: usize = 2000;
    let scp = Scp::start().await;
    let config = scp.config(SangforAuth::Ec2);
    let gw = Gw::start(&config, unlimited(quick_policy(&config)), None);
    let bare = reqwest::Client::builder().http1_only().http1_title_case_headers().build().expect("client");
    let url = format!("{}/janus/20180725/azs", scp.sim.base_url());
    let bare_call = || async {
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let scope = SigningScope {
            access_key: scp.sim.access_key(),
            secret_key: scp.sim.secret_key(),
            region: "cn-south-1",
            service: "open-api",
            amz_date: &amz_date,
        };
        let auth = authorization(&scope, "GET", "/janus/20180725/azs", &[("x-amz-date", &amz_date)], b"");
        let resp = bare
            .get(&url)
            .header("Content-Type", "application/json")
            .header("X-Amz-Date", &amz_date)
            .header("Authorization", auth)
            .send()
            .await
            .expect("bare request");
        assert!(resp.status().is_success());
        let _: serde_json::Value = resp.json().await.expect("json");
    };
    // Warm both paths (connections, token buckets, lazy statics).
    for _ in 0..50 {
        bare_call().await;
        gw.addr.send(ListZones).await.unwrap().expect("zones");
    }
    let (mut direct, mut through) = (Vec::with_capacity(N), Vec::with_capacity(N));
    for _ in 0..N {
        let t = Instant::now();
        bare_call().await;
        direct.push(t.elapsed());
        let t = Instant::now();
        gw.addr.send(ListZones).await.unwrap().expect("zones");
        through.push(t.elapsed());
    }
    direct.sort();
    through.sort();
    let show = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
    let (d50, d99, g50, g99) =
        (percentile(&direct, 0.5), percentile(&direct, 0.99), percentile(&through, 0.5), percentile(&through, 0.99));
    println!(
        "bench_gateway_added_latency ({N} sequential GET /azs, limits off): bare p50 {} p99 {}; gateway p50 {} p99 {}; \
         added p50 {} p99 {}",
        show(d50),
        show(d99),
        show(g50),
        show(g99),
        show(g50.saturating_sub(d50)),
        show(g99.saturating_sub(d99)),
    );
    assert!(g50 > Duration::ZERO);
}

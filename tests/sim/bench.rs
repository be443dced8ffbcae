//! GET throughput of the simulator on loopback, limits off, token auth.
//!
//! `cargo test --test integration -- --ignored --nocapture bench_sim_get_throughput`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::{Sim, create_body};

/// Requests in total, concurrent client tasks, and a time cap so the run always ends.
const TOTAL: usize = 40_000;
const CONCURRENCY: usize = 32;
const CAP: Duration = Duration::from_secs(60);

#[actix_web::test]
#[ignore = "benchmark: run explicitly with --ignored --nocapture"]
async fn bench_sim_get_throughput() {
    let sim = Sim::start().await;
    let mut body = create_body("bench");
    body["count"] = json!(20);
    let d = sim.data(Method::POST, "/janus/20180725/servers", Some(body)).await;
    sim.finish(d["task_id"].as_str().expect("task")).await;
    let id = d["uuids"][0].as_str().expect("id").to_string();
    let get_url = format!("{}/janus/20180725/servers/{id}", sim.base);
    let list_url = format!("{}/janus/20180725/servers?page_size=20", sim.base);
    let auth = format!("Token {}", sim.token);
    let issued = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (http, issued, auth) = (sim.http.clone(), Arc::clone(&issued), auth.clone());
        let (get_url, list_url) = (get_url.clone(), list_url.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= TOTAL || started.elapsed() > CAP {
                    break;
                }
                let url = if n % 5 == 4 { &list_url } else { &get_url };
                let t = Instant::now();
                match http.get(url).header("Authorization", &auth).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    _ => errors += 1,
                }
                lat.push(t.elapsed());
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, e) = w.await.expect("worker");
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default()
    };
    let rps = all.len() as f64 / elapsed.as_secs_f64();
    println!(
        "sim GET throughput: {} requests ({} errors) in {:.2}s with {CONCURRENCY} concurrent clients = {rps:.0} req/s; p50 {:.2} ms, p99 {:.2} ms (80% GET /servers/{{id}}, 20% GET /servers?page_size=20 of 20 VMs)",
        all.len(),
        errors,
        elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    assert_eq!(errors, 0);
    assert!(!all.is_empty());
    sim.stop().await;
}

//! Benchmarks (ignored by default; they print figures and assert nothing about speed):
//! `cargo test --test integration -- --ignored --nocapture bench_plugins`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmauto::plugin_host::{Catalogue, Limits, PluginRuntime};

use super::support::{fixture, request};

const CALLS: u32 = 20_000;

fn rate(n: u32, d: Duration) -> String {
    format!("{:>9.0}/s  ({:>6.1} µs per call)", f64::from(n) / d.as_secs_f64(), d.as_secs_f64() * 1e6 / f64::from(n))
}

/// (plugin, fixture, settings).
type Case = (&'static str, &'static str, Vec<(&'static str, &'static str)>);

fn sources() -> Vec<Case> {
    vec![
        ("ghl-workflow", "ghl-workflow-subscribe.json", vec![]),
        ("ghl-marketplace", "ghl-order-create.json", vec![]),
        ("stripe-billing", "stripe-subscription-created.json", vec![]),
        (
            "generic-json",
            "generic-subscribe.json",
            vec![
                ("event_field", "kind"),
                ("map.activated", "subscribe"),
                ("subscription_field", "contract.id"),
                ("customer_id_field", "account.id"),
                ("plan_field", "contract.product.sku"),
            ],
        ),
    ]
}

#[test]
#[ignore = "benchmark"]
fn bench_plugins_compile() {
    let started = Instant::now();
    let (runtime, failures) = PluginRuntime::with_plugins(Limits::default(), None).expect("runtime");
    assert!(failures.is_empty());
    println!("compile + link the {} bundled plugins: {:?}", runtime.list().len(), started.elapsed());
    let dir = tempfile::tempdir().expect("tempdir");
    for run in ["empty", "warm"] {
        let started = Instant::now();
        let runtime = PluginRuntime::with_disk_cache(Limits::default(), dir.path()).expect("runtime");
        assert!(runtime.load_all(None).is_empty());
        let (_, hits, misses) = runtime.disk_cache().expect("cache");
        println!("  through the disk cache ({run}: {hits} loaded, {misses} compiled): {:?}", started.elapsed());
    }
}

#[test]
#[ignore = "benchmark"]
fn bench_plugins_events_per_second() {
    let (runtime, _) = PluginRuntime::with_plugins(Limits::default(), None).expect("runtime");
    println!("one thread, instance reused, {CALLS} calls each:");
    for (plugin, file, settings) in sources() {
        let req = request("bench", "/webhooks/bench", fixture(file), &settings);
        let events = runtime.parse_blocking(plugin, &req).expect("warm-up");
        let started = Instant::now();
        for _ in 0..CALLS {
            let events = runtime.parse_blocking(plugin, &req).expect("parse");
            std::hint::black_box(events);
        }
        let took = started.elapsed();
        println!(
            "  {plugin:<16} {:>5} B body  {} events/s: {:.0}",
            req.body.len(),
            rate(CALLS, took),
            f64::from(CALLS) * events.len() as f64 / took.as_secs_f64()
        );
    }
    let mut event = runtime
        .parse_blocking("ghl-workflow", &request("bench", "/", fixture("ghl-workflow-subscribe.json"), &[]))
        .unwrap()
        .remove(0);
    for (templates, mappings) in [(5, 10), (50, 200)] {
        let catalogue = Arc::new(Catalogue::from_rows(
            &(0..templates)
                .map(|i| serde_json::json!({"name": format!("t{i}"), "enabled": true, "cores": 2, "memory_mb": 2048, "disk_gb": 40}))
                .collect::<Vec<_>>(),
            &(0..mappings)
                .map(|i| serde_json::json!({"source": "bench", "plan_key": format!("p{i}"), "template": format!("t{}", i % templates)}))
                .collect::<Vec<_>>(),
        ));
        event.plan_key = Some(format!("p{}", mappings - 1));
        let settings = BTreeMap::new();
        runtime.choose_template_blocking("plan-table", "bench", &event, &catalogue, &settings).unwrap();
        let calls = CALLS / 4;
        let started = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(
                runtime.choose_template_blocking("plan-table", "bench", &event, &catalogue, &settings).unwrap(),
            );
        }
        println!(
            "  {:<16} {templates:>3} templates, {mappings:>3} mappings  {}",
            "plan-table",
            rate(calls, started.elapsed())
        );
        // The worst case: the catalogue changes between any two calls, so the instance is
        // given it every time (as every call was before contract 1.2).
        let mut other = (*catalogue).clone();
        other.templates[0].cores += 1;
        let both = [catalogue, Arc::new(other)];
        let started = Instant::now();
        for i in 0..calls {
            let catalogue = &both[i as usize % 2];
            std::hint::black_box(
                runtime.choose_template_blocking("plan-table", "bench", &event, catalogue, &settings).unwrap(),
            );
        }
        println!(
            "  {:<16} {templates:>3} templates, {mappings:>3} mappings, a new catalogue every call  {}",
            "plan-table",
            rate(calls, started.elapsed())
        );
    }
}

#[test]
#[ignore = "benchmark"]
fn bench_plugins_fresh_instance_per_call() {
    let limits = Limits { reuse_instances: false, ..Limits::default() };
    let (runtime, _) = PluginRuntime::with_plugins(limits, None).expect("runtime");
    println!("one thread, a fresh instance per call (instantiation included), {} calls each:", CALLS / 4);
    for (plugin, file, settings) in sources() {
        let req = request("bench", "/webhooks/bench", fixture(file), &settings);
        runtime.parse_blocking(plugin, &req).expect("warm-up");
        let started = Instant::now();
        for _ in 0..CALLS / 4 {
            std::hint::black_box(runtime.parse_blocking(plugin, &req).expect("parse"));
        }
        println!("  {plugin:<16} {}", rate(CALLS / 4, started.elapsed()));
    }
}

#[test]
#[ignore = "benchmark"]
fn bench_plugins_two_threads() {
    let (runtime, _) = PluginRuntime::with_plugins(Limits::default(), None).expect("runtime");
    let runtime = std::sync::Arc::new(runtime);
    let req = request("bench", "/webhooks/bench", fixture("stripe-subscription-created.json"), &[]);
    runtime.parse_blocking("stripe-billing", &req).unwrap();
    let started = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (runtime, req) = (runtime.clone(), req.clone());
            std::thread::spawn(move || {
                for _ in 0..CALLS {
                    std::hint::black_box(runtime.parse_blocking("stripe-billing", &req).unwrap());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    println!("stripe-billing on 2 threads: {}", rate(2 * CALLS, started.elapsed()));
}

//! Benchmark of the admin UI's pages with 100,000 VPS records: the server time (loopback
//! round trip) of the dashboard, the VPS list's first and last pages, a search, and a VPS
//! page. Target: under 50 ms each.
//!
//! `cargo test --test integration -- --ignored --nocapture bench_ui` (`BENCH_VPS_N` changes
//! the count).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vmauto::auth::Role;

use crate::common::TestApp;

const RUNS: usize = 15;
const TEMPLATES: [&str; 3] = ["vps-small", "vps-medium", "vps-large"];

fn ips(i: usize) -> Vec<String> {
    vec![format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256)]
}

/// Writes `n` VPS rows (a fifth suspended or deleted), 2,000 per transaction.
pub(crate) async fn seed(store: &vmauto::db::Store, n: usize) {
    let states = ["active", "active", "active", "suspended", "deleted"];
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let rows: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({
                    "key": format!("v{i:07}"), "name": format!("vps-c-{i:07}"), "state": states[i % states.len()],
                    "source": "ghl", "customer_name": format!("Customer {i}"), "customer_email": format!("c{i:07}@example.com"),
                    "customer_id": format!("C{i}"), "template": TEMPLATES[i % 3],
                    "spec": { "cores": 1, "memory_mb": 1024, "disk_gb": 40 }, "server_id": format!("srv-{i}"),
                    "vm_name": format!("vps-c-{i:07}"), "ips": ips(*i),
                })
            })
            .collect();
        store
            .execute(
                "BEGIN TRANSACTION;
                 FOR $r IN $rows { CREATE type::record('vps', $r.key) CONTENT object::extend($r, {
                     created_at: time::now(), updated_at: time::now() }); };
                 COMMIT TRANSACTION;",
                json!({ "rows": rows }),
            )
            .await
            .expect("insert");
    }
}

#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_ui"]
async fn bench_ui_pages_100k() {
    let n: usize = std::env::var("BENCH_VPS_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let t = TestApp::start().await;
    let store = &t.app.state.store;
    let t0 = Instant::now();
    seed(store, n).await;
    let insert = t0.elapsed();
    // The search index is brought up to date a page at a time after the rows are written.
    let t0 = Instant::now();
    let indexed = store.index_vps_text().await.expect("search index");
    println!(
        "bench_ui_pages_100k: search index of {indexed} new VPS rows built in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    t.app.state.auth.add_user("bench", "benchmark password", Role::Viewer).await.expect("user");
    let base = t.app.base_url();
    let (status, _, session) = crate::ui::try_login(&base, "bench", "benchmark password").await;
    assert_eq!(status, 303);
    let s = session.expect("session");
    let last = n.div_ceil(50);
    let pages = [
        ("dashboard", "/".to_string()),
        ("VPS list, first page", "/vps".to_string()),
        ("VPS list, last page", format!("/vps?page={last}")),
        ("VPS search (one customer)", format!("/vps?q=c{:07}%40example", n / 2)),
        ("VPS search, last page of 'customer 1'", "/vps?q=customer+1&page=99999".to_string()),
        ("VPS page", format!("/vps/v{:07}", n / 3)),
    ];
    if std::env::var("BENCH_UI_PARTS").is_ok() {
        let q = |sql: &'static str| async move {
            let t0 = Instant::now();
            let rows: Vec<Value> = store.query_one(sql, json!({}), 0).await.expect(sql);
            println!("  {:>7.1} ms  {sql}", t0.elapsed().as_secs_f64() * 1000.0);
            if sql.ends_with("EXPLAIN") {
                println!("      {}", serde_json::to_string(&rows).unwrap_or_default());
            }
        };
        q("SELECT count() AS n FROM vps GROUP ALL").await;
        q("SELECT record::id(id) AS id FROM vps WITH INDEX vps_created ORDER BY created_at DESC LIMIT 50").await;
        q("SELECT * FROM vps ORDER BY created_at DESC LIMIT 50 EXPLAIN").await;
        q("SELECT * FROM vps WITH INDEX vps_created ORDER BY created_at DESC LIMIT 50 EXPLAIN").await;
        q("SELECT count() AS n FROM vps WHERE state = 'active' GROUP ALL").await;
        q("SELECT state, count() AS n FROM vps GROUP BY state").await;
        q("SELECT record::id(id) AS id FROM vps ORDER BY created_at DESC LIMIT 50").await;
        q("SELECT record::id(id) AS id FROM vps ORDER BY created_at DESC LIMIT 50 START 19950").await;
        q("SELECT record::id(id) AS id FROM vps ORDER BY created_at ASC LIMIT 50").await;
        q("SELECT record::id(id) AS id FROM vps_text WHERE text @@ 'c0010000' LIMIT 50").await;
        q("SELECT count() AS n FROM vps_text WHERE text @@ 'c0010000' GROUP ALL").await;
        q("SELECT count() AS n FROM vps_text WHERE text @@ 'customer 1' GROUP ALL").await;
        q("SELECT VALUE id FROM vps_text WHERE text @@ 'customer 1' LIMIT 1001").await;
        q("SELECT record::id(id) AS id FROM (SELECT VALUE vps FROM vps_text WHERE text @@ 'customer 1' LIMIT 1001) ORDER BY created_at DESC LIMIT 50").await;
        q("SELECT record::id(id) AS id FROM vps_text WHERE text @@ 'customer 1' ORDER BY vps.created_at DESC LIMIT 50")
            .await;
        q("SELECT record::id(id) AS id FROM vps WHERE customer_email = 'c0010000@example.com'").await;
        let t0 = Instant::now();
        vmauto::lifecycle::kpi::compute(store).await.expect("kpi");
        println!("  {:>7.1} ms  kpi::compute", t0.elapsed().as_secs_f64() * 1000.0);
        let t0 = Instant::now();
        vmauto::admin::webhook_volume(store).await.expect("kpi");
        vmauto::admin::operation_series(store).await.expect("kpi");
        println!("  {:>7.1} ms  charts", t0.elapsed().as_secs_f64() * 1000.0);
    }
    let http = reqwest::Client::new();
    println!(
        "bench_ui_pages_100k: {n} VPS rows inserted in {:.1} s; {RUNS} runs per page (loopback round trip):",
        insert.as_secs_f64()
    );
    for (what, path) in pages {
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t0 = Instant::now();
            let r = http.get(format!("{base}{path}")).header("cookie", &s.cookie).send().await.expect("get");
            let status = r.status().as_u16();
            let body = r.text().await.expect("body");
            times.push(t0.elapsed());
            assert_eq!(status, 200, "{path}: {body}");
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("  {what:<40} p50 {:>7.1} ms   max {:>7.1} ms   ({path})", ms(times[RUNS / 2]), ms(times[RUNS - 1]));
    }
}

/// The customer's portal page and its status poll with 100,000 VPS in the store (p50, p99 of
/// 200 loopback round trips each). `cargo test --test integration -- --ignored --nocapture
/// bench_portal_pages`.
#[actix_web::test]
#[ignore = "benchmark: run with --ignored --nocapture bench_portal_pages"]
async fn bench_portal_pages_100k() {
    let n: usize = std::env::var("BENCH_VPS_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let t = TestApp::start_with(|c| c.portal.requests_per_minute = 1_000_000).await;
    let st = &t.app.state;
    seed(&st.store, n).await;
    let vps = format!("v{:07}", n / 3 - (n / 3) % 5);
    let link =
        vmauto::portal::issue(&st.store, &st.config, &st.sealer, &vps.as_str().into(), "bench").await.expect("link");
    let path = format!("/my/{}", link.url.rsplit('/').next().expect("token"));
    let http = reqwest::Client::new();
    let base = t.app.base_url();
    println!("bench_portal_pages_100k: {n} VPS rows; 200 runs each (loopback round trip):");
    for (what, p) in [("portal page", path.clone()), ("status poll", format!("{path}/status"))] {
        let mut times = Vec::with_capacity(200);
        for _ in 0..200 {
            let t0 = Instant::now();
            let r = http.get(format!("{base}{p}")).send().await.expect("get");
            let status = r.status().as_u16();
            let body = r.text().await.expect("body");
            times.push(t0.elapsed());
            assert_eq!(status, 200, "{body}");
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("  {what:<14} p50 {:>6.1} ms   p99 {:>6.1} ms", ms(times[100]), ms(times[197]));
    }
}

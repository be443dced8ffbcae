//! Operations: the online export (a snapshot from the running appliance, restored into an
//! empty store), who may ask for it, `vmauto healthcheck`, and the packaged configuration.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use vmauto::config::{CliOverrides, Config};
use vmauto::db::Store;
use vmauto::sim::SimConfig;

use crate::common::TestApp;
use crate::common::{Proc, binary, free_port};

const TOKEN: &str = "crash0123456789abcdef0123456789ab";
/// Tables whose row counts no longer change once the webhooks are applied.
const TABLES: &[&str] = &["webhook_event", "customer", "subscription", "vps", "template", "plan_mapping"];

/// Runs the binary off the test's runtime, so an appliance in this process can answer it.
async fn vmauto_beside(args: &[&str]) -> (bool, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
    tokio::task::spawn_blocking(move || vmauto(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .expect("vmauto ran")
}

fn vmauto(args: &[&str]) -> (bool, String) {
    let out = Command::new(binary()).args(args).env_remove("VMAUTO_CONFIG").output().expect("vmauto runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

async fn counts(store: &Store) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for table in TABLES {
        let ids: Vec<serde_json::Value> =
            store.query_one(&format!("SELECT VALUE id FROM {table}"), json!({}), 0).await.expect("ids");
        out.insert((*table).to_string(), ids.len() as u64);
    }
    out
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[actix_web::test]
async fn db_export_while_running_is_a_snapshot_that_restores_into_an_empty_store() {
    vmauto::init_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = vmauto::sim::start(SimConfig { task_ms: 50, ip_delay_ms: 50, ..SimConfig::default() })
        .await
        .expect("simulator starts");
    let mut p = Proc::new(dir.path(), &sim, "", "");
    let config = p.load_config();
    p.with_store(async |s| vmauto::demo::seed(s, &config, "ghl").await.expect("seeded")).await;
    p.start().await;

    let http = reqwest::Client::new();
    for i in 0..5 {
        let body = json!({
            "contact_id": format!("CNT-ops-{i}"), "full_name": "Ops Test", "email": "ops@example.com",
            "customData": { "event": "subscribe", "plan": "starter", "subscription_id": format!("ops-sub-{i}") }
        });
        let r = http.post(p.url(&format!("/webhooks/ghl/{TOKEN}"))).json(&body).send().await.expect("webhook");
        assert_eq!(r.status().as_u16(), 202, "webhook {i} accepted");
    }
    // Every subscription has its VPS row once its VM exists in the simulator.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.snapshot()["servers"].as_array().map_or(0, Vec::len) < 5 {
        assert!(Instant::now() < deadline, "five VMs within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The store is held by the running appliance: the export is asked from it.
    let dump = dir.path().join("online.surql");
    let conf = dir.path().join("appliance.toml");
    let (ok, out) = vmauto(&["--config", path(&conf), "db", "export", path(&dump)]);
    assert!(ok, "{out}");
    assert!(out.contains("from the running appliance"), "{out}");
    assert!(!dir.path().join("online.partial").exists(), "no partial file left behind");
    p.stop();
    let original = p.with_store(async |s| counts(s).await).await;
    assert_eq!(original["subscription"], 5, "{original:?}");
    assert_eq!(original["vps"], 5, "{original:?}");
    assert!(original["webhook_event"] >= 5, "{original:?}");

    let restored_dir = tempfile::tempdir().expect("tempdir");
    let (ok, out) = vmauto(&["--data-dir", path(restored_dir.path()), "db", "import", path(&dump)]);
    assert!(ok, "{out}");
    let (ok, out) = vmauto(&["--data-dir", path(restored_dir.path()), "db", "import", path(&dump)]);
    assert!(!ok && out.contains("not empty"), "a second import is refused: {out}");
    let store = Store::open(&Config::for_data_dir(restored_dir.path())).await.expect("restored store opens");
    assert_eq!(counts(&store).await, original, "the restored store holds what the running one held");
}

#[actix_web::test]
async fn the_online_export_needs_a_fresh_token_from_the_key_and_no_proxy() {
    let t = TestApp::start().await;
    let key = vmauto::ops::read_key(&t.app.state.config.key_file()).expect("key");
    let now = chrono::Utc::now().timestamp();
    let post = |token: Option<String>, forwarded: bool| {
        let mut r = t.http.post(t.url(vmauto::ops::EXPORT_PATH));
        if let Some(token) = token {
            r = r.header(vmauto::ops::EXPORT_AUTH_HEADER, token);
        }
        if forwarded {
            r = r.header("x-forwarded-for", "203.0.113.9");
        }
        async move {
            let resp = r.send().await.expect("request");
            (resp.status().as_u16(), resp.text().await.expect("body"))
        }
    };
    assert_eq!(post(None, false).await.0, 403, "no token");
    assert_eq!(post(Some(vmauto::ops::export_token(&[0u8; 32], now)), false).await.0, 403, "another key");
    assert_eq!(post(Some(vmauto::ops::export_token(&key, now - 3600)), false).await.0, 403, "an old token");
    assert_eq!(post(Some(vmauto::ops::export_token(&key, now)), true).await.0, 403, "through a proxy");
    let (status, body) = post(Some(vmauto::ops::export_token(&key, now)), false).await;
    assert_eq!(status, 200);
    assert!(body.contains("DEFINE TABLE schema_version"), "a SurrealQL dump: {}", &body[..body.len().min(300)]);
}

#[actix_web::test]
async fn healthcheck_exits_zero_only_when_the_appliance_answers() {
    let t = TestApp::start().await;
    let (ok, out) = vmauto_beside(&["--listen", &t.app.addr.to_string(), "healthcheck"]).await;
    assert!(ok, "{out}");
    let (ok, out) = vmauto_beside(&["--listen", &format!("127.0.0.1:{}", free_port()), "healthcheck"]).await;
    assert!(!ok, "nothing listens there: {out}");
}

#[test]
fn the_packaged_configuration_is_the_shipped_one_with_the_package_directories() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(root.join("appliance.toml")).expect("appliance.toml");
    let packaged = std::fs::read_to_string(root.join("packaging/deb/appliance.toml")).expect("packaged");
    let (header, body) = packaged.split_at(packaged.find("## vmauto appliance configuration.").expect("body"));
    assert!(header.lines().all(|l| l.starts_with("##")), "only a comment header is added: {header}");
    let expected = shipped
        .replacen("# data_dir = \"/var/lib/vmauto\"\n", "data_dir = \"/var/lib/vmauto\"\n", 1)
        .replacen("# dir = \"\"\n", "dir = \"/var/lib/vmauto/plugins\"\n", 1);
    assert_eq!(body, expected, "run packaging/deb/make-config.sh after changing appliance.toml");
    let c =
        Config::load(Some(&root.join("packaging/deb/appliance.toml")), std::iter::empty(), &CliOverrides::default())
            .expect("the packaged configuration loads");
    assert_eq!(c.server.data_dir, Path::new("/var/lib/vmauto"));
    assert_eq!(c.plugin_dir(), Path::new("/var/lib/vmauto/plugins"));
    assert_eq!(c.key_file(), Path::new("/var/lib/vmauto/appliance.key"));
}

#[actix_web::test]
async fn metrics_export_the_backlog_that_alert_rules_watch() {
    // Read from the store at every scrape (the default reads it at most every 10 s).
    let t = TestApp::start_with(|c| c.server.metrics_refresh_secs = 0).await;
    let (_, before) = t.get("/metrics").await;
    assert!(before.contains("vmauto_operations{state=\"dead\"} 0"), "{before}");
    assert!(before.contains("vmauto_inbox_pending 0"), "{before}");
    t.app
        .state
        .store
        .execute(
            "CREATE operation CONTENT { state: 'dead', kind: 'create', created_at: time::now() };
             CREATE operation CONTENT { state: 'held', kind: 'delete', created_at: time::now() };
             CREATE operation CONTENT { state: 'held', kind: 'delete', created_at: time::now() };
             CREATE webhook_event CONTENT { status: 'received', source: 'x', received_at: time::now() - 90s };",
            json!({}),
        )
        .await
        .expect("rows written");
    let (status, text) = t.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("vmauto_operations{state=\"dead\"} 1"), "{text}");
    assert!(text.contains("vmauto_operations{state=\"held\"} 2"), "{text}");
    assert!(text.contains("vmauto_inbox_pending 1"), "{text}");
    let oldest: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("vmauto_inbox_oldest_pending_seconds "))
        .and_then(|v| v.parse().ok())
        .expect("the oldest pending webhook's age is exported");
    assert!(oldest >= 90.0, "{oldest}");
}

/// Every metric the alert rules, the dashboard and the operations guide name is one the
/// appliance defines (the names live in `telemetry::metrics::names`).
#[test]
fn the_monitoring_files_name_only_exported_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let re = regex::Regex::new(r"vmauto_[a-z_]+[a-z]").expect("regex");
    let source = std::fs::read_to_string(root.join("src/telemetry/metrics.rs")).expect("metrics.rs");
    let defined: Vec<&str> = source
        .lines()
        .filter(|l| l.trim_start().starts_with("pub const "))
        .filter_map(|l| re.find(l).map(|m| m.as_str()))
        .collect();
    assert!(defined.len() >= 20, "{defined:?}");
    for file in ["packaging/monitoring/alerts.yml", "packaging/monitoring/grafana-dashboard.json", "docs/operations.md"]
    {
        let text = std::fs::read_to_string(root.join(file)).expect("monitoring file");
        let named: Vec<&str> = re.find_iter(&text).map(|m| m.as_str()).collect();
        assert!(!named.is_empty(), "{file} names no metric");
        for name in named {
            let base = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(defined.contains(&base), "{file} names {name}, which vmauto does not export");
        }
    }
}

#[actix_web::test]
async fn metrics_are_served_from_memory_between_refreshes_and_can_need_a_token() {
    let t = TestApp::start_with(|c| {
        c.server.metrics_refresh_secs = 3600;
        c.server.metrics_token = vmauto::config::Secret::new("scrape-me");
    })
    .await;
    let (status, body) = t.get("/metrics").await;
    assert_eq!(status, 401, "no token: {body}");
    assert!(body.contains("metrics_token"), "{body}");
    let scrape = || async {
        let r = t.http.get(t.url("/metrics")).bearer_auth("scrape-me").send().await.expect("scrape");
        (r.status().as_u16(), r.text().await.expect("text"))
    };
    let (status, first) = scrape().await;
    assert_eq!(status, 200);
    assert!(first.contains("vmauto_operations{state=\"dead\"} 0"), "{first}");
    let wrong = t.http.get(t.url("/metrics")).bearer_auth("scrape-me-not").send().await.expect("scrape");
    assert_eq!(wrong.status().as_u16(), 401);
    t.app
        .state
        .store
        .execute("CREATE operation CONTENT { state: 'dead', kind: 'create', created_at: time::now() }", json!({}))
        .await
        .expect("row written");
    // Within the refresh interval a scrape reads nothing from the store.
    for _ in 0..20 {
        let (_, again) = scrape().await;
        assert!(again.contains("vmauto_operations{state=\"dead\"} 0"), "{again}");
    }
}

#[test]
fn the_appliance_key_is_private_from_its_first_byte_and_never_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = vmauto::config::Config::for_data_dir(dir.path());
    vmauto::app::ensure_appliance_key(&config).expect("key made");
    let path = config.key_file();
    let mode = std::fs::metadata(&path).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let key = std::fs::read_to_string(&path).expect("key");
    assert_eq!(key.len(), 64);
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
    vmauto::app::ensure_appliance_key(&config).expect("kept");
    assert_eq!(std::fs::read_to_string(&path).expect("key"), key, "an existing key is kept");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file is left behind");
}

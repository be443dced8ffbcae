//! The appliance skeleton: health, readiness, metrics, supervision, store, configuration.

use std::time::Duration;

use vmauto::actors::messages::{Restart, RestartCount};

use crate::common::TestApp;

#[actix_web::test]
async fn healthz_readyz_and_metrics_answer() {
    let t = TestApp::start().await;
    let (status, body) = t.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    let (status, body) = t.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ready"), "{body}");

    let (status, body) = t.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("vmauto_build_info{version=\""), "{body}");
    // The requests above are counted by route pattern.
    assert!(body.contains(r#"vmauto_http_requests_total{method="GET",route="/healthz",status="200"} 1"#), "{body}");
    assert!(body.contains(r#"route="/readyz""#), "{body}");
    t.app.stop().await.expect("stops");
}

#[actix_web::test]
async fn unknown_routes_are_counted_without_their_path() {
    let t = TestApp::start().await;
    let (status, _) = t.get("/no/such/page/12345").await;
    assert_eq!(status, 404);
    let (_, body) = t.get("/metrics").await;
    assert!(body.contains(r#"route="unmatched""#), "{body}");
    assert!(!body.contains("12345"), "raw paths must not become labels: {body}");
    t.app.stop().await.expect("stops");
}

#[actix_web::test]
async fn a_crashed_child_is_restarted_with_backoff_and_counted() {
    let t = TestApp::start().await;
    let notifier = t.app.handles().notifier.clone();
    notifier.send(Restart).await.expect("delivered");
    // The message queued during the back-off is answered once the child runs again.
    let count = tokio::time::timeout(Duration::from_secs(10), notifier.send(RestartCount))
        .await
        .expect("answered after the restart")
        .expect("delivered");
    assert_eq!(count, 1);
    notifier.send(Restart).await.expect("delivered");
    assert_eq!(notifier.send(RestartCount).await.expect("delivered"), 2);
    let (_, body) = t.get("/metrics").await;
    assert!(body.contains(r#"vmauto_actor_restarts_total{actor="notifier"} 2"#), "{body}");
    let (status, _) = t.get("/readyz").await;
    assert_eq!(status, 200, "a restarted child keeps the tree ready");
    t.app.stop().await.expect("stops");
}

#[actix_web::test]
async fn schema_is_migrated_and_a_newer_store_is_refused() {
    let t = TestApp::start().await;
    let store = &t.app.state.store;
    assert_eq!(store.schema_version().await.expect("version"), vmauto::db::SCHEMA_VERSION);
    // Migrating again is a no-op.
    assert_eq!(store.migrate().await.expect("idempotent"), vmauto::db::SCHEMA_VERSION);
    store.execute("UPSERT schema_version:current SET version = 999", serde_json::json!({})).await.expect("bump");
    let err = store.migrate().await.expect_err("newer schema refused");
    assert!(format!("{err:#}").contains("newer vmauto"), "{err:#}");
    t.app.stop().await.expect("stops");
}

#[actix_web::test]
async fn export_and_import_round_trip_on_the_file_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = crate::common::test_config(dir.path());
    config.database.url = String::new(); // the embedded SurrealKV store under data_dir
    let store = vmauto::db::Store::open(&config).await.expect("file store opens");
    store
        .execute(
            "CREATE vps:demo1 SET name = 'vm-one', state = 'active'; CREATE vps:demo2 SET name = 'vm-two', state = 'deleted';",
            serde_json::json!({}),
        )
        .await
        .expect("rows");
    let dump = dir.path().join("backup.surql");
    store.export(&dump).await.expect("export");
    assert!(std::fs::metadata(&dump).expect("dump written").len() > 0);

    let target_dir = tempfile::tempdir().expect("tempdir");
    let mut target_config = crate::common::test_config(target_dir.path());
    target_config.database.url = "mem://".into();
    let target = vmauto::db::Store::connect(&target_config).await.expect("target");
    target.import(&dump).await.expect("import");
    let names: Vec<String> = target
        .query_one("SELECT VALUE name FROM vps ORDER BY name", serde_json::json!({}), 0)
        .await
        .expect("rows restored");
    assert_eq!(names, vec!["vm-one", "vm-two"]);
    // A store that already holds data is not overwritten.
    let err = target.import(&dump).await.expect_err("non-empty target refused");
    assert!(format!("{err:#}").contains("empty store"), "{err:#}");
}

//! vmauto on a real SurrealDB server (`database.url = ws://…`, root credentials): the schema
//! is migrated there, and the lifecycle runs on it as on the embedded store.

use vmauto::billing::EventKind;

use crate::common::Stack;
use crate::common::surreal::SurrealServer;

#[actix_web::test]
async fn the_lifecycle_runs_on_a_surrealdb_server() {
    let server = SurrealServer::start().await;
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        server.configure(c);
        c.policy.grace_days = 0;
    })
    .await;
    let store = &s.t.app.state.store;
    assert_eq!(store.schema_version().await.expect("version"), vmauto::db::SCHEMA_VERSION);
    let out = s.send(crate::common::event(EventKind::Subscribe, "sub-ws", Some("starter"), None)).await;
    assert_eq!(out[0].status, "processed", "{out:?}");
    let key = vmauto::lifecycle::stable_key("ghl", "sub-ws");
    let sql = format!("SELECT VALUE state FROM vps WHERE subscription = '{key}'");
    s.wait_for("VPS active", 60, &sql, |r| r.first().is_some_and(|v| v == "active")).await;
    assert_eq!(s.sim_servers().await.len(), 1);
    s.send(crate::common::event(EventKind::Cancel, "sub-ws", None, None)).await;
    s.wait_for("VPS deleted", 60, &sql, |r| r.first().is_some_and(|v| v == "deleted")).await;
    assert!(s.sim_servers().await.is_empty());
    // The rows are on the server: a second client sees them.
    let mut other = crate::common::test_config(s.t.dir.path());
    server.configure(&mut other);
    let direct = vmauto::db::Store::connect(&other).await.expect("a second client");
    let rows: Vec<serde_json::Value> = direct.query_one(&sql, serde_json::json!({}), 0).await.expect("query");
    assert_eq!(rows, vec![serde_json::json!("deleted")]);
}

//! The upgrade path of several SCPs, placement and order-time choices: a store written
//! before them (schema 7: templates and VPS rows without a provider, choices or placement
//! times) and a configuration with only `[provider.sangfor]` start on this vmauto and keep
//! working — the schema is migrated, the old VPS's operations go to the default SCP, the
//! reconciler finds nothing amiss, and new orders are placed and built.

use serde_json::json;
use vmauto::actors::reconciler::Reconcile;
use vmauto::billing::EventKind;

async fn rows(store: &vmauto::db::Store, sql: &str) -> Vec<serde_json::Value> {
    store.query_one(sql, json!({}), 0).await.expect("query")
}

async fn wait_active(store: &vmauto::db::Store, sub: &str) -> String {
    let key = vmauto::lifecycle::stable_key("ghl", sub);
    let sql = format!("SELECT record::id(id) AS id, state FROM vps WHERE subscription = '{key}'");
    for _ in 0..600 {
        let r = rows(store, &sql).await;
        if r.len() == 1 && r[0]["state"] == "active" {
            return r[0]["id"].as_str().expect("id").to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("VPS of {sub} not active: {:?}", rows(store, &sql).await);
}

#[actix_web::test]
async fn a_store_and_config_from_before_several_scps_keep_working() {
    vmauto::init_crypto();
    let sim = vmauto::sim::start(vmauto::sim::SimConfig::default()).await.expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = crate::common::test_config(dir.path());
    config.provider.sangfor.base_url = sim.base_url();
    config.provider.sangfor.access_key = sim.access_key().to_string();
    config.provider.sangfor.secret_key = vmauto::config::Secret::new(sim.secret_key());
    config.policy.retry_base_secs = 1;
    config.policy.retry_max_secs = 2;
    assert!(config.providers.is_empty() && config.locations.is_empty(), "the configuration of before");

    // Before: a VPS built, then every row put back in the shape the older vmauto wrote.
    let app = vmauto::app::start(config.clone(), false).await.expect("first start");
    let store = app.state.store.clone();
    vmauto::demo::seed(&store, &app.state.config, "ghl").await.expect("seeded");
    let send = |app: &vmauto::app::Appliance, sub: &str| {
        app.state.handles.subscription.send(vmauto::actors::subscription::HandleEvents {
            source: "ghl".into(),
            requested_by: "system".into(),
            events: vec![crate::common::event(EventKind::Subscribe, sub, Some("starter"), None)],
        })
    };
    send(&app, "sub-old").await.expect("applied");
    let old = wait_active(&store, "sub-old").await;
    store
        .execute(
            "UPDATE vps UNSET vm_at, choices, template_row.provider, template_row.images, template_row.locations,
                 template_row.hostname_rule;
             UPDATE template UNSET provider, images, locations, hostname_rule;
             REMOVE INDEX IF EXISTS vps_vm_at ON vps; REMOVE INDEX IF EXISTS payment_restore_of ON payment;
             UPSERT schema_version:current SET version = 7;",
            json!({}),
        )
        .await
        .expect("back to schema 7");
    // Moved as an operator moves a store: a dump, imported into a new data directory beside
    // the same appliance key.
    let dump = dir.path().join("before.surql");
    store.export(&dump).await.expect("export");
    drop(store);
    app.stop().await.expect("stops");
    let next = tempfile::tempdir().expect("tempdir");
    let mut config = config.clone();
    config.server.data_dir = next.path().to_path_buf();
    config.database.url = String::new(); // the embedded file store under the new data directory
    std::fs::copy(crate::common::test_config(dir.path()).key_file(), config.key_file()).expect("the key moves along");
    {
        let target = vmauto::db::Store::connect(&config).await.expect("new store");
        target.import(&dump).await.expect("import");
    }

    // After: that store and the same configuration on this vmauto.
    // The import's handle lets go of the store's lock in the background.
    let mut started = None;
    for _ in 0..50 {
        match vmauto::app::start(config.clone(), false).await {
            Ok(app) => {
                started = Some(app);
                break;
            }
            Err(e) if format!("{e:#}").contains("locked") => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("second start: {e:#}"),
        }
    }
    let app = started.expect("the second start opens the store");
    let store = app.state.store.clone();
    assert_eq!(store.schema_version().await.expect("version"), vmauto::db::SCHEMA_VERSION);
    let template = store.template_by_name(&"vps-small".into()).await.expect("q").expect("the old template loads");
    assert!(template.provider.is_empty() && template.images.is_empty() && template.locations.is_empty());
    vmauto::admin::save_template(&store, &template, "admin:t").await.expect("and saves");

    // The old VPS's operations go to the default SCP.
    let (st, reg) = (&app.state.store, &app.state.handles.registry);
    vmauto::admin::request_action(st, reg, &old.as_str().into(), vmauto::admin::Action::Suspend, json!({}), "admin:t")
        .await
        .expect("suspend queued");
    let sql = format!("SELECT VALUE state FROM vps:`{old}`");
    for _ in 0..300 {
        if rows(&store, &sql).await == vec![json!("suspended")] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rows(&store, &sql).await, vec![json!("suspended")]);
    let findings = app.state.handles.reconciler.send(Reconcile).await.expect("sent").expect("reconciled");
    assert!(findings.is_empty(), "the old VPS is where the default SCP has it: {findings:?}");

    // A new order is placed and built as before.
    send(&app, "sub-new").await.expect("applied");
    let new = wait_active(&store, "sub-new").await;
    let placed = rows(&store, &format!("SELECT VALUE template_row.provider FROM vps:`{new}`")).await;
    assert_eq!(placed, vec![json!("")], "the default provider");
    app.stop().await.expect("stops");
}

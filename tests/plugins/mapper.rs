//! The default plan mapper (`plan-table`) over a catalogue read from table rows; the
//! catalogue an instance keeps (contract 1.2) and mappers of the older contracts.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use vmauto::billing::{BillingEvent, Customer, EventKind};
use vmauto::plugin_host::{Catalogue, Limits, Origin, PluginError, PluginRuntime, TemplateChoice, check_component};

use super::support::{component_of_contract, runtime};

fn catalogue() -> Catalogue {
    Catalogue::from_rows(
        &[
            json!({"name": "small", "enabled": true, "cores": 1, "memory_mb": 1024, "disk_gb": 20, "image": "debian-12"}),
            json!({"name": "large", "enabled": true, "cores": 4, "memory_mb": 8192, "disk_gb": 160}),
            json!({"name": "retired", "enabled": false, "cores": 2, "memory_mb": 2048, "disk_gb": 40}),
        ],
        &[
            json!({"source": "ghl", "plan_key": "vps-small", "template": "small"}),
            json!({"source": "*", "plan_key": "vps-large", "template": "large"}),
            json!({"source": "ghl", "plan_key": "old-plan", "template": "retired"}),
            json!({"source": "ghl", "plan_key": "typo-plan", "template": "smal"}),
        ],
    )
}

fn event(plan: Option<&str>) -> BillingEvent {
    BillingEvent {
        kind: EventKind::Subscribe,
        source_event_id: Some("e1".into()),
        occurred_at: None,
        subscription_id: Some("s1".into()),
        customer: Customer { id: "c1".into(), name: "Dana".into(), email: "d@example.com".into() },
        plan_key: plan.map(str::to_string),
        attributes: BTreeMap::new(),
        choices: Default::default(),
    }
}

fn choose(source: &str, plan: Option<&str>, settings: &[(&str, &str)]) -> TemplateChoice {
    let settings = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    runtime()
        .choose_template_blocking("plan-table", source, &event(plan), &Arc::new(catalogue()), &settings)
        .expect("mapper answers")
}

#[test]
fn catalogue_rows_keep_extra_columns() {
    let c = catalogue();
    assert_eq!(c.templates[0].extra.get("image").map(String::as_str), Some("\"debian-12\""));
    assert_eq!(c.mappings.len(), 4);
}

#[test]
fn plan_table_maps_source_and_wildcard_rows() {
    assert_eq!(choose("ghl", Some("vps-small"), &[]), TemplateChoice::Template("small".into()));
    assert_eq!(choose("stripe", Some("vps-large"), &[]), TemplateChoice::Template("large".into()));
    // A plan key naming a template maps to it unless turned off.
    assert_eq!(choose("stripe", Some("small"), &[]), TemplateChoice::Template("small".into()));
    assert!(matches!(choose("stripe", Some("small"), &[("match_template_names", "false")]), TemplateChoice::None(_)));
    assert_eq!(
        choose("stripe", Some("mystery"), &[("fallback_template", "small")]),
        TemplateChoice::Template("small".into())
    );
}

#[test]
fn plan_table_explains_why_there_is_no_template() {
    let reason = |c: TemplateChoice| match c {
        TemplateChoice::None(r) => r,
        other => panic!("expected no template, got {other:?}"),
    };
    assert!(reason(choose("stripe", Some("vps-small"), &[])).contains("no plan mapping"));
    assert!(reason(choose("ghl", Some("old-plan"), &[])).contains("disabled"));
    assert!(reason(choose("ghl", Some("typo-plan"), &[])).contains("does not exist"));
    assert!(reason(choose("ghl", None, &[])).contains("no plan key"));
}

#[test]
fn an_instance_is_given_the_catalogue_again_when_it_changes() {
    // One runtime and one thread: every call reuses the same instance, which keeps the
    // catalogue it was given last.
    let runtime = PluginRuntime::with_plugins(Limits::default(), None).expect("runtime").0;
    let ask = |catalogue: &Arc<Catalogue>, plan: &str| {
        runtime
            .choose_template_blocking("plan-table", "ghl", &event(Some(plan)), catalogue, &BTreeMap::new())
            .expect("mapper answers")
    };
    let first = Arc::new(catalogue());
    assert_eq!(ask(&first, "vps-small"), TemplateChoice::Template("small".into()));
    assert_eq!(ask(&first, "vps-large"), TemplateChoice::Template("large".into()), "the kept catalogue, asked again");

    // Another catalogue: the mapping changed, and a new template appeared.
    let mut changed = catalogue();
    changed.mappings[0].template = "large".into();
    changed.templates.push(changed.templates[0].clone());
    changed.templates[3].name = "medium".into();
    changed.mappings.push(vmauto::plugin_host::PlanMapping {
        source: "ghl".into(),
        plan_key: "vps-medium".into(),
        template: "medium".into(),
    });
    let changed = Arc::new(changed);
    assert_eq!(ask(&changed, "vps-small"), TemplateChoice::Template("large".into()));
    assert_eq!(ask(&changed, "vps-medium"), TemplateChoice::Template("medium".into()));
    // The first one again, and an equal copy of it (another Arc, the same content).
    assert_eq!(ask(&first, "vps-small"), TemplateChoice::Template("small".into()));
    assert!(matches!(ask(&first, "vps-medium"), TemplateChoice::None(_)), "the first catalogue has no vps-medium");
    assert_eq!(ask(&Arc::new(catalogue()), "vps-small"), TemplateChoice::Template("small".into()));
    // An empty catalogue leaves nothing to choose.
    let reason = match ask(&Arc::new(Catalogue::default()), "vps-small") {
        TemplateChoice::None(reason) => reason,
        other => panic!("expected no template, got {other:?}"),
    };
    assert!(reason.contains("no plan mapping"), "{reason}");
}

#[test]
fn a_contract_1_1_mapper_is_sent_the_catalogue_with_every_request() {
    let fixed = component_of_contract(include_str!("fixed-mapper.wat"), "plan-mapper", "1.1");
    assert_eq!(check_component(&fixed).expect("a 1.1 mapper passes the check").contract_version, "1.1.0");
    let runtime = PluginRuntime::new(Limits::default()).expect("runtime");
    runtime.load("fixed", &fixed, Origin::Bundled).expect("load");
    let ask = |catalogue: Catalogue| {
        runtime.choose_template_blocking("fixed", "ghl", &event(Some("any")), &Arc::new(catalogue), &BTreeMap::new())
    };
    assert_eq!(ask(catalogue()).expect("answers"), TemplateChoice::Template("small".into()));
    // It always chooses "small"; the host checks the choice against the catalogue it sent.
    let mut without_small = catalogue();
    without_small.templates.retain(|t| t.name != "small");
    match ask(without_small) {
        Err(PluginError::BadOutput { reason, .. }) => assert!(reason.contains("not in the catalogue"), "{reason}"),
        other => panic!("expected a refused choice, got {other:?}"),
    }
}

#[test]
fn a_contract_1_1_source_still_loads_and_runs() {
    let empty = component_of_contract(include_str!("empty-source.wat"), "billing-source", "1.1");
    assert_eq!(check_component(&empty).expect("a 1.1 source passes the check").contract_version, "1.1.0");
    let runtime = PluginRuntime::new(Limits::default()).expect("runtime");
    runtime.load("empty", &empty, Origin::Bundled).expect("load");
    let events = runtime
        .parse_blocking("empty", &super::support::request("src", "/p", b"{}".to_vec(), &[]))
        .expect("a 1.1 source answers");
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test]
async fn the_catalogue_is_read_from_the_store_tables() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = vmauto::config::Config::for_data_dir(dir.path());
    config.database.url = "mem://".into();
    let store = vmauto::db::Store::open(&config).await.expect("store");
    store.create("template", json!({"name": "small", "enabled": true, "cores": 1, "memory_mb": 1024, "disk_gb": 20, "image": "debian-12"})).await.unwrap();
    store
        .create("template", json!({"name": "off", "enabled": false, "cores": 1, "memory_mb": 512, "disk_gb": 10}))
        .await
        .unwrap();
    store.create("plan_mapping", json!({"source": "ghl", "plan_key": "vps-small", "template": "small"})).await.unwrap();
    let catalogue = store.catalogue().await.expect("catalogue");
    assert_eq!(catalogue.templates.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["off", "small"]);
    assert_eq!(catalogue.templates[1].memory_mb, 1024);
    assert!(!catalogue.templates[0].enabled);
    assert_eq!(
        catalogue.mappings,
        [vmauto::plugin_host::PlanMapping {
            source: "ghl".into(),
            plan_key: "vps-small".into(),
            template: "small".into()
        }]
    );
    let choice = runtime()
        .choose_template("plan-table", "ghl", event(Some("vps-small")), std::sync::Arc::new(catalogue), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(choice, TemplateChoice::Template("small".into()));
}

#[test]
fn plugin_commands_list_test_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = vmauto::config::Config::for_data_dir(dir.path());
    let list = vmauto::plugin_host::cli::list(&config).unwrap();
    assert!(list.contains("ghl-workflow") && list.contains("plan-mapper"), "{list}");
    let options = vmauto::plugin_host::cli::TestOptions {
        headers: vec!["X-Event-Type=test".into()],
        path: Some("/api/vps/provision".into()),
        source: None,
        repeat: 3,
    };
    let out = vmauto::plugin_host::cli::test(
        &config,
        "ghl-workflow",
        &super::support::fixture_path("ghl-workflow-provision.json"),
        &options,
    )
    .unwrap();
    assert!(out.contains("\"kind\": \"subscribe\""), "{out}");
    assert!(out.contains("3 more calls in") && out.contains("µs a call"), "{out}");
    let err = vmauto::plugin_host::cli::test(
        &config,
        "stripe-billing",
        &super::support::fixture_path("stripe-missing-id.json"),
        &Default::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("missing field `id`"), "{err}");
    // check: a component written in WebAssembly text, installed in the plugin directory.
    let plugins = config.plugin_dir();
    std::fs::create_dir_all(&plugins).unwrap();
    let echo = super::support::component_from_wat(include_str!("echo.wat"), "billing-source");
    std::fs::write(plugins.join("echo.wasm"), &echo).unwrap();
    let report = vmauto::plugin_host::cli::check(&plugins.join("echo.wasm")).unwrap();
    assert!(report.contains("vmauto:plugin@1.0.0") && report.contains("billing-source"), "{report}");
    let list = vmauto::plugin_host::cli::list(&config).unwrap();
    assert!(list.contains("echo.wasm"), "{list}");
}

//! Order-time choices end to end: each bundled source plugin's webhook, over HTTP, carries
//! the customer's image, hostname and location to the VM the simulator builds (its image,
//! hostname and AZ, with the location's storage tag and network); the VPS page and the API
//! show what was chosen and where it came from; a choice the template does not allow parks
//! the event with a message naming the field, the value and what is allowed, and alerts.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use vmauto::config::{Candidate, LocationConfig, SignatureScheme, SourceConfig};
use vmauto::db::models::template::ImageRef;
use vmauto::sim::world::{AZ_A, AZ_B, IMG_UBUNTU, SUBNET_B1, TAG_B_SSD, VPC_B};

use crate::common::Stack;

const DEBIAN: &str = "img-debian-12-0002";
const ROCKY: &str = "img-rocky-9-0003";

fn source(plugin: &str, settings: &[(&str, &str)]) -> SourceConfig {
    SourceConfig {
        plugin: plugin.into(),
        signature: SignatureScheme::None,
        settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    }
}

async fn stack() -> Stack {
    let s = Stack::start_with(vmauto::sim::SimConfig::default(), |c| {
        c.sources.insert("workflow".into(), source("ghl-workflow", &[]));
        c.sources.insert("market".into(), source("ghl-marketplace", crate::plugins::choices::MARKETPLACE_CHOICES));
        c.sources.insert("stripe".into(), source("stripe-billing", &[]));
        c.sources.insert("generic".into(), source("generic-json", crate::plugins::choices::GENERIC_CHOICES));
        let at = |az: &str, extra: fn(&mut Candidate)| {
            let mut c = Candidate { provider: "default".into(), az: az.into(), ..Candidate::default() };
            extra(&mut c);
            LocationConfig { candidates: vec![c], policy: Default::default() }
        };
        c.locations.insert("eu-west".into(), at(AZ_A, |_| {}));
        c.locations.insert(
            "us-east".into(),
            at(AZ_B, |c| {
                c.storage_tag_id = TAG_B_SSD.into();
                c.vpc_id = VPC_B.into();
                c.subnet_id = SUBNET_B1.into();
            }),
        );
    })
    .await;
    let store = &s.t.app.state.store;
    let mut t = store.template_by_name(&"vps-small".into()).await.expect("q").expect("vps-small");
    t.images = BTreeMap::from([
        ("ubuntu-22.04".into(), ImageRef::Id(IMG_UBUNTU.into())),
        ("ubuntu-24.04".into(), ImageRef::Id(IMG_UBUNTU.into())),
        ("debian-12".into(), ImageRef::Id(DEBIAN.into())),
        ("rocky-9".into(), ImageRef::PerAz(BTreeMap::from([(AZ_B.into(), ROCKY.into())]))),
    ]);
    t.locations = vec!["eu-west".into(), "us-east".into()];
    vmauto::admin::save_template(store, &t, "admin:t").await.expect("template saved");
    for (source, plan) in [("market", "65ff00aa11bb22cc33dd4601"), ("stripe", "price_1Q0aMonthly0001")] {
        vmauto::admin::map_plan(store, source, plan, &"vps-small".into(), "admin:t").await.expect("mapped");
    }
    s
}

async fn post(s: &Stack, source: &str, body: Vec<u8>) -> Value {
    let resp =
        s.t.http
            .post(s.t.url(&format!("/webhooks/{source}")))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("webhook");
    assert!(resp.status().is_success(), "{source}: {}", resp.status());
    resp.json().await.expect("json")
}

fn fixture(name: &str) -> Vec<u8> {
    crate::plugins::support::fixture(name)
}

#[actix_web::test]
async fn every_bundled_source_builds_what_the_customer_chose() {
    let s = stack().await;
    let cases = [
        ("workflow", "ghl-workflow-subscribe-choices.json", IMG_UBUNTU, "web-01.example.com", AZ_A, "eu-west"),
        ("market", "ghl-order-create-choices.json", DEBIAN, "db-01.example.com", AZ_B, "us-east"),
        ("stripe", "stripe-subscription-created-choices.json", IMG_UBUNTU, "app-7.example.com", AZ_A, "eu-west"),
        ("generic", "generic-subscribe-choices.json", ROCKY, "ci-runner-3", AZ_B, "us-east"),
    ];
    for (source, file, image, hostname, az, location) in cases {
        post(&s, source, fixture(file)).await;
        let sql = format!(
            "SELECT record::id(id) AS id, state, server_id, choices FROM vps WHERE source = '{source}' AND state = 'active'"
        );
        let rows = s.wait_for(&format!("the {source} VPS active"), 90, &sql, |r| r.len() == 1).await;
        let server_id = rows[0]["server_id"].as_str().expect("server").to_string();
        let vm = s.sim_servers().await.into_iter().find(|v| v["id"] == server_id.as_str()).expect("the VM");
        assert_eq!(
            (vm["image_id"].as_str(), vm["hostname"].as_str(), vm["az_id"].as_str()),
            (Some(image), Some(hostname), Some(az)),
            "{source}: {vm}"
        );
        if az == AZ_B {
            assert_eq!(vm["storage_tag_id"], TAG_B_SSD, "the location's storage tag: {vm}");
        }
        let chosen = &rows[0]["choices"];
        assert_eq!(chosen["chosen"]["location"], location, "{chosen}");
        assert_eq!(chosen["chosen"]["hostname"], hostname, "{chosen}");
        assert_eq!(chosen["source"], source, "{chosen}");
        assert!(chosen["requested_by"].as_str().is_some_and(|r| r.starts_with("webhook:")), "{chosen}");
    }

    // The API and the VPS page show the choices and where they came from.
    let id = s.rows("SELECT VALUE record::id(id) FROM vps WHERE source = 'generic'").await[0]
        .as_str()
        .expect("id")
        .to_string();
    let api: Value = s.t.api_get(vmauto::auth::Role::Viewer, &format!("/vps/{id}")).await;
    let detail = if api["vps"].is_object() { &api["vps"] } else { &api };
    assert_eq!(detail["choices"]["chosen"]["image"], "rocky-9", "{api}");
    assert_eq!(detail["choices"]["chosen"]["image_id"], ROCKY, "{api}");
    assert_eq!(detail["choices"]["event_id"], "gen-evt-2", "{api}");

    // The customer's reinstall list names the images by the template's aliases.
    let st = &s.t.app.state;
    let link =
        vmauto::portal::issue(&st.store, &st.config, &st.sealer, &id.as_str().into(), "admin:t").await.expect("link");
    let path = format!("/my/{}", link.url.rsplit('/').next().expect("token"));
    let (code, html) = s.t.get(&path).await;
    assert_eq!(code, 200);
    assert!(html.contains(&format!("<option value=\"{ROCKY}\" selected>rocky-9</option>")), "{html}");
    assert!(html.contains(&format!("<option value=\"{DEBIAN}\">debian-12</option>")), "{html}");
}

#[actix_web::test]
async fn a_choice_the_template_does_not_allow_parks_the_event_and_alerts() {
    let s = stack().await;
    type Case = (&'static str, fn(&mut Value), &'static str);
    let cases: [Case; 4] = [
        (
            "image",
            |b| b["order"]["os"] = json!("windows-11"),
            "image \"windows-11\" is not offered for template vps-small (allowed: debian-12, rocky-9, ubuntu-22.04, ubuntu-24.04)",
        ),
        (
            "location",
            |b| b["order"]["where"] = json!("mars"),
            "location \"mars\" is not offered for template vps-small (allowed: eu-west, us-east)",
        ),
        ("hostname", |b| b["order"]["name"] = json!("bad_name!"), "hostname \"bad_name!\" is not a valid hostname"),
        (
            "alias in AZ",
            |b| b["order"]["where"] = json!("eu-west"),
            "image \"rocky-9\" of template vps-small has no image id for an AZ of location eu-west",
        ),
    ];
    for (i, (what, edit, message)) in cases.into_iter().enumerate() {
        let mut body: Value = serde_json::from_slice(&fixture("generic-subscribe-choices.json")).expect("json");
        body["id"] = json!(format!("gen-bad-{i}"));
        body["contract"]["id"] = json!(format!("CTR-bad-{i}"));
        edit(&mut body);
        let answer = post(&s, "generic", serde_json::to_vec(&body).expect("json")).await;
        let key = answer["id"].as_str().unwrap_or_default().to_string();
        let sql = format!("SELECT status, outcomes FROM type::record('webhook_event', '{key}')");
        let rows =
            s.wait_for(&format!("{what} parked"), 30, &sql, |r| r.len() == 1 && r[0]["status"] == "parked").await;
        let said = rows[0]["outcomes"].to_string();
        assert!(said.contains(&message.replace('"', "\\\"")), "{what}: {said}");
    }
    assert!(s.rows("SELECT * FROM vps WHERE source = 'generic'").await.is_empty(), "nothing built with defaults");
    // The notifier writes each alert just after its webhook is parked.
    let alerts = s
        .wait_for("an alert for each", 30, "SELECT VALUE kind FROM notification WHERE kind = 'event_parked'", |r| {
            r.len() >= 4
        })
        .await;
    assert_eq!(alerts.len(), 4, "an alert for each: {alerts:?}");
}

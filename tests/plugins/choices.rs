//! Order-time choices (contract 1.1): every bundled source plugin reads the image, hostname
//! and location the customer chose from where its billing system puts them; a component of
//! contract 1.0 still loads and its events simply carry none.

use vmauto::billing::EventKind;
use vmauto::plugin_host::{OrderChoices, Rejection, check_component};

use super::support::{component_from_wat, one, parse, rejection, request, runtime};

fn chosen(image: &str, hostname: &str, location: &str) -> OrderChoices {
    OrderChoices { image: Some(image.into()), hostname: Some(hostname.into()), location: Some(location.into()) }
}

/// The generic-json settings of the choices fixture.
pub const GENERIC_CHOICES: &[(&str, &str)] = &[
    ("event_field", "kind"),
    ("map.activated", "subscribe"),
    ("subscription_field", "contract.id"),
    ("customer_id_field", "account.id"),
    ("plan_field", "contract.product.sku"),
    ("image_field", "order.os"),
    ("hostname_field", "order.name"),
    ("location_field", "order.where"),
];

/// The ghl-marketplace settings of the choices fixture: custom fields by id.
pub const MARKETPLACE_CHOICES: &[(&str, &str)] = &[
    ("image_field", "CFvpsImage0000000001"),
    ("hostname_field", "CFvpsHostname0000001"),
    ("location_field", "CFvpsLocation0000001"),
];

#[test]
fn every_bundled_source_reads_what_the_customer_chose() {
    let e = one(parse("ghl-workflow", "ghl-workflow-subscribe-choices.json", &[]));
    assert_eq!(e.kind, EventKind::Subscribe);
    assert_eq!(e.choices, chosen("ubuntu-22.04", "web-01.example.com", "eu-west"));
    assert!(!e.attributes.contains_key("image") && !e.attributes.contains_key("location"), "{:?}", e.attributes);
    assert_eq!(e.attributes["location_id"], "LOC7hQm2Xc9uVb1Nn0Pa", "GHL's own location stays an attribute");

    let e = one(parse("ghl-marketplace", "ghl-order-create-choices.json", MARKETPLACE_CHOICES));
    assert_eq!(e.kind, EventKind::Subscribe);
    assert_eq!(e.choices, chosen("debian-12", "db-01.example.com", "us-east"), "order, then contact fields");

    let e = one(parse("stripe-billing", "stripe-subscription-created-choices.json", &[]));
    assert_eq!(e.kind, EventKind::Subscribe);
    assert_eq!(e.choices, chosen("ubuntu-24.04", "app-7.example.com", "eu-west"), "subscription, then price metadata");

    let e = one(parse("generic-json", "generic-subscribe-choices.json", GENERIC_CHOICES));
    assert_eq!(e.kind, EventKind::Subscribe);
    assert_eq!(e.choices, chosen("rocky-9", "ci-runner-3", "us-east"));
}

/// A marketplace order whose custom fields are the given JSON arrays.
fn order_with_fields(order: &str, contact: &str) -> Vec<u8> {
    format!(
        r#"{{"type": "OrderCreate", "_id": "o1", "contactId": "c1", "status": "completed",
            "items": [{{"price": {{"_id": "p1", "type": "recurring"}}}}],
            "customFields": {order}, "contactSnapshot": {{"customFields": {contact}}}}}"#
    )
    .into_bytes()
}

#[test]
fn a_marketplace_choice_takes_the_first_field_that_names_it() {
    let order = r#"[{"key": "contact.image", "value": "debian-12"}, {"id": "hostname", "value": null}]"#;
    let contact = r#"[{"fieldKey": "image", "value": "ubuntu-22.04"}, {"name": "hostname", "value": "from-contact"},
                      {"key": "location", "value": 7}]"#;
    let req = request("test", "/webhooks/ghl", order_with_fields(order, contact), &[]);
    let e = one(runtime().parse_blocking("ghl-marketplace", &req));
    assert_eq!(e.choices.image.as_deref(), Some("debian-12"), "the order's field before the contact's");
    assert_eq!(e.choices.hostname, None, "a matching field without a value ends the search: {:?}", e.choices);
    assert_eq!(e.choices.location.as_deref(), Some("7"), "a number is read as text");

    let bad = r#"[{"id": "image", "value": "debian-12"}, {"id": "location", "value": {"zone": "b"}}]"#;
    let req = request("test", "/webhooks/ghl", order_with_fields(bad, "[]"), &[]);
    assert_eq!(
        rejection(runtime().parse_blocking("ghl-marketplace", &req)),
        Rejection::WrongType { field: "customFields.1.value".into(), expected: "string".into() }
    );
}

#[test]
fn events_without_choices_carry_none() {
    for (plugin, fixture) in [
        ("ghl-workflow", "ghl-workflow-subscribe.json"),
        ("ghl-marketplace", "ghl-order-create.json"),
        ("stripe-billing", "stripe-subscription-created.json"),
    ] {
        let e = one(parse(plugin, fixture, &[]));
        assert!(e.choices.is_empty(), "{plugin}: {:?}", e.choices);
    }
    // Serialized events (the inbox, the activity log) keep their old shape.
    let e = one(parse("ghl-workflow", "ghl-workflow-subscribe.json", &[]));
    assert!(!serde_json::to_string(&e).expect("json").contains("choices"));
}

#[test]
fn a_contract_1_0_component_still_loads_and_runs() {
    let echo = component_from_wat(include_str!("echo.wat"), "billing-source");
    let report = check_component(&echo).expect("a 1.0 component passes the check");
    assert_eq!(report.contract_version, "1.0.0");
    let runtime = vmauto::plugin_host::PluginRuntime::new(vmauto::plugin_host::Limits::default()).expect("runtime");
    runtime.load("echo", &echo, vmauto::plugin_host::Origin::Bundled).expect("load");
    let e = one(runtime.parse_blocking("echo", &super::support::request("src", "/p", b"{}".to_vec(), &[])));
    assert_eq!(e.kind, EventKind::Ignore);
    assert!(e.choices.is_empty());
    let bundled = vmauto::plugin_host::bundled::BUNDLED.iter().find(|(n, _)| *n == "ghl-workflow").expect("bundled");
    assert_eq!(check_component(bundled.1).expect("check").contract_version, vmauto::plugin_host::CONTRACT_VERSION);
}

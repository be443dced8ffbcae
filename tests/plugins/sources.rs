//! Every bundled billing-source plugin against the fixture payloads of webhooks.md: each
//! event kind, unknown events (ignored, with the reason recorded), missing fields and
//! wrong types (typed errors).

use vmauto::billing::EventKind;
use vmauto::plugin_host::{PluginError, Rejection};

use super::support::{one, parse, parse_at, rejection, runtime};

#[test]
fn bundled_plugins_are_listed_with_their_kinds() {
    let list = runtime().list();
    let names: Vec<_> = list.iter().map(|p| (p.name.as_str(), p.kind.to_string())).collect();
    for (name, kind) in [
        ("generic-json", "billing-source"),
        ("ghl-marketplace", "billing-source"),
        ("ghl-workflow", "billing-source"),
        ("plan-table", "plan-mapper"),
        ("stripe-billing", "billing-source"),
    ] {
        assert!(names.contains(&(name, kind.to_string())), "{name} missing from {names:?}");
    }
}

// ---- ghl-workflow ----

#[test]
fn ghl_workflow_subscribe_reads_contact_and_custom_data() {
    let e = one(parse("ghl-workflow", "ghl-workflow-subscribe.json", &[]));
    assert_eq!(e.kind, EventKind::Subscribe);
    assert_eq!(e.customer.id, "CNTa1b2c3d4e5f6g7h8i9");
    assert_eq!(e.customer.name, "Dana Reyes");
    assert_eq!(e.customer.email, "dana@example.com");
    assert_eq!(e.plan_key.as_deref(), Some("vps-small"));
    assert_eq!(e.subscription_id.as_deref(), Some("sub-1001"));
    assert_eq!(e.attributes.get("order_id").map(String::as_str), Some("6601a9e2b1c4d2e3f4a5b6c7"));
    assert_eq!(e.attributes.get("location_id").map(String::as_str), Some("LOC7hQm2Xc9uVb1Nn0Pa"));
    assert_eq!(e.attributes.get("tags").map(String::as_str), Some("customer,hub-pro-upgrade-paid"));
    assert!(!e.attributes.contains_key("shared_token"), "the shared token must never be kept: {:?}", e.attributes);
}

#[test]
fn ghl_workflow_each_event_word() {
    for (fixture, kind) in [
        ("ghl-workflow-cancel.json", EventKind::Cancel),
        ("ghl-workflow-suspend.json", EventKind::Suspend),
        ("ghl-workflow-resume.json", EventKind::Resume),
        ("ghl-workflow-change-plan.json", EventKind::ChangePlan),
    ] {
        let e = one(parse("ghl-workflow", fixture, &[]));
        assert_eq!(e.kind, kind, "{fixture}");
        assert_eq!(e.subscription_id.as_deref(), Some("sub-1001"), "{fixture}");
    }
}

#[test]
fn ghl_workflow_seed_endpoints_imply_the_event() {
    let e = one(parse_at("ghl-workflow", "ghl-workflow-provision.json", "/api/vps/provision", &[]));
    assert_eq!(e.kind, EventKind::Subscribe);
    assert_eq!(e.plan_key.as_deref(), Some("vps-small"));
    let e = one(parse_at("ghl-workflow", "ghl-workflow-deprovision.json", "/api/vps/deprovision", &[]));
    assert_eq!(e.kind, EventKind::Cancel);
    // Elsewhere, a missing event is a typed error.
    let r = rejection(parse_at("ghl-workflow", "ghl-workflow-deprovision.json", "/webhooks/ghl", &[]));
    assert_eq!(r, Rejection::MissingField("customData.event".into()));
}

#[test]
fn ghl_workflow_unknown_event_is_ignored_with_reason_and_settings_can_map_it() {
    let e = one(parse("ghl-workflow", "ghl-workflow-unknown-event.json", &[]));
    assert_eq!(e.kind, EventKind::Ignore);
    assert!(e.attributes["reason"].contains("upgrade_paid"), "{:?}", e.attributes);
    assert!(!e.attributes.contains_key("shared_token"));
    let e = one(parse(
        "ghl-workflow",
        "ghl-workflow-unknown-event.json",
        &[("event.upgrade_paid", "subscribe"), ("plan_field", "customData.sku")],
    ));
    assert_eq!(e.kind, EventKind::Subscribe);
    assert_eq!(e.plan_key.as_deref(), Some("HUB-PRO-UPG"));
}

#[test]
fn ghl_workflow_missing_fields_and_wrong_types_are_typed_errors() {
    assert_eq!(
        rejection(parse("ghl-workflow", "ghl-workflow-missing-contact.json", &[])),
        Rejection::MissingField("contact_id".into())
    );
    assert_eq!(
        rejection(parse("ghl-workflow", "ghl-workflow-wrong-type.json", &[])),
        Rejection::WrongType { field: "email".into(), expected: "string".into() }
    );
    assert!(matches!(rejection(parse("ghl-workflow", "not-json.txt", &[])), Rejection::Malformed(_)));
    assert!(matches!(
        rejection(parse("ghl-workflow", "ghl-workflow-unknown-event.json", &[("event.upgrade_paid", "celebrate")])),
        Rejection::BadSetting(_)
    ));
}

// ---- ghl-marketplace ----

#[test]
fn ghl_order_create_subscribes_each_recurring_item() {
    let e = one(parse("ghl-marketplace", "ghl-order-create.json", &[]));
    assert_eq!(e.kind, EventKind::Subscribe);
    assert_eq!(e.plan_key.as_deref(), Some("65ff00aa11bb22cc33dd4601"), "the recurring item's price id");
    assert_eq!(e.subscription_id.as_deref(), Some("6601a9e2b1c4d2e3f4a5b6c7"), "the order id");
    assert_eq!(e.source_event_id.as_deref(), Some("9b2f7d0e-4c1a-4f7e-9a51-2a0c6f3d1e88"));
    assert_eq!(e.occurred_at.map(|t| t.to_rfc3339()).as_deref(), Some("2026-03-02T14:05:11.482+00:00"));
    assert_eq!(e.customer.email, "dana@example.com");
    assert_eq!(e.customer.name, "Dana Reyes");
    assert_eq!(e.attributes["interval"], "month");
    let e = one(parse("ghl-marketplace", "ghl-order-create.json", &[("plan_key", "product_name")]));
    assert_eq!(e.plan_key.as_deref(), Some("Hub Pro support plan"));
    // require_paid: a pending order waits.
    let e = one(parse("ghl-marketplace", "ghl-order-create.json", &[("require_paid", "true")]));
    assert_eq!(e.kind, EventKind::Ignore);
}

#[test]
fn ghl_order_status_update_without_items_is_ignored_and_cancel_or_refund_cancels() {
    let e = one(parse("ghl-marketplace", "ghl-order-status-update.json", &[]));
    assert_eq!(e.kind, EventKind::Ignore);
    assert!(e.attributes["reason"].contains("recurring"));
    let e = one(parse("ghl-marketplace", "ghl-order-cancelled.json", &[]));
    assert_eq!(e.kind, EventKind::Cancel);
    assert_eq!(e.subscription_id.as_deref(), Some("6601a9e2b1c4d2e3f4a5b6c7"));
    let e = one(parse("ghl-marketplace", "ghl-order-refunded.json", &[]));
    assert_eq!(e.kind, EventKind::Cancel);
    assert_eq!(e.plan_key.as_deref(), Some("65ff00aa11bb22cc33dd4601"));
}

#[test]
fn ghl_invoices_resume_or_follow_the_void_setting() {
    let e = one(parse("ghl-marketplace", "ghl-invoice-paid.json", &[]));
    assert_eq!(e.kind, EventKind::Resume);
    assert_eq!(e.customer.id, "CNTa1b2c3d4e5f6g7h8i9");
    assert_eq!(e.attributes["invoice_id"], "6605bb01c2d3e4f5a6b7c8d9");
    // The documented example has neither type nor locationId.
    let e = one(parse("ghl-marketplace", "ghl-invoice-paid-docs-shape.json", &[]));
    assert_eq!(e.kind, EventKind::Resume);
    assert_eq!(e.source_event_id, None);
    let e = one(parse("ghl-marketplace", "ghl-invoice-void.json", &[]));
    assert_eq!(e.kind, EventKind::Ignore);
    let e = one(parse("ghl-marketplace", "ghl-invoice-void.json", &[("invoice_void", "suspend")]));
    assert_eq!(e.kind, EventKind::Suspend);
}

#[test]
fn ghl_contact_tags_follow_the_configured_tags() {
    let settings = [("subscribe_tags", "vps-active"), ("cancel_tags", "vps-cancelled"), ("plan_tag_prefix", "plan-")];
    let e = one(parse("ghl-marketplace", "ghl-contact-tag-vps.json", &settings));
    assert_eq!(e.kind, EventKind::Subscribe);
    assert_eq!(e.plan_key.as_deref(), Some("vps-medium"));
    assert_eq!(e.subscription_id.as_deref(), Some("CNTa1b2c3d4e5f6g7h8i9"));
    let e = one(parse("ghl-marketplace", "ghl-contact-tag-cancel.json", &settings));
    assert_eq!(e.kind, EventKind::Cancel);
    let e = one(parse("ghl-marketplace", "ghl-contact-tag-update.json", &settings));
    assert_eq!(e.kind, EventKind::Ignore, "none of the configured tags");
    let e = one(parse("ghl-marketplace", "ghl-contact-tag-update.json", &[]));
    assert_eq!(e.kind, EventKind::Ignore, "no tags configured");
}

#[test]
fn ghl_app_lifecycle_is_ignored_by_default() {
    for fixture in ["ghl-install.json", "ghl-uninstall.json", "ghl-plan-change.json"] {
        let e = one(parse("ghl-marketplace", fixture, &[]));
        assert_eq!(e.kind, EventKind::Ignore, "{fixture}");
        assert!(e.attributes["reason"].contains("not a VPS subscription"), "{fixture}: {:?}", e.attributes);
    }
    assert!(matches!(
        rejection(parse("ghl-marketplace", "ghl-install.json", &[("app_events", "maybe")])),
        Rejection::BadSetting(_)
    ));
}

#[test]
fn ghl_app_install_uninstall_and_plan_change_as_subscriptions() {
    let s = &[("app_events", "subscription")];
    let e = one(parse("ghl-marketplace", "ghl-install.json", s));
    assert_eq!((e.kind, e.plan_key.as_deref()), (EventKind::Subscribe, Some("66a0419a0dffa47fb5f8b22f")));
    assert_eq!(e.subscription_id.as_deref(), Some("LOC7hQm2Xc9uVb1Nn0Pa"));
    let e = one(parse("ghl-marketplace", "ghl-uninstall.json", s));
    assert_eq!(e.kind, EventKind::Cancel);
    let e = one(parse("ghl-marketplace", "ghl-plan-change.json", s));
    assert_eq!((e.kind, e.plan_key.as_deref()), (EventKind::ChangePlan, Some("66a0419a0dffa47fb5f8b230")));
}

#[test]
fn ghl_marketplace_unknown_type_is_ignored_and_bad_bodies_are_typed_errors() {
    let e = one(parse("ghl-marketplace", "ghl-price-create.json", &[]));
    assert_eq!(e.kind, EventKind::Ignore);
    assert!(e.attributes["reason"].contains("PriceCreate"));
    assert_eq!(
        rejection(parse("ghl-marketplace", "ghl-order-missing-id.json", &[])),
        Rejection::MissingField("_id".into())
    );
    assert_eq!(
        rejection(parse("ghl-marketplace", "ghl-order-wrong-type.json", &[])),
        Rejection::WrongType { field: "items".into(), expected: "array".into() }
    );
    assert!(matches!(rejection(parse("ghl-marketplace", "not-json.txt", &[])), Rejection::Malformed(_)));
}

// ---- stripe-billing ----

#[test]
fn stripe_subscription_lifecycle() {
    let e = one(parse("stripe-billing", "stripe-subscription-created.json", &[]));
    assert_eq!(e.kind, EventKind::Subscribe);
    assert_eq!(e.subscription_id.as_deref(), Some("sub_1Q0aSupportPlan01"));
    assert_eq!(e.customer.id, "cus_Rz1234567890ab");
    assert_eq!(e.plan_key.as_deref(), Some("price_1Q0aMonthly0001"));
    assert_eq!(e.source_event_id.as_deref(), Some("evt_1Q0aSubCreated001"));
    assert_eq!(e.occurred_at.map(|t| t.timestamp()), Some(1772460320));
    assert_eq!(e.attributes["current_period_end"], "1775138720");
    assert_eq!(e.attributes["metadata.order_id"], "upg_000917");
    for (fixture, kind) in [
        ("stripe-subscription-created-incomplete.json", EventKind::Ignore),
        ("stripe-subscription-updated-past-due.json", EventKind::Suspend),
        ("stripe-subscription-updated-active.json", EventKind::Resume),
        ("stripe-subscription-updated-plan.json", EventKind::ChangePlan),
        ("stripe-subscription-deleted.json", EventKind::Cancel),
        ("stripe-invoice-paid.json", EventKind::Resume),
        ("stripe-invoice-payment-failed.json", EventKind::Suspend),
        ("stripe-checkout-session-completed.json", EventKind::Ignore),
    ] {
        let e = one(parse("stripe-billing", fixture, &[]));
        assert_eq!(e.kind, kind, "{fixture}: {e:#?}");
    }
    let e = one(parse("stripe-billing", "stripe-subscription-updated-plan.json", &[]));
    assert_eq!(e.plan_key.as_deref(), Some("vps-large"), "lookup_key wins over the price id");
}

#[test]
fn stripe_both_field_layouts() {
    // Invoices: parent.subscription_details.subscription (new) and subscription (old).
    let new = one(parse("stripe-billing", "stripe-invoice-paid.json", &[]));
    let old = one(parse("stripe-billing", "stripe-invoice-paid-legacy.json", &[]));
    assert_eq!(new.subscription_id.as_deref(), Some("sub_1Q0aSupportPlan01"));
    assert_eq!(old.subscription_id.as_deref(), Some("sub_1Q0aSupportPlan01"));
    assert_eq!(old.customer.email, "dana@example.com");
    // Subscriptions: items[].current_period_end (new) and current_period_end + plan (old).
    let e = one(parse("stripe-billing", "stripe-subscription-updated-legacy.json", &[]));
    assert_eq!(e.kind, EventKind::Ignore, "unpaid after past_due: still suspended");
    assert_eq!(e.attributes["current_period_end"], "1775138720");
    assert_eq!(e.plan_key.as_deref(), Some("price_1Q0aMonthly0001"));
    // Settings.
    let e =
        one(parse("stripe-billing", "stripe-invoice-payment-failed.json", &[("suspend_on_payment_failed", "false")]));
    assert_eq!(e.kind, EventKind::Ignore);
    let e = one(parse("stripe-billing", "stripe-subscription-created.json", &[("plan_from", "metadata:order_id")]));
    assert_eq!(e.plan_key.as_deref(), Some("upg_000917"));
}

#[test]
fn stripe_missing_fields_and_wrong_types_are_typed_errors() {
    assert_eq!(rejection(parse("stripe-billing", "stripe-missing-id.json", &[])), Rejection::MissingField("id".into()));
    assert_eq!(
        rejection(parse("stripe-billing", "stripe-wrong-type.json", &[])),
        Rejection::WrongType { field: "created".into(), expected: "integer".into() }
    );
    assert_eq!(
        rejection(parse("stripe-billing", "stripe-subscription-missing-customer.json", &[])),
        Rejection::MissingField("data.object.customer".into())
    );
    assert!(matches!(rejection(parse("stripe-billing", "not-json.txt", &[])), Rejection::Malformed(_)));
}

// ---- generic-json ----

const GENERIC: &[(&str, &str)] = &[
    ("event_field", "kind"),
    ("map.activated", "subscribe"),
    ("map.suspended", "suspend"),
    ("map.resumed", "resume"),
    ("map.plan_changed", "change_plan"),
    ("subscription_field", "contract.id"),
    ("customer_id_field", "account.id"),
    ("customer_name_field", "account.name"),
    ("customer_email_field", "account.mail"),
    ("plan_field", "contract.product.sku"),
    ("occurred_at_field", "at"),
    ("attribute.region", "region"),
    ("required", "customer_id_field,subscription_field"),
];

#[test]
fn generic_json_maps_configured_fields() {
    let e = one(parse("generic-json", "generic-subscribe.json", GENERIC));
    assert_eq!(e.kind, EventKind::Subscribe);
    assert_eq!(e.subscription_id.as_deref(), Some("CTR-9"));
    assert_eq!((e.customer.id.as_str(), e.customer.name.as_str()), ("ACC-77", "Lee Chen"));
    assert_eq!(e.customer.email, "lee@example.com");
    assert_eq!(e.plan_key.as_deref(), Some("vps-small"));
    assert_eq!(e.source_event_id.as_deref(), Some("gen-evt-1"));
    assert_eq!(e.attributes["region"], "eu");
    assert!(e.occurred_at.is_some());
    // "terminated" is a common word for cancel; the timestamp may be Unix seconds.
    let e = one(parse("generic-json", "generic-cancel.json", GENERIC));
    assert_eq!(e.kind, EventKind::Cancel);
    assert_eq!(e.occurred_at.map(|t| t.timestamp()), Some(1772460311));
    let e = one(parse("generic-json", "generic-unknown.json", GENERIC));
    assert_eq!(e.kind, EventKind::Ignore);
    assert!(e.attributes["reason"].contains("invoice_sent"));
}

#[test]
fn generic_json_batches() {
    let mut settings = GENERIC.to_vec();
    settings.push(("events_field", "events"));
    let events = parse("generic-json", "generic-batch.json", &settings).expect("batch");
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Subscribe, EventKind::Suspend, EventKind::Resume, EventKind::ChangePlan]);
    assert_eq!(events[3].plan_key.as_deref(), Some("vps-large"));
}

#[test]
fn generic_json_missing_fields_and_wrong_types_are_typed_errors() {
    assert_eq!(
        rejection(parse("generic-json", "generic-missing.json", GENERIC)),
        Rejection::MissingField("contract.id".into())
    );
    assert_eq!(
        rejection(parse("generic-json", "generic-wrong-type.json", GENERIC)),
        Rejection::WrongType { field: "account.id".into(), expected: "string or integer".into() }
    );
    assert_eq!(
        rejection(parse("generic-json", "generic-subscribe.json", &[])),
        Rejection::MissingField("event".into())
    );
}

#[test]
fn a_mapper_is_not_a_source_and_unknown_plugins_are_named() {
    let r = runtime().parse_blocking("plan-table", &super::support::request("t", "/", b"{}".to_vec(), &[]));
    assert!(matches!(r, Err(PluginError::WrongKind { .. })), "{r:?}");
    let r = runtime().parse_blocking("nope", &super::support::request("t", "/", b"{}".to_vec(), &[]));
    let err = r.unwrap_err().to_string();
    assert!(err.contains("ghl-workflow"), "the error lists the loaded plugins: {err}");
}

//! The `subscription` and `customer` tables, and the one transaction that writes a billing
//! decision's rows (customer, subscription, new VPS, states, operations, the inbox mark).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::db::Store;

use super::operation::{NewOperation, OpState, OperationId};
use super::template::Template;
use super::vps::{Spec, VPS_FIELDS, Vps, VpsId, VpsState};
use super::webhook_event::InboxKey;
use crate::billing::BillingEvent;

id_type!(
    /// The key of a `subscription` row: [`stable_key`] of its source and external id.
    SubscriptionId
);

impl SubscriptionId {
    /// The key of subscription `external_id` of `source`.
    pub fn of(source: &str, external_id: &str) -> Self {
        Self::new(stable_key(source, external_id))
    }
}

/// A new random record key.
pub fn new_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A stable key for `(source, external id)` pairs (customers, subscriptions).
pub fn stable_key(source: &str, external_id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(format!("{source}\u{0}{external_id}").as_bytes())[..16])
}

/// The stored state of one subscription, as [`decide`] needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionView {
    /// `None` for a subscription seen for the first time.
    pub status: Option<String>,
    pub last_event_at: Option<DateTime<Utc>>,
    pub plan_key: Option<String>,
    /// Its VPS records that are not deleted.
    pub live: Vec<Vps>,
}

/// A VPS to create with a decision.
#[derive(Debug, Clone)]
pub struct NewVps {
    pub id: VpsId,
    pub name: String,
    /// The template row to store with it (built where and from what the order chose).
    pub template: Template,
    /// What the order chose and where it came from (`choices` on the row), when it chose.
    pub choices: Option<Value>,
}

/// Everything one decision writes, committed together.
#[derive(Debug, Clone, Default)]
pub struct DecisionWrite {
    pub source: String,
    pub subscription_key: Option<SubscriptionId>,
    pub subscription_external_id: Option<String>,
    pub subscription_status: Option<&'static str>,
    pub plan_key: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub new_vps: Vec<NewVps>,
    pub vps_states: Vec<(VpsId, VpsState, Option<DateTime<Utc>>)>,
    pub operations: Vec<NewOperation>,
    /// Operations made unnecessary (a pending deletion when the customer resumes).
    pub cancel_pending_deletes_of: Vec<VpsId>,
    /// The inbox row (key, event fingerprint) this decision applies: marked applied in the same
    /// transaction, so start-up recovery never applies the event twice.
    pub inbox: Option<(InboxKey, String)>,
    /// The activity-log entry telling what the decision did, appended in the same transaction.
    pub activity: Option<DecisionActivity>,
}

/// The activity-log entry of a decision (level `info`).
#[derive(Debug, Clone)]
pub struct DecisionActivity {
    pub actor: String,
    pub subject: String,
    pub message: String,
    pub data: Value,
}

impl Store {
    /// The state of a subscription (and its live VPS) for [`super::decide`].
    pub async fn subscription_view(&self, key: &SubscriptionId) -> anyhow::Result<SubscriptionView> {
        #[derive(serde::Deserialize)]
        struct Row {
            status: Option<String>,
            last_event_at: Option<DateTime<Utc>>,
            plan_key: Option<String>,
        }
        let rows: Vec<Row> = self
            .query_one(
                "SELECT status, last_event_at, plan_key FROM type::record('subscription', $key)",
                json!({ "key": key }),
                0,
            )
            .await?;
        let live: Vec<Vps> = self
            .query_one(
                &format!("SELECT {VPS_FIELDS} FROM vps WHERE subscription = $key AND state != 'deleted'"),
                json!({ "key": key }),
                0,
            )
            .await?;
        let row = rows.into_iter().next();
        Ok(SubscriptionView {
            status: row.as_ref().and_then(|r| r.status.clone()),
            last_event_at: row.as_ref().and_then(|r| r.last_event_at),
            plan_key: row.and_then(|r| r.plan_key),
            live,
        })
    }

    /// Live subscriptions of a customer (for a cancel that names only the customer).
    pub async fn live_subscriptions_of_customer(&self, source: &str, customer_id: &str) -> anyhow::Result<Vec<String>> {
        self.query_one(
            "SELECT VALUE external_id FROM subscription WHERE source = $source AND customer = $customer AND status != 'cancelled'",
            json!({ "source": source, "customer": stable_key(source, customer_id) }),
            0,
        )
        .await
    }

    /// A subscription's status (`None` when there is no such subscription or it has none).
    pub async fn subscription_status(&self, key: &SubscriptionId) -> anyhow::Result<Option<String>> {
        let rows: Vec<Option<String>> = self
            .query_one("SELECT VALUE status FROM type::record('subscription', $key)", json!({ "key": key }), 0)
            .await?;
        Ok(rows.into_iter().next().flatten())
    }

    /// Upserts the customer and the subscription, and writes the decision's VPS and
    /// operation rows, all in one transaction.
    pub async fn write_decision(&self, event: &BillingEvent, w: &DecisionWrite) -> anyhow::Result<Vec<OperationId>> {
        let customer_key = stable_key(&w.source, &event.customer.id);
        let ops: Vec<Value> = w
            .operations
            .iter()
            .map(|o| {
                json!({
                    "key": new_key(), "vps": o.vps, "kind": o.kind, "params": o.params,
                    "state": if o.held { OpState::Held } else { OpState::Queued },
                    "requested_by": o.requested_by,
                    "not_before": o.not_before.map(|t| t.to_rfc3339()),
                })
            })
            .collect();
        let op_ids: Vec<OperationId> = ops.iter().filter_map(|o| o["key"].as_str().map(OperationId::from)).collect();
        let new_vps: Vec<Value> = w
            .new_vps
            .iter()
            .map(|v| {
                json!({
                    "key": v.id, "name": v.name, "template": v.template.name,
                    "spec": Spec::from(&v.template), "template_row": v.template, "choices": v.choices,
                })
            })
            .collect();
        let states: Vec<Value> = w
            .vps_states
            .iter()
            .map(|(id, s, after)| json!({ "key": id, "state": s, "delete_after": after.map(|t| t.to_rfc3339()) }))
            .collect();
        let sql = "BEGIN TRANSACTION;
            IF $customer_id != '' {
                UPSERT type::record('customer', $customer_key) MERGE {
                    source: $source, external_id: $customer_id, name: $customer_name, email: $customer_email
                };
            };
            IF $sub_key {
                UPSERT type::record('subscription', $sub_key) MERGE {
                    source: $source, external_id: $sub_external, customer: $customer_key, updated_at: time::now()
                };
                IF $sub_status { UPDATE type::record('subscription', $sub_key) SET status = $sub_status; };
                IF $plan_key { UPDATE type::record('subscription', $sub_key) SET plan_key = $plan_key; };
                IF $occurred_at {
                    UPDATE type::record('subscription', $sub_key) SET last_event_at = <datetime>$occurred_at;
                };
                UPDATE type::record('subscription', $sub_key) SET created_at = created_at OR time::now();
            };
            FOR $v IN $new_vps {
                CREATE type::record('vps', $v.key) CONTENT {
                    name: $v.name, state: 'pending', subscription: $sub_key, source: $source,
                    customer: $customer_key, customer_id: $customer_id, customer_name: $customer_name,
                    customer_email: $customer_email, template: $v.template, spec: $v.spec,
                    template_row: $v.template_row, choices: $v.choices, ips: [], created_at: time::now(),
                    updated_at: time::now()
                };
            };
            FOR $s IN $states {
                UPDATE type::record('vps', $s.key) SET state = $s.state, updated_at = time::now(),
                    delete_after = IF $s.delete_after { <datetime>$s.delete_after } ELSE { NONE };
            };
            FOR $c IN $cancel_deletes {
                UPDATE operation SET state = 'cancelled', last_error = 'made unnecessary by a later event',
                    updated_at = time::now()
                WHERE vps = $c AND kind = 'delete' AND state IN ['queued', 'held'];
            };
            FOR $o IN $ops {
                CREATE type::record('operation', $o.key) CONTENT {
                    vps: $o.vps, kind: $o.kind, params: $o.params, state: $o.state, attempts: 0,
                    idempotency_key: $o.key, requested_by: $o.requested_by,
                    next_attempt_at: IF $o.not_before { <datetime>$o.not_before } ELSE { time::now() },
                    created_at: time::now(), updated_at: time::now()
                };
            };
            IF $inbox_key {
                UPDATE type::record('webhook_event', $inbox_key) SET applied = array::union(applied OR [], [$inbox_fp]);
            };
            IF $activity {
                CREATE activity CONTENT { at: time::now(), level: 'info', actor: $activity.actor,
                    subject: $activity.subject, message: $activity.message, data: $activity.data };
            };
            COMMIT TRANSACTION;";
        let (inbox_key, inbox_fp) = w.inbox.clone().unzip();
        let written = self
            .execute(
                sql,
                json!({
                    "source": w.source, "customer_key": customer_key, "customer_id": event.customer.id,
                    "customer_name": event.customer.name, "customer_email": event.customer.email,
                    "sub_key": w.subscription_key, "sub_external": w.subscription_external_id,
                    "sub_status": w.subscription_status, "plan_key": w.plan_key,
                    "occurred_at": w.occurred_at.map(|t| t.to_rfc3339()),
                    "new_vps": new_vps, "states": states, "ops": ops, "cancel_deletes": w.cancel_pending_deletes_of,
                    "inbox_key": inbox_key, "inbox_fp": inbox_fp,
                    "activity": w.activity.as_ref().map(|a| json!({
                        "actor": a.actor, "subject": a.subject, "message": a.message, "data": a.data,
                    })),
                }),
            )
            .await;
        // VPSs that go give their room back; and a write whose outcome is not known (a
        // server that stopped answering) may have placed a VPS: placement sums the store again.
        if written.is_err() || !w.vps_states.is_empty() {
            self.room_moved();
        }
        written?;
        Ok(op_ids)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::billing::{Customer, EventKind};
    use crate::db::models::activity::Level;
    use crate::db::models::operation::OpKind;
    use crate::db::models::vps::VpsPatch;

    async fn store() -> Store {
        Store::in_memory().await
    }

    fn template() -> Template {
        Template {
            name: "vps-small".into(),
            az_id: "az".into(),
            image_id: "img".into(),
            storage_tag_id: "tag".into(),
            vpc_id: "vpc".into(),
            subnet_id: "sn".into(),
            ..Template::default()
        }
    }

    #[tokio::test]
    async fn a_decision_is_written_and_read_back() {
        let s = store().await;
        let install = s.install_id().await.expect("install id");
        assert_eq!(s.install_id().await.expect("stable"), install);
        s.create("template", serde_json::to_value(template()).expect("json")).await.expect("template");
        s.create("plan_mapping", json!({ "source": "ghl", "plan_key": "starter", "template": "vps-small" }))
            .await
            .expect("mapping");
        let t = s.template_for_plan("ghl", "starter").await.expect("query").expect("mapped");
        assert_eq!(t.cores, 1);
        assert!(s.template_for_plan("ghl", "nope").await.expect("query").is_none());

        let event = BillingEvent {
            kind: EventKind::Subscribe,
            source_event_id: None,
            occurred_at: Some("2026-01-01T00:00:00Z".parse().expect("time")),
            subscription_id: Some("sub1".into()),
            customer: Customer { id: "c1".into(), name: "Dana".into(), email: "d@example.com".into() },
            plan_key: Some("starter".into()),
            attributes: BTreeMap::new(),
            choices: Default::default(),
        };
        let sub = SubscriptionId::of("ghl", "sub1");
        let vps_id = VpsId::new(new_key());
        let w = DecisionWrite {
            source: "ghl".into(),
            subscription_key: Some(sub.clone()),
            subscription_external_id: Some("sub1".into()),
            subscription_status: Some("active"),
            plan_key: Some("starter".into()),
            occurred_at: event.occurred_at,
            new_vps: vec![NewVps { id: vps_id.clone(), name: "vps-x".into(), template: t, choices: None }],
            operations: vec![NewOperation {
                vps: vps_id.clone(),
                kind: OpKind::Create,
                params: json!({}),
                requested_by: "webhook:1".into(),
                not_before: None,
                held: false,
            }],
            ..Default::default()
        };
        let ops = s.write_decision(&event, &w).await.expect("written");
        assert_eq!(ops.len(), 1);
        let view = s.subscription_view(&sub).await.expect("view");
        assert_eq!(view.status.as_deref(), Some("active"));
        assert_eq!(view.plan_key.as_deref(), Some("starter"));
        assert_eq!(view.last_event_at, event.occurred_at);
        assert_eq!(view.live.len(), 1);
        assert_eq!(view.live[0].id, vps_id);
        assert_eq!(view.live[0].state, VpsState::Pending);
        let op = s.next_operation(&vps_id).await.expect("query").expect("queued op");
        assert_eq!(op.kind, OpKind::Create);
        assert_eq!(op.id, ops[0]);
        let due = s.vps_with_due_operations(Utc::now() + chrono::Duration::seconds(1), 100).await.expect("due");
        assert_eq!(due, vec![vps_id.clone()]);
        assert_eq!(s.vps_template(&vps_id).await.expect("q").expect("template").name, "vps-small");
        let note = (Level::Info, "create succeeded".to_string(), json!({}));
        s.finish_operation(&op.id, OpState::Succeeded, None, &vps_id, &VpsPatch::state(VpsState::Active), note)
            .await
            .expect("finish");
        assert!(s.next_operation(&vps_id).await.expect("query").is_none());
        assert_eq!(s.vps(&vps_id).await.expect("q").expect("vps").state, VpsState::Active);
        assert_eq!(s.live_subscriptions_of_customer("ghl", "c1").await.expect("q"), vec!["sub1".to_string()]);
        s.record_activity(Level::Info, "system", Some(vps_id.as_str()), "hello", json!({})).await.expect("activity");
        assert_eq!(s.destructive_ops_last_hour().await.expect("count"), 0);
    }
}

//! Lifecycle queries: reading a subscription's state, writing a decision's rows in one
//! transaction, and the operation queue the VPS actors work from.
//!
//! Record keys are plain strings chosen by vmauto (`type::record('vps', $key)`); every
//! SELECT projects `record::id(id) AS id` so rows come back with that key as `id`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{OpKind, OpState, Operation, Spec, SubscriptionView, Template, Vps, VpsState};
use crate::billing::BillingEvent;
use crate::db::Store;

/// A new random record key.
pub fn new_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A stable key for `(source, external id)` pairs (customers, subscriptions).
pub fn stable_key(source: &str, external_id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(format!("{source}\u{0}{external_id}").as_bytes())[..16])
}

/// One operation to write with a decision.
#[derive(Debug, Clone)]
pub struct NewOperation {
    pub vps: String,
    pub kind: OpKind,
    pub params: Value,
    pub requested_by: String,
    /// Start no earlier than this (a deletion after the grace period).
    pub not_before: Option<DateTime<Utc>>,
    pub held: bool,
}

/// A VPS to create with a decision.
#[derive(Debug, Clone)]
pub struct NewVps {
    pub id: String,
    pub name: String,
    pub template: Template,
}

/// Everything one decision writes, committed together.
#[derive(Debug, Clone, Default)]
pub struct DecisionWrite {
    pub source: String,
    pub subscription_key: Option<String>,
    pub subscription_external_id: Option<String>,
    pub subscription_status: Option<&'static str>,
    pub plan_key: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub new_vps: Vec<NewVps>,
    pub vps_states: Vec<(String, VpsState, Option<DateTime<Utc>>)>,
    pub operations: Vec<NewOperation>,
    /// Operations made unnecessary (a pending deletion when the customer resumes).
    pub cancel_pending_deletes_of: Vec<String>,
    /// The inbox row (key, event fingerprint) this decision applies: marked applied in the same
    /// transaction, so start-up recovery never applies the event twice.
    pub inbox: Option<(String, String)>,
}

/// How much an activity row matters: one spelling everywhere, so the activity filter finds
/// every row of a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    pub const ALL: [Self; 4] = [Self::Info, Self::Warning, Self::Error, Self::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }

    /// Reads a level as a filter or a row gives it (`warn` is the old spelling of `warning`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "info" => Some(Self::Info),
            "warn" | "warning" => Some(Self::Warning),
            "error" => Some(Self::Error),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

const VPS_FIELDS: &str = "record::id(id) AS id, state, subscription, template, spec, server_id, delete_after";
const OP_FIELDS: &str =
    "record::id(id) AS id, vps, kind, state, params, attempts, attempt_seq OR 0 AS attempt_seq, task_id, next_attempt_at,
     last_error, requested_by";

impl Store {
    /// The state of a subscription (and its live VPS) for [`super::decide`].
    pub async fn subscription_view(&self, key: &str) -> anyhow::Result<SubscriptionView> {
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

    /// The enabled template a plan maps to for a source, if any.
    pub async fn template_for_plan(&self, source: &str, plan_key: &str) -> anyhow::Result<Option<Template>> {
        let rows: Vec<Template> = self
            .query_one(
                "LET $name = (SELECT VALUE template FROM plan_mapping WHERE source = $source AND plan_key = $plan LIMIT 1)[0];
                 SELECT * FROM template WHERE name = $name AND enabled = true LIMIT 1",
                json!({ "source": source, "plan": plan_key }),
                1,
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// A template by name.
    pub async fn template_by_name(&self, name: &str) -> anyhow::Result<Option<Template>> {
        let rows: Vec<Template> =
            self.query_one("SELECT * FROM template WHERE name = $name LIMIT 1", json!({ "name": name }), 0).await?;
        Ok(rows.into_iter().next())
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

    /// Upserts the customer and the subscription, and writes the decision's VPS and
    /// operation rows, all in one transaction.
    pub async fn write_decision(&self, event: &BillingEvent, w: &DecisionWrite) -> anyhow::Result<Vec<String>> {
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
        let op_ids: Vec<String> = ops.iter().filter_map(|o| o["key"].as_str().map(str::to_owned)).collect();
        let new_vps: Vec<Value> = w
            .new_vps
            .iter()
            .map(|v| {
                json!({
                    "key": v.id, "name": v.name, "template": v.template.name,
                    "spec": Spec::from(&v.template), "template_row": v.template,
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
                    template_row: $v.template_row, ips: [], created_at: time::now(), updated_at: time::now()
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
            COMMIT TRANSACTION;";
        let (inbox_key, inbox_fp) = w.inbox.clone().unzip();
        self.execute(
            sql,
            json!({
                "source": w.source, "customer_key": customer_key, "customer_id": event.customer.id,
                "customer_name": event.customer.name, "customer_email": event.customer.email,
                "sub_key": w.subscription_key, "sub_external": w.subscription_external_id,
                "sub_status": w.subscription_status, "plan_key": w.plan_key,
                "occurred_at": w.occurred_at.map(|t| t.to_rfc3339()),
                "new_vps": new_vps, "states": states, "ops": ops, "cancel_deletes": w.cancel_pending_deletes_of,
                "inbox_key": inbox_key, "inbox_fp": inbox_fp,
            }),
        )
        .await?;
        Ok(op_ids)
    }

    /// VPS ids with an operation that is not finished and is due (start-up recovery and the
    /// scheduler's wake-ups).
    pub async fn vps_with_due_operations(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
        let ids: Vec<Value> = self
            .query_one(
                "SELECT VALUE vps FROM operation
                 WHERE state IN ['queued', 'running', 'waiting_task'] AND next_attempt_at <= <datetime>$now",
                json!({ "now": now.to_rfc3339() }),
                0,
            )
            .await?;
        let mut ids: Vec<String> = ids.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The next unfinished operation of a VPS, oldest first.
    pub async fn next_operation(&self, vps: &str) -> anyhow::Result<Option<Operation>> {
        let rows: Vec<Operation> = self
            .query_one(
                &format!(
                    "SELECT {OP_FIELDS}, created_at FROM operation
                     WHERE vps = $vps AND state IN ['queued', 'running', 'waiting_task']
                     ORDER BY created_at ASC LIMIT 1"
                ),
                json!({ "vps": vps }),
                0,
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    pub async fn vps(&self, id: &str) -> anyhow::Result<Option<Vps>> {
        let rows: Vec<Vps> = self
            .query_one(&format!("SELECT {VPS_FIELDS} FROM type::record('vps', $id)"), json!({ "id": id }), 0)
            .await?;
        Ok(rows.into_iter().next())
    }

    /// The template a VPS was created from, as stored with it.
    pub async fn vps_template(&self, id: &str) -> anyhow::Result<Option<Template>> {
        let rows: Vec<Template> =
            self.query_one("SELECT VALUE template_row FROM type::record('vps', $id)", json!({ "id": id }), 0).await?;
        Ok(rows.into_iter().next())
    }

    /// Whether a rebuild of a VPS made from `row` (the template as stored with the VPS) may
    /// use `image_id`: the row allows it, or the template as it is now does (an admin may
    /// have allowed more images since). Answers the error to show when it may not.
    pub async fn check_rebuild_image(&self, row: &Template, image_id: &str) -> anyhow::Result<Result<(), String>> {
        if row.allows_image(image_id)
            || self.template_by_name(&row.name).await?.is_some_and(|c| c.allows_image(image_id))
        {
            return Ok(Ok(()));
        }
        Ok(Err(format!(
            "image {image_id} is not allowed for template {}: choose {} or one of its allowed images {:?}",
            row.name, row.image_id, row.allowed_images
        )))
    }

    /// Updates an operation's progress fields (only those given).
    pub async fn update_operation(&self, id: &str, patch: Value) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('operation', $id) MERGE $patch;
             UPDATE type::record('operation', $id) SET updated_at = time::now();",
            json!({ "id": id, "patch": patch }),
        )
        .await
    }

    /// Schedules a retry: the next attempt time; the failed attempt's task is forgotten, so the
    /// next attempt looks at SCP afresh instead of waiting on a task that has ended.
    pub async fn retry_operation_at(&self, id: &str, at: DateTime<Utc>, error: &str) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('operation', $id) SET state = 'queued', next_attempt_at = <datetime>$at,
                last_error = $error, task_id = NONE, updated_at = time::now()",
            json!({ "id": id, "at": at.to_rfc3339(), "error": error }),
        )
        .await
    }

    /// Updates a VPS's fields (only those given).
    pub async fn update_vps(&self, id: &str, patch: Value) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('vps', $id) MERGE $patch; UPDATE type::record('vps', $id) SET updated_at = time::now();",
            json!({ "id": id, "patch": patch }),
        )
        .await
    }

    /// Marks the finish of an operation and sets the VPS state in one transaction.
    pub async fn finish_operation(
        &self,
        op: &str,
        state: OpState,
        error: Option<&str>,
        vps: &str,
        vps_patch: Value,
    ) -> anyhow::Result<()> {
        self.execute(
            "BEGIN TRANSACTION;
             UPDATE type::record('operation', $op) SET state = $state, last_error = $error,
                finished_at = time::now(), updated_at = time::now();
             UPDATE type::record('vps', $vps) MERGE $patch;
             UPDATE type::record('vps', $vps) SET updated_at = time::now();
             COMMIT TRANSACTION;",
            json!({ "op": op, "state": state, "error": error, "vps": vps, "patch": vps_patch }),
        )
        .await
    }

    /// Queues an operation asked for outside the billing flow: by an admin (`requested_by` =
    /// `admin:<user>`), an upgrade payment (`stripe:<session>`), … `key` makes the request
    /// idempotent: a second call with the same key queues nothing and answers the first id.
    /// The caller then activates the VPS (`registry::Activate`).
    pub async fn enqueue_operation(
        &self,
        vps: &str,
        kind: OpKind,
        params: Value,
        requested_by: &str,
        key: Option<&str>,
    ) -> anyhow::Result<String> {
        let key = key.map_or_else(new_key, str::to_owned);
        self.execute(
            "BEGIN TRANSACTION;
             IF (SELECT VALUE id FROM type::record('vps', $vps))[0] == NONE {
                 THROW 'no such VPS: ' + $vps;
             };
             IF (SELECT VALUE id FROM type::record('operation', $key))[0] == NONE {
                 CREATE type::record('operation', $key) CONTENT {
                     vps: $vps, kind: $kind, params: $params, state: 'queued', attempts: 0,
                     idempotency_key: $key, requested_by: $requested_by, next_attempt_at: time::now(),
                     created_at: time::now(), updated_at: time::now()
                 };
             };
             COMMIT TRANSACTION;",
            json!({ "vps": vps, "kind": kind.as_str(), "params": params, "requested_by": requested_by, "key": key }),
        )
        .await
        // The store's words for the THROW above, turned into a type here, where it is thrown.
        .map_err(|e| {
            if format!("{e:#}").contains("no such VPS") { crate::error::NotFound::new("VPS", vps).into() } else { e }
        })?;
        Ok(key)
    }

    /// Destructive operations requested in the last hour (the blast-radius guard's count).
    pub async fn destructive_ops_last_hour(&self) -> anyhow::Result<u64> {
        let n: Vec<u64> = self
            .query_one(
                "SELECT VALUE count() FROM operation
                 WHERE kind IN ['suspend', 'delete'] AND created_at > time::now() - 1h
                   AND !string::starts_with(requested_by OR '', 'admin') GROUP ALL",
                json!({}),
                0,
            )
            .await?;
        Ok(n.first().copied().unwrap_or(0))
    }

    /// Appends to the activity log.
    pub async fn record_activity(
        &self,
        level: Level,
        actor: &str,
        subject: Option<&str>,
        message: &str,
        data: Value,
    ) -> anyhow::Result<()> {
        self.execute(
            "CREATE activity CONTENT { at: time::now(), level: $level, actor: $actor, subject: $subject,
                message: $message, data: $data }",
            json!({ "level": level.as_str(), "actor": actor, "subject": subject, "message": message, "data": data }),
        )
        .await
    }

    /// The appliance's install id (part of every ownership tag), made on first use.
    pub async fn install_id(&self) -> anyhow::Result<String> {
        let ids: Vec<String> = self
            .query_one(
                "IF (SELECT VALUE value FROM setting:install_id)[0] == NONE {
                    UPSERT setting:install_id SET value = $fresh;
                 };
                 SELECT VALUE value FROM setting:install_id",
                json!({ "fresh": &new_key()[..12] }),
                1,
            )
            .await?;
        ids.into_iter().next().ok_or_else(|| anyhow::anyhow!("no install id"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::billing::{Customer, EventKind};
    use crate::config::Config;

    async fn store() -> Store {
        let mut c = Config::default();
        c.database.url = "mem://".into();
        Store::open(&c).await.expect("store")
    }

    fn template() -> Template {
        Template {
            name: "vps-small".into(),
            description: String::new(),
            az_id: "az".into(),
            image_id: "img".into(),
            storage_tag_id: "tag".into(),
            vpc_id: "vpc".into(),
            subnet_id: "sn".into(),
            cores: 1,
            memory_mb: 1024,
            disk_gb: 20,
            name_pattern: "vps-{id}".into(),
            enabled: true,
            allowed_images: Vec::new(),
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
        };
        let sub = stable_key("ghl", "sub1");
        let vps_id = new_key();
        let w = DecisionWrite {
            source: "ghl".into(),
            subscription_key: Some(sub.clone()),
            subscription_external_id: Some("sub1".into()),
            subscription_status: Some("active"),
            plan_key: Some("starter".into()),
            occurred_at: event.occurred_at,
            new_vps: vec![NewVps { id: vps_id.clone(), name: "vps-x".into(), template: t }],
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
        let due = s.vps_with_due_operations(Utc::now() + chrono::Duration::seconds(1)).await.expect("due");
        assert_eq!(due, vec![vps_id.clone()]);
        assert_eq!(s.vps_template(&vps_id).await.expect("q").expect("template").name, "vps-small");
        s.finish_operation(&op.id, OpState::Succeeded, None, &vps_id, json!({ "state": "active" }))
            .await
            .expect("finish");
        assert!(s.next_operation(&vps_id).await.expect("query").is_none());
        assert_eq!(s.vps(&vps_id).await.expect("q").expect("vps").state, VpsState::Active);
        assert_eq!(s.live_subscriptions_of_customer("ghl", "c1").await.expect("q"), vec!["sub1".to_string()]);
        s.record_activity(Level::Info, "system", Some(&vps_id), "hello", json!({})).await.expect("activity");
        assert_eq!(s.destructive_ops_last_hour().await.expect("count"), 0);
    }
}

//! VPSs: the list and search, one VPS and its timeline, and what admins ask of a VPS
//! (actions, retries, held operations, manual creation).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::actors::registry::{Activate, VpsRegistry};
use crate::db::Store;
use crate::lifecycle::Level;
use crate::lifecycle::new_key;
use crate::lifecycle::{OpKind, Spec};

use super::*;

/// Fields of a VPS row in lists.
const VPS_ROW: &str = "record::id(id) AS id, name, state, template, source, customer_name, customer_email,
    customer_id, subscription, vm_name, server_id, ips, spec, image_id OR template_row.image_id AS image_id,
    template_row.image_id AS template_image, template_row.allowed_images OR [] AS allowed_images,
    <string>created_at AS created_at,
    IF updated_at { <string>updated_at } AS updated_at";

/// Filters of the VPS list (all optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VpsQuery {
    /// Matches customer name or email, subscription, IP, VM name or id (case-insensitive).
    #[serde(default)]
    pub q: String,
    /// A state, `live` (anything not deleted) or `past` (deleted).
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub template: String,
    #[serde(default)]
    pub source: String,
    /// `created` (default), `name`, `state`, `customer`; prefix `-` for descending… the
    /// default is newest first.
    #[serde(default)]
    pub sort: String,
    #[serde(default)]
    pub page: u64,
}

impl VpsQuery {
    fn where_clause(&self) -> (String, Value) {
        let mut conds: Vec<&str> = Vec::new();
        match self.state.as_str() {
            "" => {}
            "live" => conds.push("state != 'deleted'"),
            "past" => conds.push("state = 'deleted'"),
            _ => conds.push("state = $state"),
        }
        if !self.template.is_empty() {
            conds.push("template = $template");
        }
        if !self.source.is_empty() {
            conds.push("source = $source");
        }
        // Every word must start a word of the VPS's search text (full-text index `vps_search`):
        // "dana 10.0.3" finds Dana's VPS with that IP.
        let words: Vec<&str> = self.q.split_whitespace().take(8).collect();
        let q = words.join(" ");
        if !q.is_empty() {
            conds.push("search @@ $q");
        }
        let clause = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
        (clause, json!({ "state": self.state, "template": self.template, "source": self.source, "q": q }))
    }

    fn order(&self) -> &'static str {
        match self.sort.as_str() {
            "created" => "created_at ASC",
            "name" => "name ASC",
            "-name" => "name DESC",
            "state" => "state ASC",
            "customer" => "customer_name ASC",
            _ => "created_at DESC",
        }
    }
}

/// One page of the VPS list.
pub async fn list_vps(store: &Store, query: &VpsQuery) -> anyhow::Result<Page<Value>> {
    let (clause, mut bindings) = query.where_clause();
    if !query.q.trim().is_empty() {
        return search_vps(store, query, &clause, bindings).await;
    }
    let total = count(store, "vps", &clause, bindings.clone()).await?;
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = query.page.clamp(1, pages);
    let start = (page - 1) * PAGE_SIZE;
    // Pages past the middle are read from the other end, so the last page costs what the
    // first does.
    let from_end = start > total / 2;
    let (order, start, limit) = if from_end {
        let limit = PAGE_SIZE.min(total - start);
        (reverse(query.order()), total - start - limit, limit)
    } else {
        (query.order().to_string(), start, PAGE_SIZE)
    };
    bindings["start"] = json!(start);
    bindings["limit"] = json!(limit);
    let mut rows: Vec<Value> = store
        .query_one(
            &format!("SELECT {VPS_ROW} FROM vps {clause} ORDER BY {order} LIMIT $limit START $start"),
            bindings,
            0,
        )
        .await?;
    if from_end {
        rows.reverse();
    }
    Ok(Page { rows, total, page, pages, capped: false })
}

/// A search: the first [`SEARCH_CAP`] matches the index yields, then sorted and paged.
async fn search_vps(store: &Store, query: &VpsQuery, clause: &str, mut bindings: Value) -> anyhow::Result<Page<Value>> {
    let mut ids: Vec<Value> = store
        .query_one(
            &format!("SELECT VALUE record::id(id) FROM vps {clause} LIMIT {}", SEARCH_CAP + 1),
            bindings.clone(),
            0,
        )
        .await?;
    let capped = ids.len() as u64 > SEARCH_CAP;
    ids.truncate(SEARCH_CAP as usize);
    let total = ids.len() as u64;
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = query.page.clamp(1, pages);
    bindings["ids"] = json!(ids);
    let rows: Vec<Value> = if ids.is_empty() {
        Vec::new()
    } else {
        store
            .query_one(
                &format!(
                    "LET $records = array::map($ids, |$k| type::record('vps', $k));
                     SELECT {VPS_ROW} FROM $records ORDER BY {} LIMIT {PAGE_SIZE} START {}",
                    query.order(),
                    (page - 1) * PAGE_SIZE
                ),
                bindings,
                1,
            )
            .await?
    };
    Ok(Page { rows, total, page, pages, capped })
}

/// `created_at DESC` → `created_at ASC` and back.
fn reverse(order: &str) -> String {
    match order.rsplit_once(' ') {
        Some((field, "DESC")) => format!("{field} ASC"),
        Some((field, _)) => format!("{field} DESC"),
        None => format!("{order} DESC"),
    }
}

/// A VPS with everything its page shows (never its sealed password).
pub async fn vps_detail(store: &Store, id: &str) -> anyhow::Result<Option<Value>> {
    let rows: Vec<Value> = store
        .query_one(
            &format!(
                "SELECT {VPS_ROW}, template_row, delete_after, IF active_at {{ <string>active_at }} AS active_at,
                    root_password != NONE AS has_password
                 FROM type::record('vps', $id)"
            ),
            json!({ "id": id }),
            0,
        )
        .await?;
    Ok(rows.into_iter().next())
}

/// The single timeline of a VPS: webhook events, decisions and admin actions (activity),
/// operations with their provider tasks, and notifications; newest first.
pub async fn vps_timeline(store: &Store, id: &str) -> anyhow::Result<Vec<Value>> {
    let sql = "SELECT <string>at AS at, 'activity' AS kind, level, actor, message, data FROM activity
                 WHERE subject = $id OR subject = 'vps:' + $id ORDER BY at DESC LIMIT 200;
               SELECT <string>created_at AS at, 'operation' AS kind, record::id(id) AS id, kind AS op, state, attempts,
                    last_error, requested_by, task_id, IF finished_at { <string>finished_at } AS finished_at, params
                 FROM operation WHERE vps = $id ORDER BY created_at DESC LIMIT 200;
               SELECT <string>created_at AS at, 'notification' AS kind, title, severity FROM notification
                 WHERE subject = $id OR subject = 'vps:' + $id ORDER BY created_at DESC LIMIT 50;";
    let mut all: Vec<Value> = Vec::new();
    for idx in 0..3 {
        let rows: Vec<Value> = store.query_one(sql, json!({ "id": id }), idx).await.unwrap_or_default();
        all.extend(rows);
    }
    // The webhooks behind the operations, with the decisions they caused.
    let keys: Vec<String> = all
        .iter()
        .filter_map(|r| r["requested_by"].as_str().and_then(|b| b.strip_prefix("webhook:")).map(str::to_owned))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for key in keys {
        if let Some(ev) = inbox_event(store, &key).await? {
            let decisions: Vec<String> = ev["outcomes"]
                .as_array()
                .map(|o| {
                    o.iter()
                        .map(|o| {
                            format!("{}: {}", o["status"].as_str().unwrap_or("?"), o["detail"].as_str().unwrap_or(""))
                        })
                        .collect()
                })
                .unwrap_or_default();
            all.push(json!({
                "at": ev["received_at"], "kind": "webhook", "id": key, "source": ev["source"], "status": ev["status"],
                "decision": decisions.join("; "),
            }));
        }
    }
    all.sort_by(|a, b| b["at"].as_str().unwrap_or_default().cmp(a["at"].as_str().unwrap_or_default()));
    Ok(all)
}

/// What an admin can ask of a VPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Power reset and a new root password.
    Reset,
    Suspend,
    Resume,
    Resize,
    Rebuild,
    Delete,
}

impl Action {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(json!(s)).ok()
    }

    fn kind(self) -> OpKind {
        match self {
            Self::Reset => OpKind::Reset,
            Self::Suspend => OpKind::Suspend,
            Self::Resume => OpKind::Resume,
            Self::Resize => OpKind::Resize,
            Self::Rebuild => OpKind::Rebuild,
            Self::Delete => OpKind::Delete,
        }
    }
}

/// Queues an admin's action on a VPS; answers the operation id.
pub async fn request_action(
    store: &Store,
    registry: &actix::Addr<VpsRegistry>,
    vps: &str,
    action: Action,
    params: Value,
    actor: &str,
) -> anyhow::Result<String> {
    let Some(detail) = vps_detail(store, vps).await? else {
        return Err(crate::error::NotFound::new("VPS", vps).into());
    };
    if detail["state"] == "deleted" {
        anyhow::bail!("this VPS is deleted; nothing can be done to it any more");
    }
    let mut params = params;
    if action == Action::Resize {
        let spec: Spec = serde_json::from_value(params.get("spec").cloned().unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("a resize needs cores, memory_mb and disk_gb: {e}"))?;
        anyhow::ensure!(spec.cores >= 1 && spec.memory_mb >= 256, "a VPS needs at least 1 core and 256 MB of memory");
        let current: Option<Spec> = serde_json::from_value(detail["spec"].clone()).ok();
        if let Some(c) = current {
            anyhow::ensure!(
                spec.disk_gb >= c.disk_gb,
                "disks only grow: {} GB is less than {} GB",
                spec.disk_gb,
                c.disk_gb
            );
        }
        params = json!({ "spec": spec });
    }
    if action == Action::Rebuild {
        let image = params.get("image_id").and_then(Value::as_str).map(str::trim).filter(|i| !i.is_empty());
        params = match (store.vps_template(vps).await?, image) {
            (Some(t), Some(image)) => {
                store.check_rebuild_image(&t, image).await?.map_err(anyhow::Error::msg)?;
                json!({ "image_id": image })
            }
            (None, _) => anyhow::bail!("this VPS has no template to rebuild from"),
            (Some(_), None) => json!({}),
        };
    }
    let id = store.enqueue_operation(vps, action.kind(), params.clone(), actor, None).await?;
    store
        .record_activity(
            Level::Info,
            actor,
            Some(vps),
            &format!("{actor} asked for {}", action.kind().as_str()),
            json!({ "operation": id, "params": params }),
        )
        .await?;
    registry.do_send(Activate { vps: vps.to_string() });
    Ok(id)
}

/// Why a retry was not started.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no such operation: {0}")]
    NotFound(String),
    /// The retry would do harm or nothing: the message says why and what to do instead.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Retries a dead operation. A retry is a decision, not a replay: the VPS and its
/// subscription are looked at first, and a retry that would bring a VM back to a VPS that is
/// deleted, or to a customer whose subscription is cancelled, is refused. Otherwise the
/// operation starts a fresh series of attempts (new idempotency keys, no stale task id).
/// `registry`: the running appliance's, to start at once; `None` when the appliance is down
/// (it picks the operation up at its next start). Answers the VPS id.
pub async fn retry_operation(
    store: &Store,
    registry: Option<&actix::Addr<VpsRegistry>>,
    op: &str,
    actor: &str,
) -> Result<String, RetryError> {
    let rows: Vec<Value> = store
        .query_one(
            "SELECT kind, state, vps,
                (SELECT VALUE state FROM type::record('vps', $parent.vps))[0] AS vps_state,
                (SELECT VALUE subscription FROM type::record('vps', $parent.vps))[0] AS subscription
             FROM type::record('operation', $op)",
            json!({ "op": op }),
            0,
        )
        .await?;
    let Some(row) = rows.into_iter().next() else { return Err(RetryError::NotFound(op.to_string())) };
    let vps = row["vps"].as_str().unwrap_or_default().to_string();
    let kind: Option<OpKind> = serde_json::from_value(row["kind"].clone()).ok();
    let state = row["state"].as_str().unwrap_or_default();
    if state != "dead" {
        return Err(RetryError::Refused(format!("operation {op} is {state}: only a dead operation can be retried")));
    }
    let sub_status = match row["subscription"].as_str() {
        Some(sub) => store
            .query_one::<Vec<Option<String>>>(
                "SELECT VALUE status FROM type::record('subscription', $sub)",
                json!({ "sub": sub }),
                0,
            )
            .await?
            .into_iter()
            .next()
            .flatten(),
        None => None,
    };
    let brings_vm_back = !matches!(kind, Some(OpKind::Delete | OpKind::Suspend));
    if brings_vm_back {
        let kind = kind.map_or("operation", OpKind::as_str);
        if row["vps_state"] == "deleted" {
            return Err(RetryError::Refused(format!(
                "refusing to retry the {kind}: VPS {vps} is deleted, and retrying would bring a VM back. \
                 Create a new VPS if the customer should have one."
            )));
        }
        if sub_status.as_deref() == Some("cancelled") {
            return Err(RetryError::Refused(format!(
                "refusing to retry the {kind}: the subscription of VPS {vps} is cancelled, and retrying would give \
                 a VM back to a customer who cancelled. Delete the VPS instead, or wait for the customer to subscribe \
                 again."
            )));
        }
    }
    let updated: Vec<Value> = store
        .query_one(
            "UPDATE type::record('operation', $op) SET state = 'queued', attempts = 0, task_id = NONE,
                next_attempt_at = time::now(), retried_by = $actor, updated_at = time::now()
             WHERE state = 'dead' RETURN vps",
            json!({ "op": op, "actor": actor }),
            0,
        )
        .await?;
    if updated.is_empty() {
        return Err(RetryError::Refused(format!("operation {op} is no longer dead (someone else retried it)")));
    }
    store
        .record_activity(
            Level::Info,
            actor,
            Some(&vps),
            &format!("{actor} retried a dead operation (a fresh series of attempts)"),
            json!({ "operation": op }),
        )
        .await?;
    if let Some(registry) = registry {
        registry.do_send(Activate { vps: vps.clone() });
    }
    Ok(vps)
}

/// Approves (queues) or rejects (cancels) operations held by the blast-radius guard.
pub async fn decide_held(
    store: &Store,
    registry: &actix::Addr<VpsRegistry>,
    op: &str,
    approve: bool,
    actor: &str,
) -> anyhow::Result<()> {
    let sql = if approve {
        "UPDATE type::record('operation', $op) SET state = 'queued', approved_by = $actor, updated_at = time::now()
         WHERE state = 'held' RETURN vps"
    } else {
        "UPDATE type::record('operation', $op) SET state = 'cancelled', last_error = 'rejected by ' + $actor,
            updated_at = time::now() WHERE state = 'held' RETURN vps"
    };
    let rows: Vec<Value> = store.query_one(sql, json!({ "op": op, "actor": actor }), 0).await?;
    let Some(vps) = rows.first().and_then(|r| r["vps"].as_str()).map(str::to_owned) else {
        anyhow::bail!("operation {op} is not held");
    };
    let verb = if approve { "approved" } else { "rejected" };
    store
        .record_activity(
            Level::Warning,
            actor,
            Some(&vps),
            &format!("{actor} {verb} a held operation"),
            json!({ "operation": op }),
        )
        .await?;
    if approve {
        registry.do_send(Activate { vps });
    }
    Ok(())
}

/// A customer for a VPS created by hand.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ManualVps {
    pub customer_name: String,
    pub customer_email: String,
    pub template: String,
}

/// Creates a VPS by hand from a template; answers its id.
pub async fn create_vps(
    store: &Store,
    registry: &actix::Addr<VpsRegistry>,
    req: &ManualVps,
    actor: &str,
) -> anyhow::Result<String> {
    anyhow::ensure!(!req.customer_name.trim().is_empty(), "the customer's name is required");
    anyhow::ensure!(req.customer_email.contains('@'), "the customer's email address is required");
    let Some(template) = store.template_by_name(&req.template).await? else {
        anyhow::bail!("no template named {:?}", req.template)
    };
    anyhow::ensure!(template.enabled, "template {} is disabled", template.name);
    let id = new_key();
    let name = template.name_pattern.replace("{id}", &id[..8]).replace("{customer}", "c");
    let spec = Spec::from(&template);
    let op = new_key();
    store
        .execute(
            "BEGIN TRANSACTION;
             CREATE type::record('vps', $id) CONTENT {
                 name: $name, state: 'pending', source: 'manual', customer_name: $cname, customer_email: $cemail,
                 customer_id: '', template: $template, spec: $spec, template_row: $row, ips: [],
                 created_by: $actor, created_at: time::now(), updated_at: time::now()
             };
             CREATE type::record('operation', $op) CONTENT {
                 vps: $id, kind: 'create', params: {}, state: 'queued', attempts: 0, idempotency_key: $op,
                 requested_by: $actor, next_attempt_at: time::now(), created_at: time::now(), updated_at: time::now()
             };
             CREATE activity CONTENT { at: time::now(), level: 'info', actor: $actor, subject: $id,
                 message: $actor + ' created a VPS by hand', data: { template: $template } };
             COMMIT TRANSACTION;",
            json!({
                "id": id, "name": name, "cname": req.customer_name.trim(), "cemail": req.customer_email.trim(),
                "template": template.name, "spec": spec, "row": template, "op": op, "actor": actor,
            }),
        )
        .await?;
    registry.do_send(Activate { vps: id.clone() });
    Ok(id)
}

//! What the admin UI and the JSON API read and do, in one place: both call these functions,
//! and check roles before they do.
//!
//! Reads are shaped for pages (JSON rows with the fields a page shows); actions queue durable
//! operations (`Store::enqueue_operation`), record who asked in the activity log and wake the
//! VPS's actor.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::actors::registry::{Activate, VpsRegistry};
use crate::db::Store;
use crate::lifecycle::store::Level;
use crate::lifecycle::store::new_key;
use crate::lifecycle::{OpKind, Spec, Template};

/// Rows per page of every list.
pub const PAGE_SIZE: u64 = 50;

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

#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub total: u64,
    pub page: u64,
    pub pages: u64,
    /// A search matched more than [`SEARCH_CAP`] rows; `total` is the cap.
    #[serde(default)]
    pub capped: bool,
}

/// A VPS search pages through at most this many matches (ordering every match of a search
/// as broad as "customer" would read the whole table).
pub const SEARCH_CAP: u64 = 1000;

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

/// Rows of `table` matching `clause` (a `WHERE …` or nothing).
async fn count(store: &Store, table: &str, clause: &str, bindings: Value) -> anyhow::Result<u64> {
    let rows: Vec<Value> =
        store.query_one(&format!("SELECT count() AS n FROM {table} {clause} GROUP ALL"), bindings, 0).await?;
    Ok(rows.first().and_then(|r| r["n"].as_u64()).unwrap_or(0))
}

/// One page of `table`'s rows matching `clause`, `fields` selected, ordered by `order`.
async fn page_of(
    store: &Store,
    table: &str,
    fields: &str,
    clause: &str,
    mut bindings: Value,
    order: &str,
    page: u64,
) -> anyhow::Result<Page<Value>> {
    let total = count(store, table, clause, bindings.clone()).await?;
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    bindings["start"] = json!((page - 1) * PAGE_SIZE);
    bindings["limit"] = json!(PAGE_SIZE);
    let rows: Vec<Value> = store
        .query_one(
            &format!("SELECT {fields} FROM {table} {clause} ORDER BY {order} LIMIT $limit START $start"),
            bindings,
            0,
        )
        .await?;
    Ok(Page { rows, total, page, pages, capped: false })
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

/// A value computed from the store that pages may show a few seconds old when computing it
/// is slow (over 20 ms, i.e. a large table): a view older than `max_age` is then served while
/// a fresh one is computed in the background, so no page waits for the scan. While it is
/// cheap, every view computes it afresh.
pub struct Snapshot<T> {
    /// When it was computed, the value, and how long computing it took.
    value: parking_lot::Mutex<Option<(std::time::Instant, T, std::time::Duration)>>,
    refreshing: std::sync::atomic::AtomicBool,
    max_age: std::time::Duration,
}

impl<T: Clone + Send + 'static> Snapshot<T> {
    pub fn new(max_age: std::time::Duration) -> Self {
        Self { value: parking_lot::Mutex::new(None), refreshing: false.into(), max_age }
    }

    pub async fn get<F, Fut>(self: &std::sync::Arc<Self>, compute: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        use std::sync::atomic::Ordering;
        use std::time::{Duration, Instant};
        const CHEAP: Duration = Duration::from_millis(20);
        let current = self.value.lock().clone();
        match current {
            Some((at, v, took)) if took >= CHEAP => {
                if at.elapsed() > self.max_age && !self.refreshing.swap(true, Ordering::SeqCst) {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let t0 = Instant::now();
                        if let Ok(fresh) = compute().await {
                            *me.value.lock() = Some((Instant::now(), fresh, t0.elapsed()));
                        }
                        me.refreshing.store(false, Ordering::SeqCst);
                    });
                }
                Ok(v)
            }
            _ => {
                let t0 = Instant::now();
                let v = compute().await?;
                *self.value.lock() = Some((Instant::now(), v.clone(), t0.elapsed()));
                Ok(v)
            }
        }
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
    let Some(detail) = vps_detail(store, vps).await? else { anyhow::bail!("no such VPS: {vps}") };
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

/// VPS counts by state.
pub async fn counts_by_state(store: &Store) -> anyhow::Result<Vec<(String, u64)>> {
    let rows: Vec<Value> = store.query_one("SELECT state, count() AS n FROM vps GROUP BY state", json!({}), 0).await?;
    let mut out: Vec<(String, u64)> = rows
        .into_iter()
        .map(|r| (r["state"].as_str().unwrap_or("?").to_string(), r["n"].as_u64().unwrap_or(0)))
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.1));
    Ok(out)
}

/// Buckets of an hourly series over the last `hours`.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub label: String,
    /// Hour start (RFC 3339) and value.
    pub points: Vec<(String, f64)>,
}

fn hour_buckets(hours: i64) -> Vec<DateTime<Utc>> {
    let now = Utc::now();
    let top = now - Duration::seconds(i64::from(now.timestamp() as i32 % 3600));
    (0..hours).rev().map(|h| top - Duration::hours(h)).collect()
}

fn bucket_of(buckets: &[DateTime<Utc>], t: DateTime<Utc>) -> Option<usize> {
    buckets.iter().rposition(|b| *b <= t)
}

/// Webhooks per hour by outcome over the last 24 hours.
pub async fn webhook_volume(store: &Store) -> anyhow::Result<Vec<Series>> {
    let rows: Vec<Value> = store
        .query_one(
            "SELECT <string>received_at AS at, status FROM webhook_event WHERE received_at > time::now() - 24h
             ORDER BY received_at LIMIT 100000",
            json!({}),
            0,
        )
        .await?;
    let buckets = hour_buckets(24);
    let kinds = ["processed", "parked", "failed", "other"];
    let mut counts = vec![vec![0.0; buckets.len()]; kinds.len()];
    for r in rows {
        let Some(t) = r["at"].as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok()) else { continue };
        let Some(b) = bucket_of(&buckets, t) else { continue };
        let status = r["status"].as_str().unwrap_or("other");
        let k = kinds.iter().position(|k| *k == status).unwrap_or(kinds.len() - 1);
        counts[k][b] += 1.0;
    }
    Ok(kinds
        .iter()
        .zip(counts)
        .map(|(k, c)| Series {
            label: (*k).to_string(),
            points: buckets.iter().map(|b| b.to_rfc3339()).zip(c).collect(),
        })
        .collect())
}

/// Mean provisioning and deprovisioning seconds per hour, and failed operations per hour,
/// over the last 24 hours.
pub async fn operation_series(store: &Store) -> anyhow::Result<Vec<Series>> {
    let rows: Vec<Value> = store
        .query_one(
            "SELECT kind, state, <string>finished_at AS at,
                time::unix(finished_at) - time::unix(next_attempt_at OR created_at) AS secs
             FROM operation WHERE finished_at > time::now() - 24h LIMIT 100000",
            json!({}),
            0,
        )
        .await?;
    let buckets = hour_buckets(24);
    let mut sums = [vec![0.0; buckets.len()], vec![0.0; buckets.len()]];
    let mut ns = [vec![0.0; buckets.len()], vec![0.0; buckets.len()]];
    let mut failed = vec![0.0; buckets.len()];
    for r in rows {
        let Some(t) = r["at"].as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok()) else { continue };
        let Some(b) = bucket_of(&buckets, t) else { continue };
        if r["state"] == "dead" {
            failed[b] += 1.0;
            continue;
        }
        let i = match r["kind"].as_str() {
            Some("create") => 0,
            Some("delete") => 1,
            _ => continue,
        };
        if r["state"] == "succeeded" {
            sums[i][b] += r["secs"].as_f64().unwrap_or(0.0);
            ns[i][b] += 1.0;
        }
    }
    let mean = |i: usize| -> Vec<f64> {
        sums[i].iter().zip(&ns[i]).map(|(s, n)| if *n > 0.0 { s / n } else { 0.0 }).collect()
    };
    let labels = |v: Vec<f64>| buckets.iter().map(|b| b.to_rfc3339()).zip(v).collect();
    Ok(vec![
        Series { label: "provisioning (s)".into(), points: labels(mean(0)) },
        Series { label: "deprovisioning (s)".into(), points: labels(mean(1)) },
        Series { label: "failed operations".into(), points: labels(failed) },
    ])
}

/// Recent dead operations (newest first).
pub async fn recent_failures(store: &Store, limit: u64) -> anyhow::Result<Vec<Value>> {
    store
        .query_one(
            "SELECT record::id(id) AS id, vps, kind, last_error, attempts, <string>updated_at AS at FROM operation
             WHERE state = 'dead' ORDER BY updated_at DESC LIMIT $limit",
            json!({ "limit": limit }),
            0,
        )
        .await
}

/// Operations the blast-radius guard holds for an admin.
pub async fn held_operations(store: &Store) -> anyhow::Result<Vec<Value>> {
    store
        .query_one(
            "SELECT record::id(id) AS id, vps, kind, requested_by, <string>created_at AS at,
                (SELECT VALUE customer_name FROM ONLY type::record('vps', $parent.vps)) AS customer
             FROM operation WHERE state = 'held' ORDER BY created_at LIMIT 500",
            json!({}),
            0,
        )
        .await
}

/// Filters of the activity log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActivityQuery {
    /// `info`, `warning`, `error`, `critical` or empty for all (`warn` is read as `warning`).
    #[serde(default)]
    pub level: String,
    /// Text in the message or the actor.
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub page: u64,
}

pub async fn activity(store: &Store, query: &ActivityQuery) -> anyhow::Result<Page<Value>> {
    let mut conds = Vec::new();
    let level = match query.level.trim() {
        "" => None,
        l => Some(
            Level::parse(l)
                .ok_or_else(|| anyhow::anyhow!("unknown activity level {l:?}: use info, warning, error or critical"))?,
        ),
    };
    if level.is_some() {
        conds.push("level = $level");
    }
    let q = query.q.trim().to_lowercase();
    if !q.is_empty() {
        conds.push(
            "(string::contains(string::lowercase(message), $q) OR string::contains(string::lowercase(actor), $q))",
        );
    }
    let clause = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    let b = json!({ "level": level.map(Level::as_str), "q": q });
    let fields = "<string>at AS at, level, actor, subject, message, data";
    page_of(store, "activity", fields, &clause, b, "at DESC", query.page).await
}

/// The webhook inbox, newest first; `status` filters.
pub async fn inbox(store: &Store, status: &str, page: u64) -> anyhow::Result<Page<Value>> {
    let clause = if status.is_empty() { "" } else { "WHERE status = $status" };
    let fields = "record::id(id) AS id, source, status, <string>received_at AS received_at, signature, outcomes, error";
    page_of(store, "webhook_event", fields, clause, json!({ "status": status }), "received_at DESC", page).await
}

/// One inbox row with its headers and body.
pub async fn inbox_event(store: &Store, id: &str) -> anyhow::Result<Option<Value>> {
    let rows: Vec<Value> = store
        .query_one(
            "SELECT *, record::id(id) AS id, <string>received_at AS received_at FROM type::record('webhook_event', $id)",
            json!({ "id": id }),
            0,
        )
        .await?;
    Ok(rows.into_iter().next())
}

/// Removes what only admins may read from an inbox row: the request's headers and body (a
/// sender may put secrets there that vmauto does not know to redact).
pub fn hide_raw_request(ev: &mut Value) {
    if let Some(o) = ev.as_object_mut() {
        o.remove("headers");
        o.remove("body");
        o.insert("raw_hidden".into(), json!(true));
    }
}

/// Templates with the plans mapped to them.
pub async fn templates(store: &Store) -> anyhow::Result<Vec<Value>> {
    store
        .query_one(
            "SELECT record::id(id) AS id, name, description, az_id, image_id, storage_tag_id, vpc_id, subnet_id, cores,
                memory_mb, disk_gb, name_pattern, enabled OR enabled = NONE AS enabled, allowed_images OR [] AS allowed_images,
                (SELECT source, plan_key FROM plan_mapping WHERE template = $parent.name) AS plans
             FROM template ORDER BY name",
            json!({}),
            0,
        )
        .await
}

/// Creates or updates a template by name.
pub async fn save_template(store: &Store, t: &Template, actor: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!t.name.trim().is_empty(), "a template needs a name");
    anyhow::ensure!(
        !t.az_id.is_empty() && !t.image_id.is_empty() && !t.storage_tag_id.is_empty(),
        "a template needs an AZ, an image and a storage tag"
    );
    anyhow::ensure!(t.cores >= 1 && t.memory_mb >= 256 && t.disk_gb >= 1, "cores ≥ 1, memory ≥ 256 MB, disk ≥ 1 GB");
    anyhow::ensure!(t.name_pattern.contains("{id}"), "the VM name pattern must contain {{id}}");
    store
        .execute(
            "IF (SELECT VALUE id FROM template WHERE name = $t.name)[0] {
                 UPDATE template MERGE $t WHERE name = $t.name;
             } ELSE {
                 CREATE template CONTENT object::extend($t, { created_at: time::now() });
             };
             CREATE activity CONTENT { at: time::now(), level: 'info', actor: $actor, subject: $t.name,
                 message: $actor + ' saved template ' + $t.name, data: $t };",
            json!({ "t": t, "actor": actor }),
        )
        .await
}

/// Maps a source's plan to a template (replacing an earlier mapping of that plan).
pub async fn map_plan(store: &Store, source: &str, plan: &str, template: &str, actor: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!source.is_empty() && !plan.is_empty(), "a mapping needs a source and a plan");
    anyhow::ensure!(store.template_by_name(template).await?.is_some(), "no template named {template:?}");
    store
        .execute(
            "DELETE plan_mapping WHERE source = $source AND plan_key = $plan;
             CREATE plan_mapping CONTENT { source: $source, plan_key: $plan, template: $template };
             CREATE activity CONTENT { at: time::now(), level: 'info', actor: $actor, subject: $template,
                 message: $actor + ' mapped plan ' + $plan + ' of ' + $source + ' to ' + $template, data: {} };",
            json!({ "source": source, "plan": plan, "template": template, "actor": actor }),
        )
        .await
}

/// A plan of a source mapped to a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMapping {
    pub source: String,
    pub plan_key: String,
    pub template: String,
}

/// Every plan mapping, by source and plan.
pub async fn plan_mappings(store: &Store) -> anyhow::Result<Vec<PlanMapping>> {
    store.query_one("SELECT source, plan_key, template FROM plan_mapping ORDER BY source, plan_key", json!({}), 0).await
}

/// Removes the mapping of a source's plan; false when there was none.
pub async fn unmap_plan(store: &Store, source: &str, plan: &str, actor: &str) -> anyhow::Result<bool> {
    let gone: Vec<Value> = store
        .query_one(
            "DELETE plan_mapping WHERE source = $source AND plan_key = $plan RETURN BEFORE",
            json!({ "source": source, "plan": plan }),
            0,
        )
        .await?;
    if !gone.is_empty() {
        store
            .record_activity(
                Level::Info,
                actor,
                None,
                &format!("{actor} removed the mapping of plan {plan} of {source}"),
                json!({ "source": source, "plan": plan }),
            )
            .await?;
    }
    Ok(!gone.is_empty())
}

/// Filters of the notification list (all optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NotificationQuery {
    /// `info`, `warning` or `critical`; empty for all.
    #[serde(default)]
    pub severity: String,
    /// A notification kind (`operation_dead`, `event_parked`, …); empty for all.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub page: u64,
}

/// One page of notifications, newest first.
pub async fn notifications_page(store: &Store, query: &NotificationQuery) -> anyhow::Result<Page<Value>> {
    let mut conds = Vec::new();
    if !query.severity.trim().is_empty() {
        conds.push("severity = $severity");
    }
    if !query.kind.trim().is_empty() {
        conds.push("kind = $kind");
    }
    let clause = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    let b = json!({ "severity": query.severity.trim(), "kind": query.kind.trim() });
    let fields = "record::id(id) AS id, <string>created_at AS at, kind, severity, title, body, subject";
    page_of(store, "notification", fields, &clause, b, "at DESC", query.page).await
}

/// Recent notifications, newest first.
pub async fn notifications(store: &Store, limit: u64) -> anyhow::Result<Vec<Value>> {
    store
        .query_one(
            "SELECT record::id(id) AS id, <string>created_at AS at, kind, severity, title, body, subject FROM notification
             ORDER BY created_at DESC LIMIT $limit",
            json!({ "limit": limit }),
            0,
        )
        .await
}

/// VPS rows changed after `since` (the live-update stream).
pub async fn vps_changes(store: &Store, since: DateTime<Utc>) -> anyhow::Result<Vec<Value>> {
    store
        .query_one(
            "SELECT record::id(id) AS id, state, ips, <string>updated_at AS updated_at FROM vps
             WHERE updated_at > <datetime>$since ORDER BY updated_at LIMIT 500",
            json!({ "since": since.to_rfc3339() }),
            0,
        )
        .await
}

/// Notifications after `since`.
pub async fn notifications_since(store: &Store, since: DateTime<Utc>) -> anyhow::Result<Vec<Value>> {
    store
        .query_one(
            "SELECT record::id(id) AS id, <string>created_at AS at, severity, title, subject FROM notification
             WHERE created_at > <datetime>$since ORDER BY created_at LIMIT 50",
            json!({ "since": since.to_rfc3339() }),
            0,
        )
        .await
}

/// Operations changed after `since` (the live-update stream).
pub async fn operation_changes(store: &Store, since: DateTime<Utc>) -> anyhow::Result<Vec<Value>> {
    store
        .query_one(
            "SELECT record::id(id) AS id, vps, kind, state, <string>updated_at AS updated_at FROM operation
             WHERE updated_at > <datetime>$since ORDER BY updated_at LIMIT 500",
            json!({ "since": since.to_rfc3339() }),
            0,
        )
        .await
}

/// Why a source could not be tried.
#[derive(Debug, thiserror::Error)]
pub enum SourceTestError {
    #[error("there is no source named {name:?}: configured sources are {known:?}")]
    NoSuchSource { name: String, known: Vec<String> },
    /// The plugin refused the payload (or could not run); the text says why.
    #[error("{0}")]
    Refused(String),
}

/// Runs source `name`'s plugin over `payload` as a delivery to `/webhooks/<name>` with its
/// settings, and answers the normalized events. Nothing is stored or applied: this is the
/// sources page's test box, for the UI, the API and the CLI alike.
pub async fn test_source(
    config: &crate::config::Config,
    plugins: &actix::Addr<crate::actors::plugins::PluginHost>,
    name: &str,
    payload: bytes::Bytes,
) -> Result<Vec<crate::billing::BillingEvent>, SourceTestError> {
    let Some(source) = config.sources.get(name) else {
        return Err(SourceTestError::NoSuchSource {
            name: name.to_string(),
            known: config.sources.keys().cloned().collect(),
        });
    };
    let request = crate::plugin_host::SourceRequest {
        source: name.to_string(),
        path: format!("/webhooks/{name}"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: payload,
        settings: source.settings.clone(),
    };
    let parse = crate::actors::plugins::ParseWebhook { plugin: source.plugin.clone(), request };
    match plugins.send(parse).await {
        Ok(Ok(events)) => Ok(events),
        Ok(Err(e)) => Err(SourceTestError::Refused(e.to_string())),
        Err(e) => Err(SourceTestError::Refused(format!("the plugin runtime is not running: {e}"))),
    }
}

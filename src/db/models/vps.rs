//! The `vps` table: one row per VPS, live or deleted, with its state, spec, the template as
//! it was when the VPS was made, its SCP server and its customer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::db::Store;

use super::operation::OperationId;
use super::subscription::SubscriptionId;
use super::template::{Template, TemplateName};
use super::{PAGE_SIZE, Page};

mod placement;
mod search;
mod timeline;

pub use placement::{Reserved, vm_time};
pub use search::INDEX_EVERY;

pub use timeline::{TimelineActivity, TimelineEntry, TimelineNotification, TimelineOperation, TimelineWebhook};

id_type!(
    /// The key of a `vps` row (without `vps:`).
    VpsId
);

/// States of a VPS record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VpsState {
    Pending,
    Provisioning,
    Active,
    Suspending,
    Suspended,
    Resuming,
    Resizing,
    Resetting,
    Rebuilding,
    Deleting,
    Deleted,
    Failed,
}

impl VpsState {
    pub const ALL: [Self; 12] = [
        Self::Pending,
        Self::Provisioning,
        Self::Active,
        Self::Suspending,
        Self::Suspended,
        Self::Resuming,
        Self::Resizing,
        Self::Resetting,
        Self::Rebuilding,
        Self::Deleting,
        Self::Deleted,
        Self::Failed,
    ];

    /// Whether a VPS in this state no longer takes room in its AZ: it failed or is going.
    pub fn gives_room_back(self) -> bool {
        matches!(self, Self::Failed | Self::Deleting | Self::Deleted)
    }

    /// A VPS that still has (or is getting) a VM.
    pub fn is_live(self) -> bool {
        !matches!(self, Self::Deleted)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Suspending => "suspending",
            Self::Suspended => "suspended",
            Self::Resuming => "resuming",
            Self::Resizing => "resizing",
            Self::Resetting => "resetting",
            Self::Rebuilding => "rebuilding",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
            Self::Failed => "failed",
        }
    }
}

/// The hardware of a VPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub cores: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
}

impl From<&Template> for Spec {
    fn from(t: &Template) -> Self {
        Self { cores: t.cores, memory_mb: t.memory_mb, disk_gb: t.disk_gb }
    }
}

/// A VPS as the lifecycle needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vps {
    pub id: VpsId,
    pub state: VpsState,
    #[serde(default)]
    pub subscription: Option<SubscriptionId>,
    pub template: TemplateName,
    pub spec: Spec,
    #[serde(default)]
    pub server_id: Option<String>,
    #[serde(default)]
    pub delete_after: Option<DateTime<Utc>>,
    /// The VM's power as the last operation left it (`None`: not known yet).
    #[serde(default)]
    pub power: Option<PowerState>,
}

/// Whether the VM runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    On,
    Off,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "on",
            Self::Off => "off",
        }
    }
}

/// Fields of a VPS row to change; only those given are written (`updated_at` always is).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VpsPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<VpsState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ips: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<Spec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_row: Option<Template>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The root password, sealed for `vps:<id>/root_password`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_password: Option<String>,
    /// `Some(None)` clears a scheduled deletion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_after: Option<Option<DateTime<Utc>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_at: Option<String>,
    /// When the VM was asked of SCP (see [`vm_time`]); placement counts VMs asked for after
    /// it read an AZ's capacity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuilt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerState>,
}

impl VpsPatch {
    /// A patch that sets the state only.
    pub fn state(state: VpsState) -> Self {
        Self { state: Some(state), ..Self::default() }
    }

    /// Whether writing this gives room in an AZ back or moves it: the VPS fails or goes, or
    /// its hardware or template (and so perhaps its AZ) changes.
    pub fn moves_room(&self) -> bool {
        self.state.is_some_and(VpsState::gives_room_back) || self.spec.is_some() || self.template_row.is_some()
    }
}

pub(crate) const VPS_FIELDS: &str =
    "record::id(id) AS id, state, subscription, template, spec, server_id, delete_after, power";

impl Store {
    pub async fn vps(&self, id: &VpsId) -> anyhow::Result<Option<Vps>> {
        self.query_first::<Vps>(&format!("SELECT {VPS_FIELDS} FROM type::record('vps', $id)"), json!({ "id": id }), 0)
            .await
    }

    /// The template a VPS was created from, as stored with it.
    pub async fn vps_template(&self, id: &VpsId) -> anyhow::Result<Option<Template>> {
        self.query_first::<Template>("SELECT VALUE template_row FROM type::record('vps', $id)", json!({ "id": id }), 0)
            .await
    }

    /// Updates a VPS's fields (only those given).
    pub async fn update_vps(&self, id: &VpsId, patch: &VpsPatch) -> anyhow::Result<()> {
        self.execute_moving_room(
            "UPDATE type::record('vps', $id) MERGE object::extend($patch, { updated_at: time::now() });",
            json!({ "id": id, "patch": patch }),
            patch.moves_room(),
        )
        .await
    }
}

/// Fields of a VPS row in lists.
const VPS_ROW: &str = "record::id(id) AS id, name, state, template, source, customer_name, customer_email,
    customer_id, subscription, vm_name, server_id, ips, spec, image_id OR template_row.image_id AS image_id,
    template_row.image_id AS template_image, template_row.allowed_images OR [] AS allowed_images,
    <string>created_at AS created_at,
    IF updated_at { <string>updated_at } AS updated_at";

/// A VPS as lists and pages show it (never its sealed password).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VpsRow {
    pub id: VpsId,
    #[serde(default)]
    pub name: String,
    pub state: VpsState,
    #[serde(default)]
    pub template: TemplateName,
    /// The billing source that ordered it, or `manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<SubscriptionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Spec>,
    /// The image its VM runs (the template's until a rebuild chose another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The template's own image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_image: Option<String>,
    /// Other images a rebuild may choose.
    #[serde(default)]
    pub allowed_images: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// A VPS with everything its page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VpsDetail {
    #[serde(flatten)]
    pub row: VpsRow,
    /// The template as it was when the VPS was made.
    #[serde(default, deserialize_with = "super::lenient", skip_serializing_if = "Option::is_none")]
    pub template_row: Option<Template>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_at: Option<String>,
    #[serde(default)]
    pub has_password: bool,
    /// What the order chose at checkout (image, hostname, location, as built) and where it
    /// came from (source, event id, inbox delivery); absent when it chose nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Value>,
}

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
    /// The filters other than the search words, each a condition on a VPS row.
    fn filters(&self) -> Vec<&'static str> {
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
        conds
    }

    /// The search words (at most eight): every one must start a word of a VPS's search text;
    /// "dana 10.0.3" finds Dana's VPS with that IP.
    fn words(&self) -> String {
        self.q.split_whitespace().take(8).collect::<Vec<_>>().join(" ")
    }

    fn bindings(&self) -> Value {
        json!({ "state": self.state, "template": self.template, "source": self.source, "q": self.words() })
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

impl Store {
    /// One page of the VPS list.
    pub async fn list_vps(&self, query: &VpsQuery) -> anyhow::Result<Page<VpsRow>> {
        if !query.words().is_empty() {
            return self.search_vps(query).await;
        }
        let filters = query.filters();
        let clause = if filters.is_empty() { String::new() } else { format!("WHERE {}", filters.join(" AND ")) };
        let mut bindings = query.bindings();
        let total = super::count(self, "vps", &clause, bindings.clone()).await?;
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
        let mut rows: Vec<VpsRow> = self
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

    /// A VPS with everything its page shows (never its sealed password).
    pub async fn vps_detail(&self, id: &VpsId) -> anyhow::Result<Option<VpsDetail>> {
        self.query_first::<VpsDetail>(
            &format!(
                "SELECT {VPS_ROW}, template_row, choices, delete_after, IF active_at {{ <string>active_at }} AS active_at,
                        root_password != NONE AS has_password
                     FROM type::record('vps', $id)"
            ),
            json!({ "id": id }),
            0,
        )
        .await
    }
}

/// `created_at DESC` → `created_at ASC` and back.
fn reverse(order: &str) -> String {
    match order.rsplit_once(' ') {
        Some((field, "DESC")) => format!("{field} ASC"),
        Some((field, _)) => format!("{field} DESC"),
        None => format!("{order} DESC"),
    }
}

/// A VPS an admin creates by hand, with its create operation.
#[derive(Debug, Clone)]
pub struct ManualVpsRow<'a> {
    pub id: &'a VpsId,
    pub name: &'a str,
    pub customer_name: &'a str,
    pub customer_email: &'a str,
    pub template: &'a Template,
    pub spec: Spec,
    pub operation: &'a OperationId,
    pub actor: &'a str,
}

impl Store {
    /// Writes a VPS made by hand, its create operation and the activity row in one transaction.
    pub async fn create_manual_vps(&self, v: &ManualVpsRow<'_>) -> anyhow::Result<()> {
        // Placed outside the subscription actor's placement: it reads the AZ's sum again.
        self.execute_moving_room(
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
                "id": v.id, "name": v.name, "cname": v.customer_name, "cemail": v.customer_email,
                "template": v.template.name, "spec": v.spec, "row": v.template, "op": v.operation, "actor": v.actor,
            }),
            true,
        )
        .await
    }
}

/// A VPS's state and addresses as the live stream sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VpsChange {
    pub id: VpsId,
    pub state: VpsState,
    #[serde(default)]
    pub ips: Vec<String>,
    pub updated_at: String,
}

/// VPS rows changed after `$since`, oldest change first. The bound is cast once, before the
/// `SELECT`: a cast inside the condition makes the planner read `vps_updated` from its start
/// and filter, every row of the table every second a browser is open (see
/// `db::models::tests::change_feeds_read_a_range_of_their_index`).
pub(crate) const VPS_CHANGES: &str = "LET $since_at = <datetime>$since;
    SELECT record::id(id) AS id, state, ips, <string>updated_at AS updated_at FROM vps
    WHERE updated_at > $since_at ORDER BY updated_at LIMIT 500";

/// The live-update stream.
impl Store {
    /// VPS rows changed after `since` (the live-update stream).
    pub async fn vps_changes(&self, since: DateTime<Utc>) -> anyhow::Result<Vec<VpsChange>> {
        self.query_one(VPS_CHANGES, json!({ "since": since.to_rfc3339() }), 1).await
    }
}

/// The dashboard.
impl Store {
    /// VPS counts by state.
    pub async fn vps_counts_by_state(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let mut out = super::count_by_state(self, "vps", &VpsState::ALL.map(VpsState::as_str)).await?;
        out.sort_by_key(|c| std::cmp::Reverse(c.1));
        Ok(out)
    }
}

/// A VPS that should have a VM now, as the reconciler compares it with SCP.
#[derive(Debug, Clone, Deserialize)]
pub struct VpsWithVm {
    pub id: VpsId,
    pub server_id: Option<String>,
    pub state: VpsState,
    pub spec: Option<Spec>,
    /// The provider its VM lives on (empty: default).
    #[serde(default)]
    pub provider: String,
}

/// The reconciler's reads.
impl Store {
    /// VPSs that should have a VM now (not deleted, and not being created or deleted).
    pub async fn vps_with_vms(&self) -> anyhow::Result<Vec<VpsWithVm>> {
        self.query_one(
            "SELECT record::id(id) AS id, server_id, state, spec, template_row.provider OR '' AS provider FROM vps
             WHERE state NOT IN ['deleted', 'pending', 'provisioning', 'deleting']",
            json!({}),
            0,
        )
        .await
    }

    /// Whether a VPS is being created or deleted right now (its VM may come or go).
    pub async fn vps_is_being_created_or_deleted(&self, id: &VpsId) -> anyhow::Result<bool> {
        let busy: Vec<String> = self
            .query_one(
                "SELECT VALUE state FROM type::record('vps', $id) WHERE state IN ['pending', 'provisioning', 'deleting']",
                json!({ "id": id }),
                0,
            )
            .await?;
        Ok(!busy.is_empty())
    }
}

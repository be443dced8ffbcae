//! The `vps` table: one row per VPS, live or deleted, with its state, spec, the template as
//! it was when the VPS was made, its SCP server and its customer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::db::Store;

use super::template::Template;

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
    pub id: String,
    pub state: VpsState,
    #[serde(default)]
    pub subscription: Option<String>,
    pub template: String,
    pub spec: Spec,
    #[serde(default)]
    pub server_id: Option<String>,
    #[serde(default)]
    pub delete_after: Option<DateTime<Utc>>,
}

pub(crate) const VPS_FIELDS: &str =
    "record::id(id) AS id, state, subscription, template, spec, server_id, delete_after";

impl Store {
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

    /// Updates a VPS's fields (only those given).
    pub async fn update_vps(&self, id: &str, patch: Value) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('vps', $id) MERGE $patch; UPDATE type::record('vps', $id) SET updated_at = time::now();",
            json!({ "id": id, "patch": patch }),
        )
        .await
    }
}

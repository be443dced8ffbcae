//! The `template` table (what a plan gets) and `plan_mapping` (which template a source's plan
//! maps to).

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::db::Store;

/// A template row: what a plan gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub az_id: String,
    pub image_id: String,
    pub storage_tag_id: String,
    #[serde(default)]
    pub vpc_id: String,
    #[serde(default)]
    pub subnet_id: String,
    pub cores: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
    #[serde(default = "default_pattern")]
    pub name_pattern: String,
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Other images (SCP image ids) a rebuild of this template's VPS may choose; the template's
    /// own `image_id` is always allowed.
    #[serde(default)]
    pub allowed_images: Vec<String>,
}

impl Template {
    /// Whether a rebuild may use `image_id`.
    pub fn allows_image(&self, image_id: &str) -> bool {
        image_id == self.image_id || self.allowed_images.iter().any(|i| i == image_id)
    }
}

fn default_pattern() -> String {
    "vps-{id}".into()
}

fn enabled() -> bool {
    true
}

impl Store {
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
}

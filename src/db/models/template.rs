//! The `template` table (what a plan gets) and `plan_mapping` (which template a source's plan
//! maps to).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::db::Store;

id_type!(
    /// A template's name: how VPS rows, plan mappings and offers refer to it.
    TemplateName
);

impl TemplateName {
    /// No name: an offer's `from_template` or `to_template` that names no template.
    pub fn is_empty(&self) -> bool {
        self.as_str().is_empty()
    }
}

/// A template row: what a plan gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub name: TemplateName,
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
    /// Images an order may choose, by alias (`ubuntu-22.04`): one SCP image id, or one per AZ.
    /// A rebuild may use them too.
    #[serde(default)]
    pub images: BTreeMap<String, ImageRef>,
    /// Locations an order may choose (names of `[locations.<name>]`); none: the template's AZ.
    #[serde(default)]
    pub locations: Vec<String>,
    /// Which hostname an order may choose: empty, any valid one (RFC 1123); `none`, none;
    /// `*.example.com`, one under `example.com`.
    #[serde(default)]
    pub hostname_rule: String,
    /// The provider its AZ belongs to (empty: `default`, `[provider.sangfor]`). Stored with a
    /// VPS, it is the SCP the VPS's VM lives on.
    #[serde(default)]
    pub provider: String,
}

/// The SCP image an alias stands for: one id everywhere, or one per AZ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageRef {
    Id(String),
    PerAz(BTreeMap<String, String>),
}

impl ImageRef {
    /// The image id in `az`, if the alias has one there.
    pub fn in_az(&self, az: &str) -> Option<&str> {
        match self {
            Self::Id(id) => Some(id.as_str()),
            Self::PerAz(by_az) => by_az.get(az).map(String::as_str),
        }
        .filter(|id| !id.is_empty())
    }

    /// Whether `id` is this alias's image in some AZ.
    pub fn in_any(&self, id: &str) -> bool {
        self.ids().contains(&id)
    }

    fn ids(&self) -> Vec<&str> {
        match self {
            Self::Id(id) => vec![id.as_str()],
            Self::PerAz(by_az) => by_az.values().map(String::as_str).collect(),
        }
    }
}

impl Template {
    /// Whether a rebuild may use `image_id`.
    pub fn allows_image(&self, image_id: &str) -> bool {
        image_id == self.image_id
            || self.allowed_images.iter().any(|i| i == image_id)
            || self.images.values().any(|r| r.ids().contains(&image_id))
    }

    /// Every image id a rebuild may use, the template's own first.
    pub fn rebuild_images(&self) -> Vec<String> {
        let mut all = vec![self.image_id.clone()];
        let more = self.allowed_images.iter().map(String::as_str).chain(self.images.values().flat_map(ImageRef::ids));
        for id in more {
            if !id.is_empty() && !all.iter().any(|a| a == id) {
                all.push(id.to_string());
            }
        }
        all
    }
}

/// What a new template starts as: the template form's first values.
impl Default for Template {
    fn default() -> Self {
        Self {
            name: TemplateName::default(),
            description: String::new(),
            az_id: String::new(),
            image_id: String::new(),
            storage_tag_id: String::new(),
            vpc_id: String::new(),
            subnet_id: String::new(),
            cores: 1,
            memory_mb: 1024,
            disk_gb: 20,
            name_pattern: default_pattern(),
            enabled: enabled(),
            allowed_images: Vec::new(),
            images: BTreeMap::new(),
            locations: Vec::new(),
            hostname_rule: String::new(),
            provider: String::new(),
        }
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
        self.query_first::<Template>(
                "LET $name = (SELECT VALUE template FROM plan_mapping WHERE source = $source AND plan_key = $plan LIMIT 1)[0];
                 SELECT * FROM template WHERE name = $name AND enabled = true LIMIT 1",
                json!({ "source": source, "plan": plan_key }),
                1,
            ).await
    }

    /// A template by name.
    pub async fn template_by_name(&self, name: &TemplateName) -> anyhow::Result<Option<Template>> {
        self.query_first::<Template>("SELECT * FROM template WHERE name = $name LIMIT 1", json!({ "name": name }), 0)
            .await
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

/// A plan of a source mapped to a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMapping {
    pub source: String,
    pub plan_key: String,
    pub template: TemplateName,
}

/// A source's plan, as the templates page lists it under its template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOf {
    pub source: String,
    pub plan_key: String,
}

/// A template with the plans mapped to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateWithPlans {
    pub id: String,
    #[serde(flatten)]
    pub template: Template,
    #[serde(default)]
    pub plans: Vec<PlanOf>,
}

/// What the templates page reads and saves.
impl Store {
    /// Templates with the plans mapped to them.
    pub async fn templates_with_plans(&self) -> anyhow::Result<Vec<TemplateWithPlans>> {
        self
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

    /// Creates or updates a template by name, with the activity row.
    pub async fn upsert_template(&self, t: &Template, actor: &str) -> anyhow::Result<()> {
        self.execute(
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

    /// Maps a source's plan to a template (replacing an earlier mapping of that plan), with the
    /// activity row.
    pub async fn map_plan(&self, source: &str, plan: &str, template: &TemplateName, actor: &str) -> anyhow::Result<()> {
        self.execute(
            "DELETE plan_mapping WHERE source = $source AND plan_key = $plan;
                 CREATE plan_mapping CONTENT { source: $source, plan_key: $plan, template: $template };
                 CREATE activity CONTENT { at: time::now(), level: 'info', actor: $actor, subject: $template,
                     message: $actor + ' mapped plan ' + $plan + ' of ' + $source + ' to ' + $template, data: {} };",
            json!({ "source": source, "plan": plan, "template": template, "actor": actor }),
        )
        .await
    }

    /// Every plan mapping, by source and plan.
    pub async fn plan_mappings(&self) -> anyhow::Result<Vec<PlanMapping>> {
        self.query_one("SELECT source, plan_key, template FROM plan_mapping ORDER BY source, plan_key", json!({}), 0)
            .await
    }

    /// Removes the mapping of a source's plan; false when there was none.
    pub async fn delete_plan_mapping(&self, source: &str, plan: &str) -> anyhow::Result<bool> {
        let gone: Vec<Value> = self
            .query_one(
                "DELETE plan_mapping WHERE source = $source AND plan_key = $plan RETURN BEFORE",
                json!({ "source": source, "plan": plan }),
                0,
            )
            .await?;
        Ok(!gone.is_empty())
    }
}

impl Store {
    /// Whether any template exists (the demo seeds them once).
    pub async fn has_templates(&self) -> anyhow::Result<bool> {
        let names: Vec<String> = self.query_one("SELECT VALUE name FROM template LIMIT 1", json!({}), 0).await?;
        Ok(!names.is_empty())
    }
}

impl Store {
    /// Adds a template and maps `source`'s `plan` to it (the demo's seed; no activity row).
    pub async fn seed_template(&self, t: &Template, source: &str, plan: &str) -> anyhow::Result<()> {
        self.execute(
            "CREATE template CONTENT object::extend($t, { created_at: time::now() });
             CREATE plan_mapping CONTENT { source: $source, plan_key: $plan, template: $t.name, created_at: time::now() };",
            json!({ "t": t, "source": source, "plan": plan }),
        )
        .await
    }
}

//! The template catalogue a plan mapper chooses from: the appliance's `template` and
//! `plan_mapping` tables.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One template row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub name: String,
    pub enabled: bool,
    pub cores: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
    /// Every other column, JSON-encoded (provider settings, name pattern, …).
    pub extra: BTreeMap<String, String>,
}

/// `source + plan_key -> template`; `*` as the source matches every source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMapping {
    pub source: String,
    pub plan_key: String,
    pub template: String,
}

/// Templates and plan mappings, as handed to a plan mapper.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalogue {
    pub templates: Vec<Template>,
    pub mappings: Vec<PlanMapping>,
}

impl Catalogue {
    /// Builds the catalogue from table rows (`{name, enabled, cores, memory_mb, disk_gb, …}`
    /// and `{source, plan_key, template}`). Rows without a name are skipped; a template
    /// without `enabled` is enabled.
    pub fn from_rows(templates: &[Value], mappings: &[Value]) -> Self {
        let num =
            |row: &Value, key: &str| row.get(key).and_then(Value::as_u64).map_or(0, |n| n.min(u32::MAX.into()) as u32);
        let templates = templates
            .iter()
            .filter_map(|row| {
                let name = row.get("name")?.as_str()?.to_string();
                let extra = row
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .filter(|(k, _)| {
                                !["id", "name", "enabled", "cores", "memory_mb", "disk_gb"].contains(&k.as_str())
                            })
                            .map(|(k, v)| (k.clone(), v.to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                Some(Template {
                    name,
                    enabled: row.get("enabled").and_then(Value::as_bool).unwrap_or(true),
                    cores: num(row, "cores"),
                    memory_mb: num(row, "memory_mb"),
                    disk_gb: num(row, "disk_gb"),
                    extra,
                })
            })
            .collect();
        let mappings = mappings
            .iter()
            .filter_map(|row| {
                let s = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_string);
                Some(PlanMapping { source: s("source")?, plan_key: s("plan_key")?, template: s("template")? })
            })
            .collect();
        Self { templates, mappings }
    }
}

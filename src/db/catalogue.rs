//! The catalogue plan mappers choose from: the `template` and `plan_mapping` tables.

use serde_json::{Value, json};
use vmauto_plugin_host::Catalogue;

use super::Store;

impl Store {
    /// Every template and plan mapping, as the plugin contract's catalogue.
    pub async fn catalogue(&self) -> anyhow::Result<Catalogue> {
        let templates: Vec<Value> =
            self.query_one("SELECT * OMIT id FROM template ORDER BY name", json!({}), 0).await?;
        let mappings: Vec<Value> = self
            .query_one("SELECT source, plan_key, template FROM plan_mapping ORDER BY source, plan_key", json!({}), 0)
            .await?;
        Ok(Catalogue::from_rows(&templates, &mappings))
    }
}

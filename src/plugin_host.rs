//! The plugin host (the `vmauto-plugin-host` crate under `plugins/host`: wasmtime, the
//! contract's bindings and the bundled plugins), with what ties it to the appliance: the
//! catalogue read from the store ([`load_catalogue`]) and the `vmauto plugin` commands
//! ([`cli`]).

pub mod cli;

pub use vmauto_plugin_host::*;

use crate::db::Store;

/// Reads the catalogue from the store's `template` and `plan_mapping` tables.
pub async fn load_catalogue(store: &Store) -> anyhow::Result<Catalogue> {
    let templates: Vec<serde_json::Value> =
        store.query_one("SELECT * OMIT id FROM template ORDER BY name", serde_json::json!({}), 0).await?;
    let mappings: Vec<serde_json::Value> = store
        .query_one(
            "SELECT source, plan_key, template FROM plan_mapping ORDER BY source, plan_key",
            serde_json::json!({}),
            0,
        )
        .await?;
    Ok(Catalogue::from_rows(&templates, &mappings))
}

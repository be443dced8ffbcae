//! The `setting` table: settings edited in the web UI, and the appliance's install id.

use serde_json::json;

use crate::db::Store;

use super::subscription::new_key;

impl Store {
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

/// Settings edited in the web UI (`setting:ui_overrides`): key → text, secrets sealed.
impl Store {
    /// The stored settings (none when the row is missing or unreadable).
    pub async fn ui_overrides(&self) -> std::collections::BTreeMap<String, String> {
        let rows: Vec<serde_json::Value> =
            self.query_one("SELECT VALUE values FROM setting:ui_overrides", json!({}), 0).await.unwrap_or_default();
        rows.into_iter()
            .next()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
            .collect()
    }

    /// Replaces the stored settings.
    pub async fn save_ui_overrides(&self, values: &impl serde::Serialize) -> anyhow::Result<()> {
        self.execute(
            "UPSERT setting:ui_overrides SET values = $values, updated_at = time::now()",
            json!({ "values": values }),
        )
        .await
    }
}

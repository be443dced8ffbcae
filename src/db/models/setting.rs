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

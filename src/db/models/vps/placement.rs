//! What placement reads of the `vps` table: the room vmauto has taken in an AZ that SCP may
//! not count yet.

use serde::Deserialize;
use serde_json::json;

use super::Spec;
use crate::db::Store;

/// The spec of VPSs placed in one provider's AZ, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserved {
    pub cores: u64,
    pub memory_mb: u64,
    pub disk_gb: u64,
    pub vms: u64,
}

#[derive(Deserialize)]
struct Row {
    spec: Option<Spec>,
}

/// The stored form of a VM-request time: RFC 3339, UTC, milliseconds (ordered as text).
pub fn vm_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// What VPSs placed in `provider`'s AZ `az` take that a capacity read at `since` did not
    /// count: those whose VM is not asked for yet (pending, or provisioning before the create
    /// answered), and those whose VM was asked for at or after `since` (and that did not fail
    /// or go).
    pub async fn reserved_in(
        &self,
        provider: &str,
        az: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Reserved> {
        let provider = if provider == crate::config::DEFAULT_PROVIDER { "" } else { provider };
        let args = json!({ "p": provider, "az": az, "since": vm_time(since) });
        let waiting: Vec<Row> = self
            .query_one(
                "SELECT spec FROM vps WHERE state IN ['pending', 'provisioning'] AND vm_at = NONE
                    AND template_row.az_id = $az AND (template_row.provider OR '') = $p",
                args.clone(),
                0,
            )
            .await?;
        let recent: Vec<Row> = self
            .query_one(
                "SELECT spec FROM vps WHERE vm_at >= $since AND state NOT IN ['failed', 'deleted', 'deleting']
                    AND template_row.az_id = $az AND (template_row.provider OR '') = $p",
                args,
                0,
            )
            .await?;
        let mut r = Reserved::default();
        for spec in waiting.into_iter().chain(recent).filter_map(|row| row.spec) {
            r.cores += u64::from(spec.cores);
            r.memory_mb += spec.memory_mb;
            r.disk_gb += spec.disk_gb;
            r.vms += 1;
        }
        Ok(r)
    }
}

//! What placement reads of the `vps` table: the room vmauto has taken in an AZ that SCP may
//! not count yet.

use serde::Deserialize;
use serde_json::json;

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
struct Sums {
    vms: u64,
    #[serde(default)]
    cores: f64,
    #[serde(default)]
    memory_mb: f64,
    #[serde(default)]
    disk_gb: f64,
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
        // Summed by the store: with a backlog behind SCP's write limit thousands of VPSs
        // wait, and only four numbers are wanted of them.
        let sum = |filter: &str| {
            format!(
                "SELECT count() AS vms, math::sum(spec.cores) AS cores, math::sum(spec.memory_mb) AS memory_mb,
                        math::sum(spec.disk_gb) AS disk_gb
                 FROM vps WHERE {filter} AND spec != NONE AND template_row.az_id = $az
                    AND (template_row.provider OR '') = $p
                 GROUP ALL"
            )
        };
        let mut r = Reserved::default();
        for filter in [
            "state IN ['pending', 'provisioning'] AND vm_at = NONE",
            "vm_at >= $since AND state NOT IN ['failed', 'deleted', 'deleting']",
        ] {
            let sums: Vec<Sums> = self.query_one(&sum(filter), args.clone(), 0).await?;
            for s in sums {
                r.cores += s.cores as u64;
                r.memory_mb += s.memory_mb as u64;
                r.disk_gb += s.disk_gb as u64;
                r.vms += s.vms;
            }
        }
        Ok(r)
    }
}

impl Store {
    /// Runs a write that may give room in an AZ back or move it; when `moves`, notes that
    /// afterwards ([`Store::room_moved`]), also when the write failed: a write whose outcome
    /// is not known may have committed.
    pub(crate) async fn execute_moving_room(
        &self,
        sql: &str,
        bindings: serde_json::Value,
        moves: bool,
    ) -> anyhow::Result<()> {
        let written = self.execute(sql, bindings).await;
        if moves {
            self.room_moved();
        }
        written
    }
}

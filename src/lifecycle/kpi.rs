//! The key figures of the service, computed from the store over a trailing window: how much
//! of the automation succeeds, how long provisioning and deprovisioning take, how many
//! webhooks arrive, how often an admin has to step in.

use serde::Serialize;

use crate::db::Store;

/// Days the figures look back.
pub const WINDOW_DAYS: u32 = 30;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Kpis {
    /// Succeeded operations / finished operations (1.0 when none finished).
    pub automation_success_rate: f64,
    /// Dead operations / finished operations.
    pub error_rate: f64,
    /// Mean seconds from a create's request to its VPS being active.
    pub avg_provisioning_secs: Option<f64>,
    /// Mean seconds from a delete's due time to the VM being gone.
    pub avg_deprovisioning_secs: Option<f64>,
    /// Webhooks received per minute over the last hour.
    pub webhooks_per_minute: f64,
    /// Operations requested by admins (manual interventions) over the window.
    pub manual_interventions: u64,
    pub succeeded_operations: u64,
    pub dead_operations: u64,
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Computes the figures.
pub async fn compute(store: &Store) -> anyhow::Result<Kpis> {
    let f = store.operation_figures(WINDOW_DAYS).await?;
    let (succeeded, dead, manual) = (f.succeeded, f.dead, f.manual);
    let (provisioning, deprovisioning) = (f.provisioning_secs, f.deprovisioning_secs);
    let webhooks_last_hour = store.webhooks_received_last_hour().await?;
    let finished = (succeeded + dead) as f64;
    Ok(Kpis {
        automation_success_rate: if finished > 0.0 { succeeded as f64 / finished } else { 1.0 },
        error_rate: if finished > 0.0 { dead as f64 / finished } else { 0.0 },
        avg_provisioning_secs: mean(&provisioning),
        avg_deprovisioning_secs: mean(&deprovisioning),
        webhooks_per_minute: webhooks_last_hour as f64 / 60.0,
        manual_interventions: manual,
        succeeded_operations: succeeded,
        dead_operations: dead,
    })
}

/// What is waiting right now: operations by state, and the inbox rows stored but not yet
/// applied (with the age of the oldest). Exported as gauges at each scrape.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Backlog {
    /// Operation count per state (`queued`, `held`, `dead`, …; states with no operation absent).
    pub operations: Vec<(String, u64)>,
    /// Webhooks stored (`received`) whose events are not applied yet.
    pub inbox_pending: u64,
    /// Seconds since the oldest of them arrived (0 when none).
    pub inbox_oldest_pending_secs: f64,
}

/// Computes the backlog.
pub async fn backlog(store: &Store) -> anyhow::Result<Backlog> {
    let operations = store.operations_by_state().await?;
    let (inbox_pending, oldest) = store.inbox_pending().await?;
    Ok(Backlog { operations, inbox_pending, inbox_oldest_pending_secs: oldest.max(0.0) })
}

//! The key figures of the service, computed from the store over a trailing window: how much
//! of the automation succeeds, how long provisioning and deprovisioning take, how many
//! webhooks arrive, how often an admin has to step in.

use serde::Serialize;
use serde_json::json;

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
    let window = format!("{WINDOW_DAYS}d");
    let count = |sql: String| async move {
        let n: Vec<u64> = store.query_one(&sql, json!({}), 0).await?;
        anyhow::Ok(n.first().copied().unwrap_or(0))
    };
    let succeeded = count(format!(
        "SELECT VALUE count() FROM operation WHERE state = 'succeeded' AND created_at > time::now() - {window} GROUP ALL"
    ))
    .await?;
    let dead = count(format!(
        "SELECT VALUE count() FROM operation WHERE state = 'dead' AND created_at > time::now() - {window} GROUP ALL"
    ))
    .await?;
    let manual = count(format!(
        "SELECT VALUE count() FROM operation
         WHERE string::starts_with(requested_by, 'admin:') AND created_at > time::now() - {window} GROUP ALL"
    ))
    .await?;
    let webhooks_last_hour =
        count("SELECT VALUE count() FROM webhook_event WHERE received_at > time::now() - 1h GROUP ALL".into()).await?;
    let durations = |kind: &str| {
        format!(
            "SELECT VALUE time::unix(finished_at) - time::unix(next_attempt_at OR created_at) FROM operation
             WHERE kind = '{kind}' AND state = 'succeeded' AND created_at > time::now() - {window}"
        )
    };
    let provisioning: Vec<f64> = store.query_one(&durations("create"), json!({}), 0).await?;
    let deprovisioning: Vec<f64> = store.query_one(&durations("delete"), json!({}), 0).await?;
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
    #[derive(serde::Deserialize)]
    struct ByState {
        state: String,
        n: u64,
    }
    let rows: Vec<ByState> =
        store.query_one("SELECT state, count() AS n FROM operation GROUP BY state", json!({}), 0).await?;
    #[derive(serde::Deserialize)]
    struct Count {
        // An empty selection grouped ALL comes back as one row without the field.
        #[serde(default)]
        n: u64,
    }
    let pending: Vec<Count> = store
        .query_one("SELECT count() AS n FROM webhook_event WHERE status = 'received' GROUP ALL", json!({}), 0)
        .await?;
    let oldest: Vec<f64> = store
        .query_one(
            "SELECT VALUE time::unix(time::now()) - time::unix(received_at) FROM webhook_event
             WHERE status = 'received' ORDER BY received_at LIMIT 1",
            json!({}),
            0,
        )
        .await?;
    Ok(Backlog {
        operations: rows.into_iter().map(|r| (r.state, r.n)).collect(),
        inbox_pending: pending.first().map_or(0, |c| c.n),
        inbox_oldest_pending_secs: oldest.first().copied().unwrap_or(0.0).max(0.0),
    })
}

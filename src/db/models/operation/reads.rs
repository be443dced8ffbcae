//! What the dashboard and the live stream read of operations.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{OpKind, OpState, OperationId};
use crate::db::Store;
use crate::db::models::vps::VpsId;

/// An operation's progress as the live stream sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationChange {
    pub id: OperationId,
    pub vps: VpsId,
    pub kind: OpKind,
    pub state: OpState,
    pub updated_at: String,
}

/// Operations changed after `$since`, oldest change first; the bound cast before the `SELECT`
/// so that it reads a range of `operation_updated` (as [`crate::db::models::vps::VPS_CHANGES`]).
pub(crate) const OPERATION_CHANGES: &str = "LET $since_at = <datetime>$since;
    SELECT record::id(id) AS id, vps, kind, state, <string>updated_at AS updated_at FROM operation
    WHERE updated_at > $since_at ORDER BY updated_at LIMIT 500";

/// The live-update stream.
impl Store {
    /// Operations changed after `since` (the live-update stream).
    pub async fn operation_changes(&self, since: DateTime<Utc>) -> anyhow::Result<Vec<OperationChange>> {
        self.query_one(OPERATION_CHANGES, json!({ "since": since.to_rfc3339() }), 1).await
    }
}

/// A dead operation, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedOperation {
    pub id: OperationId,
    pub vps: VpsId,
    pub kind: OpKind,
    pub last_error: Option<String>,
    pub attempts: u32,
    /// When it died.
    pub at: String,
}

/// An operation the blast-radius guard holds, with its VPS's customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOperation {
    pub id: OperationId,
    pub vps: VpsId,
    pub kind: OpKind,
    pub requested_by: String,
    /// When it was requested.
    pub at: String,
    pub customer: Option<String>,
}

/// The dashboard.
impl Store {
    /// Recent dead operations (newest first).
    pub async fn recent_failures(&self, limit: u64) -> anyhow::Result<Vec<FailedOperation>> {
        self.query_one(
            "SELECT record::id(id) AS id, vps, kind, last_error, attempts, <string>updated_at AS at FROM operation
                 WHERE state = 'dead' ORDER BY updated_at DESC LIMIT $limit",
            json!({ "limit": limit }),
            0,
        )
        .await
    }

    /// Operations the blast-radius guard holds for an admin.
    pub async fn held_operations(&self) -> anyhow::Result<Vec<HeldOperation>> {
        self.query_one(
            "SELECT record::id(id) AS id, vps, kind, requested_by, <string>created_at AS at,
                    (SELECT VALUE customer_name FROM ONLY type::record('vps', $parent.vps)) AS customer
                 FROM operation WHERE state = 'held' ORDER BY created_at LIMIT 500",
            json!({}),
            0,
        )
        .await
    }
}

/// A finished operation, for the dashboard's hourly series.
#[derive(Debug, Clone, Deserialize)]
pub struct FinishedOperation {
    pub kind: OpKind,
    pub state: OpState,
    pub at: DateTime<Utc>,
    /// Seconds from its (last) start to its finish.
    #[serde(default)]
    pub secs: Option<f64>,
}

/// Operations finished in the last 24 hours, from a range of `operation_finished`.
pub(crate) const OPERATIONS_FINISHED_LAST_DAY: &str = "SELECT kind, state, finished_at AS at,
        time::unix(finished_at) - time::unix(next_attempt_at OR created_at) AS secs
    FROM operation WHERE finished_at > time::now() - 24h LIMIT 100000";

impl Store {
    /// Operations finished in the last 24 hours (at most 100,000).
    pub async fn operations_finished_last_day(&self) -> anyhow::Result<Vec<FinishedOperation>> {
        self.query_one(OPERATIONS_FINISHED_LAST_DAY, json!({}), 0).await
    }
}

/// The start of the key figures' window (`$window`, a duration), bound before the read.
pub(crate) const OPERATIONS_OF_WINDOW_FROM: &str = "LET $from = time::now() - type::duration($window);";
/// The operations created in the window.
pub(crate) const OPERATIONS_OF_WINDOW: &str = "SELECT kind, state, requested_by,
        IF finished_at != NONE { time::unix(finished_at) - time::unix(next_attempt_at OR created_at) } AS secs
    FROM operation WHERE created_at > $from";

/// Operations of a trailing window, for the service's key figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperationFigures {
    pub succeeded: u64,
    pub dead: u64,
    /// Requested by admins (manual interventions).
    pub manual: u64,
    /// Seconds from due to done of each succeeded create.
    pub provisioning_secs: Vec<f64>,
    /// Seconds from due to done of each succeeded delete.
    pub deprovisioning_secs: Vec<f64>,
}

/// The service's key figures and backlog.
impl Store {
    /// Operation counts and durations of the last `days` days, from one read of the window's
    /// operations (a range of `operation_created`: the cost follows the window, not the
    /// history).
    pub async fn operation_figures(&self, days: u32) -> anyhow::Result<OperationFigures> {
        #[derive(Deserialize)]
        struct Row {
            kind: OpKind,
            state: OpState,
            #[serde(default)]
            requested_by: Option<String>,
            #[serde(default)]
            secs: Option<f64>,
        }
        let rows: Vec<Row> = self
            .query_one(
                &format!("{OPERATIONS_OF_WINDOW_FROM} {OPERATIONS_OF_WINDOW}"),
                json!({ "window": format!("{days}d") }),
                1,
            )
            .await?;
        let mut f = OperationFigures::default();
        for r in rows {
            if r.requested_by.as_deref().is_some_and(|by| by.starts_with("admin:")) {
                f.manual += 1;
            }
            match (r.state, r.kind) {
                (OpState::Dead, _) => f.dead += 1,
                (OpState::Succeeded, kind) => {
                    f.succeeded += 1;
                    let secs = r.secs.unwrap_or_default();
                    match kind {
                        OpKind::Create => f.provisioning_secs.push(secs),
                        OpKind::Delete => f.deprovisioning_secs.push(secs),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        Ok(f)
    }

    /// Operation count per state (states with no operation absent), from the state index.
    pub async fn operations_by_state(&self) -> anyhow::Result<Vec<(String, u64)>> {
        crate::db::models::count_by_state(self, "operation", &OpState::ALL.map(OpState::as_str)).await
    }
}

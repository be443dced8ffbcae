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

impl Store {
    /// Operations finished in the last 24 hours (at most 100,000).
    pub async fn operations_finished_last_day(&self) -> anyhow::Result<Vec<FinishedOperation>> {
        self.query_one(
            "SELECT kind, state, finished_at AS at,
                time::unix(finished_at) - time::unix(next_attempt_at OR created_at) AS secs
             FROM operation WHERE finished_at > time::now() - 24h LIMIT 100000",
            json!({}),
            0,
        )
        .await
    }
}

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
    /// Operation counts and durations of the last `days` days.
    pub async fn operation_figures(&self, days: u32) -> anyhow::Result<OperationFigures> {
        let window = format!("{days}d");
        let count = |sql: String| async move {
            let n: Vec<u64> = self.query_one(&sql, json!({}), 0).await?;
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
        let durations = |kind: &str| {
            format!(
                "SELECT VALUE time::unix(finished_at) - time::unix(next_attempt_at OR created_at) FROM operation
                 WHERE kind = '{kind}' AND state = 'succeeded' AND created_at > time::now() - {window}"
            )
        };
        let provisioning_secs: Vec<f64> = self.query_one(&durations("create"), json!({}), 0).await?;
        let deprovisioning_secs: Vec<f64> = self.query_one(&durations("delete"), json!({}), 0).await?;
        Ok(OperationFigures { succeeded, dead, manual, provisioning_secs, deprovisioning_secs })
    }

    /// Operation count per state (states with no operation absent).
    pub async fn operations_by_state(&self) -> anyhow::Result<Vec<(String, u64)>> {
        #[derive(Deserialize)]
        struct ByState {
            state: String,
            n: u64,
        }
        let rows: Vec<ByState> =
            self.query_one("SELECT state, count() AS n FROM operation GROUP BY state", json!({}), 0).await?;
        Ok(rows.into_iter().map(|r| (r.state, r.n)).collect())
    }
}

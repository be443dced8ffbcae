//! The `operation` table: durable operations on a VPS, the queue the VPS actors work from.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::db::Store;

use super::subscription::new_key;
use super::vps::VpsId;

mod reads;
pub use reads::{FailedOperation, FinishedOperation, HeldOperation, OperationChange, OperationFigures};
#[cfg(test)]
pub(crate) use reads::{
    OPERATION_CHANGES, OPERATIONS_FINISHED_LAST_DAY, OPERATIONS_OF_WINDOW, OPERATIONS_OF_WINDOW_FROM,
};

id_type!(
    /// The key of an `operation` row (its idempotency key).
    OperationId
);

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Create,
    Suspend,
    Resume,
    Delete,
    Reset,
    Rebuild,
    Resize,
    SetPassword,
    /// Start, stop or reboot the VM (`params.action`: a [`PowerAction`]).
    Power,
    /// A deleted VPS back from SCP's recycle bin.
    Restore,
}

/// What a power operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    Start,
    /// A graceful shutdown through the guest's tools.
    Stop,
    /// Power cut, like pulling the plug.
    ForceStop,
    /// A graceful restart (a start when the VM is off).
    Reboot,
}

impl PowerAction {
    pub const ALL: [Self; 4] = [Self::Start, Self::Stop, Self::ForceStop, Self::Reboot];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::ForceStop => "force_stop",
            Self::Reboot => "reboot",
        }
    }

    /// How a person reads it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Start => "Start",
            Self::Stop => "Shut down",
            Self::ForceStop => "Force power off",
            Self::Reboot => "Reboot",
        }
    }
}

impl OpKind {
    pub const ALL: [Self; 10] = [
        Self::Create,
        Self::Suspend,
        Self::Resume,
        Self::Delete,
        Self::Reset,
        Self::Rebuild,
        Self::Resize,
        Self::SetPassword,
        Self::Power,
        Self::Restore,
    ];

    /// Suspensions and deletions count against the blast-radius guard.
    pub fn is_destructive(self) -> bool {
        matches!(self, Self::Suspend | Self::Delete)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Delete => "delete",
            Self::Reset => "reset",
            Self::Rebuild => "rebuild",
            Self::Resize => "resize",
            Self::SetPassword => "set_password",
            Self::Power => "power",
            Self::Restore => "restore",
        }
    }
}

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpState {
    /// Written, not started (or waiting for its retry time).
    Queued,
    /// Held by the blast-radius guard until an admin approves.
    Held,
    Running,
    /// A provider task is under way; its id is saved.
    WaitingTask,
    Succeeded,
    /// Retries exhausted or a permanent failure; needs an admin.
    Dead,
    /// Rejected by an admin, or made unnecessary by a later event.
    Cancelled,
}

impl OpState {
    pub const ALL: [Self; 7] =
        [Self::Queued, Self::Held, Self::Running, Self::WaitingTask, Self::Succeeded, Self::Dead, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Held => "held",
            Self::Running => "running",
            Self::WaitingTask => "waiting_task",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Dead | Self::Cancelled)
    }
}

/// A durable operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub id: OperationId,
    pub vps: VpsId,
    pub kind: OpKind,
    pub state: OpState,
    #[serde(default)]
    pub params: serde_json::Value,
    /// Attempts counted against `policy.max_attempts` (an admin's retry starts again at 0).
    #[serde(default)]
    pub attempts: u32,
    /// Every attempt ever started, retries by an admin included: it names the attempt in the
    /// idempotency keys of its provider writes, so a new attempt is new work for SCP while a
    /// crash in the middle of one replays the same attempt.
    #[serde(default)]
    pub attempt_seq: u32,
    #[serde(default)]
    pub task_id: Option<String>,
    #[serde(default)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_error: Option<String>,
    pub requested_by: String,
}

/// Progress fields of an operation to change; only those given are written.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OpPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<OpState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_seq: Option<u32>,
    /// `Some(None)` forgets the task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

impl OpPatch {
    /// A provider task is under way: its id, saved before it is waited on.
    pub fn waiting_on(task_id: &str) -> Self {
        Self { state: Some(OpState::WaitingTask), task_id: Some(Some(task_id.to_string())), ..Self::default() }
    }

    /// The task ended well: forget it, the operation runs on.
    pub fn task_done() -> Self {
        Self { state: Some(OpState::Running), task_id: Some(None), ..Self::default() }
    }
}

/// One operation to write with a decision.
#[derive(Debug, Clone)]
pub struct NewOperation {
    pub vps: VpsId,
    pub kind: OpKind,
    pub params: Value,
    pub requested_by: String,
    /// Start no earlier than this (a deletion after the grace period).
    pub not_before: Option<DateTime<Utc>>,
    pub held: bool,
}

const OP_FIELDS: &str =
    "record::id(id) AS id, vps, kind, state, params, attempts, attempt_seq OR 0 AS attempt_seq, task_id, next_attempt_at,
     last_error, requested_by";

impl Store {
    /// VPS ids with an operation that is not finished and is due (start-up recovery and the
    /// scheduler's wake-ups): the longest due first, from at most `limit` operations.
    pub async fn vps_with_due_operations(&self, now: DateTime<Utc>, limit: usize) -> anyhow::Result<Vec<VpsId>> {
        #[derive(serde::Deserialize)]
        struct Due {
            vps: VpsId,
        }
        let due: Vec<Due> = self
            .query_one(
                "SELECT vps, next_attempt_at FROM operation
                 WHERE state IN ['queued', 'running', 'waiting_task'] AND next_attempt_at <= <datetime>$now
                 ORDER BY next_attempt_at LIMIT $limit",
                json!({ "now": now.to_rfc3339(), "limit": limit }),
                0,
            )
            .await?;
        let mut seen = std::collections::HashSet::new();
        Ok(due.into_iter().map(|d| d.vps).filter(|v| seen.insert(v.clone())).collect())
    }

    /// The next unfinished operation of a VPS, oldest first. One scheduled for later and not
    /// started yet (a deletion after the grace period) does not hold up those queued after
    /// it: an admin's resume of a suspended VPS runs now, not after the deletion.
    pub async fn next_operation(&self, vps: &VpsId) -> anyhow::Result<Option<Operation>> {
        self.query_first::<Operation>(
            &format!(
                "SELECT {OP_FIELDS}, created_at FROM operation
                     WHERE vps = $vps AND state IN ['queued', 'running', 'waiting_task']
                       AND !(state = 'queued' AND attempts = 0 AND next_attempt_at > time::now())
                     ORDER BY created_at ASC LIMIT 1"
            ),
            json!({ "vps": vps }),
            0,
        )
        .await
    }

    /// Updates an operation's progress fields (only those given).
    pub async fn update_operation(&self, id: &OperationId, patch: &OpPatch) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('operation', $id) MERGE object::extend($patch, { updated_at: time::now() });",
            json!({ "id": id, "patch": patch }),
        )
        .await
    }

    /// Updates an operation's progress fields and a VPS's fields in one transaction.
    pub async fn update_operation_and_vps(
        &self,
        op: &OperationId,
        patch: &OpPatch,
        vps: &VpsId,
        vps_patch: &super::vps::VpsPatch,
    ) -> anyhow::Result<()> {
        self.execute_moving_room(
            "BEGIN TRANSACTION;
                 UPDATE type::record('operation', $op) MERGE object::extend($patch, { updated_at: time::now() });
                 UPDATE type::record('vps', $vps) MERGE object::extend($vps_patch, { updated_at: time::now() });
                 COMMIT TRANSACTION;",
            json!({ "op": op, "patch": patch, "vps": vps, "vps_patch": vps_patch }),
            vps_patch.moves_room(),
        )
        .await
    }

    /// Schedules a retry: the next attempt time; the failed attempt's task is forgotten, so the
    /// next attempt looks at SCP afresh instead of waiting on a task that has ended.
    pub async fn retry_operation_at(&self, id: &OperationId, at: DateTime<Utc>, error: &str) -> anyhow::Result<()> {
        self.execute(
            "UPDATE type::record('operation', $id) SET state = 'queued', next_attempt_at = <datetime>$at,
                last_error = $error, task_id = NONE, updated_at = time::now()",
            json!({ "id": id, "at": at.to_rfc3339(), "error": error }),
        )
        .await
    }

    /// Marks the start of an attempt (the operation's `patch`) and, when given, the VPS's
    /// state while it runs, in one transaction.
    pub async fn start_operation(
        &self,
        op: &OperationId,
        patch: &OpPatch,
        vps: &VpsId,
        running: Option<super::vps::VpsState>,
    ) -> anyhow::Result<()> {
        self.execute_moving_room(
            "BEGIN TRANSACTION;
             UPDATE type::record('operation', $op) MERGE object::extend($patch, { updated_at: time::now() });
             IF $running { UPDATE type::record('vps', $vps) SET state = $running, updated_at = time::now(); };
             COMMIT TRANSACTION;",
            json!({ "op": op, "patch": patch, "vps": vps, "running": running }),
            running.is_some_and(super::vps::VpsState::gives_room_back),
        )
        .await
    }

    /// Marks the finish of an operation, sets the VPS state and writes the activity-log entry
    /// (`note`: level, message, data; actor `system`, subject the VPS) in one transaction. A
    /// succeeded operation whose patch clears a scheduled deletion (a resume, a restore)
    /// cancels the deletions queued before it, which it made unnecessary.
    pub async fn finish_operation(
        &self,
        op: &OperationId,
        state: OpState,
        error: Option<&str>,
        vps: &VpsId,
        vps_patch: &super::vps::VpsPatch,
        (level, message, data): (super::activity::Level, String, Value),
    ) -> anyhow::Result<()> {
        self.execute_moving_room(
            "BEGIN TRANSACTION;
             UPDATE type::record('operation', $op) SET state = $state, last_error = $error,
                finished_at = time::now(), updated_at = time::now();
             CREATE activity CONTENT { at: time::now(), level: $level, actor: 'system', subject: 'vps:' + $vps,
                message: $message, data: $data };
             UPDATE type::record('vps', $vps) MERGE object::extend($patch, { updated_at: time::now() });
             IF $cancel_deletes {
                 LET $since = (SELECT VALUE created_at FROM type::record('operation', $op))[0];
                 UPDATE operation SET state = 'cancelled', updated_at = time::now(),
                     last_error = 'made unnecessary: the VPS was brought back by operation ' + $op
                 WHERE vps = $vps AND kind = 'delete' AND state IN ['queued', 'held'] AND created_at < $since;
             };
             COMMIT TRANSACTION;",
            json!({
                "op": op, "state": state, "error": error, "vps": vps, "patch": vps_patch,
                "cancel_deletes": state == OpState::Succeeded && vps_patch.delete_after == Some(None),
                "level": level.as_str(), "message": message, "data": data,
            }),
            vps_patch.moves_room(),
        )
        .await
    }

    /// Queues an operation asked for outside the billing flow: by an admin (`requested_by` =
    /// `admin:<user>`), an upgrade payment (`stripe:<session>`), … `key` makes the request
    /// idempotent: a second call with the same key queues nothing and answers the first id.
    /// The caller then activates the VPS (`registry::Activate`).
    pub async fn enqueue_operation(
        &self,
        vps: &VpsId,
        kind: OpKind,
        params: Value,
        requested_by: &str,
        key: Option<&OperationId>,
    ) -> anyhow::Result<OperationId> {
        let key = key.cloned().unwrap_or_else(|| OperationId::new(new_key()));
        self.execute(
            "BEGIN TRANSACTION;
             IF (SELECT VALUE id FROM type::record('vps', $vps))[0] == NONE {
                 THROW 'no such VPS: ' + $vps;
             };
             IF (SELECT VALUE id FROM type::record('operation', $key))[0] == NONE {
                 CREATE type::record('operation', $key) CONTENT {
                     vps: $vps, kind: $kind, params: $params, state: 'queued', attempts: 0,
                     idempotency_key: $key, requested_by: $requested_by, next_attempt_at: time::now(),
                     created_at: time::now(), updated_at: time::now()
                 };
             };
             COMMIT TRANSACTION;",
            json!({ "vps": vps, "kind": kind.as_str(), "params": params, "requested_by": requested_by, "key": key }),
        )
        .await
        // The store's words for the THROW above, turned into a type here, where it is thrown.
        .map_err(|e| {
            if format!("{e:#}").contains("no such VPS") {
                crate::error::NotFound::new("VPS", vps.as_str()).into()
            } else {
                e
            }
        })?;
        Ok(key)
    }

    /// Destructive operations requested in the last hour (the blast-radius guard's count, read
    /// at every destructive decision): a range of `operation_created`, not the whole table.
    pub async fn destructive_ops_last_hour(&self) -> anyhow::Result<u64> {
        let n: Vec<u64> = self
            .query_one(
                "SELECT VALUE count() FROM operation
                 WHERE kind IN $kinds AND created_at > time::now() - 1h
                   AND !string::starts_with(requested_by OR '', 'admin') GROUP ALL",
                json!({ "kinds": OpKind::ALL.into_iter().filter(|k| k.is_destructive()).collect::<Vec<_>>() }),
                0,
            )
            .await?;
        Ok(n.first().copied().unwrap_or(0))
    }
}

/// What a retry of an operation looks at: the operation, its VPS's state and subscription.
#[derive(Debug, Clone, Deserialize)]
pub struct RetryView {
    pub vps: VpsId,
    #[serde(default)]
    pub kind: Option<OpKind>,
    #[serde(default)]
    pub state: Option<OpState>,
    #[serde(default)]
    pub vps_state: Option<crate::db::models::vps::VpsState>,
    #[serde(default)]
    pub subscription: Option<super::subscription::SubscriptionId>,
}

/// Admins' decisions on operations: retries of dead ones, held ones approved or rejected.
impl Store {
    /// An operation as a retry looks at it, `None` when there is no such operation.
    pub async fn operation_for_retry(&self, op: &OperationId) -> anyhow::Result<Option<RetryView>> {
        self.query_first::<RetryView>(
            "SELECT kind, state, vps,
                    (SELECT VALUE state FROM type::record('vps', $parent.vps))[0] AS vps_state,
                    (SELECT VALUE subscription FROM type::record('vps', $parent.vps))[0] AS subscription
                 FROM type::record('operation', $op)",
            json!({ "op": op }),
            0,
        )
        .await
    }

    /// Queues a dead operation again for a fresh series of attempts (no stale task id); false
    /// when it is no longer dead.
    pub async fn requeue_dead_operation(&self, op: &OperationId, actor: &str) -> anyhow::Result<bool> {
        let updated: Vec<Value> = self
            .query_one(
                "UPDATE type::record('operation', $op) SET state = 'queued', attempts = 0, task_id = NONE,
                    next_attempt_at = time::now(), retried_by = $actor, updated_at = time::now()
                 WHERE state = 'dead' RETURN vps",
                json!({ "op": op, "actor": actor }),
                0,
            )
            .await?;
        Ok(!updated.is_empty())
    }

    /// Approves (queues) or rejects (cancels) a held operation; answers its VPS, `None` when
    /// the operation is not held.
    pub async fn decide_held_operation(
        &self,
        op: &OperationId,
        approve: bool,
        actor: &str,
    ) -> anyhow::Result<Option<VpsId>> {
        let sql = if approve {
            "UPDATE type::record('operation', $op) SET state = 'queued', approved_by = $actor, updated_at = time::now()
             WHERE state = 'held' RETURN vps"
        } else {
            "UPDATE type::record('operation', $op) SET state = 'cancelled', last_error = 'rejected by ' + $actor,
                updated_at = time::now() WHERE state = 'held' RETURN vps"
        };
        let rows: Vec<Value> = self.query_one(sql, json!({ "op": op, "actor": actor }), 0).await?;
        Ok(rows.first().and_then(|r| r["vps"].as_str()).map(VpsId::from))
    }
}

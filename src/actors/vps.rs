//! VpsActor: owns one VPS and runs its operations one at a time, oldest first.
//!
//! Activated by the registry when an operation is written or falls due; stops itself when
//! nothing is due, so only busy VPSs cost memory. A transient failure is retried with capped
//! back-off (the retry time is stored, and the scheduler wakes the VPS again); a permanent
//! failure or exhausted retries mark the operation `dead`, the VPS `failed`, and alert admins.

pub mod exec;

use std::sync::Arc;

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message, Recipient, WrapFuture};
use chrono::Utc;
use serde_json::json;

use self::exec::{ExecContext, Outcome, execute};
use super::messages::{Notify, NotifyKind, Severity};
use crate::config::Config;
use crate::lifecycle::Level;
use crate::lifecycle::{OpKind, OpPatch, OpState, Operation, VpsId, VpsPatch, VpsState, retry_delay};

/// Look for due work now.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Kick;

/// A VPS actor stopped (nothing more was due): its registry may start another.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Stopped {
    pub vps: VpsId,
    /// Which start of that VPS's actor stopped (as the registry numbered it).
    pub run: u64,
}

pub struct VpsActor {
    id: VpsId,
    cx: ExecContext,
    config: Arc<Config>,
    notify: Recipient<Notify>,
    /// A round of operations is running.
    busy: bool,
    /// A kick arrived during the round: look again when it ends.
    again: bool,
    /// Told when this actor stops, with the run number it was started with.
    on_stop: Option<(Recipient<Stopped>, u64)>,
}

impl VpsActor {
    pub fn new(id: VpsId, cx: ExecContext, config: Arc<Config>, notify: Recipient<Notify>) -> Self {
        Self { id, cx, config, notify, busy: false, again: false, on_stop: None }
    }

    /// Tells `to` when the actor stops, naming it `run`.
    pub fn reporting_to(mut self, to: Recipient<Stopped>, run: u64) -> Self {
        self.on_stop = Some((to, run));
        self
    }
}

impl Actor for VpsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.notify(Kick);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some((to, run)) = &self.on_stop {
            to.do_send(Stopped { vps: self.id.clone(), run: *run });
        }
    }
}

impl Handler<Kick> for VpsActor {
    type Result = ();

    fn handle(&mut self, _: Kick, ctx: &mut Self::Context) {
        if self.busy {
            self.again = true;
            return;
        }
        self.busy = true;
        let (id, cx, config, notify) = (self.id.clone(), self.cx.clone(), self.config.clone(), self.notify.clone());
        ctx.spawn(async move { run_due(&id, &cx, &config, &notify).await }.into_actor(self).map(|(), act, ctx| {
            act.busy = false;
            if std::mem::take(&mut act.again) {
                ctx.notify(Kick);
            } else {
                ctx.stop();
            }
        }));
    }
}

/// Runs due operations until none is due. The scheduler wakes the VPS again when a retry or
/// a delayed operation falls due.
async fn run_due(id: &VpsId, cx: &ExecContext, config: &Config, notify: &Recipient<Notify>) {
    // Calls go to the SCP the VPS's VM lives on.
    let (mut cx, problem) = match cx.for_vps(id).await {
        Ok(Ok(routed)) => (routed, None),
        Ok(Err(problem)) => (cx.clone(), Some(problem)),
        Err(e) => {
            tracing::warn!(vps = %id, error = %e, "cannot read the VPS's provider; the scheduler will retry");
            return;
        }
    };
    // Each operation starts only while this node holds the work lease (its writes are fenced
    // as well): a node that lost it leaves the rest to the one that took it.
    while cx.store.may_work() {
        let op = match cx.store.next_operation(id).await {
            Ok(Some(op)) => op,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(vps = %id, error = %e, "cannot read the next operation; the scheduler will retry");
                return;
            }
        };
        if op.next_attempt_at.is_some_and(|t| t > Utc::now()) {
            return;
        }
        run_one(&cx, config, notify, op, problem.as_deref()).await;
        // The operation may have changed the template row read with the route.
        cx.template = None;
    }
}

#[tracing::instrument(skip_all, fields(vps = %op.vps, operation = %op.id, kind = op.kind.as_str()))]
async fn run_one(
    cx: &ExecContext,
    config: &Config,
    notify: &Recipient<Notify>,
    mut op: Operation,
    problem: Option<&str>,
) {
    // An operation found `running` or `waiting_task` was interrupted in the middle of an
    // attempt (a crash, a restart): that attempt goes on under the same keys, so SCP replays
    // what it already did. Otherwise this is a new attempt, with keys of its own.
    let interrupted = matches!(op.state, OpState::Running | OpState::WaitingTask) && op.attempts > 0;
    let (attempt, seq) =
        if interrupted { (op.attempts, op.attempt_seq.max(1)) } else { (op.attempts + 1, op.attempt_seq + 1) };
    // A power operation leaves the VPS's state as it is: it is still the customer's, running
    // or not.
    let running_state = match op.kind {
        OpKind::Create => Some(VpsState::Provisioning),
        OpKind::Suspend => Some(VpsState::Suspending),
        OpKind::Resume => Some(VpsState::Resuming),
        OpKind::Delete => Some(VpsState::Deleting),
        OpKind::Resize => Some(VpsState::Resizing),
        OpKind::Reset | OpKind::SetPassword => Some(VpsState::Resetting),
        OpKind::Rebuild => Some(VpsState::Rebuilding),
        OpKind::Restore => Some(VpsState::Resuming),
        OpKind::Power => None,
    };
    let state = if op.task_id.is_some() { OpState::WaitingTask } else { OpState::Running };
    let started = OpPatch { state: Some(state), attempts: Some(attempt), attempt_seq: Some(seq), ..OpPatch::default() };
    if let Err(e) = cx.store.start_operation(&op.id, &started, &op.vps, running_state).await {
        tracing::warn!(error = %e, "cannot mark the operation running");
        return;
    }
    op.attempts = attempt;
    op.attempt_seq = seq;
    let started = std::time::Instant::now();
    let outcome = match problem {
        Some(p) => Outcome::Fail(p.to_string()),
        None => execute(cx, &op).await,
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let subject = format!("vps:{}", op.vps);
    match outcome {
        Outcome::Done(patch) => {
            let note = (
                Level::Info,
                format!("{} succeeded", op.kind.as_str()),
                json!({ "operation": op.id, "attempt": attempt, "duration_ms": elapsed_ms }),
            );
            let finished = cx.store.finish_operation(&op.id, OpState::Succeeded, None, &op.vps, &patch, note);
            if let Err(e) = finished.await {
                tracing::error!(error = %e, "the operation succeeded but could not be recorded; it will be resumed");
                return;
            }
            tracing::info!(attempt, elapsed_ms, "operation succeeded");
            let kind = match op.kind {
                OpKind::Create => Some((NotifyKind::VpsReady, "VPS ready")),
                OpKind::Delete => Some((NotifyKind::VpsDeleted, "VPS deleted")),
                OpKind::Resize if op.requested_by.starts_with("stripe:") => {
                    Some((NotifyKind::UpgradeApplied, "Upgrade applied"))
                }
                _ => None,
            };
            if let Some((kind, title)) = kind {
                notify.do_send(Notify {
                    kind,
                    severity: Severity::Info,
                    title: format!("{title}: {}", op.vps),
                    body: format!("Operation {} ({}) finished.", op.id, op.kind.as_str()),
                    subject: Some(subject),
                    portal_url: None,
                });
            }
        }
        Outcome::Retry(error) if attempt < config.policy.max_attempts => {
            let delay = retry_delay(attempt, config.policy.retry_base_secs, config.policy.retry_max_secs);
            let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
            tracing::warn!(attempt, error = %error, retry_in_ms = delay.as_millis() as u64, "operation will be retried");
            let _ = cx.store.retry_operation_at(&op.id, at, &error).await;
            let _ = cx
                .store
                .record_activity(
                    Level::Warning,
                    "system",
                    Some(&subject),
                    &format!("{} attempt {attempt} failed; retrying", op.kind.as_str()),
                    json!({ "operation": op.id, "error": error }),
                )
                .await;
        }
        Outcome::Retry(error) | Outcome::Fail(error) => {
            tracing::error!(attempt, error = %error, "operation is dead");
            // A power operation that failed leaves the VPS as it was (it still runs, or not).
            // A restore that failed leaves the VPS deleted (its VM is still in the recycle bin).
            let patch = match op.kind {
                OpKind::Power => VpsPatch::default(),
                OpKind::Restore => VpsPatch::state(VpsState::Deleted),
                _ => VpsPatch::state(VpsState::Failed),
            };
            let note = (
                Level::Error,
                format!("{} failed for good", op.kind.as_str()),
                json!({ "operation": op.id, "error": error, "attempts": attempt }),
            );
            let _ = cx.store.finish_operation(&op.id, OpState::Dead, Some(&error), &op.vps, &patch, note).await;
            notify.do_send(Notify {
                kind: NotifyKind::OperationDead,
                severity: Severity::Critical,
                title: format!("{} of VPS {} failed", op.kind.as_str(), op.vps),
                body: format!(
                    "After {attempt} attempt(s): {error}. Retry it from the VPS page once the cause is fixed."
                ),
                subject: Some(subject),
                portal_url: None,
            });
        }
    }
}

//! WebhookActor: the intake pipeline and the inbox writer. A verified delivery ([`Deliver`])
//! is read by its source's plugin, written here durably before its sender gets a 2xx, and its
//! events then go to the subscription actor, the outcome written back to the inbox row. A
//! verified Stripe payment event ([`DeliverPayment`]) takes the same path: written first, then
//! applied by the subscription actor, its outcome written on the row. A replay, of either kind,
//! is [`Replay`].
//!
//! Writes are grouped: requests that arrive while a batch is being committed wait for the
//! next batch, so one transaction carries many webhooks (group commit; design.md §8). The
//! record id is the dedupe key, so a duplicate is found by a key lookup, not a unique index.
//! The actor is the only writer of new inbox rows, so the lookup and the insert cannot race.
//!
//! Crash safety: a row is acknowledged once committed, before its events are applied. Each
//! decision marks its event applied on the row in the decision's own transaction, so at
//! start-up the actor applies, oldest first, the events of every row still `received` that
//! were not applied yet, and holds back newly arrived rows until that recovery is done.
//!
//! Memory: committed rows wait for their events to be applied in a queue of at most
//! [`MAX_QUEUED`] rows, holding only the events (not the stored request). When more arrive
//! than the lifecycle keeps up with, the rest wait in the store only and are read back, oldest
//! first, a page at a time — the same path start-up recovery takes — so a backlog of any size
//! costs the store space, not memory.

use std::sync::Arc;

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, ResponseFuture, WrapFuture};
use serde_json::Value;
use tokio::sync::oneshot;

use super::messages::Shutdown;
use super::subscription::{EventOutcome, HandleEvents, HandlePayment, SubscriptionActor};
use super::supervisor::Supervision;
use crate::db::Store;
pub use crate::db::models::webhook_event::InboxKey;
pub use crate::db::models::webhook_event::{APPLYING, InboxRow, StoredDelivery, event_fingerprint, inbox_status};

mod intake;
use crate::telemetry::metrics::Metrics;
pub use intake::{Deliver, DeliverPayment, Delivered, Intake, PaymentDelivered, Undelivered};

/// Most rows one transaction carries.
pub const MAX_BATCH: usize = 256;
/// At most about this many bytes of webhooks in one inbox batch (a single larger webhook goes
/// alone): the smallest write buffer the store may have (`database.memtable_mib`, 4 MiB) holds
/// a batch with room to spare.
pub const MAX_BATCH_BYTES: usize = 2 * 1024 * 1024;

/// What happened to an ingested row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Written now.
    Stored,
    /// A row with the same dedupe key exists; nothing was written.
    Duplicate,
}

/// The dedupe key (record id) of an inbox row made of `parts`.
pub fn key_of(parts: &[&[u8]]) -> InboxKey {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    // A letter first keeps the key a plain record identifier.
    InboxKey::new(format!("e{}", hex::encode(&h.finalize()[..16])))
}

/// Write a row to the inbox (batched) and, once it is committed, process its events.
#[derive(Debug, Message)]
#[rtype(result = "anyhow::Result<Ingested>")]
pub struct Ingest(pub InboxRow);

/// Apply a stored inbox row's events again (an admin's replay).
#[derive(Debug, Clone, Message)]
#[rtype(result = "anyhow::Result<Vec<EventOutcome>>")]
pub struct Replay {
    pub key: InboxKey,
    pub requested_by: String,
}

/// Apply a stored payment event and write its outcome on its row. `redelivered`: the row was
/// there already, so the event is applied only if that row is still `applying`.
#[derive(Debug, Message)]
#[rtype(result = "anyhow::Result<Option<EventOutcome>>")]
pub(super) struct ApplyPayment {
    pub(super) key: InboxKey,
    pub(super) event: Value,
    pub(super) redelivered: bool,
}

type Waiter = (InboxRow, oneshot::Sender<anyhow::Result<Ingested>>);

/// Most committed rows held in memory waiting for their events to be applied; past it, rows
/// wait in the store only (status `received`) and are read back in pages of this size.
pub const MAX_QUEUED: usize = 1024;

/// Most rows whose events are with the subscription actor at once: one, so rows are applied,
/// and their outcomes written, in the order they arrived.
const MAX_IN_FLIGHT: usize = 1;

/// How often the node holding the work lease looks for rows other nodes stored.
const POLL_OTHERS: std::time::Duration = std::time::Duration::from_millis(250);

/// How long applying waits before trying the store again after it did not answer.
const STORE_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// A committed row whose events are to be applied: only what applying needs is kept.
#[derive(Debug)]
struct Queued {
    key: InboxKey,
    source: String,
    events: Vec<crate::billing::BillingEvent>,
    /// Events a decision applied before a restart interrupted the row.
    applied_before: usize,
}

impl Queued {
    fn of(row: InboxRow, applied_before: usize) -> Self {
        Self { key: row.key, source: row.source, events: row.events, applied_before }
    }
}

pub struct WebhookActor {
    /// Writes the inbox (any node may).
    store: Store,
    /// Writes what applying the rows did: fenced when several nodes share the store, so only
    /// the node holding the work lease applies webhooks.
    work: Store,
    subscription: Addr<SubscriptionActor>,
    metrics: Arc<Metrics>,
    pending: Vec<Waiter>,
    flushing: bool,
    /// Committed rows waiting for their events to be applied, oldest first (at most
    /// [`MAX_QUEUED`]).
    queue: std::collections::VecDeque<Queued>,
    in_flight: usize,
    /// Committed rows wait in the store that are not in `queue` (start-up, or more arrived than
    /// `queue` holds): they are read back, oldest first, once `queue` is empty.
    backlog: bool,
    /// A read of the backlog runs: rows committed meanwhile wait in `deferred`.
    reading: bool,
    deferred: Vec<InboxRow>,
    /// A row could not be applied now (the store's server did not answer, or the lease
    /// moved): nothing is applied until the next try.
    waiting_for_store: bool,
    /// This node held the work lease at the last look (several nodes only).
    was_working: bool,
    /// Keys the last read of the backlog queued: a batch committed while that read ran may
    /// be in it, and is not queued twice.
    last_read: std::collections::HashSet<InboxKey>,
    /// Outcomes of processed rows, written with the next batch.
    outcomes: Vec<(InboxKey, Vec<EventOutcome>)>,
    sup: Supervision,
}

impl WebhookActor {
    pub fn new(store: Store, work: Store, subscription: Addr<SubscriptionActor>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            work,
            subscription,
            sup: Supervision::new("webhook", metrics.clone()),
            metrics,
            pending: Vec::new(),
            flushing: false,
            queue: std::collections::VecDeque::new(),
            in_flight: 0,
            // At start-up the store may hold rows a restart interrupted.
            backlog: true,
            reading: false,
            deferred: Vec::new(),
            waiting_for_store: false,
            was_working: false,
            last_read: std::collections::HashSet::new(),
            outcomes: Vec::new(),
        }
    }

    /// Applies payment events whose application a restart interrupted.
    fn recover_payments(&mut self, ctx: &mut Context<Self>) {
        let (store, subscription) = (self.store.clone(), self.subscription.clone());
        ctx.spawn(
            async move {
                let payments = match store.applying_payments().await {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot list unapplied payment events; replay them from the inbox");
                        return;
                    }
                };
                if !payments.is_empty() {
                    tracing::warn!(rows = payments.len(), "applying payment events a restart interrupted");
                }
                for row in payments {
                    if let Err(e) = replay_payment(&store, &subscription, &row).await {
                        tracing::error!(key = %row.key, error = %format!("{e:#}"), "a payment event could not be applied");
                    }
                }
            }
            .into_actor(self),
        );
    }

    /// Rows just committed: queued in memory while there is room and nothing older waits in
    /// the store; otherwise they are read back from the store in their turn.
    fn enqueue(&mut self, mut rows: Vec<InboxRow>, ctx: &mut Context<Self>) {
        if self.work.fence().is_some() {
            // Several nodes store webhooks: the lease holder applies every node's rows from
            // the store, in the order they arrived, its own included.
            self.backlog |= !rows.is_empty();
            self.pump(ctx);
            return;
        }
        rows.retain(|r| !self.last_read.contains(&r.key));
        if self.reading {
            self.deferred.extend(rows);
        } else if !self.backlog && self.queue.len() + rows.len() <= MAX_QUEUED {
            self.queue.extend(rows.into_iter().map(|r| Queued::of(r, 0)));
        } else if !rows.is_empty() {
            self.backlog = true;
        }
        self.pump(ctx);
    }

    /// Hands queued rows to the subscription actor (in order), and reads the
    /// backlog once the queue is empty and every outcome so far is written (so a row read back
    /// is one no decision has finished).
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if !self.work.may_work() {
            // Another node applies webhooks: what was queued here waits in the store for it,
            // and is read back if this node takes the lease.
            self.queue.clear();
            self.backlog = true;
            return;
        }
        while self.in_flight < MAX_IN_FLIGHT && !self.waiting_for_store {
            let Some(row) = self.queue.pop_front() else { break };
            self.in_flight += 1;
            ctx.spawn(process(self.subscription.clone(), row).into_actor(self).map(|(key, outcomes), act, ctx| {
                act.in_flight -= 1;
                if outcomes.iter().any(EventOutcome::is_deferred) {
                    act.defer(ctx);
                } else {
                    act.outcomes.push((key, outcomes));
                    act.flush(ctx);
                }
                act.pump(ctx);
            }));
        }
        let settled = self.queue.is_empty() && self.in_flight == 0 && self.outcomes.is_empty() && !self.flushing;
        if self.backlog && !self.reading && !self.waiting_for_store && settled {
            self.read_backlog(ctx);
        }
    }

    /// A row could not be applied now (the store's server stopped answering, or this node
    /// lost the work lease): the row stays `received`, and so do the queued rows after it.
    /// Drop them from memory and read them back, in their order, once the server answers
    /// (the read fails and is tried again while it does not) and only while this node holds
    /// the lease.
    fn defer(&mut self, ctx: &mut Context<Self>) {
        tracing::warn!(
            queued = self.queue.len(),
            "applying webhooks waits (the store does not answer, or the lease moved)"
        );
        self.queue.clear();
        self.backlog = true;
        self.waiting_for_store = true;
        ctx.run_later(STORE_RETRY, |act, ctx| {
            act.waiting_for_store = false;
            act.pump(ctx);
        });
    }

    /// Reads the oldest committed rows whose events are not all applied (a page of
    /// [`MAX_QUEUED`]) into the queue.
    fn read_backlog(&mut self, ctx: &mut Context<Self>) {
        self.reading = true;
        self.backlog = false;
        let store = self.store.clone();
        ctx.spawn(async move { store.unapplied_inbox(MAX_QUEUED).await }.into_actor(self).map(|read, act, ctx| {
            act.reading = false;
            let deferred = std::mem::take(&mut act.deferred);
            match read {
                Ok(rows) => {
                    if rows.iter().any(|(_, before)| *before > 0) {
                        tracing::warn!(rows = rows.len(), "applying webhooks a restart interrupted");
                    }
                    let full = rows.len() >= MAX_QUEUED;
                    act.last_read = rows.iter().map(|(r, _)| r.key.clone()).collect();
                    act.queue.extend(rows.into_iter().map(|(r, before)| Queued::of(r, before)));
                    if full {
                        // More wait in the store, the deferred rows among them.
                        act.backlog = true;
                    } else {
                        let last_read = &act.last_read;
                        let fresh = deferred.into_iter().filter(|r| !last_read.contains(&r.key));
                        act.queue.extend(fresh.map(|r| Queued::of(r, 0)));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot read unapplied webhooks; trying again shortly");
                    act.backlog = true;
                    ctx.run_later(STORE_RETRY, |act, ctx| act.pump(ctx));
                    return;
                }
            }
            act.pump(ctx);
        }));
    }

    /// Commits the waiting rows, and the outcomes of processed ones, as one batch; more
    /// arrivals form the next batch.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || (self.pending.is_empty() && self.outcomes.is_empty()) {
            return;
        }
        self.flushing = true;
        // A batch is one transaction, which must fit in the store's write buffer: bounded by
        // the bodies' bytes as well as by count.
        let mut bytes = 0;
        let take = self
            .pending
            .iter()
            .take(MAX_BATCH)
            .take_while(|(row, _)| {
                bytes += row.fields.get("body").and_then(serde_json::Value::as_str).map_or(0, str::len) + 1024;
                bytes <= MAX_BATCH_BYTES
            })
            .count()
            .max(1)
            .min(self.pending.len());
        let batch: Vec<Waiter> = self.pending.drain(..take).collect();
        let take = self.outcomes.len().min(MAX_BATCH);
        let outcomes: Vec<(InboxKey, Vec<EventOutcome>)> = self.outcomes.drain(..take).collect();
        // Outcomes are the lease holder's writes; a batch of new rows alone, any node's.
        let store = if outcomes.is_empty() { self.store.clone() } else { self.work.clone() };
        let metrics = self.metrics.clone();
        ctx.spawn(
            async move {
                let rows: Vec<&InboxRow> = batch.iter().map(|(r, _)| r).collect();
                let result = store.insert_inbox_with_outcomes(&rows, &outcomes).await;
                // Rows whose outcomes were not written stay `received`: read back later, their
                // applied events skipped, they get their outcomes then.
                let lost = result.is_err() && !outcomes.is_empty();
                if let Err(e) = &result {
                    tracing::error!(outcomes = outcomes.len(), error = %format!("{e:#}"), "cannot record webhook outcomes");
                }
                if !batch.is_empty() {
                    metrics.inbox_batch_size.observe(batch.len() as f64);
                }
                let mut stored = Vec::new();
                match result {
                    Ok(existing) => {
                        for (mut row, tx) in batch {
                            if existing.contains(&row.key) {
                                let _ = tx.send(Ok(Ingested::Duplicate));
                                continue;
                            }
                            let _ = tx.send(Ok(Ingested::Stored));
                            if !row.events.is_empty() {
                                // The stored request is not needed to apply the events.
                                row.fields = Value::Null;
                                stored.push(row);
                            }
                        }
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        tracing::error!(error = %msg, rows = batch.len(), "inbox write failed");
                        for (_, tx) in batch {
                            let _ = tx.send(Err(anyhow::anyhow!("inbox write failed: {msg}")));
                        }
                    }
                }
                (stored, lost)
            }
            .into_actor(self)
            .map(|(stored, lost), act, ctx| {
                act.flushing = false;
                act.backlog |= lost;
                act.enqueue(stored, ctx);
                act.flush(ctx);
            }),
        );
    }
}

/// Applies a committed row's events; answers its key and the outcomes to record.
async fn process(subscription: Addr<SubscriptionActor>, row: Queued) -> (InboxKey, Vec<EventOutcome>) {
    let requested_by = format!("webhook:{}", row.key);
    let mut outcomes = vec![EventOutcome::new("processed", "applied before a restart"); row.applied_before];
    if !row.events.is_empty() {
        match subscription.send(HandleEvents { source: row.source, requested_by, events: row.events }).await {
            Ok(o) => outcomes.extend(o),
            Err(e) => outcomes.push(EventOutcome::new("failed", format!("the lifecycle is not running: {e}"))),
        }
    }
    (row.key, outcomes)
}

impl Actor for WebhookActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
        // After a restart the old context's work is gone: nothing is in flight any more, and
        // whatever was queued is in the store. Rows handed to the subscription actor before
        // may still be applied there, so the store is read once it has answered everything
        // sent before (its messages run in order).
        self.flushing = false;
        self.in_flight = 0;
        self.queue.clear();
        self.last_read.clear();
        self.backlog = true;
        self.reading = true;
        self.was_working = false;
        let barrier = HandleEvents { source: String::new(), requested_by: "system".into(), events: Vec::new() };
        ctx.spawn(self.subscription.send(barrier).into_actor(self).map(|_, act, ctx| {
            act.reading = false;
            // With several nodes, the one that takes the work lease recovers them.
            if act.work.fence().is_none() {
                act.recover_payments(ctx);
            }
            act.pump(ctx);
            act.flush(ctx);
        }));
        if self.work.fence().is_some() {
            // Other nodes store webhooks too: the lease holder looks for their rows whenever
            // it has nothing queued.
            ctx.run_interval(POLL_OTHERS, |act, ctx| {
                let working = act.work.may_work();
                if working && !act.was_working {
                    // Payments a node that died was applying: this node applies them now.
                    act.recover_payments(ctx);
                }
                act.was_working = working;
                let idle = act.queue.is_empty() && act.in_flight == 0 && !act.reading;
                if idle && working {
                    act.backlog = true;
                    act.pump(ctx);
                }
            });
        }
    }
}

crate::supervised_child!(WebhookActor);

impl Handler<Ingest> for WebhookActor {
    type Result = ResponseFuture<anyhow::Result<Ingested>>;

    fn handle(&mut self, msg: Ingest, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.pending.push((msg.0, tx));
        self.flush(ctx);
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(anyhow::anyhow!("the inbox writer stopped"))) })
    }
}

/// Applies a payment event and writes its outcome on its row.
async fn apply_payment(
    store: &Store,
    subscription: &Addr<SubscriptionActor>,
    key: &InboxKey,
    event: Value,
) -> anyhow::Result<EventOutcome> {
    let outcome = subscription
        .send(HandlePayment { event })
        .await
        .map_err(|e| anyhow::anyhow!("the lifecycle is not running: {e}"))??;
    store.record_inbox_outcome(key, std::slice::from_ref(&outcome)).await?;
    tracing::info!(key = %key, status = outcome.status, "payment event applied");
    Ok(outcome)
}

/// Applies a stored payment event again (a replay or a recovery).
async fn replay_payment(
    store: &Store,
    subscription: &Addr<SubscriptionActor>,
    row: &StoredDelivery,
) -> anyhow::Result<EventOutcome> {
    if row.status.as_deref() == Some("rejected") {
        anyhow::bail!("inbox entry {} was rejected (bad signature or body); it cannot be applied", row.key);
    }
    let event: Value = serde_json::from_str(row.body.as_deref().unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("inbox entry {} does not hold a JSON event: {e}", row.key))?;
    apply_payment(store, subscription, &row.key, event).await
}

impl Handler<ApplyPayment> for WebhookActor {
    type Result = ResponseFuture<anyhow::Result<Option<EventOutcome>>>;

    fn handle(&mut self, msg: ApplyPayment, _: &mut Self::Context) -> Self::Result {
        let (store, subscription) = (self.store.clone(), self.subscription.clone());
        Box::pin(async move {
            if msg.redelivered && store.inbox_status_of(&msg.key).await?.as_deref() != Some(APPLYING) {
                return Ok(None);
            }
            apply_payment(&store, &subscription, &msg.key, msg.event).await.map(Some)
        })
    }
}

impl Handler<Replay> for WebhookActor {
    type Result = ResponseFuture<anyhow::Result<Vec<EventOutcome>>>;

    fn handle(&mut self, msg: Replay, _: &mut Self::Context) -> Self::Result {
        let (store, subscription) = (self.store.clone(), self.subscription.clone());
        Box::pin(async move {
            let row =
                store.stored_delivery(&msg.key).await?.ok_or_else(|| anyhow::anyhow!("no inbox entry {}", msg.key))?;
            if row.compacted {
                anyhow::bail!(
                    "webhook {} was compacted after inbox.retention_days: its body is gone and it cannot be replayed",
                    msg.key
                );
            }
            if row.source == crate::upgrade::INBOX_SOURCE {
                return replay_payment(&store, &subscription, &row).await.map(|o| vec![o]);
            }
            let events = row.events;
            let outcomes = subscription
                .send(HandleEvents { source: row.source, requested_by: msg.requested_by, events })
                .await
                .map_err(|e| anyhow::anyhow!("the lifecycle is not running: {e}"))?;
            store.record_inbox_outcome(&msg.key, &outcomes).await?;
            Ok(outcomes)
        })
    }
}

impl Handler<Shutdown> for WebhookActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        // Commit what is waiting before the process goes.
        self.flush(ctx);
        Box::pin(async {})
    }
}

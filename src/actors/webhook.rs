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

use std::sync::Arc;

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, ResponseFuture, WrapFuture};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::messages::Shutdown;
use super::plugins::{ParseWebhook, PluginHost};
use super::subscription::{EventOutcome, HandleEvents, HandlePayment, SubscriptionActor};
use super::supervisor::Supervision;
use crate::db::Store;
pub use crate::db::models::webhook_event::{APPLYING, InboxRow, StoredDelivery, event_fingerprint, inbox_status};
use crate::plugin_host::{PluginError, SourceRequest};
use crate::telemetry::metrics::Metrics;

/// Most rows one transaction carries.
pub const MAX_BATCH: usize = 256;

/// What happened to an ingested row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Written now.
    Stored,
    /// A row with the same dedupe key exists; nothing was written.
    Duplicate,
}

/// A delivery whose signature the HTTP layer verified, for [`Intake::deliver`].
#[derive(Debug)]
pub struct Deliver {
    /// The source's plugin.
    pub plugin: String,
    /// What the plugin sees (allow-listed headers, the path without any token, the settings).
    pub request: SourceRequest,
    /// What the inbox row keeps of the request (path, headers, body as stored, signature).
    pub fields: Value,
}

/// A delivery in the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Written now; `failed` when the plugin could not run (the row waits for a replay).
    Stored { key: String, failed: bool },
    /// A row with the same dedupe key exists; nothing was written.
    Duplicate { key: String },
}

/// Why a delivery is not in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undelivered {
    /// The plugin read the body and refused it: the sender must fix it.
    #[error("{0}")]
    Rejected(String),
    /// The inbox or the plugin host cannot take it now: the sender should retry.
    #[error("{0}")]
    Unavailable(String),
}

/// A Stripe event whose signature the HTTP layer verified, for [`Intake::deliver_payment`].
#[derive(Debug)]
pub struct DeliverPayment {
    /// The dedupe key (from the Stripe event id).
    pub key: String,
    /// What the inbox row keeps of the request.
    pub fields: Value,
    /// The event.
    pub event: Value,
}

/// What became of a delivered payment event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentDelivered {
    /// Stored (now, or by an earlier delivery that did not finish) and applied.
    Applied(EventOutcome),
    /// Stored and applied by an earlier delivery; nothing was done.
    Duplicate,
}

/// The dedupe key (record id) of an inbox row made of `parts`.
pub fn key_of(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    // A letter first keeps the key a plain record identifier.
    format!("e{}", hex::encode(&h.finalize()[..16]))
}

/// Write a row to the inbox (batched) and, once it is committed, process its events.
#[derive(Debug, Message)]
#[rtype(result = "anyhow::Result<Ingested>")]
pub struct Ingest(pub InboxRow);

/// Apply a stored inbox row's events again (an admin's replay).
#[derive(Debug, Clone, Message)]
#[rtype(result = "anyhow::Result<Vec<EventOutcome>>")]
pub struct Replay {
    pub key: String,
    pub requested_by: String,
}

/// Apply a stored payment event and write its outcome on its row. `redelivered`: the row was
/// there already, so the event is applied only if that row is still `applying`.
#[derive(Debug, Message)]
#[rtype(result = "anyhow::Result<Option<EventOutcome>>")]
struct ApplyPayment {
    key: String,
    event: Value,
    redelivered: bool,
}

type Waiter = (InboxRow, oneshot::Sender<anyhow::Result<Ingested>>);

pub struct WebhookActor {
    store: Store,
    subscription: Addr<SubscriptionActor>,
    metrics: Arc<Metrics>,
    pending: Vec<Waiter>,
    flushing: bool,
    /// Start-up recovery runs: committed rows wait in `deferred` so events keep arrival order.
    recovering: bool,
    deferred: Vec<InboxRow>,
    /// Outcomes of processed rows, written with the next batch.
    outcomes: Vec<(String, Vec<EventOutcome>)>,
    sup: Supervision,
}

impl WebhookActor {
    pub fn new(store: Store, subscription: Addr<SubscriptionActor>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            subscription,
            sup: Supervision::new("webhook", metrics.clone()),
            metrics,
            pending: Vec::new(),
            flushing: false,
            recovering: false,
            deferred: Vec::new(),
            outcomes: Vec::new(),
        }
    }

    /// Applies the unapplied events of rows left `received` by a crash, then releases the rows
    /// that arrived meanwhile.
    fn recover(&mut self, ctx: &mut Context<Self>) {
        self.recovering = true;
        let (store, subscription, me) = (self.store.clone(), self.subscription.clone(), ctx.address());
        ctx.spawn(
            async move {
                let rows = match store.unapplied_inbox().await {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot list unapplied webhooks; replay them from the inbox");
                        return;
                    }
                };
                if !rows.is_empty() {
                    tracing::warn!(rows = rows.len(), "applying webhooks a restart interrupted");
                }
                for (row, applied_before) in rows {
                    let before = vec![EventOutcome::new("processed", "applied before a restart"); applied_before];
                    process(me.clone(), subscription.clone(), row, before).await;
                }
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
            .into_actor(self)
            .map(|(), act, ctx| {
                act.recovering = false;
                for row in std::mem::take(&mut act.deferred) {
                    actix::spawn(process(ctx.address(), act.subscription.clone(), row, Vec::new()));
                }
            }),
        );
    }

    /// Commits the waiting rows, and the outcomes of processed ones, as one batch; more
    /// arrivals form the next batch.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || (self.pending.is_empty() && self.outcomes.is_empty()) {
            return;
        }
        self.flushing = true;
        let take = self.pending.len().min(MAX_BATCH);
        let batch: Vec<Waiter> = self.pending.drain(..take).collect();
        let take = self.outcomes.len().min(MAX_BATCH);
        let outcomes: Vec<(String, Vec<EventOutcome>)> = self.outcomes.drain(..take).collect();
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        ctx.spawn(
            async move {
                let rows: Vec<&InboxRow> = batch.iter().map(|(r, _)| r).collect();
                let result = store.insert_inbox_with_outcomes(&rows, &outcomes).await;
                if let Err(e) = &result {
                    tracing::error!(outcomes = outcomes.len(), error = %format!("{e:#}"), "cannot record webhook outcomes");
                }
                if !batch.is_empty() {
                    metrics.inbox_batch_size.observe(batch.len() as f64);
                }
                let mut stored = Vec::new();
                match result {
                    Ok(existing) => {
                        for (row, tx) in batch {
                            if existing.contains(&row.key) {
                                let _ = tx.send(Ok(Ingested::Duplicate));
                                continue;
                            }
                            let _ = tx.send(Ok(Ingested::Stored));
                            if !row.events.is_empty() {
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
                stored
            }
            .into_actor(self)
            .map(|stored, act, ctx| {
                if act.recovering {
                    act.deferred.extend(stored);
                } else {
                    for row in stored {
                        actix::spawn(process(ctx.address(), act.subscription.clone(), row, Vec::new()));
                    }
                }
                act.flushing = false;
                act.flush(ctx);
            }),
        );
    }
}

/// Applies a committed row's events and records the outcome on the row.
/// `before`: outcomes of events a decision applied before a restart interrupted the row.
async fn process(
    inbox: Addr<WebhookActor>,
    subscription: Addr<SubscriptionActor>,
    row: InboxRow,
    before: Vec<EventOutcome>,
) {
    let requested_by = format!("webhook:{}", row.key);
    let mut outcomes = before;
    if !row.events.is_empty() {
        match subscription.send(HandleEvents { source: row.source.clone(), requested_by, events: row.events }).await {
            Ok(o) => outcomes.extend(o),
            Err(e) => outcomes.push(EventOutcome::new("failed", format!("the lifecycle is not running: {e}"))),
        }
    }
    inbox.do_send(RecordOutcome { key: row.key, outcomes });
}

/// Write a processed row's outcome (batched like the rows themselves). Losing one to a crash
/// is harmless: the row stays `received` and recovery skips the events already applied.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct RecordOutcome {
    key: String,
    outcomes: Vec<EventOutcome>,
}

impl Handler<RecordOutcome> for WebhookActor {
    type Result = ();

    fn handle(&mut self, msg: RecordOutcome, ctx: &mut Self::Context) {
        self.outcomes.push((msg.key, msg.outcomes));
        self.flush(ctx);
    }
}

impl Actor for WebhookActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
        self.recover(ctx);
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

/// The intake pipeline: the one way a billing webhook comes in. [`Intake::deliver`] has the
/// source's plugin read a verified delivery, keys it, hands it to the [`WebhookActor`]'s group
/// commit and, once committed, the actor applies its events. It runs on the caller's task, so
/// parsing and hashing spread over the HTTP workers instead of queueing on the actor's thread.
#[derive(Clone)]
pub struct Intake {
    plugins: Addr<PluginHost>,
    webhook: Addr<WebhookActor>,
}

impl Intake {
    pub fn new(plugins: Addr<PluginHost>, webhook: Addr<WebhookActor>) -> Self {
        Self { plugins, webhook }
    }

    /// Reads, keys and stores one delivery; the dedupe key is the sender's event id when the
    /// plugin found one, otherwise the body's hash.
    pub async fn deliver(&self, msg: Deliver) -> Result<Delivered, Undelivered> {
        let Deliver { plugin, request, mut fields } = msg;
        let source = request.source.clone();
        let body = request.body.clone();
        let parsed = self
            .plugins
            .send(ParseWebhook { plugin, request })
            .await
            .map_err(|e| Undelivered::Unavailable(format!("the plugin host is not running: {e}")))?;
        let (events, failed) = match parsed {
            Ok(events) => (events, false),
            Err(PluginError::Rejected { plugin, rejection }) => {
                return Err(Undelivered::Rejected(format!(
                    "The {plugin} plugin could not read this webhook: {rejection}"
                )));
            }
            Err(e) => {
                // The body is fine as far as we know; the plugin is not. Keep the request so it
                // can be replayed once the plugin is fixed.
                fields["error"] = json!(e.to_string());
                fields["error_code"] = json!(e.code());
                (Vec::new(), true)
            }
        };
        fields["status"] = json!(if failed { "failed" } else { "received" });
        fields["http_status"] = json!(202);
        let key = match events.iter().find_map(|e| e.source_event_id.clone()) {
            Some(id) => key_of(&[source.as_bytes(), b"id", id.as_bytes()]),
            None => key_of(&[source.as_bytes(), b"body", &body]),
        };
        let row = InboxRow { key: key.clone(), source, fields, events };
        match self.webhook.send(Ingest(row)).await {
            Ok(Ok(Ingested::Stored)) => Ok(Delivered::Stored { key, failed }),
            Ok(Ok(Ingested::Duplicate)) => Ok(Delivered::Duplicate { key }),
            Ok(Err(e)) => Err(Undelivered::Unavailable(format!("{e:#}"))),
            Err(e) => Err(Undelivered::Unavailable(format!("the inbox writer is not running: {e}"))),
        }
    }
}

impl Intake {
    /// Stores a Stripe event (its row `applying`) and applies it; a redelivery of an event
    /// whose earlier delivery did not finish applies it again (every step is idempotent).
    pub async fn deliver_payment(&self, msg: DeliverPayment) -> Result<PaymentDelivered, Undelivered> {
        let DeliverPayment { key, mut fields, event } = msg;
        fields["status"] = json!(APPLYING);
        fields["http_status"] = json!(200);
        let row =
            InboxRow { key: key.clone(), source: crate::upgrade::INBOX_SOURCE.to_string(), fields, events: Vec::new() };
        let unavailable = |e: String| Undelivered::Unavailable(e);
        let redelivered = match self.webhook.send(Ingest(row)).await {
            Ok(Ok(Ingested::Stored)) => false,
            Ok(Ok(Ingested::Duplicate)) => true,
            Ok(Err(e)) => return Err(unavailable(format!("{e:#}"))),
            Err(e) => return Err(unavailable(format!("the inbox writer is not running: {e}"))),
        };
        match self.webhook.send(ApplyPayment { key, event, redelivered }).await {
            Ok(Ok(Some(outcome))) => Ok(PaymentDelivered::Applied(outcome)),
            Ok(Ok(None)) => Ok(PaymentDelivered::Duplicate),
            Ok(Err(e)) => Err(unavailable(format!("{e:#}"))),
            Err(e) => Err(unavailable(format!("the inbox writer is not running: {e}"))),
        }
    }
}

/// Applies a payment event and writes its outcome on its row.
async fn apply_payment(
    store: &Store,
    subscription: &Addr<SubscriptionActor>,
    key: &str,
    event: Value,
) -> anyhow::Result<EventOutcome> {
    let outcome = subscription
        .send(HandlePayment { event })
        .await
        .map_err(|e| anyhow::anyhow!("the lifecycle is not running: {e}"))??;
    store.record_inbox_outcome(key, std::slice::from_ref(&outcome)).await?;
    tracing::info!(key, status = outcome.status, "payment event applied");
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

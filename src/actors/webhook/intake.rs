//! The intake pipeline: how a verified delivery becomes a committed inbox row.

use actix::Addr;
use serde_json::{Value, json};

use super::{APPLYING, ApplyPayment, EventOutcome, InboxKey, InboxRow, Ingest, Ingested, WebhookActor, key_of};
use crate::actors::plugins::{ParseWebhook, PluginHost};
use crate::plugin_host::{PluginError, SourceRequest};

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
    Stored { key: InboxKey, failed: bool },
    /// A row with the same dedupe key exists; nothing was written.
    Duplicate { key: InboxKey },
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
    pub key: InboxKey,
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
        let redelivered = match self.webhook.send(Ingest(row)).await {
            Ok(Ok(Ingested::Stored)) => false,
            Ok(Ok(Ingested::Duplicate)) => true,
            Ok(Err(e)) => return Err(Undelivered::Unavailable(format!("{e:#}"))),
            Err(e) => return Err(Undelivered::Unavailable(format!("the inbox writer is not running: {e}"))),
        };
        match self.webhook.send(ApplyPayment { key, event, redelivered }).await {
            Ok(Ok(Some(outcome))) => Ok(PaymentDelivered::Applied(outcome)),
            Ok(Ok(None)) => Ok(PaymentDelivered::Duplicate),
            Ok(Err(e)) => Err(Undelivered::Unavailable(format!("{e:#}"))),
            Err(e) => Err(Undelivered::Unavailable(format!("the inbox writer is not running: {e}"))),
        }
    }
}

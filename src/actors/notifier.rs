//! Notifier: tells admins (and, when a VPS is ready, its customer) when something needs
//! them. Every notification is stored (the UI's notification centre reads the
//! `notification` table) and logged; email and outgoing webhooks go out through
//! [`crate::notify::Channels`], each delivery as its own task started the moment the
//! notification arrives, so a slow SMTP server or webhook receiver never holds up the
//! mailbox or the stored notification.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Context, Handler, ResponseFuture};

use super::messages::{Notify, Severity, Shutdown};
use super::supervisor::Supervision;
use crate::config::Config;
use crate::db::Store;
use crate::notify::Channels;
use crate::telemetry::metrics::Metrics;

/// Longest wait for running deliveries at shutdown.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

pub struct Notifier {
    store: Store,
    /// Email and webhook deliveries; None when they cannot be set up (the reason is logged
    /// at start and with every notification, so the failure stays loud).
    channels: Option<Arc<Channels>>,
    /// Why `channels` is None.
    channels_error: Option<String>,
    sup: Supervision,
}

impl Notifier {
    pub fn new(store: Store, metrics: Arc<Metrics>, config: Arc<Config>) -> Self {
        let (channels, channels_error) = match Channels::new(store.clone(), config) {
            Ok(c) => (Some(Arc::new(c)), None),
            Err(e) => {
                let e = format!("{e:#}");
                tracing::error!(error = %e, "email and webhook notifications are off: they cannot be set up");
                (None, Some(e))
            }
        };
        Self { store, channels, channels_error, sup: Supervision::new("notifier", metrics) }
    }
}

impl Actor for Notifier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
    }
}

crate::supervised_child!(Notifier);

impl Handler<Notify> for Notifier {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Notify, _: &mut Self::Context) -> Self::Result {
        match msg.severity {
            Severity::Critical => tracing::error!(kind = ?msg.kind, subject = ?msg.subject, "{}", msg.title),
            Severity::Warning => tracing::warn!(kind = ?msg.kind, subject = ?msg.subject, "{}", msg.title),
            Severity::Info => tracing::info!(kind = ?msg.kind, subject = ?msg.subject, "{}", msg.title),
        }
        match (&self.channels, &self.channels_error) {
            (Some(channels), _) => channels.dispatch(&msg),
            (None, Some(e)) => tracing::error!(kind = ?msg.kind, error = %e, "notification not emailed or posted"),
            (None, None) => {}
        }
        let store = self.store.clone();
        Box::pin(async move {
            if let Err(e) = store.record_notification(&msg).await {
                tracing::error!(error = %e, "could not store a notification");
            }
        })
    }
}

impl Handler<Shutdown> for Notifier {
    type Result = ResponseFuture<()>;

    /// Gives running deliveries up to [`SHUTDOWN_DRAIN`] to finish (the caller's own
    /// shutdown timeout may cut that shorter); what is still retrying then is logged.
    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let channels = self.channels.clone();
        Box::pin(async move {
            let Some(channels) = channels else { return };
            let left = channels.drain(SHUTDOWN_DRAIN).await;
            if left > 0 {
                tracing::warn!(deliveries = left, "stopping with email or webhook deliveries still retrying");
            }
        })
    }
}

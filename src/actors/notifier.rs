//! Notifier: tells admins when something needs them. Every notification is stored (the UI's
//! notification centre reads the `notification` table) and logged; email and outgoing
//! webhooks are added as channels behind the same message.

use std::sync::Arc;

use actix::{Actor, Context, Handler, ResponseFuture};
use serde_json::json;

use super::messages::{Notify, Severity, Shutdown};
use super::supervisor::Supervision;
use crate::db::Store;
use crate::telemetry::metrics::Metrics;

pub struct Notifier {
    store: Store,
    sup: Supervision,
}

impl Notifier {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        Self { store, sup: Supervision::new("notifier", metrics) }
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
        let store = self.store.clone();
        Box::pin(async move {
            let row = json!({
                "kind": msg.kind, "severity": msg.severity, "title": msg.title, "body": msg.body,
                "subject": msg.subject, "read": false,
            });
            if let Err(e) = store.create("notification", row).await {
                tracing::error!(error = %e, "could not store a notification");
            }
        })
    }
}

impl Handler<Shutdown> for Notifier {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {}
}

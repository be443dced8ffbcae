//! WebhookActor: verifies, records and deduplicates incoming webhooks, maps them through
//! the source's plugin and hands the normalized events to the subscription actor.

use std::sync::Arc;

use actix::Addr;
use actix::{Actor, Context, Handler};

use super::messages::Shutdown;
use super::plugins::PluginHost;
use super::subscription::SubscriptionActor;
use super::supervisor::Supervision;
use crate::db::Store;
use crate::telemetry::metrics::Metrics;

pub struct WebhookActor {
    #[expect(dead_code, reason = "used once the lifecycle lands")]
    store: Store,
    #[expect(dead_code, reason = "used once the lifecycle lands")]
    plugins: Addr<PluginHost>,
    #[expect(dead_code, reason = "used once the lifecycle lands")]
    subscription: Addr<SubscriptionActor>,
    sup: Supervision,
}

impl WebhookActor {
    pub fn new(
        store: Store,
        plugins: Addr<PluginHost>,
        subscription: Addr<SubscriptionActor>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { store, plugins, subscription, sup: Supervision::new("webhook", metrics) }
    }
}

impl Actor for WebhookActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
    }
}

crate::supervised_child!(WebhookActor);

impl Handler<Shutdown> for WebhookActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {}
}

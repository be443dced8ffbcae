//! SubscriptionActor: per-subscription ordering and the subscription state machine; turns
//! billing events into VPS commands for the registry.

use std::sync::Arc;

use actix::Addr;
use actix::{Actor, Context, Handler};

use super::messages::Shutdown;
use super::registry::VpsRegistry;
use super::supervisor::Supervision;
use crate::db::Store;
use crate::telemetry::metrics::Metrics;

pub struct SubscriptionActor {
    #[expect(dead_code, reason = "used once the lifecycle lands")]
    store: Store,
    #[expect(dead_code, reason = "used once the lifecycle lands")]
    registry: Addr<VpsRegistry>,
    sup: Supervision,
}

impl SubscriptionActor {
    pub fn new(store: Store, registry: Addr<VpsRegistry>, metrics: Arc<Metrics>) -> Self {
        Self { store, registry, sup: Supervision::new("subscription", metrics) }
    }
}

impl Actor for SubscriptionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
    }
}

crate::supervised_child!(SubscriptionActor);

impl Handler<Shutdown> for SubscriptionActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {}
}

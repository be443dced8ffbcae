//! Scheduler: timers for grace-period deletions and retry wake-ups.

use std::sync::Arc;

use actix::Addr;
use actix::{Actor, Context, Handler};

use super::messages::Shutdown;
use super::registry::VpsRegistry;
use super::supervisor::Supervision;
use crate::db::Store;
use crate::telemetry::metrics::Metrics;

pub struct Scheduler {
    #[expect(dead_code, reason = "used once the lifecycle lands")]
    store: Store,
    #[expect(dead_code, reason = "used once the lifecycle lands")]
    registry: Addr<VpsRegistry>,
    sup: Supervision,
}

impl Scheduler {
    pub fn new(store: Store, registry: Addr<VpsRegistry>, metrics: Arc<Metrics>) -> Self {
        Self { store, registry, sup: Supervision::new("scheduler", metrics) }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
    }
}

crate::supervised_child!(Scheduler);

impl Handler<Shutdown> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {}
}

//! VpsRegistry: activates a VpsActor on demand and resumes unfinished operations at
//! start-up. Holds the store and the gateway the VPS actors work through.

use std::sync::Arc;

use actix::Addr;
use actix::{Actor, Context, Handler};

use super::gateway::SangforGateway;
use super::messages::Shutdown;
use super::supervisor::Supervision;
use crate::db::Store;
use crate::telemetry::metrics::Metrics;

pub struct VpsRegistry {
    #[expect(dead_code, reason = "used once the lifecycle lands")]
    store: Store,
    #[expect(dead_code, reason = "used once the lifecycle lands")]
    gateway: Addr<SangforGateway>,
    sup: Supervision,
}

impl VpsRegistry {
    pub fn new(store: Store, gateway: Addr<SangforGateway>, metrics: Arc<Metrics>) -> Self {
        Self { store, gateway, sup: Supervision::new("registry", metrics) }
    }
}

impl Actor for VpsRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
    }
}

crate::supervised_child!(VpsRegistry);

impl Handler<Shutdown> for VpsRegistry {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {}
}

//! Scheduler: the appliance's only timer. Every tick it asks the registry to wake VPSs
//! whose operations fell due (retries after back-off, deletions after the grace period).
//! Times live in the store, so nothing is lost across a restart.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, AsyncContext, Context, Handler};

use super::messages::Shutdown;
use super::registry::{ActivateDue, VpsRegistry};
use super::supervisor::Supervision;
use crate::telemetry::metrics::Metrics;

/// How often due work is looked for.
pub const TICK: Duration = Duration::from_millis(500);

pub struct Scheduler {
    registry: Addr<VpsRegistry>,
    sup: Supervision,
}

impl Scheduler {
    pub fn new(registry: Addr<VpsRegistry>, metrics: Arc<Metrics>) -> Self {
        Self { registry, sup: Supervision::new("scheduler", metrics) }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
        ctx.run_interval(TICK, |act, _| act.registry.do_send(ActivateDue));
    }
}

crate::supervised_child!(Scheduler);

impl Handler<Shutdown> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {}
}

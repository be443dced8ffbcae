//! Reconciler: diffs the store against SCP (orphan VMs, missing VMs, spec drift) and reports;
//! it never deletes on its own.

use std::sync::Arc;

use actix::{Actor, Context, Handler};
use actix::{Addr, Recipient};

use super::gateway::SangforGateway;
use super::messages::Notify;
use super::messages::Shutdown;
use super::supervisor::Supervision;
use crate::config::Config;
use crate::db::Store;
use crate::telemetry::metrics::Metrics;

pub struct Reconciler {
    #[expect(dead_code, reason = "used once the lifecycle lands")]
    config: Arc<Config>,
    #[expect(dead_code, reason = "used once the lifecycle lands")]
    store: Store,
    #[expect(dead_code, reason = "used once the lifecycle lands")]
    gateway: Addr<SangforGateway>,
    #[expect(dead_code, reason = "used once the lifecycle lands")]
    notify: Recipient<Notify>,
    sup: Supervision,
}

impl Reconciler {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        gateway: Addr<SangforGateway>,
        notify: Recipient<Notify>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { config, store, gateway, notify, sup: Supervision::new("reconciler", metrics) }
    }
}

impl Actor for Reconciler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
    }
}

crate::supervised_child!(Reconciler);

impl Handler<Shutdown> for Reconciler {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {}
}

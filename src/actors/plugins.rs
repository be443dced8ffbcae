//! PluginHost: runs billing-source and plan-mapping plugins off the HTTP threads.
//!
//! The wasmtime engine and the plugin contract arrive with the plugin system; until then the
//! host holds no plugins.

use std::sync::Arc;

use actix::{Actor, Context, Handler};

use super::messages::Shutdown;
use super::supervisor::Supervision;
use crate::telemetry::metrics::Metrics;

pub struct PluginHost {
    sup: Supervision,
}

impl PluginHost {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { sup: Supervision::new("plugins", metrics) }
    }
}

impl Actor for PluginHost {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
    }
}

crate::supervised_child!(PluginHost);

impl Handler<Shutdown> for PluginHost {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {}
}

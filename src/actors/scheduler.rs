//! Scheduler: the appliance's only timer. Every tick it asks the registry to wake VPSs
//! whose operations fell due (retries after back-off, deletions after the grace period).
//! Times live in the store, so nothing is lost across a restart. Every hour it purges the
//! inbox past its retention ([`crate::db::inbox`]).

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, AsyncContext, Context, Handler};

use super::messages::Shutdown;
use super::registry::{ActivateDue, VpsRegistry};
use super::supervisor::Supervision;
use crate::config::InboxConfig;
use crate::db::Store;
use crate::telemetry::metrics::Metrics;

/// How often due work is looked for.
pub const TICK: Duration = Duration::from_millis(500);

/// How often the inbox is purged (the first time one interval after the start).
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);

pub struct Scheduler {
    registry: Addr<VpsRegistry>,
    store: Store,
    inbox: InboxConfig,
    sup: Supervision,
}

impl Scheduler {
    pub fn new(registry: Addr<VpsRegistry>, store: Store, inbox: InboxConfig, metrics: Arc<Metrics>) -> Self {
        Self { registry, store, inbox, sup: Supervision::new("scheduler", metrics) }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
        ctx.run_interval(TICK, |act, _| act.registry.do_send(ActivateDue));
        ctx.run_interval(PURGE_EVERY, |act, _| {
            let (store, inbox) = (act.store.clone(), act.inbox.clone());
            actix::spawn(async move {
                match crate::db::inbox::purge(&store, &inbox, chrono::Utc::now()).await {
                    Ok(r) if r.compacted + r.deleted > 0 => {
                        tracing::info!(compacted = r.compacted, deleted = r.deleted, "inbox purged");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "the inbox purge failed; it runs again in an hour")
                    }
                }
            });
        });
    }
}

crate::supervised_child!(Scheduler);

impl Handler<Shutdown> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {}
}

//! LeaseKeeper: takes and renews this node's work lease when several nodes share the store
//! (`cluster.node_id` set; see `db::lease`).
//!
//! Every third of `cluster.lease_secs` it asks the store for the lease: a node that holds it
//! renews it, the others take it once it has expired (its holder died or lost the store). The
//! fenced store and every actor that works reads the outcome from the shared [`Fence`]; this
//! actor only keeps it current, says when it changes, and wakes the work when it is taken.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, ResponseFuture, WrapFuture};

use super::messages::Shutdown;
use super::registry::{ActivateDue, VpsRegistry};
use super::supervisor::Supervision;
use crate::db::Store;
use crate::db::lease::Fence;
use crate::telemetry::metrics::Metrics;

pub struct LeaseKeeper {
    store: Store,
    fence: Arc<Fence>,
    ttl: Duration,
    registry: Addr<VpsRegistry>,
    metrics: Arc<Metrics>,
    held: bool,
    asking: bool,
    /// Shutting down: the lease is given up and not taken again.
    stopping: bool,
    sup: Supervision,
}

impl LeaseKeeper {
    pub fn new(
        store: Store,
        fence: Arc<Fence>,
        ttl: Duration,
        registry: Addr<VpsRegistry>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let sup = Supervision::new("lease", metrics.clone());
        Self {
            store: store.unfenced(),
            fence,
            ttl,
            registry,
            metrics,
            held: false,
            asking: false,
            stopping: false,
            sup,
        }
    }

    fn ask(&mut self, ctx: &mut Context<Self>) {
        if self.asking || self.stopping {
            return;
        }
        self.asking = true;
        let (store, fence, ttl) = (self.store.clone(), self.fence.clone(), self.ttl);
        ctx.spawn(async move { store.take_lease(&fence, ttl).await }.into_actor(self).map(|taken, act, _| {
            act.asking = false;
            let holds = match taken {
                Ok(holds) => holds,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "the work lease could not be renewed");
                    act.fence.holds()
                }
            };
            if holds && !act.held {
                tracing::info!(
                    node = act.fence.node(),
                    fence = act.fence.token(),
                    "this node holds the work lease: it runs the lifecycle"
                );
                act.registry.do_send(ActivateDue);
            } else if !holds && act.held {
                tracing::warn!(node = act.fence.node(), "this node no longer holds the work lease");
            }
            act.held = holds;
            act.metrics.leader.set(i64::from(holds));
        }));
    }
}

impl Actor for LeaseKeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
        self.asking = false;
        self.ask(ctx);
        ctx.run_interval(self.ttl / 3, |act, ctx| act.ask(ctx));
    }
}

crate::supervised_child!(LeaseKeeper);

impl Handler<Shutdown> for LeaseKeeper {
    type Result = ResponseFuture<()>;

    /// A clean stop gives the lease up, so another node takes over at once.
    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let (store, fence, held) = (self.store.clone(), self.fence.clone(), self.held);
        self.stopping = true;
        self.metrics.leader.set(0);
        Box::pin(async move {
            if held && let Err(e) = store.release_lease(&fence).await {
                tracing::warn!(error = %format!("{e:#}"), "the work lease could not be given up; it expires by itself");
            }
        })
    }
}

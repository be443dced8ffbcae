//! VpsRegistry: activates a VpsActor on demand and forgets it when it stops; at start-up it
//! activates every VPS with unfinished, due work, so nothing is forgotten across a crash.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, Recipient, WrapFuture};
use chrono::Utc;

use super::messages::{Notify, Shutdown};
use super::supervisor::Supervision;
use super::vps::exec::ExecContext;
use super::vps::{Kick, VpsActor};
use crate::config::Config;
use crate::telemetry::metrics::Metrics;

/// Run (or look again at) a VPS's due operations.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Activate {
    pub vps: String,
}

/// Activate every VPS whose operations are due now (start-up recovery, scheduler ticks).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct ActivateDue;

/// How many VPS actors are active.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "usize")]
pub struct ActiveCount;

pub struct VpsRegistry {
    cx: ExecContext,
    config: Arc<Config>,
    notify: Recipient<Notify>,
    active: HashMap<String, Addr<VpsActor>>,
    sup: Supervision,
}

impl VpsRegistry {
    pub fn new(cx: ExecContext, config: Arc<Config>, notify: Recipient<Notify>, metrics: Arc<Metrics>) -> Self {
        Self { cx, config, notify, active: HashMap::new(), sup: Supervision::new("registry", metrics) }
    }

    fn activate(&mut self, vps: String) {
        self.active.retain(|_, addr| addr.connected());
        match self.active.get(&vps) {
            Some(addr) => addr.do_send(Kick),
            None => {
                let actor = VpsActor::new(vps.clone(), self.cx.clone(), self.config.clone(), self.notify.clone());
                self.active.insert(vps, actor.start());
            }
        }
    }
}

impl Actor for VpsRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
        ctx.notify(ActivateDue);
    }
}

crate::supervised_child!(VpsRegistry);

impl Handler<Activate> for VpsRegistry {
    type Result = ();

    fn handle(&mut self, msg: Activate, _: &mut Self::Context) {
        self.activate(msg.vps);
    }
}

impl Handler<ActivateDue> for VpsRegistry {
    type Result = ();

    fn handle(&mut self, _: ActivateDue, ctx: &mut Self::Context) {
        let store = self.cx.store.clone();
        ctx.spawn(async move { store.vps_with_due_operations(Utc::now()).await }.into_actor(self).map(
            |due, act, _| match due {
                Ok(ids) => ids.into_iter().for_each(|id| act.activate(id)),
                Err(e) => tracing::warn!(error = %e, "cannot list due operations"),
            },
        ));
    }
}

impl Handler<ActiveCount> for VpsRegistry {
    type Result = usize;

    fn handle(&mut self, _: ActiveCount, _: &mut Self::Context) -> usize {
        self.active.retain(|_, addr| addr.connected());
        self.active.len()
    }
}

impl Handler<Shutdown> for VpsRegistry {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {
        // Operations are durable: whatever runs now resumes from its saved step at next start.
        self.active.clear();
    }
}

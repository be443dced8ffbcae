//! VpsRegistry: activates a VpsActor on demand and forgets it when it stops; at start-up it
//! activates every VPS with unfinished, due work, so nothing is forgotten across a crash.
//!
//! At most [`MAX_ACTIVE`] VPS actors run at once: past that, a VPS to activate waits (its id
//! only) and starts when another stops, oldest first. A backlog of creates behind SCP's write
//! limit therefore costs a few bytes per VPS, not a running actor each.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, Recipient, WrapFuture};
use chrono::Utc;

use super::messages::{Notify, Shutdown};
use super::supervisor::Supervision;
use super::vps::exec::ExecContext;
use super::vps::{Kick, Stopped, VpsActor};
use crate::config::Config;
use crate::lifecycle::VpsId;
use crate::telemetry::metrics::Metrics;

/// Run (or look again at) a VPS's due operations.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Activate {
    pub vps: VpsId,
}

/// Activate every VPS whose operations are due now (start-up recovery, scheduler ticks).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct ActivateDue;

/// Most VPS actors running at once (above SCP's write limit times a create's usual length).
pub const MAX_ACTIVE: usize = 1024;

/// How many VPS actors are active.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "usize")]
pub struct ActiveCount;

pub struct VpsRegistry {
    cx: ExecContext,
    config: Arc<Config>,
    notify: Recipient<Notify>,
    /// Running actors and the run number each was started with.
    active: HashMap<VpsId, (u64, Addr<VpsActor>)>,
    runs: u64,
    /// VPSs to activate once an active one stops, oldest first.
    waiting: VecDeque<VpsId>,
    waiting_set: HashSet<VpsId>,
    sup: Supervision,
}

impl VpsRegistry {
    pub fn new(cx: ExecContext, config: Arc<Config>, notify: Recipient<Notify>, metrics: Arc<Metrics>) -> Self {
        Self {
            cx,
            config,
            notify,
            active: HashMap::new(),
            runs: 0,
            waiting: VecDeque::new(),
            waiting_set: HashSet::new(),
            sup: Supervision::new("registry", metrics),
        }
    }

    fn activate(&mut self, vps: VpsId, ctx: &mut Context<Self>) {
        // Operations run on the node holding the work lease; it finds this one in its scan.
        if !self.cx.store.may_work() {
            return;
        }
        match self.active.get(&vps) {
            Some((_, addr)) if addr.connected() => return addr.do_send(Kick),
            Some(_) => {
                self.active.remove(&vps);
            }
            None => {}
        }
        if self.waiting_set.contains(&vps) {
            return;
        }
        if self.active.len() >= MAX_ACTIVE {
            self.waiting_set.insert(vps.clone());
            self.waiting.push_back(vps);
            return;
        }
        self.start(vps, ctx);
    }

    fn start(&mut self, vps: VpsId, ctx: &mut Context<Self>) {
        self.runs += 1;
        let actor = VpsActor::new(vps.clone(), self.cx.clone(), self.config.clone(), self.notify.clone())
            .reporting_to(ctx.address().recipient(), self.runs);
        self.active.insert(vps, (self.runs, actor.start()));
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

    fn handle(&mut self, msg: Activate, ctx: &mut Self::Context) {
        self.activate(msg.vps, ctx);
    }
}

impl Handler<Stopped> for VpsRegistry {
    type Result = ();

    fn handle(&mut self, msg: Stopped, ctx: &mut Self::Context) {
        if self.active.get(&msg.vps).is_some_and(|(run, _)| *run == msg.run) {
            self.active.remove(&msg.vps);
        }
        while self.active.len() < MAX_ACTIVE {
            let Some(vps) = self.waiting.pop_front() else { break };
            self.waiting_set.remove(&vps);
            self.activate(vps, ctx);
        }
    }
}

impl Handler<ActivateDue> for VpsRegistry {
    type Result = ();

    fn handle(&mut self, _: ActivateDue, ctx: &mut Self::Context) {
        if !self.cx.store.may_work() {
            return; // the node holding the work lease scans
        }
        // VPSs waiting for a free slot are due already: until they have all started, a scan
        // would only find them again — and with a backlog (SCP's write limit holding
        // thousands of creates) read every waiting operation twice a second.
        if !self.waiting.is_empty() {
            return;
        }
        let store = self.cx.store.clone();
        let room = 2 * MAX_ACTIVE;
        ctx.spawn(async move { store.vps_with_due_operations(Utc::now(), room).await }.into_actor(self).map(
            |due, act, ctx| match due {
                // A running actor is not woken: its round goes on until nothing of its VPS is
                // due, so a wake-up would only make it look once more (two reads) after that.
                // Work it cannot see yet is found by a later tick, after it has stopped.
                Ok(ids) => {
                    for id in ids {
                        if !act.active.get(&id).is_some_and(|(_, addr)| addr.connected()) {
                            act.activate(id, ctx);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list due operations"),
            },
        ));
    }
}

impl Handler<ActiveCount> for VpsRegistry {
    type Result = usize;

    fn handle(&mut self, _: ActiveCount, _: &mut Self::Context) -> usize {
        self.active.retain(|_, (_, addr)| addr.connected());
        self.active.len()
    }
}

impl Handler<Shutdown> for VpsRegistry {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {
        // Operations are durable: whatever runs now resumes from its saved step at next start.
        self.active.clear();
        self.waiting.clear();
        self.waiting_set.clear();
    }
}

//! Scheduler: the appliance's only timer. Every tick it asks the registry to wake VPSs
//! whose operations fell due (retries after back-off, deletions after the grace period).
//! Times live in the store, so nothing is lost across a restart. Every minute it reminds
//! customers whose VPS's deletion is `policy.warn_before_delete_hours` away; every hour it
//! purges the inbox past its retention ([`crate::db::inbox`]).

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, AsyncContext, Context, Handler, Recipient};

use super::messages::{Notify, NotifyKind, Severity, Shutdown};
use super::registry::{ActivateDue, VpsRegistry};
use super::supervisor::Supervision;
use crate::config::{Config, InboxConfig};
use crate::db::Store;
use crate::telemetry::metrics::Metrics;

/// How often due work is looked for.
pub const TICK: Duration = Duration::from_millis(500);

/// How often the inbox is purged (the first time one interval after the start).
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// How often deletion reminders are looked for.
pub const REMIND_EVERY: Duration = Duration::from_secs(60);

pub struct Scheduler {
    registry: Addr<VpsRegistry>,
    store: Store,
    inbox: InboxConfig,
    /// `policy.warn_before_delete_hours` (0: no reminders).
    remind_hours: u32,
    notify: Recipient<Notify>,
    sup: Supervision,
}

impl Scheduler {
    pub fn new(
        registry: Addr<VpsRegistry>,
        store: Store,
        config: &Config,
        notify: Recipient<Notify>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            registry,
            store,
            inbox: config.inbox.clone(),
            remind_hours: config.policy.warn_before_delete_hours,
            notify,
            sup: Supervision::new("scheduler", metrics),
        }
    }

    /// Tells the customers whose deletion is near (each scheduled deletion once).
    fn remind(&self) {
        // Reminders and purges are the lease holder's work, as operations are.
        if self.remind_hours == 0 || !self.store.may_work() {
            return;
        }
        let (store, notify, hours) = (self.store.clone(), self.notify.clone(), self.remind_hours);
        actix::spawn(async move {
            match store.claim_deletion_reminders(hours).await {
                Ok(due) => {
                    for vps in due {
                        notify.do_send(Notify {
                            kind: NotifyKind::DeletionReminder,
                            severity: Severity::Info,
                            title: format!("Customer reminded of the deletion of VPS {vps}"),
                            body: format!("VPS {vps} is deleted within {hours} hours; its customer was reminded."),
                            subject: Some(format!("vps:{vps}")),
                            portal_url: None,
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "deletion reminders could not be read"),
            }
        });
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
        ctx.run_interval(TICK, |act, _| act.registry.do_send(ActivateDue));
        self.remind();
        ctx.run_interval(REMIND_EVERY, |act, _| act.remind());
        ctx.run_interval(crate::db::models::vps::INDEX_EVERY, |act, _| {
            let store = act.store.clone();
            actix::spawn(async move {
                if let Err(e) = store.index_vps_text_if_idle().await {
                    tracing::warn!(error = %format!("{e:#}"), "the VPS search index is behind; it is tried again shortly");
                }
            });
        });
        ctx.run_interval(PURGE_EVERY, |act, _| {
            if !act.store.may_work() {
                return;
            }
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

/// Look for deletion reminders now (also done every [`REMIND_EVERY`]).
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct Remind;

impl Handler<Remind> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Remind, _: &mut Self::Context) {
        self.remind();
    }
}

impl Handler<Shutdown> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {}
}

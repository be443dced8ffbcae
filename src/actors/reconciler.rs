//! Reconciler: diffs the store against SCP every `policy.reconcile_interval_secs` and reports
//! what differs; it never deletes or changes anything on its own.
//!
//! - orphan: a VM tagged by this installation that no live VPS record claims;
//! - missing: a live VPS record whose VM is gone;
//! - drift: a VM whose cores or memory differ from its record's spec.
//!
//! Each finding is written to the activity log, and new findings raise a notification.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, Recipient, ResponseFuture, WrapFuture,
};
use serde::Serialize;
use serde_json::json;

use super::gateway::{FindServersByTagPrefix, Gateways};
use super::messages::{Notify, NotifyKind, Severity, Shutdown};
use super::supervisor::Supervision;
use crate::config::Config;
use crate::db::Store;
use crate::db::models::vps::{VpsId, VpsWithVm};
use crate::lifecycle::{Level, VpsState};
use crate::telemetry::metrics::Metrics;

/// Run one reconciliation now and answer its findings.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "anyhow::Result<Vec<Finding>>")]
pub struct Reconcile;

/// One difference between the store and SCP.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    Orphan { server_id: String, tag: String },
    Missing { vps: VpsId, server_id: String },
    Drift { vps: VpsId, server_id: String, expected: String, actual: String },
}

pub struct Reconciler {
    config: Arc<Config>,
    store: Store,
    gateways: Gateways,
    notify: Recipient<Notify>,
    install_id: String,
    /// Findings already reported, so a standing difference alerts once.
    reported: HashSet<Finding>,
    sup: Supervision,
}

impl Reconciler {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        gateways: Gateways,
        notify: Recipient<Notify>,
        install_id: String,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            config,
            store,
            gateways,
            notify,
            install_id,
            reported: HashSet::new(),
            sup: Supervision::new("reconciler", metrics),
        }
    }
}

impl Actor for Reconciler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
        let every = self.config.policy.reconcile_interval_secs;
        if every > 0 && self.config.provider_configs().iter().any(|(_, p)| !p.base_url.is_empty()) {
            ctx.run_interval(Duration::from_secs(every), |act, ctx| {
                // The lease holder reconciles; the other nodes would only repeat its reads.
                if !act.store.may_work() {
                    return;
                }
                let (store, gateways, install) = (act.store.clone(), act.configured(), act.install_id.clone());
                ctx.spawn(async move { reconcile(&store, &gateways, &install).await }.into_actor(act).map(
                    |result, act, _| match result {
                        Ok(findings) => act.report(findings),
                        Err(e) => tracing::warn!(error = %format!("{e:#}"), "reconciliation could not run"),
                    },
                ));
            });
        }
    }
}

impl Reconciler {
    /// The gateways of the providers that are configured (the others answer nothing).
    fn configured(&self) -> Vec<(String, Addr<super::gateway::SangforGateway>)> {
        self.gateways
            .iter()
            .filter(|(n, _)| self.config.provider_config(n).is_some_and(|p| !p.base_url.is_empty()))
            .map(|(n, g)| (n.to_string(), g.clone()))
            .collect()
    }

    /// Notifies about findings not reported before; forgets the ones that went away.
    fn report(&mut self, findings: Vec<Finding>) {
        let now: HashSet<Finding> = findings.into_iter().collect();
        for f in now.difference(&self.reported) {
            let (title, subject) = match f {
                Finding::Orphan { server_id, .. } => (format!("Orphan VM {server_id} on SCP"), None),
                Finding::Missing { vps, server_id } => {
                    (format!("VM {server_id} of VPS {vps} is missing on SCP"), Some(format!("vps:{vps}")))
                }
                Finding::Drift { vps, expected, actual, .. } => {
                    (format!("VPS {vps} drifted: expected {expected}, SCP has {actual}"), Some(format!("vps:{vps}")))
                }
            };
            self.notify.do_send(Notify {
                kind: NotifyKind::ReconcileFinding,
                severity: Severity::Warning,
                title,
                body: "The reconciler found this difference; nothing was changed. Decide in the UI what to do.".into(),
                subject,
                portal_url: None,
            });
        }
        self.reported = now;
    }
}

crate::supervised_child!(Reconciler);

impl Handler<Reconcile> for Reconciler {
    type Result = ResponseFuture<anyhow::Result<Vec<Finding>>>;

    fn handle(&mut self, _: Reconcile, _: &mut Self::Context) -> Self::Result {
        let (store, gateways, install) = (self.store.clone(), self.configured(), self.install_id.clone());
        Box::pin(async move { reconcile(&store, &gateways, &install).await })
    }
}

impl Handler<Shutdown> for Reconciler {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {}
}

/// Compares this installation's VMs on each provider (`gateways`: name and gateway) with the
/// live VPS records and records each finding.
pub async fn reconcile(
    store: &Store,
    gateways: &[(String, Addr<super::gateway::SangforGateway>)],
    install_id: &str,
) -> anyhow::Result<Vec<Finding>> {
    let prefix = format!("vmauto:{install_id}:");
    let rows = store.vps_with_vms().await?;
    let mut findings = Vec::new();
    for (name, gateway) in gateways {
        let servers = gateway
            .send(FindServersByTagPrefix { prefix: prefix.clone() })
            .await
            .map_err(|e| anyhow::anyhow!("the gateway of provider {name} is not running: {e}"))?
            .map_err(|e| anyhow::anyhow!("provider {name}: {e}"))?;
        let mine =
            |r: &&VpsWithVm| r.provider == *name || (r.provider.is_empty() && name == crate::config::DEFAULT_PROVIDER);
        let on_it: Vec<&VpsWithVm> = rows.iter().filter(mine).collect();
        findings.extend(compare(store, &prefix, &servers, &on_it).await?);
    }
    for f in &findings {
        let subject = match f {
            Finding::Orphan { .. } => None,
            Finding::Missing { vps, .. } | Finding::Drift { vps, .. } => Some(format!("vps:{vps}")),
        };
        store
            .record_activity(Level::Warning, "reconciler", subject.as_deref(), "reconciliation finding", json!(f))
            .await?;
    }
    Ok(findings)
}

/// The differences between one provider's VMs and the VPS records placed on it.
async fn compare(
    store: &Store,
    prefix: &str,
    servers: &[crate::provider::Server],
    rows: &[&VpsWithVm],
) -> anyhow::Result<Vec<Finding>> {
    let live: HashMap<&str, &VpsWithVm> = rows.iter().map(|r| (r.id.as_str(), *r)).collect();
    let by_server: HashSet<&str> = servers.iter().map(|s| s.id.as_str()).collect();
    let mut findings = Vec::new();
    for server in servers {
        let tag = server.tag_with_prefix(prefix).unwrap_or_default();
        let vps_id = &tag[prefix.len().min(tag.len())..];
        match live.get(vps_id) {
            None => {
                // A VPS being created or deleted right now is not an orphan.
                let busy = store.vps_is_being_created_or_deleted(&VpsId::from(vps_id)).await?;
                if !busy {
                    findings.push(Finding::Orphan { server_id: server.id.0.clone(), tag: tag.to_string() });
                }
            }
            Some(row) => {
                if let Some(spec) =
                    row.spec.as_ref().filter(|s| s.cores != server.cores || s.memory_mb != server.memory_mb)
                {
                    findings.push(Finding::Drift {
                        vps: row.id.clone(),
                        server_id: server.id.0.clone(),
                        expected: format!("{} cores / {} MB", spec.cores, spec.memory_mb),
                        actual: format!("{} cores / {} MB", server.cores, server.memory_mb),
                    });
                }
            }
        }
    }
    for row in rows {
        if let Some(sid) =
            row.server_id.as_ref().filter(|s| !by_server.contains(s.as_str()) && row.state != VpsState::Failed)
        {
            findings.push(Finding::Missing { vps: row.id.clone(), server_id: sid.clone() });
        }
    }
    Ok(findings)
}

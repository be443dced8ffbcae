//! The one place the actor tree is built ([`spawn_tree`]), downstream first, every child
//! under [`actix::Supervisor`] (see [`super::supervisor`]), and the addresses the rest of the
//! process talks to ([`Handles`]).

use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, Supervisor};

use super::gateway::{Gateways, SangforGateway};
use super::lease::LeaseKeeper;
use super::messages::Shutdown;
use super::notifier::Notifier;
use super::plugins::PluginHost;
use super::reconciler::Reconciler;
use super::registry::VpsRegistry;
use super::scheduler::Scheduler;
use super::subscription::SubscriptionActor;
use super::vps::exec::ExecContext;
use super::webhook::WebhookActor;
use crate::config::Config;
use crate::db::Store;
use crate::secrets::Sealer;
use crate::telemetry::metrics::Metrics;

/// What the tree needs from the rest of the process.
#[derive(Clone)]
pub struct TreeDeps {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Seals VM root passwords.
    pub sealer: Arc<Sealer>,
    /// This installation's id, part of every VM ownership tag.
    pub install_id: String,
    /// This node's claim on the work lease, when several nodes share the store.
    pub fence: Option<Arc<crate::db::lease::Fence>>,
}

/// Addresses of the running children.
#[derive(Clone)]
pub struct Handles {
    pub notifier: Addr<Notifier>,
    /// `[provider.sangfor]`'s gateway (the `default` provider).
    pub gateway: Addr<SangforGateway>,
    /// Every provider's gateway, by name.
    pub gateways: Gateways,
    pub plugins: Addr<PluginHost>,
    pub registry: Addr<VpsRegistry>,
    pub subscription: Addr<SubscriptionActor>,
    pub webhook: Addr<WebhookActor>,
    pub scheduler: Addr<Scheduler>,
    pub reconciler: Addr<Reconciler>,
    /// Keeps the work lease (only when several nodes share the store).
    pub lease: Option<Addr<LeaseKeeper>>,
    /// This node's claim on the work lease (only when several nodes share the store).
    pub fence: Option<Arc<crate::db::lease::Fence>>,
    /// The thread the VPS actors and the SCP gateway run on (the rest share the system's).
    pub lane: actix::ArbiterHandle,
}

impl Handles {
    /// The intake pipeline (the plugin host and the inbox writer together).
    pub fn intake(&self) -> super::webhook::Intake {
        super::webhook::Intake::new(self.plugins.clone(), self.webhook.clone())
    }

    /// True while this node may do the lifecycle's work: always for a single node, while it
    /// holds the work lease (by its own clock) when several nodes share the store.
    pub fn holds_lease(&self) -> bool {
        self.fence.as_ref().is_none_or(|f| f.holds())
    }

    /// Names of children whose mailbox is closed (empty when the whole tree runs).
    pub fn stopped(&self) -> Vec<&'static str> {
        let checks = [
            ("notifier", self.notifier.connected()),
            ("gateway", self.gateways.iter().all(|(_, g)| g.connected())),
            ("plugins", self.plugins.connected()),
            ("registry", self.registry.connected()),
            ("subscription", self.subscription.connected()),
            ("webhook", self.webhook.connected()),
            ("scheduler", self.scheduler.connected()),
            ("reconciler", self.reconciler.connected()),
            ("lease", self.lease.as_ref().is_none_or(Addr::connected)),
        ];
        checks.into_iter().filter(|(_, up)| !up).map(|(n, _)| n).collect()
    }

    /// Asks every child to finish its work, upstream first (webhooks stop feeding the
    /// lifecycle before the lifecycle stops), waiting at most `timeout` in all.
    pub async fn shutdown(&self, timeout: Duration) {
        let steps = async {
            let _ = self.webhook.send(Shutdown).await;
            let _ = self.subscription.send(Shutdown).await;
            let _ = self.scheduler.send(Shutdown).await;
            let _ = self.reconciler.send(Shutdown).await;
            let _ = self.registry.send(Shutdown).await;
            // The work has stopped: another node may take it over at once.
            if let Some(lease) = &self.lease {
                let _ = lease.send(Shutdown).await;
            }
            let _ = self.plugins.send(Shutdown).await;
            for (_, gw) in self.gateways.iter() {
                let _ = gw.send(Shutdown).await;
            }
            let _ = self.notifier.send(Shutdown).await;
        };
        if tokio::time::timeout(timeout, steps).await.is_err() {
            tracing::warn!(timeout_secs = timeout.as_secs(), "actors did not finish within the shutdown timeout");
        }
        // The lane's actors are done, or past waiting for.
        self.lane.stop();
    }
}

/// Builds the supervision tree, downstream first, and returns the children's addresses.
///
/// The VPS actors (through their registry) and the SCP gateway run on a thread of their own,
/// the lane: a burst of provisioning (its store writes, SCP requests and responses) then runs
/// beside the intake and the decisions instead of taking turns with them on one thread.
pub fn spawn_tree(deps: &TreeDeps) -> Handles {
    let m = &deps.metrics;
    let lane = actix::Arbiter::new().handle();
    // What the lifecycle writes goes through the fenced store when nodes share the store.
    let work = match &deps.fence {
        Some(fence) => deps.store.fenced(fence.clone()),
        None => deps.store.clone(),
    };
    let notifier = {
        let (store, metrics, config) = (deps.store.clone(), m.clone(), deps.config.clone());
        Supervisor::start(move |_| Notifier::new(store, metrics, config))
    };
    let gateways = {
        let mut all = std::collections::BTreeMap::new();
        for (name, sp) in deps.config.provider_configs() {
            let (name, sp, metrics, notify) = (name.to_string(), sp.clone(), m.clone(), notifier.clone().recipient());
            // Nodes sharing the store share each SCP's limits too.
            let shared =
                deps.fence.as_ref().map(|_| super::gateway::StoreBudget::shared(deps.store.clone(), &name, &sp));
            let gw = {
                let name = name.clone();
                Supervisor::start_in_arbiter(&lane, move |_| {
                    SangforGateway::for_provider(&name, &sp, metrics.clone(), Some(notify.clone()), shared.clone())
                })
            };
            all.insert(name, gw);
        }
        Gateways::new(all)
    };
    let gateway = gateways.default_gateway().clone();
    let plugins = {
        let (config, metrics) = (deps.config.clone(), m.clone());
        Supervisor::start(move |_| PluginHost::new(config, metrics))
    };
    let registry = {
        let cx = ExecContext {
            store: work.clone(),
            gateway: gateway.clone(),
            gateways: gateways.clone(),
            sealer: deps.sealer.clone(),
            install_id: deps.install_id.clone(),
            template: None,
        };
        let (config, metrics, notify) = (deps.config.clone(), m.clone(), notifier.clone().recipient());
        Supervisor::start_in_arbiter(&lane, move |_| VpsRegistry::new(cx, config, notify, metrics))
    };
    let subscription = {
        let (store, config, metrics, registry, notify) =
            (work.clone(), deps.config.clone(), m.clone(), registry.clone(), notifier.clone().recipient());
        let (plugins, gateways) = (plugins.clone(), gateways.clone());
        Supervisor::start(move |_| SubscriptionActor::new(store, config, plugins, registry, notify, gateways, metrics))
    };
    let webhook = {
        let (store, work, metrics, subscription) = (deps.store.clone(), work.clone(), m.clone(), subscription.clone());
        Supervisor::start(move |_| WebhookActor::new(store, work, subscription, metrics))
    };
    let scheduler = {
        let (metrics, registry, store, config) = (m.clone(), registry.clone(), work.clone(), deps.config.clone());
        let notify = notifier.clone().recipient();
        Supervisor::start(move |_| Scheduler::new(registry, store, &config, notify, metrics))
    };
    let reconciler = {
        let (config, store, metrics, gateways, notify) =
            (deps.config.clone(), work.clone(), m.clone(), gateways.clone(), notifier.clone().recipient());
        let install = deps.install_id.clone();
        Supervisor::start(move |_| Reconciler::new(config, store, gateways, notify, install, metrics))
    };
    let lease = deps.fence.as_ref().map(|fence| {
        let (store, fence, metrics, registry) = (deps.store.clone(), fence.clone(), m.clone(), registry.clone());
        let ttl = Duration::from_secs(deps.config.cluster.lease_secs);
        Supervisor::start(move |_| LeaseKeeper::new(store, fence, ttl, registry, metrics))
    });
    if lease.is_none() {
        m.leader.set(1);
    }
    Handles {
        notifier,
        gateway,
        gateways,
        plugins,
        registry,
        subscription,
        webhook,
        scheduler,
        reconciler,
        lease,
        fence: deps.fence.clone(),
        lane,
    }
}

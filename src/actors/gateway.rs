//! SangforGateway: the single owner of SCP traffic (design.md §1 principles 3 and 6).
//!
//! VPS actors and the UI send it one message per provider operation. Every handler returns a
//! future at once, so the actor never blocks; the futures share one [`Traffic`] layer, which
//! enforces SCP's two rate limits with token buckets and a fair queue, caps concurrency,
//! retries transient failures (writes only with their idempotency token) and runs the
//! circuit breaker that reports to the notifier. Calls that start SCP tasks answer with the
//! task id right away ([`CreateServer`] gives `{server_id, task_id}`); the caller persists it
//! and sends [`WaitTask`], which polls with backoff and works the same after a restart.
//!
//! Without `provider.sangfor.base_url` the gateway still starts and answers every request
//! with [`ProviderError::NotConfigured`], so the rest of the appliance (UI, webhooks inbox)
//! runs while an admin finishes the set-up.
//!
//! Contract with the tree (`tree::spawn_tree`): `SangforGateway::new(config, metrics,
//! notify)`, a supervised child.

use std::sync::Arc;
use std::time::Duration;

mod set;
mod shared;
pub use set::Gateways;
pub use shared::StoreBudget;

use actix::{Actor, Context, Handler, Message, Recipient, ResponseFuture};

use super::messages::{Notify, Shutdown};
use super::supervisor::Supervision;
use crate::config::{Config, DEFAULT_PROVIDER, DeleteMode, SangforConfig, Secret};
use crate::notice::{NotifyKind, Severity};
/// What the catalogue messages ([`ListZones`], [`ListImages`], …) answer.
pub use crate::provider::console::ConsoleSocket;
use crate::provider::sangfor::SangforClient;
pub use crate::provider::traffic::BreakerState as Breaker;
use crate::provider::traffic::{BreakerEvent, BreakerListener, BreakerState, Traffic, TrafficPolicy, for_customer};
use crate::provider::{
    Capacity, ConsoleUrl, Created, OpKey, PollPolicy, Provider, ProviderError, ProviderResult, Server, ServerSpec,
    TaskId, TaskState, power_off, wait_task,
};
pub use crate::provider::{Image, Network, ServerId, ServerMetrics, StorageTag, Subnet, TimeGap, Zone, metric};
use crate::telemetry::metrics::{GatewayMetrics, Metrics};

/// How long [`WaitTask`] waits when the caller gives no timeout.
pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(30 * 60);

// ---------------------------------------------------------------------------------------
// Messages. Each answers `ProviderResult<T>`; `op` is the caller's operation key, from which
// the idempotency token of every write is derived.

/// SCP's version string.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<String>")]
pub struct GetVersion;

/// Resource pools (AZs).
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<Vec<Zone>>")]
pub struct ListZones;

/// Allocated versus total capacity of one AZ, or of the platform when `zone_id` is `None`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<Capacity>")]
pub struct GetCapacity {
    pub zone_id: Option<String>,
}

/// Capacity for pages customers open: answered from a cache at most [`CAPACITY_CACHE`] old;
/// at most one such SCP read runs at a time, in the customers' own lane of the traffic layer
/// (`traffic::for_customer`), and a caller that does not get an answer within
/// [`CUSTOMER_WAIT`] gets [`ProviderError::Timeout`]. However often a customer page is
/// opened, it costs SCP at most one read per AZ every [`CAPACITY_CACHE`].
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<Capacity>")]
pub struct GetCapacityCached {
    pub zone_id: Option<String>,
}

/// Capacity answers by AZ, with when they were read.
type CapacityCache = Arc<parking_lot::Mutex<std::collections::HashMap<Option<String>, (std::time::Instant, Capacity)>>>;

/// How long a capacity answer serves customer pages.
pub const CAPACITY_CACHE: Duration = Duration::from_secs(15);
/// How long a customer page waits for a capacity answer.
pub const CUSTOMER_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<Vec<StorageTag>>")]
pub struct ListStorageTags {
    pub zone_id: String,
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<Vec<Image>>")]
pub struct ListImages {
    pub zone_id: Option<String>,
}

/// VPCs.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<Vec<Network>>")]
pub struct ListNetworks {
    pub zone_id: Option<String>,
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<Vec<Subnet>>")]
pub struct ListSubnets {
    pub network_id: String,
}

/// Starts creating a server; answers `{server_id, task_id}` without waiting for the task.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<Created>")]
pub struct CreateServer {
    pub spec: ServerSpec,
    pub op: OpKey,
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<Server>")]
pub struct GetServer {
    pub server_id: ServerId,
}

/// Servers whose ownership tag starts with `prefix` (every VM of this installation).
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<Vec<Server>>")]
pub struct FindServersByTagPrefix {
    pub prefix: String,
}

/// Servers carrying an ownership tag (before creating: does the VM exist already?).
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<Vec<Server>>")]
pub struct FindServersByTag {
    pub tag: String,
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<TaskId>")]
pub struct StartServer {
    pub server_id: ServerId,
    pub op: OpKey,
}

/// One stop request: graceful, or a hard power-off when `force`. Answers the task id.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<TaskId>")]
pub struct StopServer {
    pub server_id: ServerId,
    pub op: OpKey,
    pub force: bool,
}

/// Graceful stop, then a forced one after `provider.sangfor.soft_stop_timeout_secs`; waits
/// for the end. `None` when the server was already off.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<Option<TaskState>>")]
pub struct PowerOff {
    pub server_id: ServerId,
    pub op: OpKey,
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<TaskId>")]
pub struct RebootServer {
    pub server_id: ServerId,
    pub op: OpKey,
    pub force: bool,
}

/// Changes cores and/or memory.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<TaskId>")]
pub struct UpdateCompute {
    pub server_id: ServerId,
    pub op: OpKey,
    pub cores: Option<u32>,
    pub memory_mb: Option<u64>,
}

/// Grows the system disk.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<TaskId>")]
pub struct ResizeDisk {
    pub server_id: ServerId,
    pub op: OpKey,
    pub size_mb: u64,
}

/// Sets the root password (RSA-encrypted on the way; never logged).
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<TaskId>")]
pub struct SetPassword {
    pub server_id: ServerId,
    pub op: OpKey,
    pub password: Secret,
}

/// Deletes a server; `permanent: None` follows `provider.sangfor.delete_mode`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<TaskId>")]
pub struct DeleteServer {
    pub server_id: ServerId,
    pub op: OpKey,
    pub permanent: Option<bool>,
}

/// Brings a server back from the recycle bin.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<TaskId>")]
pub struct RestoreServer {
    pub server_id: ServerId,
    pub op: OpKey,
}

/// One look at a task.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<TaskState>")]
pub struct GetTask {
    pub task_id: TaskId,
}

/// Polls a task (with backoff) until it finishes: `Ok` when it succeeded,
/// [`ProviderError::TaskFailed`] / [`ProviderError::TaskTimeout`] otherwise.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<TaskState>")]
pub struct WaitTask {
    pub task_id: TaskId,
    /// `None`: [`DEFAULT_TASK_TIMEOUT`].
    pub timeout: Option<Duration>,
}

/// A remote-console (noVNC) URL for a server. The URL carries a token that opens the console
/// for about a minute: ask right before a browser opens it, and never log it (its `Debug`
/// hides the token). A write on SCP (a POST), so it counts against the write budget.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<ConsoleUrl>")]
pub struct GetConsoleUrl {
    pub server_id: ServerId,
}

/// Asks SCP for a remote console of a server and opens it (the VNC WebSocket), to relay to
/// a customer's browser.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<crate::provider::console::ConsoleSocket>")]
pub struct OpenConsole {
    pub server_id: ServerId,
}

/// Usage series of a server (`cpu.util`, `net.in.bps`, …, see [`crate::provider::metric`])
/// over the last `timegap`, a point every `granularity` seconds (`None`: the finest SCP serves
/// for the span). `customer`: the read is for a page a customer opened, so it waits in the
/// customers' lane of the traffic layer and never delays operations.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ProviderResult<ServerMetrics>")]
pub struct GetServerMetrics {
    pub server_id: ServerId,
    pub names: Vec<String>,
    pub timegap: TimeGap,
    pub granularity: Option<u32>,
    pub customer: bool,
}

/// The gateway's own state, for the UI and health checks.
#[derive(Debug, Clone, Message)]
#[rtype(result = "GatewayStatus")]
pub struct GetGatewayStatus;

#[derive(Debug, Clone, serde::Serialize)]
pub struct GatewayStatus {
    /// Whether SCP is configured (and the configuration is usable).
    pub configured: bool,
    /// Why not, when it is not.
    pub problem: Option<String>,
    pub breaker: BreakerState,
}

// ---------------------------------------------------------------------------------------
// State.

/// Settings of the gateway that are not the traffic policy.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub poll: PollPolicy,
    pub soft_stop_timeout: Duration,
    pub delete_permanently: bool,
}

impl GatewaySettings {
    pub fn from_config(config: &Config) -> Self {
        Self::from_sangfor(&config.provider.sangfor)
    }

    pub fn from_sangfor(s: &SangforConfig) -> Self {
        Self {
            poll: PollPolicy {
                initial: Duration::from_millis(s.task_poll_initial_ms.clamp(20, 60_000)),
                max: Duration::from_secs(s.task_poll_max_secs.max(1)),
                ..PollPolicy::default()
            },
            soft_stop_timeout: Duration::from_secs(s.soft_stop_timeout_secs.max(1)),
            delete_permanently: s.delete_mode == DeleteMode::Permanent,
        }
    }
}

pub struct SangforGateway {
    /// The provider, or why there is none (not configured, invalid configuration).
    provider: Result<Arc<dyn Provider>, ProviderError>,
    /// The shared traffic layer (breaker state for [`GetGatewayStatus`]).
    traffic: Arc<Traffic>,
    settings: GatewaySettings,
    sup: Supervision,
    /// Capacity answers for customer pages, by AZ.
    capacity_cache: CapacityCache,
    /// One customer-page capacity read at a time.
    capacity_read: Arc<tokio::sync::Mutex<()>>,
}

impl SangforGateway {
    /// The gateway for `config.provider.sangfor`; registers the `vmauto_scp_*` metrics.
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>, notify: Option<Recipient<Notify>>) -> Self {
        Self::for_provider(DEFAULT_PROVIDER, &config.provider.sangfor, metrics, notify, None)
    }

    /// The gateway of provider `name` (connection `sp`): its own traffic layer, rate limits,
    /// breaker and `vmauto_scp_*` metrics labelled `provider="<name>"`; with `shared`, every
    /// request also draws from the budget the nodes of a cluster share.
    pub fn for_provider(
        name: &str,
        sp: &SangforConfig,
        metrics: Arc<Metrics>,
        notify: Option<Recipient<Notify>>,
        shared: Option<Arc<dyn crate::provider::traffic::SharedBudget>>,
    ) -> Self {
        let policy = TrafficPolicy::from_config(sp);
        let settings = GatewaySettings::from_sangfor(sp);
        let provider = name.to_string();
        let listener =
            notify.map(|to| Arc::new(move |event| to.do_send(breaker_notice(&provider, event))) as BreakerListener);
        let traffic = Traffic::new(policy, GatewayMetrics::for_provider(&metrics, name), listener);
        let traffic = Arc::new(match shared {
            Some(budget) => traffic.sharing(budget),
            None => traffic,
        });
        Self::over(name, sp, traffic, settings, metrics)
    }

    /// [`SangforGateway::new`] with an explicit traffic policy and settings (tests, benches).
    pub fn with_policy(
        config: &Config,
        metrics: Arc<Metrics>,
        notify: Option<Recipient<Notify>>,
        policy: TrafficPolicy,
        settings: GatewaySettings,
    ) -> Self {
        let listener = notify
            .map(|to| Arc::new(move |event| to.do_send(breaker_notice(DEFAULT_PROVIDER, event))) as BreakerListener);
        let traffic = Arc::new(Traffic::new(policy, GatewayMetrics::new(&metrics), listener));
        Self::over(DEFAULT_PROVIDER, &config.provider.sangfor, traffic, settings, metrics)
    }

    fn over(
        name: &str,
        sp: &SangforConfig,
        traffic: Arc<Traffic>,
        settings: GatewaySettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let provider = SangforClient::new(sp, Arc::clone(&traffic)).map(|c| Arc::new(c) as Arc<dyn Provider>);
        match &provider {
            Ok(_) => tracing::info!(provider = name, base_url = %sp.base_url, "SCP gateway ready"),
            Err(ProviderError::NotConfigured) => {
                tracing::warn!(
                    provider = name,
                    "SCP is not configured; provider requests will fail until base_url is set"
                );
            }
            Err(e) => {
                tracing::error!(provider = name, error = %e, "SCP configuration is unusable; provider requests will fail")
            }
        }
        Self {
            provider,
            traffic,
            settings,
            sup: Supervision::new("gateway", metrics),
            capacity_cache: Arc::default(),
            capacity_read: Arc::default(),
        }
    }

    /// A gateway over any [`Provider`] (another platform, or a fake in lifecycle tests).
    pub fn with_provider(
        provider: Arc<dyn Provider>,
        traffic: Arc<Traffic>,
        settings: GatewaySettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            provider: Ok(provider),
            traffic,
            settings,
            sup: Supervision::new("gateway", metrics),
            capacity_cache: Arc::default(),
            capacity_read: Arc::default(),
        }
    }

    fn provider(&self) -> ProviderResult<Arc<dyn Provider>> {
        self.provider.clone()
    }
}

impl Actor for SangforGateway {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sup.on_started(ctx);
    }
}

crate::supervised_child!(SangforGateway);

// ---------------------------------------------------------------------------------------
// Handlers, in message order. Each clones what it needs and returns a future.

/// `impl Handler<$msg>` answering `ProviderResult<$out>` with `$body`, in which `$p` is the
/// provider, `$m` the message and `$s` the settings.
macro_rules! handle {
    ($msg:ty => $out:ty, |$p:ident, $m:ident, $s:ident| $body:expr) => {
        impl Handler<$msg> for SangforGateway {
            type Result = ResponseFuture<ProviderResult<$out>>;

            fn handle(&mut self, $m: $msg, _: &mut Self::Context) -> Self::Result {
                let provider = self.provider();
                let $s = self.settings.clone();
                Box::pin(async move {
                    let $p = provider?;
                    let _ = &$s;
                    $body
                })
            }
        }
    };
}

handle!(GetVersion => String, |p, _m, _s| p.version().await);
handle!(ListZones => Vec<Zone>, |p, _m, _s| p.list_zones().await);
handle!(GetCapacity => Capacity, |p, m, _s| p.zone_capacity(m.zone_id.as_deref()).await);
handle!(ListStorageTags => Vec<StorageTag>, |p, m, _s| p.list_storage_tags(&m.zone_id).await);
handle!(ListImages => Vec<Image>, |p, m, _s| p.list_images(m.zone_id.as_deref()).await);
handle!(ListNetworks => Vec<Network>, |p, m, _s| p.list_networks(m.zone_id.as_deref()).await);
handle!(ListSubnets => Vec<Subnet>, |p, m, _s| p.list_subnets(&m.network_id).await);
handle!(CreateServer => Created, |p, m, _s| p.create_server(&m.spec, &m.op).await);
handle!(GetServer => Server, |p, m, _s| p.get_server(&m.server_id).await);
handle!(FindServersByTag => Vec<Server>, |p, m, _s| p.find_servers_by_tag(&m.tag).await);
handle!(FindServersByTagPrefix => Vec<Server>, |p, m, _s| p.find_servers_by_tag_prefix(&m.prefix).await);
handle!(StartServer => TaskId, |p, m, _s| p.start(&m.server_id, &m.op).await);
handle!(StopServer => TaskId, |p, m, _s| p.stop(&m.server_id, m.force, &m.op).await);
handle!(PowerOff => Option<TaskState>, |p, m, s| {
    power_off(p.as_ref(), &m.server_id, &m.op, s.soft_stop_timeout, s.poll).await
});
handle!(RebootServer => TaskId, |p, m, _s| p.reboot(&m.server_id, m.force, &m.op).await);
handle!(UpdateCompute => TaskId, |p, m, _s| p.update_compute(&m.server_id, m.cores, m.memory_mb, &m.op).await);
handle!(ResizeDisk => TaskId, |p, m, _s| p.resize_disk(&m.server_id, m.size_mb, &m.op).await);
handle!(SetPassword => TaskId, |p, m, _s| p.set_password(&m.server_id, &m.password, &m.op).await);
handle!(DeleteServer => TaskId, |p, m, s| {
    p.delete(&m.server_id, m.permanent.unwrap_or(s.delete_permanently), &m.op).await
});
handle!(RestoreServer => TaskId, |p, m, _s| p.restore(&m.server_id, &m.op).await);
handle!(GetTask => TaskState, |p, m, _s| p.get_task(&m.task_id).await);
handle!(WaitTask => TaskState, |p, m, s| {
    wait_task(p.as_ref(), &m.task_id, m.timeout.unwrap_or(DEFAULT_TASK_TIMEOUT), s.poll).await
});
handle!(GetConsoleUrl => ConsoleUrl, |p, m, _s| p.remote_console(&m.server_id).await);
handle!(OpenConsole => crate::provider::console::ConsoleSocket, |p, m, _s| p.open_console(&m.server_id).await);
handle!(GetServerMetrics => ServerMetrics, |p, m, _s| {
    let read = p.server_metrics(&m.server_id, &m.names, m.timegap, m.granularity);
    if m.customer { for_customer(read).await } else { read.await }
});

/// Reads an AZ's capacity for a customer page: [`GetCapacityCached`] (cached, in the
/// customers' lane), as the reader `upgrade::offers_for_vps` takes.
pub fn customer_capacity(
    gateway: &actix::Addr<SangforGateway>,
) -> impl AsyncFnOnce(String) -> anyhow::Result<Capacity> {
    let gateway = gateway.clone();
    async move |zone: String| {
        let read = GetCapacityCached { zone_id: Some(zone) };
        Ok(gateway.send(read).await.map_err(|_| anyhow::anyhow!("the SCP gateway is not running"))??)
    }
}

/// [`customer_capacity`] of a gateway that may not be there (a VPS whose provider is not
/// configured): then every read fails, and nothing is sold blind.
pub fn customer_capacity_of(
    gateway: anyhow::Result<actix::Addr<SangforGateway>>,
) -> impl AsyncFnOnce(String) -> anyhow::Result<Capacity> {
    async move |zone: String| {
        let gateway = gateway?;
        customer_capacity(&gateway)(zone).await
    }
}

/// What admins are told when the circuit breaker opens or closes.
fn breaker_notice(provider: &str, event: BreakerEvent) -> Notify {
    // The default SCP keeps its words; another names itself.
    let scp = if provider == DEFAULT_PROVIDER { "SCP".to_string() } else { format!("SCP {provider}") };
    let (kind, severity, title, body) = match event {
        BreakerEvent::Opened { failures, cooldown } => (
            NotifyKind::BreakerOpen,
            Severity::Critical,
            format!("{scp} is failing: circuit breaker open"),
            format!(
                "{failures} consecutive {scp} requests failed (server errors, timeouts or connection errors). vmauto \
                 stops sending requests for {}s, then probes again. Lifecycle operations wait and resume \
                 automatically; new VMs are placed on other providers of their location meanwhile. Check that \
                 {scp} is up and reachable.",
                cooldown.as_secs()
            ),
        ),
        BreakerEvent::Closed => (
            NotifyKind::BreakerClosed,
            Severity::Info,
            format!("{scp} is reachable again"),
            format!("The circuit breaker closed: requests to {scp} flow again and waiting operations resume."),
        ),
    };
    Notify { kind, severity, title, body, subject: None, portal_url: None }
}

impl Handler<GetCapacityCached> for SangforGateway {
    type Result = ResponseFuture<ProviderResult<Capacity>>;

    fn handle(&mut self, m: GetCapacityCached, _: &mut Self::Context) -> Self::Result {
        let provider = self.provider();
        let (cache, one) = (self.capacity_cache.clone(), self.capacity_read.clone());
        Box::pin(async move {
            let fresh =
                || cache.lock().get(&m.zone_id).filter(|(at, _)| at.elapsed() < CAPACITY_CACHE).map(|(_, c)| c.clone());
            if let Some(c) = fresh() {
                return Ok(c);
            }
            let read = async {
                let _turn = one.lock().await;
                if let Some(c) = fresh() {
                    return Ok(c);
                }
                let cap = for_customer(provider?.zone_capacity(m.zone_id.as_deref())).await?;
                cache.lock().insert(m.zone_id.clone(), (std::time::Instant::now(), cap.clone()));
                Ok(cap)
            };
            tokio::time::timeout(CUSTOMER_WAIT, read).await.unwrap_or(Err(ProviderError::Timeout(CUSTOMER_WAIT)))
        })
    }
}

impl Handler<GetGatewayStatus> for SangforGateway {
    type Result = actix::MessageResult<GetGatewayStatus>;

    fn handle(&mut self, _: GetGatewayStatus, _: &mut Self::Context) -> Self::Result {
        actix::MessageResult(GatewayStatus {
            configured: self.provider.is_ok(),
            problem: self.provider.as_ref().err().map(ToString::to_string),
            breaker: self.traffic.breaker_state(),
        })
    }
}

impl Handler<Shutdown> for SangforGateway {
    type Result = ();

    /// Requests in flight finish on their own (they are independent futures); the operations
    /// that wait on tasks persisted their task ids and resume after the restart.
    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {
        tracing::debug!("SCP gateway shutting down");
    }
}

#[cfg(test)]
mod tests {
    use actix::Actor;

    use super::*;

    #[actix_rt::test]
    async fn unconfigured_gateway_answers_clearly() {
        let config = Arc::new(Config::default());
        let gw = SangforGateway::new(config, Arc::new(Metrics::new()), None).start();
        let err = gw.send(ListZones).await.expect("mailbox").unwrap_err();
        assert!(matches!(err, ProviderError::NotConfigured), "{err:?}");
        assert!(err.to_string().contains("not configured"));
        let status = gw.send(GetGatewayStatus).await.expect("mailbox");
        assert!(!status.configured);
        assert_eq!(status.breaker, BreakerState::Closed);
    }
}

//! Virtualization providers. Today: Sangfor SCP (`sangfor`).
//!
//! The lifecycle talks to a provider only through the gateway actor
//! (`crate::actors::gateway`), and the gateway only through the [`Provider`] trait, so a
//! second platform can be added by implementing the trait without touching the lifecycle.
//!
//! ## Layout
//! - [`types`]: provider-neutral values (server spec, server, task state, inventory items).
//! - [`usage`]: what a customer's portal shows besides state: console URLs, metric series.
//! - [`error`]: [`ProviderError`], which says whether a failure is worth retrying.
//! - [`traffic`]: what every request to a provider passes through: token buckets, a fair
//!   queue, a concurrency cap, retries with backoff and a circuit breaker.
//! - [`sangfor`]: the SCP Open-API client (both authentications, envelopes, paging).
//! - [`check`]: `vmauto provider check`, the connection report an admin reads.

pub mod check;
pub mod console;
pub mod error;
pub mod sangfor;
pub mod traffic;
pub mod types;
pub mod usage;

use std::time::Duration;

use async_trait::async_trait;

pub use error::ProviderError;
pub use types::*;
pub use usage::{ConsoleUrl, MetricSeries, ServerMetrics, TimeGap, metric};

use crate::config::Secret;

/// Result of a provider call.
pub type ProviderResult<T> = Result<T, ProviderError>;

/// What the appliance needs from a virtualization platform.
///
/// Every mutating call takes an [`OpKey`]: the provider derives its idempotency token from
/// it, so a retried or resumed operation can never create a second VM. Calls that start
/// asynchronous work on the platform return a [`TaskId`] at once; the caller persists it
/// and waits with [`Provider::get_task`] (or [`wait_task`]), which survives a restart.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// A short name for logs and metrics (`sangfor`).
    fn name(&self) -> &'static str;

    /// Platform version string (for `provider check` and the UI).
    async fn version(&self) -> ProviderResult<String>;
    /// Resource pools (SCP: AZs).
    async fn list_zones(&self) -> ProviderResult<Vec<Zone>>;
    /// Allocated and total CPU/memory, for one zone or the whole platform.
    async fn zone_capacity(&self, zone_id: Option<&str>) -> ProviderResult<Capacity>;
    async fn list_storage_tags(&self, zone_id: &str) -> ProviderResult<Vec<StorageTag>>;
    async fn list_images(&self, zone_id: Option<&str>) -> ProviderResult<Vec<Image>>;
    /// Networks (SCP: VPCs).
    async fn list_networks(&self, zone_id: Option<&str>) -> ProviderResult<Vec<Network>>;
    async fn list_subnets(&self, network_id: &str) -> ProviderResult<Vec<Subnet>>;

    /// Starts creating a server; returns its id (when the platform tells it) and the task.
    async fn create_server(&self, spec: &ServerSpec, op: &OpKey) -> ProviderResult<Created>;
    async fn get_server(&self, id: &ServerId) -> ProviderResult<Server>;
    /// Servers whose description carries `tag` as a whole word (the ownership tag).
    async fn find_servers_by_tag(&self, tag: &str) -> ProviderResult<Vec<Server>>;
    /// Servers whose description carries a word starting with `prefix` (every VM of one
    /// installation: `vmauto:<install-id>:`), for the reconciler.
    async fn find_servers_by_tag_prefix(&self, prefix: &str) -> ProviderResult<Vec<Server>>;
    async fn start(&self, id: &ServerId, op: &OpKey) -> ProviderResult<TaskId>;
    /// Graceful (ACPI) stop, or a hard power-off when `force`.
    async fn stop(&self, id: &ServerId, force: bool, op: &OpKey) -> ProviderResult<TaskId>;
    async fn reboot(&self, id: &ServerId, force: bool, op: &OpKey) -> ProviderResult<TaskId>;
    /// Changes cores and/or memory (the server is usually powered off first).
    async fn update_compute(
        &self,
        id: &ServerId,
        cores: Option<u32>,
        memory_mb: Option<u64>,
        op: &OpKey,
    ) -> ProviderResult<TaskId>;
    /// Grows the system disk to `size_mb`.
    async fn resize_disk(&self, id: &ServerId, size_mb: u64, op: &OpKey) -> ProviderResult<TaskId>;
    /// Sets the guest's root password (needs the guest tools running).
    async fn set_password(&self, id: &ServerId, password: &Secret, op: &OpKey) -> ProviderResult<TaskId>;
    /// Deletes a server: to the recycle bin, or for good when `permanent`.
    async fn delete(&self, id: &ServerId, permanent: bool, op: &OpKey) -> ProviderResult<TaskId>;
    /// Brings a server back from the recycle bin.
    async fn restore(&self, id: &ServerId, op: &OpKey) -> ProviderResult<TaskId>;
    async fn get_task(&self, id: &TaskId) -> ProviderResult<TaskState>;
    /// A remote-console (noVNC) URL for the server. Its token opens the console for a short
    /// while (SCP: about a minute), so ask just before opening it, and treat it as a secret.
    async fn remote_console(&self, id: &ServerId) -> ProviderResult<ConsoleUrl>;

    /// Asks for a remote console and opens it: the VNC WebSocket, ready to relay.
    async fn open_console(&self, id: &ServerId) -> ProviderResult<console::ConsoleSocket>;
    /// Usage series of a server over the last `timegap`: the metrics `names` (see
    /// [`metric`]), one point per `granularity` seconds — raised to the platform's minimum
    /// for the span ([`TimeGap::min_granularity`]), which `None` asks for.
    async fn server_metrics(
        &self,
        id: &ServerId,
        names: &[String],
        timegap: TimeGap,
        granularity: Option<u32>,
    ) -> ProviderResult<ServerMetrics>;
}

/// How [`wait_task`] spaces its polls: quick at first (most tasks are short), then slower.
#[derive(Debug, Clone, Copy)]
pub struct PollPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// Each interval is the previous one times this factor, up to `max`.
    pub factor: f64,
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self { initial: Duration::from_millis(100), max: Duration::from_secs(10), factor: 1.5 }
    }
}

/// Polls a task until it finishes, fails, or `timeout` passes.
///
/// Polling errors that are transient (the traffic layer has already retried them) do not
/// end the wait; a failed or cancelled task is [`ProviderError::TaskFailed`], a deadline
/// [`ProviderError::TaskTimeout`]. Only the task id is needed, so a restarted appliance can
/// resume a wait it persisted.
pub async fn wait_task(
    provider: &dyn Provider,
    task: &TaskId,
    timeout: Duration,
    poll: PollPolicy,
) -> ProviderResult<TaskState> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut interval = poll.initial;
    loop {
        match provider.get_task(task).await {
            Ok(state) if state.status == TaskStatus::Finished => return Ok(state),
            Ok(state) if state.status.is_terminal() => {
                return Err(ProviderError::TaskFailed {
                    task_id: task.to_string(),
                    reason: if state.message.is_empty() {
                        format!("task ended as {}", state.status)
                    } else {
                        state.message
                    },
                });
            }
            Ok(_) => {}
            Err(e) if e.is_transient() => {
                tracing::debug!(task = %task, error = %e, "task poll failed; polling again");
            }
            Err(e) => return Err(e),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(ProviderError::TaskTimeout { task_id: task.to_string(), waited: timeout });
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = interval.mul_f64(poll.factor).min(poll.max);
    }
}

/// Powers a server off: a graceful stop first, then a forced power-off if the guest has not
/// stopped within `soft_timeout` (guests without ACPI handling ignore the soft stop).
///
/// Returns the task that finished the job. A server that is already stopped is a no-op
/// reported as `Ok(None)`.
pub async fn power_off(
    provider: &dyn Provider,
    id: &ServerId,
    op: &OpKey,
    soft_timeout: Duration,
    poll: PollPolicy,
) -> ProviderResult<Option<TaskState>> {
    let server = provider.get_server(id).await?;
    if server.power == Power::Off && server.status == ServerStatus::Stopped {
        return Ok(None);
    }
    let soft = provider.stop(id, false, &op.step("soft")).await?;
    match wait_task(provider, &soft, soft_timeout, poll).await {
        Ok(state) => {
            let server = provider.get_server(id).await?;
            if server.status == ServerStatus::Stopped {
                return Ok(Some(state));
            }
            tracing::info!(server = %id, "graceful stop finished but the server still runs; forcing");
        }
        Err(ProviderError::TaskTimeout { .. } | ProviderError::TaskFailed { .. }) => {
            tracing::info!(server = %id, "graceful stop did not finish in time; forcing power-off");
        }
        Err(e) => return Err(e),
    }
    let hard = provider.stop(id, true, &op.step("force")).await?;
    wait_task(provider, &hard, soft_timeout.max(Duration::from_secs(60)), poll).await.map(Some)
}

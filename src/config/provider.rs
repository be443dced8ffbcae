//! `[provider.sangfor]` (how SCP is reached and how hard it may be pushed) and `[policy]` (what
//! the lifecycle does on its own).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    pub sangfor: SangforConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SangforAuth {
    #[default]
    Ec2,
    Token,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// `force: 0`: the VM goes to SCP's recycle bin and can be restored.
    #[default]
    RecycleBin,
    /// `force: 1`: the VM is deleted for good.
    Permanent,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SangforConfig {
    /// SCP's address with scheme (and port when not 443), e.g. `https://10.1.2.3`.
    pub base_url: String,
    /// `ec2` (access key / secret key) or `token` (user name / password).
    pub auth: SangforAuth,
    pub access_key: String,
    pub secret_key: Secret,
    pub region: String,
    pub service: String,
    pub username: String,
    pub password: Secret,
    /// Verify SCP's TLS certificate. Turn off only for a lab; a warning is logged at start.
    pub verify_tls: bool,
    /// PEM file with the CA (or the self-signed certificate) SCP presents.
    pub ca_file: String,
    pub request_timeout_secs: u64,
    /// Token bucket for GET requests, per minute (SCP allows about 600).
    pub get_per_minute: u32,
    /// Token bucket for other methods, per minute (SCP allows about 100).
    pub write_per_minute: u32,
    /// Requests in flight to SCP at once.
    pub max_concurrency: usize,
    /// Part of `get_per_minute` kept for pages customers open (upgrade and portal pages),
    /// with one connection of its own: customer reads never wait behind operations' polls
    /// and never delay them. At most half the read budget.
    pub customer_reads_per_minute: u32,
    /// Requests of one class (reads, writes) that may wait for SCP; more are refused and
    /// retried later. 0 = unbounded.
    pub max_queued: usize,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_threshold: u32,
    /// Seconds the breaker stays open before a half-open probe.
    pub breaker_cooldown_secs: u64,
    /// Retries for transient failures (429, 5xx, timeouts, connection errors).
    pub max_retries: u32,
    /// `recycle_bin` or `permanent`.
    pub delete_mode: DeleteMode,
    /// Seconds a soft stop may take before vmauto forces the power off.
    pub soft_stop_timeout_secs: u64,
    /// Milliseconds before a task is polled again the first time; each later wait is 1.5
    /// times the previous one, up to `task_poll_max_secs`. Lower finishes work sooner and
    /// spends more of SCP's GET budget.
    pub task_poll_initial_ms: u64,
    pub task_poll_max_secs: u64,
}

impl Default for SangforConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            auth: SangforAuth::Ec2,
            access_key: String::new(),
            secret_key: Secret::default(),
            region: "cn-south-1".into(),
            service: "open-api".into(),
            username: String::new(),
            password: Secret::default(),
            verify_tls: true,
            ca_file: String::new(),
            request_timeout_secs: 30,
            get_per_minute: 600,
            write_per_minute: 100,
            max_concurrency: 8,
            customer_reads_per_minute: 60,
            max_queued: 10_000,
            breaker_threshold: 5,
            breaker_cooldown_secs: 30,
            max_retries: 5,
            delete_mode: DeleteMode::RecycleBin,
            soft_stop_timeout_secs: 120,
            task_poll_initial_ms: 100,
            task_poll_max_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Days between a cancellation and the deletion (the VM is suspended meanwhile); 0
    /// deletes at once.
    pub grace_days: u32,
    /// Per-plan overrides of `grace_days`, keyed by plan key.
    pub grace_days_by_plan: BTreeMap<String, u32>,
    /// More suspensions/deletions than this in an hour pause destructive automation until an
    /// admin approves.
    pub max_destructive_per_hour: u32,
    /// Attempts of an operation before it is marked dead.
    pub max_attempts: u32,
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    /// Seconds between reconciler runs; 0 turns it off.
    pub reconcile_interval_secs: u64,
    /// Hours before a scheduled deletion the customer is reminded (0: no reminder).
    pub warn_before_delete_hours: u32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            grace_days: 3,
            grace_days_by_plan: BTreeMap::new(),
            max_destructive_per_hour: 20,
            max_attempts: 8,
            retry_base_secs: 2,
            retry_max_secs: 300,
            reconcile_interval_secs: 300,
            warn_before_delete_hours: 24,
        }
    }
}

/// The rules of one SCP connection; `key` is where it is configured (`provider.sangfor`,
/// `providers.<name>`).
pub(super) fn check_sangfor(key: &str, sp: &SangforConfig) -> anyhow::Result<()> {
    if !sp.base_url.is_empty() {
        let parsed = url::Url::parse(&sp.base_url).map_err(|e| {
            anyhow!("{key}.base_url: {:?} is not a URL ({e}); include the scheme, e.g. https://10.1.2.3", sp.base_url)
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("{key}.base_url: scheme must be http or https, not {:?}", parsed.scheme());
        }
        match sp.auth {
            SangforAuth::Ec2 if sp.access_key.is_empty() || sp.secret_key.is_empty() => {
                bail!("{key}: auth = \"ec2\" needs access_key and secret_key (or secret_key_file)")
            }
            SangforAuth::Token if sp.username.is_empty() || sp.password.is_empty() => {
                bail!("{key}: auth = \"token\" needs username and password (or password_file)")
            }
            _ => {}
        }
    }
    if sp.max_concurrency == 0 {
        bail!("{key}.max_concurrency: must be at least 1");
    }
    Ok(())
}

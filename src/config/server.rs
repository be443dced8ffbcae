//! `[server]`, `[log]`, `[database]`, `[inbox]`, `[webhooks]`, `[plugins]` and `[security]`: how the
//! appliance listens, logs, stores, keeps webhooks and guards logins.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::*;

/// How long the inbox keeps webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboxConfig {
    /// Days a settled webhook (processed, ignored, stale or refused) keeps its headers, body
    /// and outcomes; then it is compacted to its dedupe key (refused ones are deleted).
    /// 0 keeps everything.
    pub retention_days: u32,
    /// Days a webhook's dedupe key is kept, so a sender's late retry is still recognised as a
    /// duplicate; then the compacted row is deleted.
    pub dedupe_days: u32,
}

impl Default for InboxConfig {
    fn default() -> Self {
        Self { retention_days: 30, dedupe_days: 90 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// The source behind `POST /api/vps/provision` and `/api/vps/deprovision`. Empty: the
    /// first source (by name) whose plugin is `ghl-workflow`.
    pub seed_source: String,
    /// Refused webhooks (bad signature, bad body, too large) recorded in the inbox per source
    /// and minute; more are counted but not stored.
    pub refused_per_source_per_minute: u32,
    /// Refused webhooks recorded per client address and minute.
    pub refused_per_client_per_minute: u32,
    /// Bytes of a refused webhook's body kept in its inbox row (with its length and SHA-256).
    pub refused_body_bytes: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            seed_source: String::new(),
            refused_per_source_per_minute: 60,
            refused_per_client_per_minute: 10,
            refused_body_bytes: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port the HTTP server listens on.
    pub listen: SocketAddr,
    /// The URL customers and admins reach vmauto at (links in emails and upgrade pages).
    pub public_url: String,
    /// Directory for the store, the appliance key and plugins.
    pub data_dir: PathBuf,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// Seconds a sender may take to send a webhook's whole body (then 408).
    pub body_timeout_secs: u64,
    /// Seconds to drain in-flight work on SIGTERM/SIGINT.
    pub shutdown_timeout_secs: u64,
    /// Addresses (or CIDR ranges) of reverse proxies whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` are believed; from anyone else those headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// When set, `GET /metrics` needs `Authorization: Bearer <this token>`.
    pub metrics_token: Secret,
    /// The gauges `/metrics` reads from the store (key figures, backlog) are recomputed at
    /// most this often; scrapes in between are served from memory.
    pub metrics_refresh_secs: u64,
}

impl ServerConfig {
    /// `trusted_proxies` parsed: addresses become one-address ranges.
    pub fn trusted_proxy_nets(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                let p = p.trim();
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| anyhow::anyhow!("server.trusted_proxies: {p:?} is not an address or a CIDR range"))
            })
            .collect()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            public_url: "http://127.0.0.1:8080".into(),
            data_dir: PathBuf::from("/var/lib/vmauto"),
            workers: 0,
            body_limit_bytes: 1024 * 1024,
            body_timeout_secs: 30,
            shutdown_timeout_secs: 30,
            trusted_proxies: vec!["127.0.0.1".into(), "::1".into()],
            metrics_token: Secret::default(),
            metrics_refresh_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter: `info`, `debug`, `vmauto=debug,actix_web=info`, ….
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: DEFAULT_LOG_LEVEL.into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `surrealkv://PATH` (embedded file store), `mem://` (in memory), `ws://host:port` or
    /// `wss://host:port` (an external SurrealDB server). Empty: `surrealkv://<data_dir>/store`.
    pub url: String,
    pub namespace: String,
    pub database: String,
    /// Root credentials, only for `ws://`/`wss://` servers.
    pub username: String,
    pub password: Secret,
    /// A server's answer deadline: a store call that takes longer fails as "store
    /// unavailable" (webhooks are answered 429) instead of waiting for the server.
    pub timeout_secs: u64,
    /// `wss://` only: PEM file of the CA (or the certificate) the server's certificate is
    /// checked against. Empty: the operating system's trust store.
    pub ca_file: String,
    /// The embedded store's write buffer (SurrealKV's memtable), MiB: written rows are kept
    /// here until it is full and written out as a sorted file. One transaction must fit.
    pub memtable_mib: u64,
    /// The embedded store's cache of file blocks read, MiB.
    pub cache_mib: u64,
}

impl DatabaseConfig {
    /// Refuses sizes the embedded store cannot work with: a webhook of `body_limit` bytes
    /// must fit in the write buffer with room to spare.
    pub fn check(&self, body_limit: usize) -> anyhow::Result<()> {
        if !(4..=4096).contains(&self.memtable_mib) {
            anyhow::bail!(
                "database.memtable_mib: {} is out of range; use 4 to 4096 (32 by default)",
                self.memtable_mib
            );
        }
        if body_limit as u64 * 2 > self.memtable_mib * 1024 * 1024 {
            anyhow::bail!(
                "database.memtable_mib: {} MiB cannot hold a webhook of server.body_limit_bytes ({body_limit}); \
                 make it at least twice that, or lower the body limit",
                self.memtable_mib
            );
        }
        if !(1..=65536).contains(&self.cache_mib) {
            anyhow::bail!("database.cache_mib: {} is out of range; use 1 to 65536 (16 by default)", self.cache_mib);
        }
        Ok(())
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            namespace: "vmauto".into(),
            database: "vmauto".into(),
            username: String::new(),
            password: Secret::default(),
            timeout_secs: 10,
            ca_file: String::new(),
            memtable_mib: 32,
            cache_mib: 16,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Directory of extra `.wasm` plugins. Empty: `<data_dir>/plugins`.
    pub dir: String,
    /// Keep the compiled plugins in `<data_dir>/plugin-cache`, so a restart loads them
    /// instead of compiling them again.
    pub compile_cache: bool,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self { dir: String::new(), compile_cache: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// The appliance key that encrypts secrets at rest. Empty: `<data_dir>/appliance.key`,
    /// created on first start.
    pub key_file: String,
    pub session_idle_minutes: u64,
    pub session_absolute_hours: u64,
    /// Failed logins of one user from one client address before that address is blocked for
    /// this user for `lockout_minutes`.
    pub login_max_failures: u32,
    /// Failed logins of one user from anywhere before the account itself is locked (a
    /// backstop against guessing from many addresses).
    pub login_max_failures_per_user: u32,
    pub lockout_minutes: u64,
    /// Password checks (argon2id) run at once, on the blocking pool; more logins wait up to
    /// 3 s for a turn, then are answered "busy".
    pub login_concurrency: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            key_file: String::new(),
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            login_max_failures: 5,
            login_max_failures_per_user: 50,
            lockout_minutes: 15,
            login_concurrency: 1,
        }
    }
}

/// Several nodes on one SurrealDB server (`[cluster]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's name, unique among the nodes sharing the store. Empty: vmauto runs as the
    /// only node (no lease).
    pub node_id: String,
    /// How long the work lease lasts without a renewal; the node holding it renews it every
    /// third of that, and another node takes over this long after it stopped renewing.
    pub lease_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self { node_id: String::new(), lease_secs: 10 }
    }
}

impl ClusterConfig {
    /// A node id needs a store the nodes can share.
    pub fn validate(&self, database_url: &str) -> anyhow::Result<()> {
        if self.node_id.is_empty() {
            return Ok(());
        }
        if !(database_url.starts_with("ws://") || database_url.starts_with("wss://")) {
            anyhow::bail!(
                "cluster.node_id: several nodes share a SurrealDB server; set database.url = ws://HOST:PORT \
                 (or wss://), or leave cluster.node_id empty for a single node"
            );
        }
        if !(3..=3600).contains(&self.lease_secs) {
            anyhow::bail!("cluster.lease_secs: must be between 3 and 3600 (10 is usual)");
        }
        Ok(())
    }
}

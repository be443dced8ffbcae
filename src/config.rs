//! Configuration: `appliance.toml`, overridden by `VMAUTO_*` environment variables, overridden
//! by command-line flags.
//!
//! All three sources are merged into one TOML tree before it is deserialized, so every key
//! has exactly one name and one validation:
//! - the file uses the key path (`[provider.sangfor] base_url = …`);
//! - the environment uses `VMAUTO_` + the path in upper case with `__` between levels
//!   (`VMAUTO_PROVIDER__SANGFOR__BASE_URL`);
//! - the command line uses `--set provider.sangfor.base_url=…` (plus a few named flags).
//!
//! Any secret may instead be given as `<key>_file` naming a file that holds it; giving both
//! is refused. Unknown keys and invalid values stop start-up with a message that names the
//! key and what is wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::notice::NotifyKind;

/// The default log filter: vmauto at info, the store's and server's internals at warn.
pub const DEFAULT_LOG_LEVEL: &str = "info,surrealdb=warn,surrealkv=warn,actix_server=warn";

/// The environment-variable prefix.
pub const ENV_PREFIX: &str = "VMAUTO_";
/// Separates key-path levels in environment-variable names.
pub const ENV_SEPARATOR: &str = "__";
/// Keys that hold secrets: they accept a `_file` twin and never print.
pub const SECRET_KEYS: &[&str] = &[
    "secret_key",
    "password",
    "token",
    "secret",
    "secrets",
    "webhook_secrets",
    "api_key",
    "hmac_secret",
    "webhook_secret",
    "metrics_token",
];

/// A secret string: its `Debug`, `Display` and `Serialize` show `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret's value; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub database: DatabaseConfig,
    pub provider: ProviderConfig,
    pub policy: PolicyConfig,
    pub smtp: SmtpConfig,
    pub notify: NotifyConfig,
    pub stripe: StripeConfig,
    pub plugins: PluginsConfig,
    pub security: SecurityConfig,
    pub webhooks: WebhooksConfig,
    pub inbox: InboxConfig,
    pub sources: BTreeMap<String, SourceConfig>,
}

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
    /// `surrealkv://PATH` (embedded file store), `mem://` (in memory) or `ws://host:port`
    /// (an external SurrealDB server). Empty: `surrealkv://<data_dir>/store`.
    pub url: String,
    pub namespace: String,
    pub database: String,
    /// Root credentials, only for `ws://` servers.
    pub username: String,
    pub password: Secret,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            namespace: "vmauto".into(),
            database: "vmauto".into(),
            username: String::new(),
            password: Secret::default(),
        }
    }
}

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
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    #[default]
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: String,
    pub password: Secret,
    pub from: String,
    /// Admins who receive alerts.
    pub admin_recipients: Vec<String>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "localhost".into(),
            port: 587,
            tls: SmtpTls::Starttls,
            username: String::new(),
            password: Secret::default(),
            from: "vmauto@localhost".into(),
            admin_recipients: Vec::new(),
        }
    }
}

/// Where notifications go besides the UI: which kinds are emailed to admins, and outgoing
/// signed webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Kinds emailed to `smtp.admin_recipients`.
    pub email_kinds: Vec<NotifyKind>,
    /// URLs that receive every notification of `webhook_kinds` as a signed JSON POST.
    pub webhook_urls: Vec<String>,
    /// Allow `webhook_urls` on loopback, link-local or private addresses (a receiver on this
    /// machine or the local network); refused by default, so a settings change cannot point
    /// vmauto's requests at internal services.
    pub allow_private_webhook_urls: bool,
    /// HMAC-SHA256 key for the `X-Vmauto-Signature` header; required with `webhook_urls`.
    pub webhook_secret: Secret,
    /// Kinds sent to `webhook_urls`.
    pub webhook_kinds: Vec<NotifyKind>,
    /// Attempts per delivery (email or webhook) before it is given up and recorded as failed.
    pub max_attempts: u32,
    /// Cap of the back-off between attempts, in seconds (it starts at one second and doubles).
    pub retry_max_secs: u64,
    /// Seconds one webhook request or SMTP session may take.
    pub timeout_secs: u64,
    /// Hours the one-time link in the customer's "your VPS is ready" email stays valid.
    pub reveal_link_hours: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        use NotifyKind::*;
        Self {
            email_kinds: vec![
                OperationDead,
                EventParked,
                EventFailed,
                BreakerOpen,
                GuardTripped,
                ReconcileFinding,
                PaymentIssue,
            ],
            webhook_urls: Vec::new(),
            allow_private_webhook_urls: false,
            webhook_secret: Secret::default(),
            webhook_kinds: vec![
                VpsReady,
                VpsDeleted,
                OperationDead,
                EventParked,
                EventFailed,
                BreakerOpen,
                GuardTripped,
            ],
            max_attempts: 6,
            retry_max_secs: 60,
            timeout_secs: 10,
            reveal_link_hours: 72,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripeConfig {
    pub enabled: bool,
    pub api_base: String,
    pub secret_key: Secret,
    /// Webhook signing secrets (`whsec_…`); several during rotation.
    pub webhook_secrets: Vec<Secret>,
    /// Seconds a signed event may be old.
    pub tolerance_secs: u64,
    pub currency: String,
    /// Hours an upgrade link stays valid.
    pub link_ttl_hours: u64,
    /// Put an upgrade link in the customer's "your VPS is ready" email (needs `enabled`).
    pub link_in_ready_email: bool,
    /// Upgrade offers written to the store at start-up (an offer edited in the UI since is
    /// left as edited); `[[stripe.offers]]` tables.
    pub offers: Vec<OfferConfig>,
}

/// An upgrade offer as declared in `appliance.toml`: either a move to another template
/// (`to_template`) or a delta (`add_cores`, `add_memory_gb`, `add_disk_gb`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfferConfig {
    /// Stable identifier (letters, digits, `-`, `_`).
    pub id: String,
    /// What the customer sees ("Double the memory").
    pub name: String,
    /// Offered only to VPS of this template; empty: to every VPS.
    pub from_template: String,
    /// The template the VPS grows to; empty for a delta offer.
    pub to_template: String,
    pub add_cores: u32,
    pub add_memory_gb: u64,
    pub add_disk_gb: u64,
    /// Price in minor units (cents).
    pub price: u64,
    /// ISO currency, lower case; empty: `stripe.currency`.
    pub currency: String,
}

impl Default for StripeConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            api_base: "https://api.stripe.com".into(),
            secret_key: Secret::default(),
            webhook_secrets: Vec::new(),
            tolerance_secs: 300,
            currency: "usd".into(),
            link_ttl_hours: 72,
            link_in_ready_email: false,
            offers: Vec::new(),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    /// No verification. Allowed only when chosen explicitly; warned at every start.
    None,
    /// A shared token compared in constant time (path segment, header or body field).
    #[default]
    SharedToken,
    HmacSha256,
    GhlEd25519,
    GhlRsa,
    Stripe,
}

/// A billing source: which plugin reads its webhooks and how they are authenticated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub plugin: String,
    pub signature: SignatureScheme,
    /// Shared token (`shared_token`).
    pub token: Secret,
    /// Where the shared token travels: `path`, `header` or `body`.
    pub token_in: String,
    /// Header or body field name carrying the token or the HMAC.
    pub token_field: String,
    /// HMAC secret (`hmac_sha256`).
    pub hmac_secret: Secret,
    /// `hex` or `base64`.
    pub hmac_encoding: String,
    /// Public keys (PEM) for `ghl_ed25519` / `ghl_rsa`; several during rotation.
    pub public_keys: Vec<String>,
    /// Stripe webhook secrets for the `stripe` scheme.
    pub secrets: Vec<Secret>,
    /// Free-form settings handed to the plugin.
    pub settings: BTreeMap<String, String>,
    /// Send customers the "your VPS is ready" email.
    pub customer_email: bool,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            plugin: String::new(),
            signature: SignatureScheme::SharedToken,
            token: Secret::default(),
            token_in: "path".into(),
            token_field: "x-vmauto-token".into(),
            hmac_secret: Secret::default(),
            hmac_encoding: "hex".into(),
            public_keys: Vec::new(),
            secrets: Vec::new(),
            settings: BTreeMap::new(),
            customer_email: false,
        }
    }
}

/// Overrides from the command line, applied last.
#[derive(Debug, Clone, Default)]
pub struct CliOverrides {
    /// `key.path=value` pairs.
    pub set: Vec<String>,
}

impl Config {
    /// Loads the configuration: file (optional), then `VMAUTO_*` from `env`, then `cli`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        cli: &CliOverrides,
    ) -> anyhow::Result<Self> {
        let mut tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
                text.parse::<toml::Table>().map_err(|e| anyhow!("{}: {}", path.display(), e.message()))?
            }
            None => toml::Table::new(),
        };
        let mut env: Vec<_> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        env.sort();
        for (name, value) in env {
            let key_path = name[ENV_PREFIX.len()..].to_ascii_lowercase();
            let path: Vec<&str> = key_path.split(ENV_SEPARATOR).collect();
            set_path(&mut tree, &path, parse_scalar(&value)).with_context(|| format!("environment variable {name}"))?;
        }
        for item in &cli.set {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| anyhow!("--set {item}: expected KEY=VALUE, e.g. server.listen=0.0.0.0:8080"))?;
            let path: Vec<&str> = key.trim().split('.').collect();
            set_path(&mut tree, &path, parse_scalar(value.trim())).with_context(|| format!("--set {key}"))?;
        }
        resolve_secret_files(&mut tree, "")?;
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(tree)).map_err(|e| {
            let path = e.path().to_string();
            anyhow!("invalid configuration: {path}: {}", e.into_inner().message().trim())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Defaults for tests and the demo: everything under `data_dir`.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        let mut c = Self::default();
        c.server.data_dir = data_dir.to_path_buf();
        c
    }

    /// The database URL, derived from the data directory when not set.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("surrealkv://{}", self.server.data_dir.join("store").display())
        } else {
            self.database.url.clone()
        }
    }

    /// The appliance key file, derived from the data directory when not set.
    pub fn key_file(&self) -> PathBuf {
        if self.security.key_file.is_empty() {
            self.server.data_dir.join("appliance.key")
        } else {
            PathBuf::from(&self.security.key_file)
        }
    }

    /// The plugin directory, derived from the data directory when not set.
    pub fn plugin_dir(&self) -> PathBuf {
        if self.plugins.dir.is_empty() {
            self.server.data_dir.join("plugins")
        } else {
            PathBuf::from(&self.plugins.dir)
        }
    }

    /// Where compiled plugins are kept between starts, when `plugins.compile_cache` is on.
    pub fn plugin_cache_dir(&self) -> Option<PathBuf> {
        self.plugins.compile_cache.then(|| self.server.data_dir.join("plugin-cache"))
    }

    /// The source behind the seed endpoints `/api/vps/provision` and `/api/vps/deprovision`.
    pub fn seed_source(&self) -> Option<&str> {
        if !self.webhooks.seed_source.is_empty() {
            return Some(&self.webhooks.seed_source);
        }
        self.sources.iter().find(|(_, s)| s.plugin == "ghl-workflow").map(|(n, _)| n.as_str())
    }

    /// Cross-field rules, each failure naming its key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let url = self.database_url();
        if !(url.starts_with("surrealkv://")
            || url.starts_with("mem://")
            || url.starts_with("ws://")
            || url.starts_with("wss://"))
        {
            bail!("database.url: {url:?} is not supported; use surrealkv://PATH, mem:// or ws://HOST:PORT");
        }
        if self.log.level.trim().is_empty() {
            bail!("log.level: must not be empty (e.g. \"info\")");
        }
        self.server.trusted_proxy_nets()?;
        if self.server.body_timeout_secs == 0 {
            bail!("server.body_timeout_secs: must be at least 1");
        }
        if self.server.body_limit_bytes < 1024 {
            bail!("server.body_limit_bytes: {} is too small; use at least 1024", self.server.body_limit_bytes);
        }
        let sp = &self.provider.sangfor;
        if !sp.base_url.is_empty() {
            let parsed = url::Url::parse(&sp.base_url).map_err(|e| {
                anyhow!(
                    "provider.sangfor.base_url: {:?} is not a URL ({e}); include the scheme, e.g. https://10.1.2.3",
                    sp.base_url
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                bail!("provider.sangfor.base_url: scheme must be http or https, not {:?}", parsed.scheme());
            }
            match sp.auth {
                SangforAuth::Ec2 if sp.access_key.is_empty() || sp.secret_key.is_empty() => {
                    bail!("provider.sangfor: auth = \"ec2\" needs access_key and secret_key (or secret_key_file)")
                }
                SangforAuth::Token if sp.username.is_empty() || sp.password.is_empty() => {
                    bail!("provider.sangfor: auth = \"token\" needs username and password (or password_file)")
                }
                _ => {}
            }
        }
        if sp.max_concurrency == 0 {
            bail!("provider.sangfor.max_concurrency: must be at least 1");
        }
        if self.policy.max_attempts == 0 {
            bail!("policy.max_attempts: must be at least 1");
        }
        if self.policy.retry_base_secs > self.policy.retry_max_secs {
            bail!("policy.retry_base_secs: must not exceed policy.retry_max_secs");
        }
        if self.smtp.enabled && self.smtp.host.is_empty() {
            bail!("smtp.host: required when smtp.enabled = true");
        }
        let n = &self.notify;
        for (i, u) in n.webhook_urls.iter().enumerate() {
            let parsed = url::Url::parse(u).map_err(|e| {
                anyhow!("notify.webhook_urls[{i}]: {u:?} is not a URL ({e}); e.g. https://hooks.example.com/vmauto")
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                bail!("notify.webhook_urls[{i}]: scheme must be http or https, not {:?}", parsed.scheme());
            }
            if !n.allow_private_webhook_urls && is_internal_host(&parsed) {
                bail!(
                    "notify.webhook_urls[{i}]: {u:?} points at a loopback, link-local or private address; set \
                     notify.allow_private_webhook_urls = true if the receiver really is internal"
                );
            }
        }
        if !n.webhook_urls.is_empty() && n.webhook_secret.is_empty() {
            bail!("notify.webhook_secret: required when notify.webhook_urls is set (or use webhook_secret_file)");
        }
        if n.max_attempts == 0 {
            bail!("notify.max_attempts: must be at least 1");
        }
        if n.reveal_link_hours == 0 {
            bail!("notify.reveal_link_hours: must be at least 1");
        }
        self.validate_stripe()?;
        if !self.webhooks.seed_source.is_empty() && !self.sources.contains_key(&self.webhooks.seed_source) {
            bail!("webhooks.seed_source: {:?} is not a configured source", self.webhooks.seed_source);
        }
        for (name, source) in &self.sources {
            if source.plugin.is_empty() {
                bail!("sources.{name}.plugin: required (e.g. \"ghl-workflow\")");
            }
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                bail!("sources.{name}: a source name may hold only letters, digits, '-' and '_'");
            }
            if source.customer_email && !self.smtp.enabled {
                bail!("sources.{name}.customer_email: needs smtp.enabled = true (the email goes out over SMTP)");
            }
            if !matches!(source.token_in.as_str(), "path" | "header" | "body") {
                bail!("sources.{name}.token_in: {:?} must be path, header or body", source.token_in);
            }
            if source.signature == SignatureScheme::SharedToken && source.token.is_empty() {
                bail!(
                    "sources.{name}.token: required for signature = \"shared_token\" (or set signature = \"none\" explicitly)"
                );
            }
        }
        Ok(())
    }
}

impl Config {
    fn validate_stripe(&self) -> anyhow::Result<()> {
        let st = &self.stripe;
        let parsed = url::Url::parse(&st.api_base).map_err(|e| {
            anyhow!("stripe.api_base: {:?} is not a URL ({e}); e.g. https://api.stripe.com", st.api_base)
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("stripe.api_base: scheme must be http or https, not {:?}", parsed.scheme());
        }
        if st.link_ttl_hours == 0 {
            bail!("stripe.link_ttl_hours: must be at least 1");
        }
        if !is_currency(&st.currency) {
            bail!("stripe.currency: {:?} must be a lower-case ISO code such as \"usd\"", st.currency);
        }
        if st.enabled && st.secret_key.is_empty() {
            bail!("stripe.secret_key: required when stripe.enabled = true (or use secret_key_file)");
        }
        if st.enabled && st.webhook_secrets.iter().all(Secret::is_empty) {
            bail!("stripe.webhook_secrets: required when stripe.enabled = true (the endpoint's whsec_... secret)");
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, o) in st.offers.iter().enumerate() {
            o.check().map_err(|e| anyhow!("stripe.offers[{i}]{e}"))?;
            if !seen.insert(o.id.as_str()) {
                bail!("stripe.offers[{i}].id: {:?} is used twice", o.id);
            }
        }
        Ok(())
    }
}

impl OfferConfig {
    /// Checks one offer; the error starts with the field (`.price: …`) or `: …`.
    pub fn check(&self) -> Result<(), String> {
        if self.id.is_empty()
            || self.id.len() > 64
            || !self.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(".id: {:?} must be 1 to 64 letters, digits, '-' or '_'", self.id));
        }
        if self.name.trim().is_empty() {
            return Err(".name: required (what the customer sees)".into());
        }
        let delta = self.add_cores > 0 || self.add_memory_gb > 0 || self.add_disk_gb > 0;
        if self.to_template.is_empty() != delta {
            return Err(": set either to_template or at least one of add_cores, add_memory_gb, add_disk_gb".into());
        }
        if self.price == 0 {
            return Err(".price: must be at least 1 (minor units, e.g. cents)".into());
        }
        if !self.currency.is_empty() && !is_currency(&self.currency) {
            return Err(format!(".currency: {:?} must be a lower-case ISO code such as \"usd\"", self.currency));
        }
        Ok(())
    }
}

/// A lower-case three-letter currency code.
pub fn is_currency(s: &str) -> bool {
    s.len() == 3 && s.chars().all(|c| c.is_ascii_lowercase())
}

/// Reads a value given on the command line or in the environment: TOML scalars and arrays
/// (`true`, `42`, `["a"]`) keep their type, anything else is a string.
fn parse_scalar(raw: &str) -> toml::Value {
    let probe = format!("v = {raw}");
    match probe.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

fn set_path(tree: &mut toml::Table, path: &[&str], value: toml::Value) -> anyhow::Result<()> {
    let (last, parents) = path.split_last().ok_or_else(|| anyhow!("empty key"))?;
    if path.iter().any(|p| p.is_empty()) {
        bail!("malformed key path {:?}", path.join("."));
    }
    let mut table = tree;
    for part in parents {
        let entry = table.entry((*part).to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| anyhow!("{part} is a value, not a section"))?;
    }
    table.insert((*last).to_string(), value);
    Ok(())
}

/// Whether a URL's host is this machine or an internal network: `localhost`, or an address
/// that is loopback, link-local, private (RFC 1918, unique-local IPv6), unspecified or the
/// cloud metadata range.
fn is_internal_host(url: &url::Url) -> bool {
    use std::net::IpAddr;
    let ip = match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            return d == "localhost" || d.ends_with(".localhost");
        }
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a),
        Some(url::Host::Ipv6(a)) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        None => return true,
    };
    match ip {
        IpAddr::V4(a) => a.is_loopback() || a.is_private() || a.is_link_local() || a.is_unspecified(),
        IpAddr::V6(a) => a.is_loopback() || a.is_unspecified() || a.is_unique_local() || a.is_unicast_link_local(),
    }
}

/// Replaces every `<secret>_file = PATH` with `<secret> = <file contents>`.
fn resolve_secret_files(table: &mut toml::Table, prefix: &str) -> anyhow::Result<()> {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let full = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if let Some(toml::Value::Table(inner)) = table.get_mut(&key) {
            resolve_secret_files(inner, &full)?;
            continue;
        }
        let Some(base) = key.strip_suffix("_file") else { continue };
        if !SECRET_KEYS.contains(&base) {
            continue;
        }
        if table.contains_key(base) {
            bail!("{full}: both {base} and {key} are set; keep one");
        }
        let path = match table.remove(&key) {
            Some(toml::Value::String(p)) => p,
            _ => bail!("{full}: must be a file path"),
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("{full}: cannot read {path}"))?;
        let text = text.trim_end_matches(['\n', '\r']).to_string();
        let value = if base.ends_with('s') {
            toml::Value::Array(text.lines().map(|l| toml::Value::String(l.trim().into())).collect())
        } else {
            toml::Value::String(text)
        };
        table.insert(base.to_string(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn shipped_appliance_toml_is_valid_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("appliance.toml");
        let text = std::fs::read_to_string(&path).expect("appliance.toml");
        // Every key is present but commented out at its default: uncomment them all.
        let uncommented: String = text
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|r| r.contains(" = ") || r.starts_with('[')).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("full.toml");
        std::fs::write(&file, &uncommented).expect("write");
        let c = Config::load(Some(&file), env(&[]), &CliOverrides::default()).expect("uncommented file is valid");
        let d = Config::default();
        assert_eq!(serde_json::to_value(&c).ok(), serde_json::to_value(&d).ok(), "documented defaults drift from code");
    }

    #[test]
    fn env_overrides_file_and_cli_overrides_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.toml");
        std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:1000\"\nworkers = 3\n").expect("write");
        let c = Config::load(
            Some(&file),
            env(&[("VMAUTO_SERVER__LISTEN", "127.0.0.1:2000"), ("VMAUTO_POLICY__GRACE_DAYS", "0")]),
            &CliOverrides { set: vec!["server.listen=127.0.0.1:3000".into()] },
        )
        .expect("valid");
        assert_eq!(c.server.listen.port(), 3000);
        assert_eq!(c.server.workers, 3);
        assert_eq!(c.policy.grace_days, 0);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Config::load(None, env(&[("VMAUTO_SERVER__LISTN", "x")]), &CliOverrides::default())
            .expect_err("unknown key");
        assert!(format!("{err:#}").contains("listn"), "{err:#}");
        let err = Config::load(None, env(&[("VMAUTO_POLICY__GRACE_DAYS", "soon")]), &CliOverrides::default())
            .expect_err("bad value");
        assert!(format!("{err:#}").contains("grace_days"), "{err:#}");
        let err = Config::load(None, env(&[]), &CliOverrides { set: vec!["policy.max_attempts=0".into()] })
            .expect_err("invalid");
        assert!(format!("{err:#}").contains("policy.max_attempts"), "{err:#}");
    }

    #[test]
    fn outgoing_webhooks_to_internal_addresses_need_an_explicit_allow() {
        for (url, internal) in [
            ("http://127.0.0.1:9000/hook", true),
            ("http://localhost/hook", true),
            ("http://10.1.2.3/hook", true),
            ("http://192.168.1.10/hook", true),
            ("http://169.254.169.254/latest/meta-data", true),
            ("http://[::1]/hook", true),
            ("http://[fd00::1]/hook", true),
            ("http://[::ffff:127.0.0.1]/hook", true),
            ("https://hooks.example.com/vmauto", false),
            ("https://203.0.113.7/hook", false),
        ] {
            assert_eq!(is_internal_host(&url::Url::parse(url).expect("url")), internal, "{url}");
        }
        let mut c = Config::default();
        c.notify.webhook_urls = vec!["http://127.0.0.1:9000/hook".into()];
        c.notify.webhook_secret = Secret::new("s");
        let err = c.validate().expect_err("refused");
        assert!(format!("{err:#}").contains("allow_private_webhook_urls"), "{err:#}");
        c.notify.allow_private_webhook_urls = true;
        c.validate().expect("allowed explicitly");
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("sk");
        std::fs::write(&secret, "s3cr3t\n").expect("write");
        let c = Config::load(
            None,
            env(&[
                ("VMAUTO_PROVIDER__SANGFOR__BASE_URL", "https://scp.test"),
                ("VMAUTO_PROVIDER__SANGFOR__ACCESS_KEY", "ak"),
                ("VMAUTO_PROVIDER__SANGFOR__SECRET_KEY_FILE", secret.to_str().expect("utf8")),
            ]),
            &CliOverrides::default(),
        )
        .expect("valid");
        assert_eq!(c.provider.sangfor.secret_key.expose(), "s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(!serde_json::to_string(&c).expect("json").contains("s3cr3t"));
        let err = Config::load(
            None,
            env(&[("VMAUTO_SMTP__PASSWORD", "x"), ("VMAUTO_SMTP__PASSWORD_FILE", secret.to_str().expect("utf8"))]),
            &CliOverrides::default(),
        )
        .expect_err("both forms");
        assert!(format!("{err:#}").contains("smtp.password_file"), "{err:#}");
    }

    #[test]
    fn stripe_offers_are_checked_and_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("o.toml");
        let load = |offers: &str| {
            std::fs::write(&file, offers).expect("write");
            Config::load(Some(&file), env(&[]), &CliOverrides::default())
        };
        let ok = load("[[stripe.offers]]\nid = \"ram\"\nname = \"+2 GB\"\nadd_memory_gb = 2\nprice = 900\n")
            .expect("valid offer");
        assert_eq!(ok.stripe.offers[0].add_memory_gb, 2);
        let cases = [
            ("id = \"a b\"\nname = \"x\"\nadd_cores = 1\nprice = 1", "stripe.offers[0].id"),
            ("id = \"a\"\nname = \"x\"\nprice = 1", "either to_template"),
            ("id = \"a\"\nname = \"x\"\nto_template = \"t\"\nadd_cores = 1\nprice = 1", "either to_template"),
            ("id = \"a\"\nname = \"x\"\nadd_cores = 1\nprice = 0", "stripe.offers[0].price"),
            ("id = \"a\"\nname = \"x\"\nadd_cores = 1\nprice = 1\ncurrency = \"USD\"", "currency"),
        ];
        for (body, expected) in cases {
            let err = load(&format!("[[stripe.offers]]\n{body}\n")).expect_err(expected);
            assert!(format!("{err:#}").contains(expected), "{expected}: {err:#}");
        }
        let twice = "[[stripe.offers]]\nid = \"a\"\nname = \"x\"\nadd_cores = 1\nprice = 1\n";
        let err = load(&format!("{twice}{twice}")).expect_err("duplicate id");
        assert!(format!("{err:#}").contains("used twice"), "{err:#}");
        let err = load("[stripe]\nenabled = true\n").expect_err("no key");
        assert!(format!("{err:#}").contains("stripe.secret_key"), "{err:#}");
    }

    #[test]
    fn ec2_auth_requires_keys() {
        let err = Config::load(
            None,
            env(&[("VMAUTO_PROVIDER__SANGFOR__BASE_URL", "https://scp.test")]),
            &CliOverrides::default(),
        )
        .expect_err("missing keys");
        assert!(format!("{err:#}").contains("secret_key"), "{err:#}");
    }
}

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
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod locations;
mod notify;
mod portal;
mod provider;
mod server;
mod sources;
mod stripe;

pub use locations::*;
pub use notify::*;
pub use portal::*;
pub use provider::*;
pub use server::*;
pub use sources::*;
pub use stripe::*;

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
    pub cluster: ClusterConfig,
    pub provider: ProviderConfig,
    pub policy: PolicyConfig,
    pub smtp: SmtpConfig,
    pub notify: NotifyConfig,
    pub stripe: StripeConfig,
    pub plugins: PluginsConfig,
    pub security: SecurityConfig,
    pub webhooks: WebhooksConfig,
    pub inbox: InboxConfig,
    pub portal: PortalConfig,
    pub sources: BTreeMap<String, SourceConfig>,
    /// Where an order may ask its VPS to be built.
    pub locations: BTreeMap<String, LocationConfig>,
    /// More SCPs, each a full connection of its own (`[providers.<name>]`, the keys of
    /// `[provider.sangfor]`); `[provider.sangfor]` is the provider named `default`.
    pub providers: BTreeMap<String, SangforConfig>,
}

/// The name of `[provider.sangfor]` among the providers.
pub const DEFAULT_PROVIDER: &str = "default";

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

    /// Every provider: `default` (`[provider.sangfor]`) first, then `[providers.<name>]`.
    pub fn provider_configs(&self) -> Vec<(&str, &SangforConfig)> {
        std::iter::once((DEFAULT_PROVIDER, &self.provider.sangfor))
            .chain(self.providers.iter().map(|(n, p)| (n.as_str(), p)))
            .collect()
    }

    /// The connection settings of provider `name`.
    pub fn provider_config(&self, name: &str) -> Option<&SangforConfig> {
        if name.is_empty() || name == DEFAULT_PROVIDER {
            Some(&self.provider.sangfor)
        } else {
            self.providers.get(name)
        }
    }

    /// Cross-field rules, each failure naming its key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let url = self.database_url();
        if !(url.starts_with("surrealkv://")
            || url.starts_with("mem://")
            || url.starts_with("ws://")
            || url.starts_with("wss://"))
        {
            bail!(
                "database.url: {url:?} is not supported; use surrealkv://PATH, mem://, ws://HOST:PORT or wss://HOST:PORT"
            );
        }
        self.cluster.validate(&url)?;
        if self.log.level.trim().is_empty() {
            bail!("log.level: must not be empty (e.g. \"info\")");
        }
        self.server.trusted_proxy_nets()?;
        self.portal.check().map_err(|e| anyhow!(e))?;
        if self.providers.contains_key(DEFAULT_PROVIDER) {
            bail!("providers.default: the provider named default is [provider.sangfor]; give this one another name");
        }
        for (name, p) in &self.providers {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                bail!("providers.{name}: a provider name may hold only letters, digits, '-' and '_'");
            }
            if p.base_url.is_empty() {
                bail!("providers.{name}.base_url: required (e.g. https://10.1.2.3)");
            }
        }
        let names: Vec<&str> = self.provider_configs().into_iter().map(|(n, _)| n).collect();
        check_locations(&self.locations, &names).map_err(|e| anyhow!(e))?;
        self.database.check(self.server.body_limit_bytes)?;
        if self.server.body_timeout_secs == 0 {
            bail!("server.body_timeout_secs: must be at least 1");
        }
        if self.server.body_limit_bytes < 1024 {
            bail!("server.body_limit_bytes: {} is too small; use at least 1024", self.server.body_limit_bytes);
        }
        for (name, sp) in self.provider_configs() {
            let key =
                if name == DEFAULT_PROVIDER { "provider.sangfor".to_string() } else { format!("providers.{name}") };
            check_sangfor(&key, sp)?;
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

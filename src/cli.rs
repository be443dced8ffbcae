//! The command-line interface of the `vmauto` binary.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{CliOverrides, Config};

/// Where the configuration file is looked for when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vmauto/appliance.toml";

#[derive(Debug, Parser)]
#[command(
    name = "vmauto",
    version,
    about = "Automates VPS provisioning and deprovisioning on Sangfor SCP from billing events."
)]
pub struct Cli {
    /// Configuration file (default: /etc/vmauto/appliance.toml when it exists).
    #[arg(long, short = 'c', global = true, env = "VMAUTO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override any configuration key: --set policy.grace_days=0 (repeatable; beats the file
    /// and the environment).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub set: Vec<String>,
    /// Shorthand for --set server.listen=ADDR.
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Shorthand for --set server.data_dir=DIR.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Shorthand for --set database.url=URL.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Shorthand for --set log.format=FORMAT (text or json).
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Shorthand for --set log.level=FILTER.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the appliance (the default).
    Serve,
    /// Run the SCP simulator and the appliance together on loopback, with seeded data.
    Demo(crate::demo::DemoArgs),
    /// Run the SCP simulator alone.
    Sim(crate::sim::SimArgs),
    /// Check the connection to SCP and list what templates can use.
    Provider {
        #[command(subcommand)]
        command: ProviderCommand,
    },
    /// Validate a configuration file (and the environment) without starting anything.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Back up or restore the store.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Manage the web UI's users (stop the appliance first when it uses the embedded store).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// List, test and check WebAssembly plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Issue or revoke upgrade links and list upgrade offers (stop the appliance first when
    /// it uses the embedded store).
    Upgrade {
        #[command(subcommand)]
        command: UpgradeCommand,
    },
    /// List or change the settings the web UI edits (through the running appliance, or the
    /// store when it is stopped); changes take effect at the next start.
    Settings {
        #[command(subcommand)]
        command: SettingsCommand,
    },
    /// Ask the appliance at server.listen for /healthz; exit 0 when it answers 200 within a
    /// few seconds (for container health checks and service monitors).
    Healthcheck,
}

#[derive(Debug, Clone, Subcommand, serde::Serialize, serde::Deserialize)]
#[serde(tag = "upgrade", rename_all = "snake_case")]
pub enum UpgradeCommand {
    /// Issue an upgrade link for a VPS and print its URL.
    Link {
        /// The VPS id.
        vps: String,
    },
    /// Revoke an upgrade link by its id (printed when it was issued).
    Revoke {
        /// The link id.
        link: String,
    },
    /// List the upgrade offers.
    Offers,
}

#[derive(Debug, Clone, Subcommand, serde::Serialize, serde::Deserialize)]
#[serde(tag = "settings", rename_all = "snake_case")]
pub enum SettingsCommand {
    /// Every editable setting and its value in effect (secrets: set or not set).
    List,
    /// Change settings: KEY=VALUE (repeatable). VALUE `-` reads the value from standard input,
    /// so a secret stays out of the shell history and the process list.
    Set {
        #[arg(value_name = "KEY=VALUE", required = true)]
        pairs: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// List the bundled plugins and those in the plugin directory.
    List,
    /// Run a plugin over a payload file and print the normalized events (or the error).
    Test {
        /// The plugin name (e.g. ghl-workflow).
        plugin: String,
        /// The request body (for a plan mapper: {"event": …, "catalogue": …}).
        payload: PathBuf,
        /// A request header, NAME=VALUE (repeatable).
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
        /// The request path (default /webhooks/<source>).
        #[arg(long)]
        path: Option<String>,
        /// The configured source whose settings apply.
        #[arg(long)]
        source: Option<String>,
    },
    /// Check a component against the plugin contract: version, kind, exports, imports.
    Check { file: PathBuf },
}

#[derive(Debug, Clone, Subcommand, serde::Serialize, serde::Deserialize)]
#[serde(tag = "admin", rename_all = "snake_case")]
pub enum AdminCommand {
    /// Add a user with a generated password, printed once as `password: …`.
    AddUser {
        username: String,
        #[arg(long, value_enum, default_value = "admin")]
        role: crate::auth::Role,
    },
    /// Give a user a new generated password (printed once); unlocks the account and ends its
    /// sessions.
    ResetPassword { username: String },
    /// Disable a user (their sessions end at once).
    Disable { username: String },
    /// Turn off a user's two-factor login (a lost phone); they can set it up again.
    Reset2fa { username: String },
    /// Enable a disabled user.
    Enable { username: String },
    /// List the users.
    ListUsers,
    /// API tokens: create (printed once), list, revoke. Works while the appliance runs.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Retry a dead operation (as the Retry button does): refused when it would bring a VM
    /// back to a deleted VPS or a cancelled subscription. Works while the appliance runs.
    Retry {
        /// The operation id (shown on the VPS page and by the API).
        operation: String,
    },
}

#[derive(Debug, Clone, Subcommand, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum TokenCommand {
    /// Create a token; it is printed once, as `token: …`.
    Create {
        name: String,
        #[arg(long, value_enum, default_value = "viewer")]
        role: crate::auth::Role,
    },
    /// List the tokens (never their values).
    List,
    /// Revoke a token by its id (from `list`).
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file: unknown keys, invalid values and missing settings.
    Check {
        /// The file to check (default: --config).
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Log in with the configured credentials and list AZs (with free capacity), images,
    /// storage tags, VPCs and subnets.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Write a SurrealQL dump of the store to FILE. While the appliance runs on the embedded
    /// store, the dump is a consistent snapshot asked from it (run as root or the vmauto user:
    /// it needs the appliance key).
    Export { file: PathBuf },
    /// Restore a dump into an empty store.
    Import { file: PathBuf },
    /// Print the store's schema version and this binary's.
    Version,
    /// Purge the inbox now as `inbox.retention_days` / `dedupe_days` say (the appliance also
    /// does it every hour). Works while the appliance runs.
    Purge,
}

impl Cli {
    /// The configuration file to read, if any.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            let default = Path::new(DEFAULT_CONFIG_PATH);
            default.exists().then(|| default.to_path_buf())
        })
    }

    /// The `--set` overrides, with the shorthand flags appended (so they win).
    pub fn overrides(&self) -> CliOverrides {
        let mut set = self.set.clone();
        let named = [
            ("server.listen", &self.listen),
            ("server.data_dir", &self.data_dir),
            ("database.url", &self.database_url),
            ("log.format", &self.log_format),
            ("log.level", &self.log_level),
        ];
        for (key, value) in named {
            if let Some(v) = value {
                set.push(format!("{key}={v}"));
            }
        }
        CliOverrides { set }
    }

    /// Loads the configuration from the file, the process environment and the flags.
    pub fn load_config(&self, file: Option<&Path>) -> anyhow::Result<Config> {
        Config::load(file, std::env::vars(), &self.overrides())
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    crate::init_crypto();
    match &cli.command {
        None | Some(Command::Serve) => {
            let config = cli.load_config(cli.config_file().as_deref())?;
            crate::telemetry::init(&config.log);
            warn_about_risky_settings(&config);
            crate::app::run(config).await
        }
        Some(Command::Demo(args)) => {
            let config = cli.load_config(cli.config_file().as_deref())?;
            crate::demo::run(args.clone(), config).await
        }
        Some(Command::Sim(args)) => {
            crate::telemetry::init(&crate::config::LogConfig::default());
            crate::sim::run(args.clone()).await
        }
        Some(Command::Provider { command: ProviderCommand::Check }) => {
            let config = cli.load_config(cli.config_file().as_deref())?;
            crate::telemetry::init(&config.log);
            let report = crate::provider::check::check(&config).await?;
            println!("{report}");
            Ok(())
        }
        Some(Command::Config { command: ConfigCommand::Check { file } }) => {
            let file = file.clone().or_else(|| cli.config_file());
            let config = cli.load_config(file.as_deref())?;
            println!(
                "configuration OK{}",
                file.map(|f| format!(": {}", f.display()))
                    .unwrap_or_else(|| " (no file; defaults and environment)".into())
            );
            println!("  listen      {}", config.server.listen);
            println!("  data dir    {}", config.server.data_dir.display());
            println!("  database    {}", config.database_url());
            println!(
                "  SCP         {}",
                if config.provider.sangfor.base_url.is_empty() {
                    "(not configured)"
                } else {
                    &config.provider.sangfor.base_url
                }
            );
            println!("  sources     {}", config.sources.keys().cloned().collect::<Vec<_>>().join(", "));
            Ok(())
        }
        Some(Command::Plugin { command }) => {
            let out = match command {
                PluginCommand::List => crate::plugin_host::cli::list(&cli.load_config(cli.config_file().as_deref())?)?,
                PluginCommand::Test { plugin, payload, headers, path, source } => {
                    let config = cli.load_config(cli.config_file().as_deref())?;
                    let options = crate::plugin_host::cli::TestOptions {
                        headers: headers.clone(),
                        path: path.clone(),
                        source: source.clone(),
                    };
                    crate::plugin_host::cli::test(&config, plugin, payload, &options)?
                }
                PluginCommand::Check { file } => crate::plugin_host::cli::check(file)?,
            };
            print!("{out}");
            Ok(())
        }
        Some(Command::Healthcheck) => {
            let config = cli.load_config(cli.config_file().as_deref())?;
            println!("{}", crate::ops::healthcheck(&config).await?);
            Ok(())
        }
        Some(Command::Admin { command }) => {
            let config = cli.load_config(cli.config_file().as_deref())?;
            crate::telemetry::init(&config.log);
            run_admin(&config, command).await
        }
        Some(Command::Upgrade { command }) => {
            let config = cli.load_config(cli.config_file().as_deref())?;
            crate::telemetry::init(&config.log);
            run_upgrade(&config, command).await
        }
        Some(Command::Settings { command }) => {
            let config = cli.load_config(cli.config_file().as_deref())?;
            crate::telemetry::init(&config.log);
            run_settings(&config, command).await
        }
        Some(Command::Db { command }) => {
            let config = cli.load_config(cli.config_file().as_deref())?;
            crate::telemetry::init(&config.log);
            run_db(&config, command).await
        }
    }
}

/// An operator command that the running appliance can run for the CLI
/// (`POST /internal/cli`), when the CLI cannot open the store itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteCommand {
    Admin(AdminCommand),
    Upgrade(UpgradeCommand),
    Settings(SettingsCommand),
}

async fn run_admin(config: &Config, command: &AdminCommand) -> anyhow::Result<()> {
    if let AdminCommand::Retry { operation } = command {
        println!("{}", crate::ops::retry(config, operation).await?);
        return Ok(());
    }
    let out = match crate::db::Store::open(config).await {
        Ok(store) => {
            crate::app::ensure_appliance_key(config)?;
            let sealer = std::sync::Arc::new(crate::secrets::Sealer::from_file(&config.key_file())?);
            let auth = crate::auth::Auth::new(store, config.security.clone(), sealer);
            execute_admin(&auth, command).await?
        }
        Err(direct) => crate::ops::remote(config, &RemoteCommand::Admin(command.clone()), &direct).await?,
    };
    print!("{out}");
    Ok(())
}

/// Runs an admin command against `auth`; answers what to print.
pub async fn execute_admin(auth: &crate::auth::Auth, command: &AdminCommand) -> anyhow::Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    match command {
        AdminCommand::AddUser { username, role } => {
            let password = crate::secrets::generate_password();
            auth.add_user(username, password.expose(), *role).await?;
            writeln!(out, "added {role} {username}")?;
            writeln!(out, "password: {}", password.expose())?;
        }
        AdminCommand::ResetPassword { username } => {
            let password = crate::secrets::generate_password();
            auth.set_password(username, password.expose()).await?;
            writeln!(out, "new password for {username}; their sessions have ended")?;
            writeln!(out, "password: {}", password.expose())?;
        }
        AdminCommand::Disable { username } => {
            auth.set_disabled(username, true).await?;
            writeln!(out, "disabled {username}; their sessions have ended")?;
        }
        AdminCommand::Reset2fa { username } => {
            auth.reset_totp(username).await?;
            writeln!(out, "two-factor login of {username} is off; they can set it up again under Account")?;
        }
        AdminCommand::Enable { username } => {
            auth.set_disabled(username, false).await?;
            writeln!(out, "enabled {username}")?;
        }
        AdminCommand::Token { command } => out.push_str(&crate::ops::run_tokens(auth, command).await?),
        AdminCommand::Retry { .. } => anyhow::bail!("retry has its own way to the running appliance"),
        AdminCommand::ListUsers => {
            let users = auth.users().await?;
            if users.is_empty() {
                writeln!(out, "no users yet: add one with `vmauto admin add-user <name>`")?;
            }
            for u in users {
                let state = if u.disabled { "disabled" } else { "active" };
                writeln!(
                    out,
                    "{}\t{}\t{}\tlast login {}",
                    u.username,
                    u.role,
                    state,
                    u.last_login_at.as_deref().unwrap_or("never")
                )?;
            }
        }
    }
    Ok(out)
}

async fn run_upgrade(config: &Config, command: &UpgradeCommand) -> anyhow::Result<()> {
    let out = match crate::db::Store::open(config).await {
        Ok(store) => {
            let sealer = crate::secrets::Sealer::from_file(&config.key_file())?;
            execute_upgrade(&store, config, &sealer, command).await?
        }
        Err(direct) => crate::ops::remote(config, &RemoteCommand::Upgrade(command.clone()), &direct).await?,
    };
    print!("{out}");
    Ok(())
}

/// Runs an upgrade command; answers what to print.
pub async fn execute_upgrade(
    store: &crate::db::Store,
    config: &Config,
    sealer: &crate::secrets::Sealer,
    command: &UpgradeCommand,
) -> anyhow::Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    crate::upgrade::offers::sync_config_offers(store, config).await?;
    match command {
        UpgradeCommand::Link { vps } => {
            let link = crate::upgrade::issue_link(store, config, sealer, vps, "cli").await?;
            writeln!(out, "{}", link.url)?;
            writeln!(
                out,
                "link id {} (for `vmauto upgrade revoke`), valid until {}",
                link.id,
                link.expires_at.to_rfc3339()
            )?;
        }
        UpgradeCommand::Revoke { link } => {
            if !crate::upgrade::revoke_link(store, link, "cli").await? {
                anyhow::bail!("there is no upgrade link {link}");
            }
            writeln!(out, "revoked upgrade link {link}")?;
        }
        UpgradeCommand::Offers => {
            let offers = crate::upgrade::list_offers(store).await?;
            if offers.is_empty() {
                writeln!(out, "no upgrade offers; declare them as [[stripe.offers]] in appliance.toml")?;
            }
            for o in offers {
                let what = if o.to_template.is_empty() {
                    format!("+{} vCPU, +{} GB memory, +{} GB disk", o.add_cores, o.add_memory_gb, o.add_disk_gb)
                } else {
                    format!("to template {}", o.to_template)
                };
                let from =
                    if o.from_template.is_empty() { "any template".to_string() } else { o.from_template.clone() };
                writeln!(
                    out,
                    "{}\t{}\t{}\tfrom {from}\t{}\t{}",
                    o.id,
                    if o.enabled { "enabled" } else { "disabled" },
                    o.name,
                    what,
                    crate::upgrade::format_price(o.price, &o.currency)
                )?;
            }
        }
    }
    Ok(out)
}

async fn run_settings(config: &Config, command: &SettingsCommand) -> anyhow::Result<()> {
    // Values read from standard input are read here, before the command goes anywhere.
    let command = match command {
        SettingsCommand::Set { pairs } => {
            let mut read = Vec::with_capacity(pairs.len());
            for pair in pairs {
                match pair.split_once('=') {
                    Some((key, "-")) => {
                        let mut line = String::new();
                        std::io::stdin().read_line(&mut line).context("cannot read the value from standard input")?;
                        read.push(format!("{key}={}", line.trim_end_matches(['\r', '\n'])));
                    }
                    Some(_) => read.push(pair.clone()),
                    None => anyhow::bail!("{pair:?}: write KEY=VALUE (see `vmauto settings list` for the keys)"),
                }
            }
            SettingsCommand::Set { pairs: read }
        }
        SettingsCommand::List => SettingsCommand::List,
    };
    let out = match crate::db::Store::open(config).await {
        Ok(store) => {
            crate::app::ensure_appliance_key(config)?;
            let sealer = crate::secrets::Sealer::from_file(&config.key_file())?;
            execute_settings(&store, config, &sealer, &command, "cli").await?
        }
        Err(direct) => crate::ops::remote(config, &RemoteCommand::Settings(command), &direct).await?,
    };
    print!("{out}");
    Ok(())
}

/// Runs a settings command for `actor`; answers what to print.
pub async fn execute_settings(
    store: &crate::db::Store,
    config: &Config,
    sealer: &crate::secrets::Sealer,
    command: &SettingsCommand,
    actor: &str,
) -> anyhow::Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    match command {
        SettingsCommand::List => {
            let stored = crate::settings::stored(store).await?;
            for v in crate::settings::views(config, &stored) {
                let value = match (v.secret, v.is_set) {
                    (true, true) => "(set, hidden)".to_string(),
                    (true, false) => "(not set)".to_string(),
                    (false, _) => v.value,
                };
                let origin = match &v.pending {
                    Some(p) => format!("saved here: {p}, in effect after a restart"),
                    None if v.saved => "saved here".to_string(),
                    None => "file/default".to_string(),
                };
                writeln!(out, "{}\t{value}\t{origin}\t{}", v.key, v.label)?;
            }
        }
        SettingsCommand::Set { pairs } => {
            let mut changes = std::collections::BTreeMap::new();
            for pair in pairs {
                let (key, value) = pair.split_once('=').with_context(|| format!("{pair:?}: write KEY=VALUE"))?;
                changes.insert(key.trim().to_string(), value.to_string());
            }
            let changed = crate::settings::change(store, sealer, config, &changes, actor).await?;
            writeln!(out, "{}", crate::settings::change_message(&changed))?;
        }
    }
    Ok(out)
}

async fn run_db(config: &Config, command: &DbCommand) -> anyhow::Result<()> {
    let out = match command {
        DbCommand::Export { file } => crate::ops::export(config, file).await?,
        DbCommand::Import { file } => {
            let store = crate::db::Store::connect(config).await?;
            store.import(file).await?;
            format!("imported {} (schema version {})", file.display(), store.schema_version().await?)
        }
        DbCommand::Purge => crate::ops::purge(config).await?,
        DbCommand::Version => {
            let store = crate::db::Store::connect(config).await?;
            format!(
                "store schema version {}; this binary knows up to {}",
                store.schema_version().await?,
                crate::db::SCHEMA_VERSION
            )
        }
    };
    println!("{out}");
    Ok(())
}

/// Settings that are legal but dangerous are logged at every start.
fn warn_about_risky_settings(config: &Config) {
    if !config.provider.sangfor.base_url.is_empty() && !config.provider.sangfor.verify_tls {
        tracing::warn!("provider.sangfor.verify_tls = false: SCP's certificate is NOT verified; set ca_file instead");
    }
    for (name, source) in &config.sources {
        if source.signature == crate::config::SignatureScheme::None {
            tracing::warn!(source = %name, "webhooks from this source are NOT authenticated (signature = \"none\")");
        }
    }
}

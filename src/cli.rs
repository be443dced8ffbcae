//! The command-line interface of the `vmauto` binary.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::commands::{
    AdminCommand, PortalCommand, RemoteCommand, SettingsCommand, UpgradeCommand, execute_admin, execute_portal,
    execute_settings, execute_upgrade,
};
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
    /// Issue, list, revoke or renew customers' portal links (through the running appliance,
    /// or the store when it is stopped).
    Portal {
        #[command(subcommand)]
        command: PortalCommand,
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
    /// Show which node holds the work lease of the nodes sharing the store (`[cluster]`).
    Cluster,
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
        /// Run the plugin this many times more, one instance reused as the appliance does,
        /// and print how long a call took.
        #[arg(long, value_name = "CALLS", default_value_t = 0)]
        repeat: u32,
    },
    /// Check a component against the plugin contract: version, kind, exports, imports.
    Check { file: PathBuf },
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
            let reports = crate::provider::check::check_all(&config).await;
            if reports.len() == 1 {
                // One SCP: its report alone, as before there could be several.
                let report = reports.into_iter().next().map(|(_, r)| r).expect("the default provider")?;
                println!("{report}");
                return Ok(());
            }
            let mut failed = Vec::new();
            for (name, report) in reports {
                println!("== provider {name} ==");
                match report {
                    Ok(r) => println!("{r}"),
                    Err(e) => {
                        println!("FAILED: {e:#}\n");
                        failed.push(name);
                    }
                }
            }
            if failed.is_empty() { Ok(()) } else { anyhow::bail!("provider check failed for: {}", failed.join(", ")) }
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
            for (name, p) in config.providers.iter() {
                println!("  SCP {name:<7} {}", p.base_url);
            }
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
                PluginCommand::Test { plugin, payload, headers, path, source, repeat } => {
                    let config = cli.load_config(cli.config_file().as_deref())?;
                    let options = crate::plugin_host::cli::TestOptions {
                        headers: headers.clone(),
                        path: path.clone(),
                        source: source.clone(),
                        repeat: *repeat,
                    };
                    crate::plugin_host::cli::test(&config, plugin, payload, &options)?
                }
                PluginCommand::Check { file } => crate::plugin_host::cli::check(file)?,
            };
            print!("{out}");
            Ok(())
        }
        Some(Command::Cluster) => {
            let config = cli.load_config(cli.config_file().as_deref())?;
            let store = crate::db::Store::connect(&config).await?;
            println!("{}", crate::ops::cluster_report(&store, &config).await?);
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
        Some(Command::Portal { command }) => {
            let config = cli.load_config(cli.config_file().as_deref())?;
            crate::telemetry::init(&config.log);
            run_portal(&config, command).await
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

async fn run_portal(config: &Config, command: &PortalCommand) -> anyhow::Result<()> {
    let out = match crate::db::Store::open(config).await {
        Ok(store) => {
            crate::app::ensure_appliance_key(config)?;
            let sealer = crate::secrets::Sealer::from_file(&config.key_file())?;
            execute_portal(&store, config, &sealer, command).await?
        }
        Err(direct) => crate::ops::remote(config, &RemoteCommand::Portal(command.clone()), &direct).await?,
    };
    print!("{out}");
    Ok(())
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

async fn run_db(config: &Config, command: &DbCommand) -> anyhow::Result<()> {
    let out = match command {
        DbCommand::Export { file } => crate::ops::export(config, file).await?,
        DbCommand::Import { file } => {
            // Each statement of a dump is one write, and may be large: the import has the
            // store to itself, so it may take a larger write buffer than the appliance.
            let mut config = config.clone();
            config.database.memtable_mib = config.database.memtable_mib.max(256);
            let store = crate::db::Store::connect(&config).await?;
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

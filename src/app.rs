//! Starting and stopping the appliance: store → actor tree → HTTP server, and the reverse on
//! SIGTERM/SIGINT (the server drains in-flight requests, then the actors finish their work).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context;

use crate::actors::tree::{Handles, TreeDeps, spawn_tree};
use crate::config::Config;
use crate::db::Store;
use crate::http::{self, AppState};
use crate::secrets::Sealer;
use crate::telemetry::metrics::Metrics;

/// A running appliance.
pub struct Appliance {
    pub addr: SocketAddr,
    pub state: AppState,
    server: ServerHandle,
    server_task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Appliance {
    /// The base URL the HTTP server answers on.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn handles(&self) -> &Handles {
        &self.state.handles
    }

    /// Waits until the server stops (SIGTERM/SIGINT, or [`Appliance::stop`]), then shuts the
    /// actor tree down.
    pub async fn wait(self) -> anyhow::Result<()> {
        let result = self.server_task.await;
        let timeout = Duration::from_secs(self.state.config.server.shutdown_timeout_secs);
        self.state.handles.shutdown(timeout).await;
        self.state.store.close().await;
        tracing::info!("vmauto stopped");
        result.context("the HTTP server task failed")?.context("the HTTP server failed")
    }

    /// Stops gracefully: drain requests, then actors.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.server.stop(true).await;
        self.wait().await
    }
}

/// Opens the store, makes sure the appliance key exists, spawns the actor tree and binds the
/// HTTP server. `handle_signals` lets the server stop on SIGTERM/SIGINT (off in tests that
/// run several appliances in one process).
pub async fn start(config: Config, handle_signals: bool) -> anyhow::Result<Appliance> {
    crate::init_crypto();
    let config = Arc::new(config);
    let started_at = Instant::now();
    ensure_appliance_key(&config)?;
    let store = Store::open(&config).await?;
    let metrics = Arc::new(Metrics::for_node(&config.cluster.node_id));
    let fence =
        (!config.cluster.node_id.is_empty()).then(|| Arc::new(crate::db::lease::Fence::new(&config.cluster.node_id)));
    let sealer = Arc::new(Sealer::from_file(&config.key_file())?);
    // Settings an admin saved in the web UI apply over the file and the environment.
    let ui_settings = crate::settings::stored(&store).await?;
    let config = if ui_settings.is_empty() {
        config
    } else {
        let mut c = (*config).clone();
        let applied = crate::settings::apply(&mut c, &ui_settings, &sealer)?;
        tracing::info!(keys = ?applied, "settings saved in the web UI applied");
        Arc::new(c)
    };
    let install_id = store.install_id().await.context("cannot read the install id")?;
    crate::upgrade::offers::sync_config_offers(&store, &config).await.context("cannot store [[stripe.offers]]")?;
    // Checked before any actor exists, so a failure leaves nothing running behind it.
    let templates = crate::notify::templates::Templates::load().context("a built-in template does not parse")?;
    let handles = spawn_tree(&TreeDeps {
        config: config.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        sealer: sealer.clone(),
        install_id,
        fence,
    });
    let auth = crate::auth::Auth::new(store.clone(), config.security.clone(), sealer.clone());
    if auth.user_count().await.unwrap_or(1) == 0 {
        tracing::warn!("no admin user yet: add one with `vmauto admin add-user <name>` to use the web UI");
    }
    let state = AppState {
        config: config.clone(),
        store,
        metrics: metrics.clone(),
        handles,
        started_at,
        sealer,
        templates,
        auth,
        vps_counts: Arc::new(crate::admin::Snapshot::new(Duration::from_secs(10))),
        refusals: Arc::new(http::refusals::RefusalBudget::new(
            config.webhooks.refused_per_source_per_minute,
            config.webhooks.refused_per_client_per_minute,
        )),
        metrics_read_at: Arc::default(),
        event_streams: Arc::default(),
        trusted_proxies: Arc::new(config.server.trusted_proxy_nets()?),
        link_requests: Arc::new(http::refusals::RefusalBudget::new(
            http::upgrade::LINK_REQUESTS_PER_MINUTE,
            http::upgrade::LINK_REQUESTS_PER_MINUTE,
        )),
        // Several customers may share an address (an office, a carrier's NAT).
        portal_requests: Arc::new(http::refusals::RefusalBudget::new(
            config.portal.requests_per_minute,
            config.portal.requests_per_minute.saturating_mul(5),
        )),
        consoles: Arc::default(),
        usage: Arc::default(),
    };

    let data = web::Data::new(state.clone());
    let body_limit = config.server.body_limit_bytes;
    let mut server = HttpServer::new(move || {
        let metrics = metrics.clone();
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(body_limit))
            .app_data(web::JsonConfig::default().limit(body_limit))
            .wrap(http::security_headers())
            .wrap(middleware::from_fn(move |req, next| http::middleware::record_metrics(metrics.clone(), req, next)))
            .configure(http::configure)
    })
    .shutdown_timeout(config.server.shutdown_timeout_secs);
    if config.server.workers > 0 {
        server = server.workers(config.server.workers);
    }
    if !handle_signals {
        server = server.disable_signals();
    }
    let server = server
        .bind(config.server.listen)
        .with_context(|| format!("cannot listen on {} (server.listen)", config.server.listen))?;
    let addr = server.addrs().first().copied().context("the server bound no address")?;
    let server = server.run();
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    state.metrics.ready.set(1);
    tracing::info!(%addr, version = crate::VERSION, startup_ms = started_at.elapsed().as_millis() as u64, "vmauto ready");
    Ok(Appliance { addr, state, server: handle, server_task })
}

/// Runs the appliance until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    start(config, true).await?.wait().await
}

/// Creates the appliance key (32 random bytes, owner-only) on first start.
pub fn ensure_appliance_key(config: &Config) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let path = config.key_file();
    if path.exists() {
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode()).unwrap_or(0);
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the appliance key can be read by other users: chmod 600 it (it opens every secret in the store)"
            );
        }
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Written to a private temporary file (mode 0600 from its creation, never readable by
    // others even for an instant), synced, then renamed into place: a crash leaves either no
    // key or a whole one, and a key that appeared meanwhile is not replaced.
    let key: [u8; 32] = rand::random();
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(hex::encode(key).as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, &path)?;
        std::fs::remove_file(&tmp)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        if e.kind() == std::io::ErrorKind::AlreadyExists && path.exists() {
            return Ok(()); // another process made it first
        }
        return Err(e).with_context(|| format!("cannot write the appliance key {}", path.display()));
    }
    tracing::info!(path = %path.display(), "appliance key created; back it up together with the store");
    Ok(())
}

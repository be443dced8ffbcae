//! `vmauto demo`: the SCP simulator and the appliance together on loopback, with a local
//! store and seeded data, so a new user sees the whole flow with one command.
//!
//! The simulator speaks HTTPS with a self-signed certificate like a real SCP; the demo hands
//! that certificate to the appliance as `ca_file`, so TLS verification stays on. Everything
//! lives under one directory (default `./vmauto-demo`): the store, the appliance key, the
//! simulator's VMs and the webhook token, so a restart picks up where it left off.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;

use crate::config::{Config, SangforAuth, Secret, SignatureScheme, SourceConfig};
use crate::db::Store;
use crate::lifecycle::Template;
use crate::sim::{SimConfig, SimServer};

/// The demo's billing source.
pub const DEMO_SOURCE: &str = "ghl";

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Directory for the demo's store, key and simulator state.
    #[arg(long, default_value = "vmauto-demo")]
    pub dir: PathBuf,
    /// Where the built-in SCP simulator listens.
    #[arg(long, default_value = "127.0.0.1:9443")]
    pub sim_listen: SocketAddr,
    /// Keep the store in memory (nothing survives a restart).
    #[arg(long)]
    pub memory: bool,
    /// Milliseconds each simulated SCP task takes.
    #[arg(long, default_value_t = 1500)]
    pub task_ms: u64,
}

/// A template the demo seeds, sized like common VPS plans.
struct DemoTemplate {
    name: &'static str,
    plan: &'static str,
    cores: u32,
    memory_mb: u64,
    disk_gb: u64,
}

const TEMPLATES: &[DemoTemplate] = &[
    DemoTemplate { name: "vps-small", plan: "starter", cores: 1, memory_mb: 1024, disk_gb: 40 },
    DemoTemplate { name: "vps-medium", plan: "business", cores: 2, memory_mb: 4096, disk_gb: 80 },
    DemoTemplate { name: "vps-large", plan: "pro", cores: 4, memory_mb: 8192, disk_gb: 160 },
];

/// Runs the demo until SIGINT/SIGTERM.
pub async fn run(args: DemoArgs, mut config: Config) -> anyhow::Result<()> {
    crate::init_crypto();
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize().unwrap_or_else(|_| args.dir.clone());
    let sim = crate::sim::start(SimConfig {
        listen: args.sim_listen,
        https: true,
        task_ms: args.task_ms,
        ip_delay_ms: args.task_ms,
        state_file: Some(dir.join("sim-state.json")),
        ..SimConfig::default()
    })
    .await
    .with_context(|| format!("cannot start the SCP simulator on {}", args.sim_listen))?;
    configure(&mut config, &dir, &sim, args.memory)?;
    crate::telemetry::init(&config.log);

    let token = config.sources[DEMO_SOURCE].token.expose().to_string();
    let app = crate::app::start(config, true).await?;
    let seeded = seed(&app.state.store, &app.state.config, DEMO_SOURCE).await?;
    let password = demo_admin(&app.state.auth).await?;
    print_banner(&app.base_url(), &sim, &dir, &token, seeded, args.memory);
    println!("Log in to the web UI at {}/ as user {DEMO_ADMIN} with password {}", app.base_url(), password.expose());
    println!();
    let result = app.wait().await;
    sim.stop().await;
    result
}

/// The demo's web UI user.
pub const DEMO_ADMIN: &str = "admin";

/// Gives the demo's admin user a fresh password (creating the user on the first run).
async fn demo_admin(auth: &crate::auth::Auth) -> anyhow::Result<Secret> {
    let password = crate::secrets::generate_password();
    let exists = auth.users().await?.iter().any(|u| u.username == DEMO_ADMIN);
    if exists {
        auth.set_password(DEMO_ADMIN, password.expose()).await?;
    } else {
        auth.add_user(DEMO_ADMIN, password.expose(), crate::auth::Role::Admin).await?;
    }
    Ok(password)
}

/// Points the configuration at the simulator and the demo directory.
fn configure(config: &mut Config, dir: &Path, sim: &SimServer, memory: bool) -> anyhow::Result<()> {
    config.server.data_dir = dir.to_path_buf();
    if memory {
        config.database.url = "mem://".into();
    }
    let ca_file = dir.join("scp-ca.pem");
    if let Some(pem) = sim.cert_pem() {
        std::fs::write(&ca_file, pem).with_context(|| format!("cannot write {}", ca_file.display()))?;
    }
    let scp = &mut config.provider.sangfor;
    scp.base_url = sim.base_url();
    scp.auth = SangforAuth::Ec2;
    scp.access_key = sim.access_key().to_string();
    scp.secret_key = Secret::new(sim.secret_key());
    scp.ca_file = ca_file.display().to_string();
    scp.verify_tls = true;
    config.policy.grace_days = 0;
    config.sources.insert(
        DEMO_SOURCE.into(),
        SourceConfig {
            plugin: "ghl-workflow".into(),
            signature: SignatureScheme::SharedToken,
            token: Secret::new(demo_token(dir)?),
            token_in: "path".into(),
            ..SourceConfig::default()
        },
    );
    config.validate()
}

/// The webhook token, made once and kept in the demo directory.
fn demo_token(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("webhook.token");
    if let Some(token) = std::fs::read_to_string(&path).ok().filter(|t| !t.trim().is_empty()) {
        return Ok(token.trim().to_string());
    }
    let token = hex::encode(rand::random::<[u8; 16]>());
    std::fs::write(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

/// Seeds templates built from what SCP offers (vps-small/medium/large) and maps the plans
/// starter/business/pro of `source` to them. Returns how many templates were added (0 when a
/// previous run seeded them).
pub async fn seed(store: &Store, config: &Config, source: &str) -> anyhow::Result<usize> {
    if store.has_templates().await? {
        return Ok(0);
    }
    let report = crate::provider::check::check(config).await.context("cannot read the simulator's catalogue")?;
    let zone = report.zones.first().context("the simulator offers no AZ")?;
    let tag = zone.storage_tags.first().context("the simulator offers no storage tag")?;
    let image = report
        .images
        .iter()
        .find(|i| i.status == "active" && (i.zones.is_empty() || i.zones.contains(&zone.zone.id)))
        .context("the simulator offers no usable image")?;
    let (network, subnet) = report
        .networks
        .iter()
        .find_map(|(n, subnets)| (n.zone_id == zone.zone.id).then(|| subnets.first().map(|s| (n, s))).flatten())
        .context("the simulator offers no subnet")?;
    for t in TEMPLATES {
        // A VM's system disk cannot be smaller than its image's.
        let disk_gb = t.disk_gb.max(image.disk_mb.div_ceil(1024));
        let row = Template {
            name: t.name.into(),
            description: format!("{} cores, {} GB RAM, {disk_gb} GB disk", t.cores, t.memory_mb / 1024),
            az_id: zone.zone.id.clone(),
            image_id: image.id.clone(),
            storage_tag_id: tag.id.clone(),
            vpc_id: network.id.clone(),
            subnet_id: subnet.id.clone(),
            cores: t.cores,
            memory_mb: t.memory_mb,
            disk_gb,
            name_pattern: "vps-{customer}-{id}".into(),
            enabled: true,
            allowed_images: Vec::new(),
            ..Template::default()
        };
        store.seed_template(&row, source, t.plan).await?;
    }
    Ok(TEMPLATES.len())
}

fn print_banner(url: &str, sim: &SimServer, dir: &Path, token: &str, seeded: usize, memory: bool) {
    let body = json!({
        "contact_id": "CNTdemo0001", "first_name": "Dana", "last_name": "Reyes", "full_name": "Dana Reyes",
        "email": "dana@example.com", "phone": "+15551234567", "tags": "customer",
        "customData": { "event": "subscribe", "plan": "starter", "subscription_id": "sub_demo_0001" }
    });
    println!();
    println!("vmauto demo is running (Ctrl-C stops it)");
    println!();
    println!("  appliance       {url}");
    println!("  health          {url}/healthz   {url}/readyz   {url}/metrics");
    println!(
        "  SCP simulator   {}  (access key {}, secret key {})",
        sim.base_url(),
        sim.access_key(),
        sim.secret_key()
    );
    println!("                  token login: user {} / password {}", sim.username(), sim.password());
    println!("                  state: {}/_sim/state", sim.base_url());
    println!(
        "  store           {}",
        if memory { "in memory".to_string() } else { dir.join("store").display().to_string() }
    );
    println!(
        "  seeded          {}",
        if seeded > 0 {
            format!("{seeded} templates (vps-small/medium/large) mapped to plans starter/business/pro")
        } else {
            "templates from the previous run kept".into()
        }
    );
    println!();
    println!("Send a sample GoHighLevel workflow webhook:");
    println!();
    println!("  curl -sS -X POST {url}/webhooks/{DEMO_SOURCE}/{token} \\");
    println!("       -H 'Content-Type: application/json' \\");
    println!("       -d '{body}'");
    println!();
    println!("Once its VPS is active, \"Issue a portal link\" on the VPS page opens the customer's own page");
    println!("(power, console, new password, reinstall, usage graphs).");
    println!();
}

//! The SCP simulator (`vmauto sim`): a faithful, fault-injectable SCP over real HTTP.
//!
//! It implements sangfor-scp-api.md well enough that the public Python client `sangfor-scp`
//! works against it unchanged, and it is what vmauto's own SCP client is tested against.
//!
//! ## Layout
//! - [`router`]: `METHOD /janus/{version}/…` → route, every version alias.
//! - [`http`]: the pipeline (count, faults, body, auth, limits, idempotency, envelope).
//! - [`auth`]: EC2 signature verification (with the shared signer) and the token flow.
//! - [`servers`], [`server_ops`]: VMs and their actions; [`catalog`]: everything else.
//! - [`console`]: remote-console tokens and the VNC (RFB 3.8 over WebSocket) screen behind
//!   them; [`metrics`]: `GET /metrics/{id}` series drawn from each server's power history.
//! - [`tasks`]: the time-driven task engine; [`world`]: the simulated cloud and its seed.
//! - [`fault`]: fault rules; [`limits`]: rate limits; [`control`]: `/_sim/…`.
//! - [`reply`]: envelopes, errors, pages; [`input`]: request context and body readers.
//! - [`service`]: the locked state; [`tls`]: the self-signed certificate.

pub mod auth;
pub mod catalog;
pub mod console;
pub mod control;
pub mod fault;
pub mod http;
pub mod input;
pub mod limits;
pub mod metrics;
pub mod reply;
pub mod router;
pub mod server_ops;
mod server_spec;
pub mod servers;
pub mod service;
pub mod tasks;
pub mod tls;
pub mod world;

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Extensions, ServerHandle};
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use self::auth::{Credentials, RsaKey};
use self::fault::FaultRule;
use self::http::ConnSocket;
use self::limits::Limits;
pub use self::reply::Envelope;
use self::service::{Knobs, Shared, Sim};
use self::world::{World, now_ms};

/// `vmauto sim`: run a simulated Sangfor SCP.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to listen on, IP:PORT (port 0 picks a free one).
    // A string, not a SocketAddr: the top-level CLI has a global `--listen` of type String
    // and clap merges the two into one argument, which must then have one type.
    #[arg(long, default_value = "127.0.0.1:9443", env = "VMAUTO_SIM_LISTEN")]
    pub listen: String,
    /// Serve plain HTTP instead of HTTPS with a generated self-signed certificate.
    #[arg(long)]
    pub http: bool,
    /// Access key accepted for EC2 (AWS4-HMAC-SHA256) signatures.
    #[arg(long, default_value = "vmauto-sim-access-key", env = "VMAUTO_SIM_ACCESS_KEY")]
    pub access_key: String,
    /// Secret key for EC2 signatures.
    #[arg(long, default_value = "vmauto-sim-secret-key", env = "VMAUTO_SIM_SECRET_KEY")]
    pub secret_key: String,
    /// User name accepted by the token login (`POST /janus/authenticate`).
    #[arg(long, default_value = "admin", env = "VMAUTO_SIM_USERNAME")]
    pub username: String,
    /// Password accepted by the token login (sent RSA-encrypted by clients).
    #[arg(long, default_value = "Sangfor-Sim-1!", env = "VMAUTO_SIM_PASSWORD")]
    pub password: String,
    /// GET requests allowed per minute and caller (SCP: 600); 0 turns the limit off.
    #[arg(long, default_value_t = 600)]
    pub get_per_minute: u32,
    /// Other requests allowed per minute and caller (SCP: 100); 0 turns the limit off.
    #[arg(long, default_value_t = 100)]
    pub write_per_minute: u32,
    /// Base task duration in milliseconds; a create takes twice this, a reboot 1.5×, a
    /// forced stop half, and every task first waits a fifth of it in `waiting`.
    #[arg(long, default_value_t = 3000)]
    pub task_ms: u64,
    /// Milliseconds between a guest booting and vmtools reporting its IP.
    #[arg(long, default_value_t = 5000)]
    pub ip_delay_ms: u64,
    /// Lifetime of login tokens in seconds (SCP: 24 h).
    #[arg(long, default_value_t = 86_400)]
    pub token_ttl_secs: u64,
    /// Seconds a remote-console URL may be opened after it was issued.
    #[arg(long, default_value_t = console::DEFAULT_TTL_SECS)]
    pub console_ttl_secs: u64,
    /// Refuse EC2 requests whose X-Amz-Date is further than this from now (seconds); 0 = off.
    #[arg(long, default_value_t = 0)]
    pub max_clock_skew_secs: u64,
    /// Keep the simulated cloud in this JSON file, so a restart keeps the VMs.
    #[arg(long, env = "VMAUTO_SIM_STATE_FILE")]
    pub state_file: Option<PathBuf>,
    /// A fault rule, repeatable: `METHOD PATH [key=value ...]` with PATH a glob (`*` matches
    /// anything, `/` included) or `re:REGEX`, and keys error_rate, status (comma list),
    /// latency_ms, task_failure_rate, task_failure_kinds (comma list of generic, timeout,
    /// host_busy, lost, capacity, image, quota, license, or `all`), failed_create_leaves_vm,
    /// drop_rate, rate_limit_rate, times. Example:
    /// `--fault 'POST /janus/*/servers error_rate=0.3 status=500,503'`. A JSON object works too.
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<String>,
    /// Seed for ids, MAC addresses and fault dice, for reproducible runs.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Success envelope: `code` ({"code":0,…}) or `errcode` ({"errcode":"",…}).
    #[arg(long, value_enum, default_value_t = Envelope::Code)]
    pub envelope: Envelope,
    /// Largest request body accepted, in bytes (larger → 413).
    #[arg(long, default_value_t = 1_048_576)]
    pub max_body_bytes: usize,
    /// Size of the platform RSA key used for password encryption.
    #[arg(long, default_value_t = 2048)]
    pub rsa_bits: usize,
    /// HTTP worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Multiplies the seeded cloud's capacity (pools and datastores) for large runs.
    #[arg(long, default_value_t = 1)]
    pub capacity_factor: u64,
}

/// How a simulator is started. `Default` suits tests: plain HTTP on a free loopback port,
/// fast tasks, limits off, a 1024-bit key.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    pub https: bool,
    pub access_key: String,
    pub secret_key: String,
    pub username: String,
    pub password: String,
    pub get_per_minute: u32,
    pub write_per_minute: u32,
    pub task_ms: u64,
    pub ip_delay_ms: u64,
    pub token_ttl_secs: u64,
    /// Seconds a remote-console URL may be opened after it was issued.
    pub console_ttl_secs: u64,
    pub max_clock_skew_secs: u64,
    pub state_file: Option<PathBuf>,
    pub faults: Vec<FaultRule>,
    pub seed: Option<u64>,
    pub envelope: Envelope,
    pub max_body_bytes: usize,
    pub rsa_bits: usize,
    pub workers: usize,
    /// Multiplies every pool's vCPU, memory and CPU capacity, every datastore's size and every
    /// subnet's addresses (a fresh world only): large benchmarks need more than the seeded
    /// cloud holds.
    pub capacity_factor: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            https: false,
            access_key: "vmauto-sim-access-key".into(),
            secret_key: "vmauto-sim-secret-key".into(),
            username: "admin".into(),
            password: "Sangfor-Sim-1!".into(),
            get_per_minute: 0,
            write_per_minute: 0,
            task_ms: 200,
            ip_delay_ms: 300,
            token_ttl_secs: 86_400,
            console_ttl_secs: console::DEFAULT_TTL_SECS,
            max_clock_skew_secs: 0,
            state_file: None,
            faults: Vec::new(),
            seed: None,
            envelope: Envelope::Code,
            max_body_bytes: 1_048_576,
            rsa_bits: 1024,
            workers: 2,
            capacity_factor: 1,
        }
    }
}

impl SimConfig {
    /// Builds a config from the command line; fault specs are checked here.
    pub fn from_args(args: SimArgs) -> anyhow::Result<Self> {
        let faults = args
            .faults
            .iter()
            .map(|s| FaultRule::parse(s).map_err(|e| anyhow::anyhow!("--fault {s:?}: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let listen = args
            .listen
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("--listen {:?} is not an IP:PORT address", args.listen))?;
        Ok(Self {
            listen,
            https: !args.http,
            access_key: args.access_key,
            secret_key: args.secret_key,
            username: args.username,
            password: args.password,
            get_per_minute: args.get_per_minute,
            write_per_minute: args.write_per_minute,
            task_ms: args.task_ms,
            ip_delay_ms: args.ip_delay_ms,
            token_ttl_secs: args.token_ttl_secs,
            console_ttl_secs: args.console_ttl_secs,
            max_clock_skew_secs: args.max_clock_skew_secs,
            state_file: args.state_file,
            faults,
            seed: args.seed,
            envelope: args.envelope,
            max_body_bytes: args.max_body_bytes,
            rsa_bits: args.rsa_bits,
            workers: args.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from)),
            capacity_factor: args.capacity_factor.max(1),
        })
    }
}

/// Fault specs that do not parse are dropped, and an invalid `--listen` replaced by the
/// default, with a warning; use
/// [`SimConfig::from_args`] to get the error instead.
impl From<SimArgs> for SimConfig {
    fn from(args: SimArgs) -> Self {
        let mut good = args.clone();
        good.faults.retain(|s| match FaultRule::parse(s) {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(spec = %s, error = %e, "ignoring an invalid --fault");
                false
            }
        });
        if good.listen.trim().parse::<SocketAddr>().is_err() {
            tracing::warn!(listen = %good.listen, "invalid --listen, using 127.0.0.1:9443");
            good.listen = "127.0.0.1:9443".into();
        }
        Self::from_args(good).unwrap_or_default()
    }
}

/// A running simulator.
pub struct SimServer {
    addr: SocketAddr,
    base_url: String,
    cert_pem: Option<String>,
    creds: Credentials,
    handle: ServerHandle,
    shared: Arc<Shared>,
    state_file: Option<PathBuf>,
    saver: tokio::task::JoinHandle<()>,
}

impl SimServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT` or `https://…`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }
    /// The self-signed certificate (PEM) when serving HTTPS.
    pub fn cert_pem(&self) -> Option<String> {
        self.cert_pem.clone()
    }
    pub fn access_key(&self) -> &str {
        &self.creds.access_key
    }
    pub fn secret_key(&self) -> &str {
        &self.creds.secret_key
    }
    pub fn username(&self) -> &str {
        &self.creds.username
    }
    pub fn password(&self) -> &str {
        &self.creds.password
    }

    /// Adds a fault rule, as `POST /_sim/faults` does (in-process convenience for tests).
    pub fn add_fault(&self, rule: FaultRule) {
        self.shared.sim.lock().faults.push(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared.sim.lock().faults.clear();
    }

    /// What `GET /_sim/state` answers: servers, tasks, counts, requests per endpoint, ….
    pub fn snapshot(&self) -> serde_json::Value {
        let now = now_ms();
        let mut sim = self.shared.sim.lock();
        sim.advance(now);
        control::snapshot(&sim, now)
    }

    /// Back to the seeded cloud, as `POST /_sim/reset` does.
    pub fn reset(&self) {
        self.shared.sim.lock().reset();
    }

    /// Stops serving and writes the state file one last time.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        self.saver.abort();
        if let Some(path) = &self.state_file
            && let Err(e) = save(&self.shared, path, true).await
        {
            tracing::warn!(error = %e, path = %path.display(), "could not write the simulator state file");
        }
    }
}

fn load_world(path: Option<&PathBuf>) -> anyhow::Result<World> {
    let Some(path) = path else { return Ok(world::seed()) };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("the simulator state file {} is not valid", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(world::seed()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the world if it changed (or always with `force`): serialized under the lock, written
/// outside it, via a temporary file and a rename so a crash never leaves half a file.
async fn save(shared: &Shared, path: &PathBuf, force: bool) -> anyhow::Result<()> {
    let bytes = {
        let mut sim = shared.sim.lock();
        sim.advance(now_ms());
        if !(sim.dirty || force) {
            return Ok(());
        }
        sim.dirty = false;
        serde_json::to_vec_pretty(&sim.world)?
    };
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, bytes).await.with_context(|| format!("writing {}", tmp.display()))?;
    tokio::fs::rename(&tmp, path).await.with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Keeps a duplicate of each connection's socket for the drop-connection fault.
fn remember_socket(conn: &dyn std::any::Any, ext: &mut Extensions) {
    use actix_web::rt::net::TcpStream;
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<TcpStream>;
    let tcp = conn.downcast_ref::<TcpStream>().or_else(|| conn.downcast_ref::<Tls>().map(|tls| tls.get_ref().0));
    if let Some(fd) = tcp.and_then(|s| s.as_fd().try_clone_to_owned().ok()) {
        ext.insert(ConnSocket(Arc::new(std::net::TcpStream::from(fd))));
    }
}

/// Binds, spawns the server and returns at once. Must run inside an actix system.
pub async fn start(config: SimConfig) -> anyhow::Result<SimServer> {
    let fresh = config.state_file.as_ref().is_none_or(|p| !p.exists());
    let mut world = load_world(config.state_file.as_ref())?;
    // A fresh world (the seeded cloud has VMs of its own), never a saved one twice.
    if config.capacity_factor > 1 && fresh {
        let f = config.capacity_factor;
        for az in &mut world.azs {
            az.vcpu_total *= f;
            az.memory_total_mb *= f;
            az.cpu_total_mhz *= f;
        }
        for tag in &mut world.storage_tags {
            tag.total_mb *= f;
        }
        // Subnets grow by the bits the factor needs (a /24 becomes a /20 for 10×).
        let bits = 64 - (f - 1).leading_zeros();
        for subnet in &mut world.subnets {
            if let Some((addr, prefix)) = subnet["cidr"].as_str().and_then(|c| c.split_once('/'))
                && let Ok(prefix) = prefix.parse::<u32>()
            {
                subnet["cidr"] = serde_json::json!(format!("{addr}/{}", prefix.saturating_sub(bits).max(8)));
            }
        }
    }
    let listener = std::net::TcpListener::bind(config.listen).with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if config.https { "https" } else { "http" };
    let base_url = format!("{scheme}://{addr}");
    let creds = Credentials {
        access_key: config.access_key.clone(),
        secret_key: config.secret_key.clone(),
        username: config.username.clone(),
        password: config.password.clone(),
    };
    let knobs = Knobs {
        task_ms: config.task_ms,
        ip_delay_ms: config.ip_delay_ms,
        token_ttl_secs: config.token_ttl_secs,
        get_per_minute: config.get_per_minute,
        write_per_minute: config.write_per_minute,
        console_ttl_secs: config.console_ttl_secs,
    };
    let rsa = RsaKey::new(config.rsa_bits);
    // Generate the key now, in the background, so the first login does not wait for it.
    let warm = rsa.clone();
    actix_web::rt::spawn(async move {
        let _ = warm.get().await;
    });
    let shared = Arc::new(Shared {
        creds: creds.clone(),
        envelope: config.envelope,
        max_body_bytes: config.max_body_bytes,
        max_clock_skew_secs: config.max_clock_skew_secs,
        base_url: base_url.clone(),
        rsa,
        limits: Limits::new(config.get_per_minute, config.write_per_minute),
        sim: parking_lot::Mutex::new(Sim::new(world, knobs, config.faults.clone(), config.seed)),
    });
    let data = web::Data::from(Arc::clone(&shared));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(usize::MAX))
            .default_service(web::to(http::dispatch))
    })
    .workers(config.workers.max(1))
    .disable_signals()
    .shutdown_timeout(1)
    .on_connect(remember_socket);
    let (server, cert_pem) = if config.https {
        let (tls, pem) = tls::self_signed(addr.ip())?;
        (server.listen_rustls_0_23(listener, tls)?, Some(pem))
    } else {
        (server.listen(listener)?, None)
    };
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let saver_shared = Arc::clone(&shared);
    let saver_path = config.state_file.clone();
    let saver = actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            match &saver_path {
                Some(path) => {
                    if let Err(e) = save(&saver_shared, path, false).await {
                        tracing::warn!(error = %e, "could not write the simulator state file");
                    }
                }
                None => saver_shared.sim.lock().advance(now_ms()),
            }
        }
    });
    Ok(SimServer { addr, base_url, cert_pem, creds, handle, shared, state_file: config.state_file, saver })
}

/// `vmauto sim`: start, print where and how to connect, run until SIGINT/SIGTERM, stop.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = SimConfig::from_args(args)?;
    let server = start(config.clone()).await?;
    println!("vmauto SCP simulator listening on {}", server.base_url());
    println!("  EC2 auth:   access key {}  secret key {}", server.access_key(), server.secret_key());
    println!("  token auth: username {}  password {}", server.username(), server.password());
    println!("  control:    {}/_sim/state (no auth; see /_sim/faults, /_sim/reset, /_sim/config)", server.base_url());
    if server.cert_pem().is_some() {
        println!("  TLS:        self-signed certificate (clients must skip verification or trust it)");
    }
    if let Some(path) = &config.state_file {
        println!("  state file: {}", path.display());
    }
    let limits = |n: u32| if n == 0 { "off".to_string() } else { format!("{n}/min") };
    println!(
        "  limits:     GET {}, other {}; tasks {} ms; IP after {} ms; {} fault rule(s)",
        limits(config.get_per_minute),
        limits(config.write_per_minute),
        config.task_ms,
        config.ip_delay_ms,
        config.faults.len()
    );
    wait_for_signal().await?;
    println!("stopping the simulator");
    server.stop().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn sim_args(argv: &[&str]) -> SimArgs {
        let cli = Cli::try_parse_from(argv).expect("parses");
        match cli.command {
            Some(Command::Sim(args)) => args,
            other => panic!("expected the sim command, got {other:?}"),
        }
    }

    #[test]
    fn command_line_maps_to_config() {
        let args = sim_args(&[
            "vmauto",
            "sim",
            "--http",
            "--listen",
            "127.0.0.1:0",
            "--get-per-minute",
            "0",
            "--fault",
            "GET /janus/*/azs error_rate=1 status=502",
            "--seed",
            "7",
        ]);
        let config = SimConfig::from_args(args.clone()).expect("valid");
        assert!(!config.https);
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(config.get_per_minute, 0);
        assert_eq!(config.write_per_minute, 100);
        assert_eq!(config.faults.len(), 1);
        assert_eq!(config.seed, Some(7));
        let defaults = SimConfig::from_args(sim_args(&["vmauto", "sim"])).expect("valid");
        assert!(defaults.https, "HTTPS unless --http");
        assert_eq!(defaults.listen.port(), 9443);
        let mut bad = args;
        bad.faults.push("GET".into());
        assert!(SimConfig::from_args(bad.clone()).is_err());
        assert_eq!(SimConfig::from(bad).faults.len(), 1, "From drops the invalid rule");
        bad_listen();
    }

    fn bad_listen() {
        let args = sim_args(&["vmauto", "sim", "--listen", "nowhere"]);
        assert!(SimConfig::from_args(args).is_err());
    }
}

//! The appliance as a separate process: the real `vmauto serve` binary on a data directory and
//! port of its own, started, stopped, killed and restarted on the same store (crash tests,
//! benchmarks and CLI tests use it), with the simulator running in the test process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use vmauto::config::Config;
use vmauto::db::Store;
use vmauto::sim::SimServer;

/// The shared token of source `ghl` in a [`Proc`]'s configuration (in the path).
pub const TOKEN: &str = "crash0123456789abcdef0123456789ab";

/// The appliance binary, restarted on the same data directory and port.
pub struct Proc {
    /// The data directory; each start logs to `run-N.log` in it.
    pub dir: PathBuf,
    config: PathBuf,
    pub port: u16,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: usize,
}

impl Proc {
    /// `provider`: more `provider.sangfor` keys; `extra`: more tables.
    pub fn new(dir: &Path, sim: &SimServer, provider: &str, extra: &str) -> Self {
        Self::new_with_policy(dir, sim, provider, "", extra)
    }

    /// As [`Proc::new`], with more `policy` keys.
    pub fn new_with_policy(dir: &Path, sim: &SimServer, provider: &str, policy: &str, extra: &str) -> Self {
        let scp = (sim.base_url(), sim.access_key().to_string(), sim.secret_key().to_string());
        Self::new_for_scp(dir, &scp, provider, policy, extra)
    }

    /// As [`Proc::new_with_policy`], for the SCP at `scp` = (base URL, access key, secret key).
    pub fn new_for_scp(dir: &Path, scp: &(String, String, String), provider: &str, policy: &str, extra: &str) -> Self {
        let port = free_port();
        let config = dir.join("appliance.toml");
        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
data_dir = "{data}"
workers = 2
shutdown_timeout_secs = 2

[log]
level = "info,actix_server=warn"

[provider.sangfor]
base_url = "{url}"
access_key = "{ak}"
secret_key = "{sk}"
{provider}

[policy]
grace_days = 0
retry_base_secs = 1
retry_max_secs = 2
max_destructive_per_hour = 1000
{policy}

[sources.ghl]
plugin = "ghl-workflow"
signature = "shared_token"
token = "{TOKEN}"
token_in = "path"
{extra}
{database}"#,
            data = dir.display(),
            url = scp.0,
            ak = scp.1,
            sk = scp.2,
            // A test that names its own store keeps it.
            database = if extra.contains("[database]") { String::new() } else { super::surreal::shared_toml() },
        );
        std::fs::write(&config, toml).expect("config written");
        Self { dir: dir.to_path_buf(), config, port, child: None, starts: 0 }
    }

    /// The configuration file the process runs with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The same configuration, as the library reads it.
    pub fn load_config(&self) -> Config {
        Config::load(Some(&self.config), std::iter::empty(), &Default::default()).expect("config loads")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the binary and waits until `/readyz` answers 200.
    pub async fn start(&mut self) -> Duration {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("run-{}.log", self.starts))).expect("log file");
        let t0 = Instant::now();
        let child = Command::new(binary())
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("vmauto starts");
        self.child = Some(child);
        let http = reqwest::Client::new();
        let deadline = t0 + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(self.url("/readyz")).timeout(Duration::from_secs(2)).send().await
                && r.status().is_success()
            {
                return t0.elapsed();
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let log =
                    std::fs::read_to_string(self.dir.join(format!("run-{}.log", self.starts))).unwrap_or_default();
                panic!("vmauto exited during start-up ({status}): {log}");
            }
            assert!(Instant::now() < deadline, "vmauto not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends one webhook whose event is `ignore`, so the first real ones do not all wait for
    /// the plugin's first instantiation (which would answer them together).
    pub async fn warm_up(&self) {
        let body = json!({ "contact_id": "warm", "customData": { "event": "ignore", "n": self.starts } });
        let r = reqwest::Client::new().post(self.url(&format!("/webhooks/ghl/{TOKEN}"))).json(&body).send().await;
        assert!(r.is_ok_and(|r| r.status().is_success()), "warm-up webhook accepted");
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reaped");
        }
    }

    /// SIGTERM and wait for the process to exit (SIGKILL after 15 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.wait();
        }
    }

    /// Opens the store in this process (the appliance must be stopped), runs `f`, closes it.
    pub async fn with_store<T>(&self, f: impl AsyncFnOnce(&Store) -> T) -> T {
        assert!(self.child.is_none(), "the embedded store is single-process");
        let store = Store::open(&self.load_config()).await.expect("store opens");
        let out = f(&store).await;
        store.close().await;
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The binary under test: this build's, or another one named by `TEST_VMAUTO_BIN` (the
/// packaging checks run this test against the installed `/usr/bin/vmauto`; the name is not
/// `VMAUTO_*`, which the binary would read as configuration).
pub fn binary() -> std::ffi::OsString {
    std::env::var_os("TEST_VMAUTO_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_vmauto").into())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

//! A real SurrealDB server for the tests that run vmauto on `database.url = ws://…`: the
//! `surreal` binary of `tools/surreal-server` (built once by `tests/surreal-server.sh`, found
//! through `TEST_SURREAL_BIN` or the script's cache), on a loopback port and a SurrealKV
//! store of its own, stopped, killed and restarted on the same store.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The root user the tests' servers start with.
pub const USER: &str = "root";
pub const PASS: &str = "vmauto-test-root";

/// `TEST_DATABASE_URL`: when set (`ws://HOST:PORT` of a server started with [`USER`] and
/// [`PASS`]), the harness's appliances keep their store there instead of embedded, each in a
/// database of its own — `tests/run-all.sh` runs the lifecycle, store and crash suites once
/// more that way.
pub fn shared_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

/// A database name no other test uses.
pub fn fresh_database() -> String {
    format!("t{:016x}", rand::random::<u64>())
}

/// Points `config` at the shared server of [`shared_url`], if there is one.
pub fn use_shared(config: &mut vmauto::config::Config) {
    if let Some(url) = shared_url() {
        config.database.url = url;
        config.database.username = USER.into();
        config.database.password = vmauto::config::Secret::new(PASS);
        config.database.database = fresh_database();
    }
}

/// The `[database]` table of [`use_shared`] for a configuration file (empty without one).
pub fn shared_toml() -> String {
    match shared_url() {
        Some(url) => format!(
            "\n[database]\nurl = \"{url}\"\nusername = \"{USER}\"\npassword = \"{PASS}\"\ndatabase = \"{}\"\n",
            fresh_database()
        ),
        None => String::new(),
    }
}

/// The server binary; panics with how to build it when it is missing.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("TEST_SURREAL_BIN") {
        return PathBuf::from(p);
    }
    let version = "3.3.5";
    let home = std::env::var("HOME").unwrap_or_default();
    let cached = PathBuf::from(home).join(format!(".cache/vmauto-surreal-{version}/bin/surreal"));
    assert!(
        cached.exists(),
        "the SurrealDB server is not built: run tests/surreal-server.sh (tests/run-all.sh does) or set TEST_SURREAL_BIN"
    );
    cached
}

/// A running SurrealDB server.
pub struct SurrealServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Serves `wss://` with a certificate for `localhost` (its CA file in `dir`).
    tls: bool,
}

impl SurrealServer {
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// A server that speaks only TLS (`wss://localhost:PORT`), its certificate self-signed:
    /// [`SurrealServer::ca_file`] is what a client must trust.
    pub async fn start_tls() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> Self {
        vmauto::init_crypto();
        let dir = tempfile::tempdir().expect("tempdir");
        if tls {
            let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
            std::fs::write(dir.path().join("server.crt"), cert.cert.pem()).expect("crt");
            std::fs::write(dir.path().join("server.key"), cert.signing_key.serialize_pem()).expect("key");
        }
        let mut s = Self { port: super::free_port(), dir, child: None, tls };
        s.up().await;
        s
    }

    /// `ws://127.0.0.1:PORT`, or `wss://localhost:PORT` for a TLS server.
    pub fn url(&self) -> String {
        match self.tls {
            true => format!("wss://localhost:{}", self.port),
            false => format!("ws://127.0.0.1:{}", self.port),
        }
    }

    /// The certificate a TLS server presents (self-signed: its own CA).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// Points `config`'s store at this server.
    pub fn configure(&self, config: &mut vmauto::config::Config) {
        config.database.url = self.url();
        config.database.username = USER.into();
        config.database.password = vmauto::config::Secret::new(PASS);
        if self.tls {
            config.database.ca_file = self.ca_file().display().to_string();
        }
    }

    /// Starts the server on its store (again) and waits until it answers.
    pub async fn up(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log");
        let store = format!("surrealkv://{}", self.dir.path().join("data").display());
        let mut command = Command::new(binary());
        command.args(["start", "--no-banner", "--username", USER, "--password", PASS, "--bind"]);
        command.arg(format!("127.0.0.1:{}", self.port));
        if self.tls {
            command.arg("--web-crt").arg(self.ca_file()).arg("--web-key").arg(self.dir.path().join("server.key"));
        }
        let child = command
            .arg(store)
            .env("SURREAL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("the SurrealDB server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let scheme = if self.tls { "https" } else { "http" };
        let health = format!("{scheme}://localhost:{}/health", self.port);
        // Only whether it answers: the certificate is the client's test, not this probe's.
        let http = reqwest::Client::builder().tls_danger_accept_invalid_certs(true).build().expect("client");
        loop {
            if http.get(&health).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "the SurrealDB server did not answer within 60 s: {}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, as a crash or a lost machine.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for SurrealServer {
    fn drop(&mut self) {
        self.kill();
    }
}

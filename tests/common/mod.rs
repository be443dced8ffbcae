//! Shared test harness: an appliance in-process on port 0 with an in-memory store.

#![allow(dead_code, reason = "each test module uses a different part of the harness")]

use std::path::Path;

use vmauto::app::Appliance;
use vmauto::config::Config;

/// A configuration for tests: `mem://` store, port 0, key and plugins under `dir`.
pub fn test_config(dir: &Path) -> Config {
    let mut c = Config::for_data_dir(dir);
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.server.workers = 1;
    c.server.shutdown_timeout_secs = 5;
    c.database.url = "mem://".into();
    c
}

/// A running appliance and the temporary directory it owns.
pub struct TestApp {
    pub app: Appliance,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Self {
        vmauto::init_crypto();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        edit(&mut config);
        let app = vmauto::app::start(config, false).await.expect("appliance starts");
        Self { app, dir, http: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.app.base_url(), path)
    }

    /// GET `path`; returns the status and the body as text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.http.get(self.url(path)).send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }
}

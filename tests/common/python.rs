//! Python tools the tests talk to (an SMTP sink, a fake Stripe, SCP's own Python client), each
//! in a virtualenv under `$HOME/.cache/vmauto/` made on first use and reused afterwards.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Serializes creating virtualenvs (tests run in parallel).
static VENVS: Mutex<()> = Mutex::new(());

/// The virtualenv `name` with `packages` installed, checked by importing `modules`; answers
/// its directory. Fails the test, saying which step failed, when it cannot be made.
pub fn venv(name: &str, packages: &[&str], modules: &str) -> PathBuf {
    let _guard = VENVS.lock().unwrap_or_else(|e| e.into_inner());
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let venv = home.join(".cache/vmauto").join(name);
    let python = venv.join("bin/python");
    let ready = || Command::new(&python).args(["-c", &format!("import {modules}")]).status().is_ok_and(|s| s.success());
    if ready() {
        return venv;
    }
    if !python.exists() {
        let ok = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().expect("python3 runs");
        assert!(ok.success(), "python3 -m venv {} failed", venv.display());
    }
    let ok = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(packages)
        .status()
        .expect("pip runs");
    assert!(ok.success(), "pip install {packages:?} failed");
    assert!(ready(), "{modules} is not importable after installing {packages:?}");
    venv
}

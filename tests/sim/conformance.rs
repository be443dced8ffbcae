//! The public Python client `sangfor-scp` 0.4.5, unchanged, against the simulator.
//!
//! The venv lives in `$HOME/.cache/vmauto/conformance-venv` and is created (and the client
//! installed from PyPI) only when `import sangfor_scp` fails there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use super::Sim;

/// The venv's python with `sangfor-scp` and `pycryptodome` importable.
async fn venv_python() -> PathBuf {
    let venv = tokio::task::spawn_blocking(|| {
        crate::common::python::venv("conformance-venv", &["sangfor-scp==0.4.5", "pycryptodome"], "sangfor_scp, Crypto")
    })
    .await
    .expect("the virtualenv is made");
    venv.join("bin/python")
}

async fn run_check(sim: &Sim, python: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/sangfor_scp_check.py");
    let child = Command::new(python)
        .arg(&script)
        .args([
            &sim.base,
            sim.server.access_key(),
            sim.server.secret_key(),
            sim.server.username(),
            sim.server.password(),
        ])
        // requests lets these variables override a session's `verify=False` (the client's
        // default for SCP's self-signed certificate); a workstation rarely sets them.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), child)
        .await
        .expect("script finished in time")
        .expect("script ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "conformance script failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.lines().any(|l| l.trim() == "CONFORMANCE OK"), "no final OK line:\n{stdout}\n{stderr}");
}

#[actix_web::test]
async fn public_python_client_conforms_over_http_and_https() {
    let python = venv_python().await;
    let sim = Sim::start().await;
    run_check(&sim, &python).await;
    // The client really went through the simulator: count what it called.
    let state = sim.state().await;
    let requests = &state["requests"];
    for endpoint in [
        "POST /janus/authenticate",
        "GET /janus/{v}/servers/{id}",
        "POST /janus/{v}/servers",
        "PUT /janus/{v}/servers/{id}",
    ] {
        assert!(requests[endpoint].as_u64().is_some_and(|n| n >= 1), "{endpoint} never called: {requests}");
    }
    sim.stop().await;
    // And over HTTPS with the self-signed certificate (the client's verify_ssl=False default).
    let sim = Sim::from_config(vmauto::sim::SimConfig { https: true, ..Default::default() }).await;
    run_check(&sim, &python).await;
    sim.stop().await;
}

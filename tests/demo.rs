//! `vmauto demo` as a new user runs it: the real binary, its banner, readiness, the seeded
//! store, and a graceful stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::free_port;

#[actix_web::test]
async fn demo_starts_seeds_prints_a_webhook_and_stops_on_sigterm() {
    vmauto::init_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let (app_port, sim_port) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmauto"))
        .args(["demo", "--memory", "--task-ms", "100", "--dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{app_port}"), "--sim-listen", &format!("127.0.0.1:{sim_port}")])
        .env_remove("VMAUTO_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("vmauto demo starts");
    let stdout = child.stdout.take().expect("stdout");
    // Read the banner, then keep draining stdout: closing the pipe early would make the
    // demo's next print fail.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("-d '{");
            lines.push(line);
            if done && let Some(tx) = tx.take() {
                let _ = tx.send(lines.join("\n"));
            }
        }
    });
    let banner = tokio::time::timeout(Duration::from_secs(120), rx).await.expect("banner printed").expect("reader");

    assert!(banner.contains(&format!("http://127.0.0.1:{app_port}")), "{banner}");
    assert!(banner.contains(&format!("https://127.0.0.1:{sim_port}")), "the simulator speaks HTTPS: {banner}");
    assert!(banner.contains("seeded          3 templates"), "{banner}");
    let token = std::fs::read_to_string(dir.path().join("webhook.token")).expect("token kept in the demo dir");
    assert!(banner.contains(&format!("/webhooks/ghl/{}", token.trim())), "{banner}");
    assert!(dir.path().join("scp-ca.pem").exists(), "the simulator's certificate is handed to the appliance");

    let ready = reqwest::get(format!("http://127.0.0.1:{app_port}/readyz")).await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
}

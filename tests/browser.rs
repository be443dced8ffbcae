//! Runs the browser test (`tests/browser/ui.test.mjs`: Playwright driving Debian's Chromium)
//! against a real appliance and SCP simulator started here, with a fake Stripe whose hosted
//! checkout page "pays" by sending the signed event. Screenshots of the main pages
//! are kept in `tests/browser/artifacts/`.
//!
//! Needs `node`, the npm packages of `tests/browser` (installed here with `npm ci` when
//! missing) and `/usr/bin/chromium` (`tests/run-all.sh` installs it).

use std::path::Path;
use std::process::Stdio;

use vmauto::auth::Role;
use vmauto::config::{Secret, SignatureScheme, SourceConfig};
use vmauto::sim::SimConfig;

use crate::common::Stack;

const TOKEN: &str = "browser0123456789abcdef012345678";
const PW: &str = "browser test password";

async fn run(cmd: &mut tokio::process::Command) -> std::process::Output {
    cmd.stdin(Stdio::null()).output().await.expect("the command starts")
}

#[actix_web::test]
async fn the_admin_ui_works_in_a_real_browser() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (tests/run-all.sh does: apt-get install chromium)"
    );
    if !dir.join("node_modules/playwright-core").exists() {
        let out =
            run(tokio::process::Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir)).await;
        assert!(out.status.success(), "npm ci in tests/browser: {}", String::from_utf8_lossy(&out.stderr));
    }
    // A fake Stripe whose hosted checkout page "pays" by sending the signed event to vmauto.
    let stripe = crate::common::stripe::FakeStripe::start().await;
    let port = crate::common::free_port();
    let app_url = format!("http://127.0.0.1:{port}");
    stripe.host_checkout(&format!("{app_url}/stripe/webhook"));
    let (stripe_url, public_url) = (stripe.url.clone(), app_url.clone());
    let s = Stack::start_with(SimConfig { task_ms: 300, ip_delay_ms: 200, ..SimConfig::default() }, move |c| {
        c.server.listen = format!("127.0.0.1:{port}").parse().expect("addr");
        c.server.public_url = public_url;
        crate::common::stripe::stripe_config(c, &stripe_url);
        c.sources.insert(
            "ghl".into(),
            SourceConfig {
                plugin: "ghl-workflow".into(),
                signature: SignatureScheme::SharedToken,
                token: Secret::new(TOKEN),
                token_in: "path".into(),
                ..SourceConfig::default()
            },
        );
    })
    .await;
    let auth = &s.t.app.state.auth;
    auth.add_user("admin", PW, Role::Admin).await.expect("admin");
    auth.add_user("viewer", PW, Role::Viewer).await.expect("viewer");
    let shots = dir.join("artifacts");
    let out = run(tokio::process::Command::new("node")
        .arg("ui.test.mjs")
        .current_dir(&dir)
        .env("VMAUTO_URL", s.t.app.base_url())
        .env("VMAUTO_WEBHOOK", s.t.url(&format!("/webhooks/ghl/{TOKEN}")))
        .env("VMAUTO_PASSWORD", PW)
        .env("VMAUTO_SIM", s.sim.base_url())
        .env("VMAUTO_SHOTS", &shots)
        .env("CHROMIUM", &chromium))
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "the browser test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("browser test passed"));
    for page in [
        "login",
        "dashboard",
        "vps-list",
        "vps-detail",
        "vps-rebuild",
        "templates",
        "inbox-event",
        "activity",
        "settings",
        "upgrade-page",
        "upgrade-done",
        "token-shown-once",
    ] {
        assert!(shots.join(format!("{page}.png")).exists(), "screenshot of {page}");
    }
}

#[actix_web::test]
async fn the_customer_portal_works_in_a_real_browser() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "{chromium} is missing: install Debian's chromium");
    if !dir.join("node_modules/playwright-core").exists() {
        let out =
            run(tokio::process::Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir)).await;
        assert!(out.status.success(), "npm ci in tests/browser: {}", String::from_utf8_lossy(&out.stderr));
    }
    let port = crate::common::free_port();
    let app_url = format!("http://127.0.0.1:{port}");
    let public_url = app_url.clone();
    let s = Stack::start_with(SimConfig { task_ms: 300, ip_delay_ms: 200, ..SimConfig::default() }, move |c| {
        c.server.listen = format!("127.0.0.1:{port}").parse().expect("addr");
        c.server.public_url = public_url;
    })
    .await;
    let vps = crate::upgrades::active_vps(&s, "sub-portal-browser").await;
    let st = &s.t.app.state;
    let link =
        vmauto::portal::issue(&st.store, &st.config, &st.sealer, &vps.as_str().into(), "test").await.expect("link");
    let gone =
        vmauto::portal::issue(&st.store, &st.config, &st.sealer, &vps.as_str().into(), "test").await.expect("link");
    assert!(vmauto::portal::revoke(&st.store, &gone.id, "test").await.expect("revoke"));
    let shots = dir.join("artifacts");
    let out = run(tokio::process::Command::new("node")
        .arg("portal.test.mjs")
        .current_dir(&dir)
        .env("VMAUTO_URL", &app_url)
        .env("VMAUTO_PORTAL", &link.url)
        .env("VMAUTO_PORTAL_REVOKED", &gone.url)
        .env("VMAUTO_SIM", s.sim.base_url())
        .env("VMAUTO_SHOTS", &shots)
        .env("CHROMIUM", &chromium))
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "the portal browser test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("portal browser test passed"));
    for page in ["portal", "portal-console", "portal-password", "portal-usage", "portal-reinstall", "portal-revoked"] {
        assert!(shots.join(format!("{page}.png")).exists(), "screenshot of {page}");
    }
}

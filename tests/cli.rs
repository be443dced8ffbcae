//! The `vmauto` binary's operator commands: `config check` and `db export` / `db import`.

use std::process::Command;

fn vmauto(args: &[&str], dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vmauto"))
        .args(args)
        .env_remove("VMAUTO_CONFIG")
        .env("VMAUTO_SERVER__DATA_DIR", dir)
        .output()
        .expect("vmauto runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn config_check_accepts_the_shipped_file_and_names_a_bad_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/appliance.toml");
    let (ok, out) = vmauto(&["config", "check", shipped], dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("configuration OK"), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[policy]\ngrace_dayz = 3\n").expect("write");
    let (ok, out) = vmauto(&["config", "check", bad.to_str().expect("utf-8")], dir.path());
    assert!(!ok);
    assert!(out.contains("grace_dayz"), "the unknown key is named: {out}");

    let (ok, out) = vmauto(&["config", "check", shipped, "--set", "policy.max_attempts=0"], dir.path());
    assert!(!ok);
    assert!(out.contains("policy.max_attempts"), "{out}");
}

#[test]
fn db_export_and_import_round_trip_through_the_binary() {
    let src = tempfile::tempdir().expect("tempdir");
    let dump = src.path().join("backup.surql");
    // `db version` creates the store; its export holds the schema-version table.
    let (ok, out) = vmauto(&["db", "version"], src.path());
    assert!(ok, "{out}");
    let (ok, out) = vmauto(&["db", "export", dump.to_str().expect("utf-8")], src.path());
    assert!(ok, "{out}");
    assert!(std::fs::read_to_string(&dump).expect("dump").contains("schema_version"));

    let dst = tempfile::tempdir().expect("tempdir");
    let (ok, out) = vmauto(&["db", "import", dump.to_str().expect("utf-8")], dst.path());
    assert!(ok, "{out}");
    assert!(out.contains("imported"), "{out}");
    let (ok, out) = vmauto(&["db", "import", dump.to_str().expect("utf-8")], dst.path());
    assert!(!ok, "a second import into a non-empty store is refused: {out}");
    assert!(out.contains("not empty"), "{out}");
}

#[test]
fn admin_retry_names_an_unknown_operation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, out) = vmauto(&["admin", "retry", "no-such-op"], dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("no such operation: no-such-op"), "{out}");
}

#[test]
fn db_purge_reports_what_it_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_vmauto"))
        .args(["db", "purge"])
        .env_remove("VMAUTO_CONFIG")
        .env("VMAUTO_SERVER__DATA_DIR", dir.path())
        .env("VMAUTO_LOG__LEVEL", "debug")
        .output()
        .expect("vmauto runs");
    let (ok, out) = (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    );
    assert!(out.contains("DEBUG") || out.contains("INFO"), "something is logged: {out}");
    assert!(!out.contains('\u{1b}'), "no colour codes when the log is not a terminal: {out}");
    assert!(ok, "{out}");
    assert!(out.contains("inbox purged: 0 settled webhooks compacted") && out.contains("retention 30 days"), "{out}");
}

fn run_with(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vmauto"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("VMAUTO_CONFIG")
        .output()
        .expect("vmauto runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[actix_web::test]
async fn api_tokens_are_managed_from_the_cli_while_the_appliance_runs() {
    vmauto::init_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = vmauto::sim::start(vmauto::sim::SimConfig::default()).await.expect("simulator");
    let mut p = crate::common::Proc::new(dir.path(), &sim, "", "");
    p.start().await;
    let config = p.config_path().to_path_buf();
    let (ok, out) = run_with(&config, &["admin", "token", "create", "robot", "--role", "operator"]);
    assert!(ok, "{out}");
    let token = out.lines().find_map(|l| l.strip_prefix("token: ")).expect("the token is printed").to_string();
    let me = reqwest::Client::new().get(p.url("/api/v1/me")).bearer_auth(&token).send().await.expect("api");
    assert_eq!(me.status().as_u16(), 200, "the printed token works");
    let (ok, out) = run_with(&config, &["admin", "token", "list"]);
    assert!(ok && out.contains("robot\toperator"), "{out}");
    assert!(!out.contains(&token), "a list never shows a token's value: {out}");
    let id = out.lines().find(|l| l.contains("robot")).and_then(|l| l.split('\t').next()).expect("id").to_string();
    let (ok, out) = run_with(&config, &["admin", "token", "revoke", &id]);
    assert!(ok, "{out}");
    let me = reqwest::Client::new().get(p.url("/api/v1/me")).bearer_auth(&token).send().await.expect("api");
    assert_eq!(me.status().as_u16(), 401, "a revoked token is refused");
    let (ok, out) = run_with(&config, &["admin", "token", "revoke", "no-such-token"]);
    assert!(!ok && out.contains("no API token no-such-token"), "{out}");
    // The other admin and upgrade commands go through the running appliance too.
    let (ok, out) = run_with(&config, &["admin", "add-user", "carol", "--role", "viewer"]);
    assert!(ok && out.contains("added viewer carol") && out.contains("password: "), "{out}");
    let (ok, out) = run_with(&config, &["admin", "list-users"]);
    assert!(ok && out.contains("carol\tviewer\tactive"), "{out}");
    let (ok, out) = run_with(&config, &["admin", "add-user", "carol"]);
    assert!(!ok && out.contains("already exists"), "the appliance's error reaches the operator: {out}");
    let (ok, out) = run_with(&config, &["upgrade", "offers"]);
    assert!(ok, "{out}");
    let (ok, out) = run_with(&config, &["upgrade", "link", "no-such-vps"]);
    assert!(!ok && out.contains("no-such-vps"), "{out}");
    // Settings too.
    let (ok, out) = run_with(&config, &["settings", "set", "policy.grace_days=9", "smtp.from=ops@example.com"]);
    assert!(ok && out.contains("Saved policy.grace_days, smtp.from"), "{out}");
    let (ok, out) = run_with(&config, &["settings", "list"]);
    assert!(ok && out.contains("policy.grace_days\t0\tsaved here: 9, in effect after a restart"), "{out}");
    assert!(out.contains("smtp.password\t(not set)"), "{out}");
    let (ok, out) = run_with(&config, &["settings", "set", "server.listen=0.0.0.0:1"]);
    assert!(!ok && out.contains("cannot be changed here"), "{out}");
    let (ok, out) = run_with(&config, &["settings", "set", "grace"]);
    assert!(!ok && out.contains("KEY=VALUE"), "{out}");
    p.stop();
    sim.stop().await;
}

fn vmauto_cli(args: &[&str], dir: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmauto"))
        .args(args)
        .env_remove("VMAUTO_CONFIG")
        .env("VMAUTO_SERVER__DATA_DIR", dir)
        .env("VMAUTO_LOG__LEVEL", "error")
        .output()
        .expect("vmauto runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_cli_lists_offers_and_issues_and_revokes_links() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("appliance.toml");
    let toml = "[server]\npublic_url = \"https://vps.example.com\"\n\n[[stripe.offers]]\nid = \"more-memory\"\n\
                name = \"+2 GB memory\"\nadd_memory_gb = 2\nprice = 900\n";
    std::fs::write(&config, toml).expect("config");
    let config = config.to_str().expect("utf-8");
    // A store holding one VPS (through `db import`, as a restore would), and its key.
    let seed = dir.path().join("seed.surql");
    std::fs::write(
        &seed,
        "OPTION IMPORT;\nCREATE vps:web1 CONTENT { state: 'active', template: 'vps-small', spec: { cores: 1, memory_mb: 1024, disk_gb: 40 } };\n",
    )
    .expect("seed");
    let (ok, out) = vmauto_cli(&["--config", config, "db", "import", seed.to_str().expect("utf-8")], dir.path());
    assert!(ok, "{out}");
    std::fs::write(dir.path().join("appliance.key"), hex::encode([9u8; 32])).expect("key");
    let (ok, out) = vmauto_cli(&["--config", config, "upgrade", "offers"], dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("more-memory") && out.contains("9.00 USD") && out.contains("enabled"), "{out}");

    let (ok, out) = vmauto_cli(&["--config", config, "upgrade", "link", "nope"], dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("no VPS nope"), "{out}");

    let (ok, out) = vmauto_cli(&["--config", config, "upgrade", "link", "web1"], dir.path());
    assert!(ok, "{out}");
    let url = out.lines().next().expect("url line");
    assert!(url.starts_with("https://vps.example.com/upgrade/"), "{out}");
    let id = out.split("link id ").nth(1).and_then(|r| r.split_whitespace().next()).expect("link id");
    let (ok, out) = vmauto_cli(&["--config", config, "upgrade", "revoke", id], dir.path());
    assert!(ok && out.contains("revoked"), "{out}");
    let (ok, out) = vmauto_cli(&["--config", config, "upgrade", "revoke", "0000"], dir.path());
    assert!(!ok && out.contains("no upgrade link"), "{out}");
}

#[actix_web::test]
async fn provider_check_checks_every_provider_and_names_the_one_that_fails() {
    let sim = vmauto::sim::start(vmauto::sim::SimConfig::default()).await.expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("appliance.toml");
    let keys = format!("access_key = \"{}\"\nsecret_key = \"{}\"\n", sim.access_key(), sim.secret_key());
    std::fs::write(
        &file,
        format!(
            "[provider.sangfor]\nbase_url = \"{}\"\n{keys}\n[providers.b]\nbase_url = \"http://127.0.0.1:9\"\n{keys}\
             max_retries = 0\nrequest_timeout_secs = 2\n",
            sim.base_url()
        ),
    )
    .expect("write");
    let (path, data) = (file.to_str().expect("utf-8").to_string(), dir.path().to_path_buf());
    let (ok, out) = tokio::task::spawn_blocking(move || vmauto(&["--config", &path, "provider", "check"], &data))
        .await
        .expect("ran");
    assert!(!ok, "one provider cannot be reached: {out}");
    assert!(out.contains("== provider default ==") && out.contains("== provider b =="), "{out}");
    assert!(out.contains(vmauto::sim::world::AZ_A), "the default provider's AZs: {out}");
    assert!(out.contains("cannot reach SCP at http://127.0.0.1:9"), "{out}");
    assert!(out.contains("provider check failed for: b"), "{out}");
}

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

//! Builds the bundled plugins (`plugins/`, a workspace of its own, beside this crate) for
//! `wasm32-unknown-unknown`, turns each core module into a component with `wit-component`,
//! and writes `bundled_plugins.rs` into `OUT_DIR` for `src/bundled.rs` to include.
//!
//! The plugins build in a target directory of their own (beside the outer one), so the
//! nested cargo never waits on the lock the outer cargo holds, and check, build, clippy and
//! test share one warm plugin build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Bundled plugins: crate directory under `plugins/` (also the plugin's name).
const PLUGINS: &[&str] = &["ghl-workflow", "ghl-marketplace", "stripe-billing", "generic-json", "plan-table"];

/// Environment the outer cargo gives build scripts that must not leak into the nested build.
const SCRUBBED_ENV: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let plugins_dir = manifest_dir.parent().expect("plugins/host has a parent").to_path_buf();
    for input in ["wit", "sdk", "Cargo.toml", "Cargo.lock"].iter().chain(PLUGINS) {
        println!("cargo:rerun-if-changed={}", plugins_dir.join(input).display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    let target_dir = plugin_target_dir(&out_dir);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&plugins_dir)
        .args(["build", "--release", "--locked", "--target", "wasm32-unknown-unknown", "--target-dir"])
        .arg(&target_dir)
        .args(["--manifest-path"])
        .arg(plugins_dir.join("Cargo.toml"));
    for key in SCRUBBED_ENV {
        cmd.env_remove(key);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo to build plugins/: {e}"));
    if !status.success() {
        panic!(
            "building the bundled plugins failed (see above). The wasm target comes with \
             rust-toolchain.toml; without rustup run: rustup target add wasm32-unknown-unknown"
        );
    }

    let mut table =
        String::from("/// Bundled plugins: (name, component bytes).\npub const BUNDLED: &[(&str, &[u8])] = &[\n");
    for name in PLUGINS {
        let module_path =
            target_dir.join("wasm32-unknown-unknown/release").join(format!("{}.wasm", name.replace('-', "_")));
        let module = std::fs::read(&module_path)
            .unwrap_or_else(|e| panic!("cannot read the built plugin {}: {e}", module_path.display()));
        let component = wit_component::ComponentEncoder::default()
            .module(&module)
            .and_then(|enc| enc.validate(true).encode())
            .unwrap_or_else(|e| panic!("cannot turn plugin {name} into a component: {e:#}"));
        let dest = out_dir.join(format!("{name}.wasm"));
        write_if_changed(&dest, &component);
        table.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", dest.display().to_string()));
    }
    table.push_str("];\n");
    write_if_changed(&out_dir.join("bundled_plugins.rs"), table.as_bytes());
}

/// `<outer target dir>/wasm-plugins`, found from `OUT_DIR`
/// (`<target>/<profile>/build/<pkg>-<hash>/out`); `OUT_DIR/plugins-target` otherwise.
fn plugin_target_dir(out_dir: &Path) -> PathBuf {
    let outer = out_dir.ancestors().nth(4);
    match outer {
        Some(dir) if out_dir.ancestors().nth(2).is_some_and(|b| b.ends_with("build")) => dir.join("wasm-plugins"),
        _ => out_dir.join("plugins-target"),
    }
}

fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return;
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

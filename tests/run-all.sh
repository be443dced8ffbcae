#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, checks
# formatting and lints, then runs every unit and integration test (including the
# conformance check of the public `sangfor-scp` Python client against `vmauto sim`).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vmauto-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
rustup show active-toolchain
# The bundled plugins are built for wasm32 by build.rs.
rustup target add wasm32-unknown-unknown
command -v python3 >/dev/null || { apt-get update && apt-get install -y python3 python3-venv; }
python3 -c 'import venv' 2>/dev/null || { apt-get update && apt-get install -y python3-venv; }

step "browser test prerequisites"
# Debian's Chromium for the admin UI's browser test, and Playwright (playwright-core) from npm.
# Only what is missing: a Node.js that ships its own npm (e.g. from another repository)
# conflicts with Debian's npm package.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
npm ci --prefix tests/browser --no-audit --no-fund

step "SurrealDB server"
# The real server (tools/surreal-server) for the tests that run vmauto on database.url =
# ws://…; built once into $HOME/.cache (about half an hour on two cores), then reused.
TEST_SURREAL_BIN="$(./tests/surreal-server.sh)"
export TEST_SURREAL_BIN

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the plugin SDK (a workspace of its own, plugins/)"
cargo fmt --manifest-path plugins/Cargo.toml --all -- --check
cargo clippy --manifest-path plugins/Cargo.toml --workspace --locked --target wasm32-unknown-unknown -- -D warnings
cargo test --manifest-path plugins/Cargo.toml --locked -p vmauto-plugin-sdk

step "tests"
cargo test --workspace --locked --lib --bins --tests -- --test-threads=2

step "the lifecycle, store and crash suites again, on a SurrealDB server (ws://)"
# Every appliance of these tests keeps its store on one real server, a database each.
./tests/on-surreal-server.sh lifecycle:: inbox:: recovery:: faults:: crash::

step "packaging"
# The .deb and the container image, from the debug build the tests just used.
./packaging/test-packaging.sh

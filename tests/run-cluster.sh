#!/usr/bin/env bash
# The cluster test: three vmauto nodes on one SurrealDB server behind a balancer, a burst of
# webhooks with a follower and then the leader SIGKILLed, and a rolling restart
# (tests/cluster.rs). Builds or reuses the server like tests/run-all.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vmauto-target}"
TEST_SURREAL_BIN="${TEST_SURREAL_BIN:-$(./tests/surreal-server.sh)}"
export TEST_SURREAL_BIN
cargo test --locked --test integration -- --ignored --nocapture cluster::three_nodes

#!/usr/bin/env bash
# Runs integration tests with every appliance of the harness on a real SurrealDB server
# (database.url = ws://…, a database of its own per appliance) instead of the embedded store.
# Usage: tests/on-surreal-server.sh [test filters…]; TEST_SURREAL_BIN names the server binary
# (default: build or reuse it with tests/surreal-server.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${TEST_SURREAL_BIN:-$(./tests/surreal-server.sh)}"
dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$bin" start --no-banner --username root --password vmauto-test-root --bind "127.0.0.1:$port" \
    "surrealkv://$dir/data" >"$dir/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$dir/server.log"; exit 1; }
    sleep 0.1
done
curl -fs "http://127.0.0.1:$port/health" >/dev/null || { echo "the SurrealDB server did not start"; cat "$dir/server.log"; exit 1; }

export TEST_DATABASE_URL="ws://127.0.0.1:$port" TEST_SURREAL_BIN="$bin"
cargo test --locked --test integration -- --test-threads=2 "$@"

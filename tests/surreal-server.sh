#!/usr/bin/env bash
# Builds the SurrealDB server (tools/surreal-server: crates.io's surrealdb-server at the
# version of vmauto's surrealdb client) once into $HOME/.cache and prints the binary's path.
# Tests that run vmauto against a real server (`database.url = ws://…`) use it.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/tools/surreal-server/Cargo.toml" | head -1)"
root="${SURREAL_SERVER_ROOT:-$HOME/.cache/vmauto-surreal-$version}"
bin="$root/bin/surreal"
if [[ ! -x "$bin" ]]; then
    echo "==> building the SurrealDB server $version (once; cached in $root)" >&2
    cargo install --locked --path "$here/tools/surreal-server" --root "$root" \
        --target-dir "${SURREAL_SERVER_TARGET:-$HOME/.cache/vmauto-surreal-build}" >&2
fi
echo "$bin"

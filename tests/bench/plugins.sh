#!/usr/bin/env bash
# The bundled plugins' calls a second, on the binary the appliance runs (a release build):
# `vmauto plugin test --repeat`, one thread, one instance reused, over the same fixtures and
# settings as `bench_plugins_events` (tests/plugins/bench.rs).
#
#   BIN=<vmauto release binary> tests/bench/plugins.sh
#   CALLS=20000         calls per plugin (default)
#   PLUGINS=<dir>       components named like bundled plugins replace them (to compare builds)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${BIN:?set BIN to a vmauto binary (a release build)}"
CALLS="${CALLS:-20000}"
fixtures="$PWD/tests/fixtures/webhooks"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/plugins"
[ -n "${PLUGINS:-}" ] && cp "$PLUGINS"/*.wasm "$work/plugins/"
cat > "$work/vmauto.toml" <<TOML
[server]
data_dir = "$work"
[plugins]
dir = "$work/plugins"
[sources.bench]
plugin = "generic-json"
signature = "none"
[sources.bench.settings]
event_field = "kind"
"map.activated" = "subscribe"
subscription_field = "contract.id"
customer_id_field = "account.id"
plan_field = "contract.product.sku"
TOML
# A plan-table request with a catalogue of T templates and M mappings, asking for the last plan.
catalogue() {
    python3 - "$1" "$2" <<'PY'
import json, sys
t, m = int(sys.argv[1]), int(sys.argv[2])
print(json.dumps({
    "event": {"kind": "subscribe", "source_event_id": "e1", "occurred_at": None, "subscription_id": "s1",
              "customer": {"id": "c1", "name": "Dana", "email": "dana@example.com"},
              "plan_key": f"p{m - 1}", "attributes": {"event": "subscribe"}},
    "catalogue": {
        "templates": [{"name": f"t{i}", "enabled": True, "cores": 2, "memory_mb": 2048, "disk_gb": 40, "extra": {}} for i in range(t)],
        "mappings": [{"source": "bench", "plan_key": f"p{i}", "template": f"t{i % t}"} for i in range(m)],
    },
}))
PY
}
catalogue 5 10 > "$work/catalogue-5-10.json"
catalogue 50 200 > "$work/catalogue-50-200.json"

run() { # label plugin payload [source]
    local line
    line="$("$BIN" --config "$work/vmauto.toml" plugin test "$2" "$3" --source "${4:-test}" --repeat "$CALLS" | tail -1)"
    printf '  %-34s %s\n' "$1" "$line"
}
echo "vmauto plugin test --repeat $CALLS ($("$BIN" --version))${PLUGINS:+, components from $PLUGINS}:"
run ghl-workflow ghl-workflow "$fixtures/ghl-workflow-subscribe.json"
run ghl-marketplace ghl-marketplace "$fixtures/ghl-order-create.json"
run stripe-billing stripe-billing "$fixtures/stripe-subscription-created.json"
run generic-json generic-json "$fixtures/generic-subscribe.json" bench
run "plan-table (5 templates, 10 maps)" plan-table "$work/catalogue-5-10.json" bench
run "plan-table (50 templates, 200 maps)" plan-table "$work/catalogue-50-200.json" bench

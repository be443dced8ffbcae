#!/usr/bin/env bash
# The bundled plugins' calls a second, on the binary the appliance runs (a release build):
# `vmauto plugin test --repeat`, one thread, one instance reused, over the same fixtures and
# settings as `bench_plugins_events` (tests/plugins/bench.rs).
#
#   BIN=<vmauto release binary> tests/bench/plugins.sh
#   CALLS=20000         calls per plugin (default)
#   PLUGINS=<dir>       components named like bundled plugins replace them (to compare builds)
#   ROUNDS=1            runs per plugin; with more, each plugin's runs and their median
#   COMPARE=<dir>       components to compare with: each round runs both, one after the other
#                       (a shared machine's speed drifts more than most changes; only runs
#                       interleaved this way and repeated say which build is faster)
#   INSTRUCTIONS=1      instead of timing, count the instructions a call takes (valgrind's
#                       cachegrind over 1,000 and 3,000 calls, the difference over 2,000): the
#                       same on every run, whatever the machine is doing (apt install valgrind)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${BIN:?set BIN to a vmauto binary (a release build)}"
CALLS="${CALLS:-20000}"
ROUNDS="${ROUNDS:-1}"
fixtures="$PWD/tests/fixtures/webhooks"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# config DIR COMPONENTS: a configuration in DIR whose plugins are COMPONENTS' (the bundled
# ones when empty).
config() {
    mkdir -p "$1/plugins"
    if [ -n "$2" ]; then cp "$2"/*.wasm "$1/plugins/"; fi
    cat > "$1/vmauto.toml" <<TOML
[server]
data_dir = "$1"
[plugins]
dir = "$1/plugins"
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
}
config "$work/a" "${PLUGINS:-}"
[ -z "${COMPARE:-}" ] || config "$work/b" "$COMPARE"
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

summary() { # config plugin payload source: one run's summary line
    "$BIN" --config "$1/vmauto.toml" plugin test "$2" "$3" --source "$4" --repeat "$CALLS" | tail -1
}
calls() { summary "$@" | sed -E 's/.* ([0-9]+) calls a second.*/\1/'; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

instructions() { # config plugin payload source: instructions a call
    local n1 n3
    count() {
        valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null --smc-check=all-non-file \
            "$BIN" --config "$1/vmauto.toml" plugin test "$2" "$3" --source "$4" --repeat "$5" 2>&1 >/dev/null |
            sed -nE 's/.*I +refs: +([0-9,]+).*/\1/p' | tr -d ,
    }
    n1=$(count "$@" 1000)
    n3=$(count "$@" 3000)
    echo $(((n3 - n1) / 2000))
}

run() { # label plugin payload [source]
    local a="" b="" r
    if [ -n "${INSTRUCTIONS:-}" ]; then
        printf '  %-34s %7s instructions a call\n' "$1" "$(instructions "$work/a" "$2" "$3" "${4:-test}")"
        [ -z "${COMPARE:-}" ] || printf '  %-34s %7s instructions a call\n' "  with $COMPARE" "$(instructions "$work/b" "$2" "$3" "${4:-test}")"
        return
    fi
    if [ "$ROUNDS" = 1 ] && [ -z "${COMPARE:-}" ]; then
        printf '  %-34s %s\n' "$1" "$(summary "$work/a" "$2" "$3" "${4:-test}")"
        return
    fi
    for r in $(seq "$ROUNDS"); do
        a="$a $(calls "$work/a" "$2" "$3" "${4:-test}")"
        [ -z "${COMPARE:-}" ] || b="$b $(calls "$work/b" "$2" "$3" "${4:-test}")"
    done
    printf '  %-34s median %7s calls/s, runs:%s\n' "$1" "$(echo "$a" | median)" "$a"
    [ -z "${COMPARE:-}" ] || printf '  %-34s median %7s calls/s, runs:%s\n' "  with $COMPARE" "$(echo "$b" | median)" "$b"
}
if [ -n "${INSTRUCTIONS:-}" ]; then
    command -v valgrind > /dev/null || { echo "INSTRUCTIONS=1 needs valgrind (apt install valgrind)" >&2; exit 1; }
    CALLS="1000 and 3000"
fi
echo "vmauto plugin test --repeat $CALLS ($("$BIN" --version))${PLUGINS:+, components from $PLUGINS}${COMPARE:+, against $COMPARE}, $ROUNDS round(s):"
run ghl-workflow ghl-workflow "$fixtures/ghl-workflow-subscribe.json"
run ghl-marketplace ghl-marketplace "$fixtures/ghl-order-create.json"
run stripe-billing stripe-billing "$fixtures/stripe-subscription-created.json"
run generic-json generic-json "$fixtures/generic-subscribe.json" bench
run "plan-table (5 templates, 10 maps)" plan-table "$work/catalogue-5-10.json" bench
run "plan-table (50 templates, 200 maps)" plan-table "$work/catalogue-50-200.json" bench

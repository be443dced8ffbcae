#!/usr/bin/env bash
# Profiles `vmauto serve` under the shared ingest benchmark (../shared/bench/vmauto-ingest.sh):
# perf (flat, 499 Hz) for 15 s in the middle of the wrk run. Prints the benchmark's line, the
# appliance's RSS each second, the samples by thread and the top symbols.
#
#   BIN=<vmauto with symbols> MODE=throttled|open tests/bench/profile-ingest.sh
#
# A release build keeps its symbols (and its code is the same) when built with
#   cargo rustc --release --locked --bin vmauto -- -C strip=none
# env: BIN (required), MODE=throttled, OUT=/tmp/vmauto.perf, TOP=30, DURATION=30,
#      SHARED_BENCH=../shared/bench (beside the project)
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${SHARED_BENCH:-$root/../shared/bench}
BIN=$(realpath "${BIN:?BIN=path to a vmauto binary with symbols}")
OUT=${OUT:-/tmp/vmauto.perf}
log=$(mktemp /tmp/vmauto-profile.XXXX)
(cd "$bench" && BIN=$BIN DURATION=${DURATION:-30} ./vmauto-ingest.sh >"$log" 2>&1 &)
pid=""
for _ in $(seq 240); do
    pid=$(pgrep -f "appliance.toml serve" | head -1)
    [ -n "$pid" ] && pgrep -x wrk >/dev/null && break
    sleep 0.5
done
[ -n "$pid" ] || { echo "the benchmark did not start: $log"; exit 1; }
(
    t0=$(date +%s)
    while kill -0 "$pid" 2>/dev/null; do
        echo "$(($(date +%s) - t0)):$(($(awk '/VmRSS/{print $2}' /proc/"$pid"/status 2>/dev/null || echo 0) / 1024))"
        sleep 1
    done | tr '\n' ' ' >"$log.rss"
) &
sleep 8
perf record -F 499 -p "$pid" -o "$OUT" -- sleep 15 >/dev/null 2>&1
while pgrep -f vmauto-ingest.sh >/dev/null; do sleep 1; done
sleep 1
tail -1 "$log"
echo "RSS MiB by second: $(cat "$log.rss")"
perf report -i "$OUT" --no-children --sort comm --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8
perf report -i "$OUT" --no-children --sort symbol --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -"${TOP:-30}"

#!/usr/bin/env bash
# End to end, vmauto beside the reference stack (FastAPI + Celery/Redis + PostgreSQL, in
# ../shared/bench/seedstack), in one run on this machine: a burst of N subscriptions from 32
# concurrent clients against an instant SCP with limits off, webhook received → VPS active.
# vmauto runs as BIN; the load and the simulator run in the (dev-profile) test harness.
# Prints both figures and their ratio.
#
#   BIN=$HOME/.cache/vmauto-release/release/vmauto tests/bench/e2e-vs-seedstack.sh
#
# env: BIN (required: a release build for figures you quote), N=500,
#      SEEDSTACK=../shared/bench/seedstack (beside the project)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(realpath "${BIN:?BIN=path to the vmauto binary (a release build for figures you quote)}")
seed=${SEEDSTACK:-$root/../shared/bench/seedstack}
export N=${N:-500}
# The test build the README's test command made (cargo's default, ./target, would mean a
# build of the whole project first).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vmauto-target}"

"$seed/setup.sh" >/tmp/seedstack-setup.log 2>&1 || { echo "seedstack setup failed: /tmp/seedstack-setup.log"; exit 1; }
"$seed/stop.sh" >/dev/null 2>&1 || true
"$seed/start.sh" >/dev/null
"$seed/reset.sh" >/dev/null
seed_out=$("$seed/bench_e2e.sh" 2>&1 || true)
"$seed/stop.sh" >/dev/null 2>&1 || true
echo "$seed_out" | grep -E '^(http|rows|all active|receipt|FAIL|CPU|MEM)' | sed 's/^/seedstack: /'
seed_vps=$(sed -n 's/.*throughput \([0-9.]*\) VPS\/s.*/\1/p' <<<"$seed_out" | tail -1)

cd "$root"
vm_out=$(TEST_VMAUTO_BIN=$BIN BENCH_E2E_N=$N cargo test --locked --test integration -- --ignored \
    --nocapture --test-threads=1 bench_lifecycle_e2e_burst 2>&1)
# The figures follow the test's name on its line ("test … ... bench_lifecycle_e2e_burst: …").
vm_line=$(grep -o 'bench_lifecycle_e2e_burst: .*' <<<"$vm_out") || { echo "$vm_out" | tail -30; exit 1; }
echo "vmauto: $vm_line"
vm_vps=$(sed -n 's/.*: \([0-9.]*\) VPS\/s.*/\1/p' <<<"$vm_line")
python3 -c "import sys; print(f'ratio vmauto/seedstack end to end: {float(sys.argv[1])/float(sys.argv[2]):.2f}x VPS/s')" "$vm_vps" "$seed_vps"

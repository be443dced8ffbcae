#!/usr/bin/env bash
# Packaging checks, run by tests/run-all.sh after the cargo tests (it reuses their debug
# build of `vmauto`; nothing is built twice). Needs root. On this machine, as on CI:
#
#   1. builds the .deb with cargo-deb (twice, the second with a higher version),
#   2. installs it here, starts vmauto the way vmauto.service does (its User, UMask,
#      WorkingDirectory, EnvironmentFile and ExecStart, read from the unit file, with
#      NoNewPrivileges, no capabilities, a read-only system but /var/lib/vmauto, a private
#      /tmp and no /root or /home), checks /healthz, writes data, exports it while running,
#   3. upgrades to the second package and checks that data, key and configuration stayed
#      and that migrations ran (PACKAGING_UPGRADE_FROM=older.deb starts from an older one),
#   4. runs the crash test against the installed /usr/bin/vmauto,
#   5. removes the package (data kept) and purges it (data and user gone),
#   6. checks the Prometheus alert rules with promtool (and their unit tests),
#   7. builds the container image from the packaged binary and runs it, checking /healthz
#      and that the store lands in the volume,
#
# and prints the figures: binary sizes, .deb size, image size, cold start time to ready.
# It installs its apt prerequisites itself and leaves nothing installed behind it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vmauto-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export DEBIAN_FRONTEND=noninteractive
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
CARGO_DEB_VERSION=3.8.0
UNIT=packaging/deb/vmauto.service
WORK="$CARGO_TARGET_DIR/packaging-test"
DATA=/var/lib/vmauto
CONF=/etc/vmauto/appliance.toml
TOKEN=ci0123456789abcdef0123456789abcd

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
check() { # check "what" command...
    local what="$1"; shift
    if "$@"; then printf '  ok   %s\n' "$what"; else fail "$what"; fi
}
figure() { printf '  FIGURE %-34s %s\n' "$1" "$2"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB (%d bytes)", b / 1048576, b }'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
owner_mode() { stat -c '%U %G %a' "$1"; }

[ "$(id -u)" = 0 ] || fail "run as root (it installs a package and creates a system user)"

step "prerequisites"
apt-get update -qq
apt-get install -y -qq adduser binutils buildah curl dpkg-dev podman python3 runc util-linux >/dev/null
if [ "$(cargo deb --version 2>/dev/null | awk '{ print $2 }')" != "$CARGO_DEB_VERSION" ]; then
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi
cargo deb --version

# PACKAGING_PROFILE=release packages a release build instead (about 50 min cold on two
# cores, so not on CI's path); the default reuses the tests' debug build.
PROFILE="${PACKAGING_PROFILE:-dev}"
step "the binary (profile $PROFILE)"
if [ "$PROFILE" = release ]; then
    cargo build --locked --release --bin vmauto
    BIN="$CARGO_TARGET_DIR/release/vmauto"
else
    # The binary `cargo test` built (with the test build's feature set, so this is a no-op
    # after the test run; `cargo build` would build it again with other features).
    cargo test --locked --no-run --test integration
    BIN="$CARGO_TARGET_DIR/debug/vmauto"
fi
VERSION="$("$BIN" --version | awk '{ print $2 }')"
rm -rf "$WORK" && mkdir -p "$WORK"
figure "$PROFILE binary (as built)" "$(mib "$(stat -c %s "$BIN")")"
if [ -x "$CARGO_TARGET_DIR/release/vmauto" ]; then
    figure "release binary (stripped)" "$(mib "$(stat -c %s "$CARGO_TARGET_DIR/release/vmauto")")"
else
    figure "release binary" "not built (PACKAGING_PROFILE=release $0 builds and packages it)"
fi

# This script installs and purges the package: it refuses to touch an installation it did
# not make (its installs carry a marker in the data directory).
MARKER="$DATA/.packaging-test"
PKG_STATUS="$(dpkg-query -W -f '${db:Status-Status}' vmauto 2>/dev/null || true)"
if [ ! -e "$MARKER" ] && { [ -n "$PKG_STATUS" ] && [ "$PKG_STATUS" != not-installed ] || [ -e "$DATA" ]; }; then
    fail "vmauto ($PKG_STATUS) or $DATA is on this machine, not made by this script; purge it first (apt purge vmauto)"
fi

# A leftover from an interrupted run would spoil the fresh-install checks.
cleanup() {
    [ -n "${SERVICE_PID:-}" ] && kill "$SERVICE_PID" 2>/dev/null || true
    [ -n "${CTR_PID:-}" ] && kill "$CTR_PID" 2>/dev/null || true
    if dpkg-query -W vmauto >/dev/null 2>&1; then dpkg -P vmauto >/dev/null 2>&1 || true; fi
    getent passwd vmauto >/dev/null && userdel vmauto 2>/dev/null || true
    getent group vmauto >/dev/null && groupdel vmauto 2>/dev/null || true
    rm -rf "$DATA" /etc/vmauto
    podman --runtime runc rm -f vmauto-packaging-test >/dev/null 2>&1 || true
    buildah rm -a >/dev/null 2>&1 || true
    buildah rmi -f "localhost/vmauto:$VERSION" >/dev/null 2>&1 || true
}
cleanup
trap cleanup EXIT

step ".deb (cargo-deb, profile $PROFILE)"
# cargo-deb strips the binary; --fast (gzip) keeps CI quick; a release .deb uses xz.
for rev in 1 2; do
    cargo deb --no-build --profile "$PROFILE" --fast --quiet --deb-version "$VERSION-$rev" -o "$WORK/vmauto_$VERSION-$rev.deb"
done
DEB1="$WORK/vmauto_$VERSION-1.deb"
DEB2="$WORK/vmauto_$VERSION-2.deb"
# PACKAGING_UPGRADE_FROM=older.deb installs that package first, so the upgrade crosses real
# schema migrations (e.g. the previous release's .deb).
FIRST_DEB="${PACKAGING_UPGRADE_FROM:-$DEB1}"
dpkg-deb -c "$DEB1" | awk '{ print "  " $1, $2, $6 }'
figure ".deb (gzip)" "$(mib "$(stat -c %s "$DEB1")")"
check "the unit, the binary and the conffile are in the package" \
    sh -c "dpkg-deb -c '$DEB1' | grep -q 'usr/lib/systemd/system/vmauto.service' && dpkg-deb -c '$DEB1' | grep -q 'usr/bin/vmauto' && dpkg-deb -I '$DEB1' conffiles | grep -qx '$CONF'"

# --- the unit, read as systemd would --------------------------------------------------
unit_value() { sed -n "s/^$1=//p" "$UNIT" | tail -n 1; }
EXEC_START="$(unit_value ExecStart)"
RUN_USER="$(unit_value User)"
RUN_GROUP="$(unit_value Group)"
WORKDIR="$(unit_value WorkingDirectory)"
UMASK_VALUE="$(unit_value UMask)"
RW_PATHS="$(unit_value ReadWritePaths)"
ENV_FILE="$(unit_value EnvironmentFile | sed 's/^-//')"
for key in NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes ProtectHome=yes CapabilityBoundingSet= Restart=on-failure; do
    check "unit sets $key" grep -qx "$key" "$UNIT"
done
PORT="$(free_port)"

# Starts vmauto as the unit does; the listen port comes from the environment, as a drop-in
# with Environment= would set it (8080 may be taken on a shared machine).
start_service() {
    local log="$1"
    local t0
    t0=$(date +%s%N)
    unshare --mount --propagation private -- sh -c '
        set -e
        for rw in '"$RW_PATHS"'; do mount --bind "$rw" "$rw"; done
        # ProtectSystem=strict: every other mount read-only, but the API file systems.
        for m in $(awk "{ print \$5 }" /proc/self/mountinfo); do
            case "$m" in /proc*|/sys*|/dev*) ;; '"$RW_PATHS"') ;; *) mount -o remount,bind,ro "$m" 2>/dev/null || true ;; esac
        done
        mount -t tmpfs -o mode=1777 tmpfs /tmp          # PrivateTmp
        mount -t tmpfs -o mode=1777 tmpfs /var/tmp
        mount -t tmpfs -o ro,mode=0755 tmpfs /root      # ProtectHome
        mount -t tmpfs -o ro,mode=0755 tmpfs /home
        umask '"$UMASK_VALUE"'
        cd '"$WORKDIR"'
        # A clean environment, as systemd gives: its variables, EnvironmentFile=, the port.
        exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            HOME='"$WORKDIR"' USER='"$RUN_USER"' LOGNAME='"$RUN_USER"' \
            $(grep -E "^[A-Za-z_][A-Za-z0-9_]*=" '"$ENV_FILE"' 2>/dev/null || true) \
            VMAUTO_SERVER__LISTEN=127.0.0.1:'"$PORT"' \
            setpriv --reuid='"$RUN_USER"' --regid='"$RUN_GROUP"' --init-groups --no-new-privs \
            --bounding-set=-all --inh-caps=-all -- '"$EXEC_START"'
    ' >"$log" 2>&1 &
    SERVICE_PID=$!
    for _ in $(seq 1 600); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/readyz" 2>/dev/null; then
            READY_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
            return 0
        fi
        kill -0 "$SERVICE_PID" 2>/dev/null || { cat "$log"; fail "vmauto exited during start-up"; }
        sleep 0.05
    done
    cat "$log"; fail "vmauto not ready within 30 s"
}

stop_service() { # SIGTERM, as systemd stops it; it must exit 0 (graceful shutdown).
    local pid
    pid="$(pgrep -P "$SERVICE_PID" -x vmauto || echo "$SERVICE_PID")"
    kill -TERM "$pid" 2>/dev/null || true
    local rc=0
    wait "$SERVICE_PID" || rc=$?
    SERVICE_PID=""
    check "vmauto stopped gracefully on SIGTERM (exit $rc)" test "$rc" = 0
}

descendant_named() { # descendant_named PID NAME: the first process NAME below PID
    local pid
    for pid in $(pgrep -P "$1"); do
        if [ "$(ps -o comm= -p "$pid")" = "$2" ]; then echo "$pid"; return 0; fi
        descendant_named "$pid" "$2" && return 0
    done
    return 1
}

as_vmauto() { runuser -u vmauto -- env VMAUTO_SERVER__LISTEN="127.0.0.1:$PORT" "$@"; }

webhook() { # webhook SUBSCRIPTION -> prints the HTTP status
    curl -sS -o "$WORK/webhook.json" -w '%{http_code}' -H 'content-type: application/json' \
        -d "{\"contact_id\":\"CNT-$1\",\"full_name\":\"Package Test\",\"email\":\"pkg@example.com\",\"customData\":{\"event\":\"subscribe\",\"plan\":\"vps-small\",\"subscription_id\":\"$1\"}}" \
        "http://127.0.0.1:$PORT/webhooks/ci/$TOKEN"
}

# Where systemd runs, the package starts the service itself; these checks start it by hand
# (to measure and to see its output), so systemd's instance is stopped first.
quiesce_systemd() {
    if [ -d /run/systemd/system ]; then systemctl stop vmauto 2>/dev/null || true; fi
}

# --- install ----------------------------------------------------------------------------
step "install $(dpkg-deb -f "$FIRST_DEB" Version) on this machine"
dpkg -i "$FIRST_DEB" | tee "$WORK/install.log"
quiesce_systemd
touch "$MARKER"
check "system user vmauto exists, without a login shell" sh -c 'getent passwd vmauto | grep -q ":/usr/sbin/nologin$"'
check "$DATA is vmauto:vmauto 750" test "$(owner_mode "$DATA")" = "vmauto vmauto 750"
check "the appliance key is vmauto's, 600" test "$(owner_mode "$DATA/appliance.key")" = "vmauto vmauto 600"
check "the appliance key holds 32 random bytes in hex" grep -Eqx '[0-9a-f]{64}' "$DATA/appliance.key"
check "$CONF is root:vmauto 640" test "$(owner_mode "$CONF")" = "root vmauto 640"
check "the packaged configuration is valid" as_vmauto vmauto --config "$CONF" config check
if /usr/bin/vmauto admin --help >/dev/null 2>&1; then
    check "the first admin's password is in a root-only file" test "$(owner_mode /etc/vmauto/initial-admin-password)" = "root root 600"
    PW="$(sed -n 's/^password: //p' /etc/vmauto/initial-admin-password)"
    check "the first admin's password is shown in the install output" grep -qF -e "$PW" "$WORK/install.log"
else
    echo "  skipped: admin command missing (the first-admin step of postinst did not run)"
fi
KEY_SUM="$(sha256sum "$DATA/appliance.key")"

step "start as vmauto.service does: $EXEC_START (as $RUN_USER)"
start_service "$WORK/run-1.log"
figure "cold start to ready (fresh store)" "$READY_MS ms"
check "/healthz answers 200" curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz"
check "vmauto healthcheck exits 0" as_vmauto vmauto --config "$CONF" healthcheck
check "the process runs as vmauto" test "$(ps -o user= -p "$(pgrep -P "$SERVICE_PID" -x vmauto || echo "$SERVICE_PID")" | tr -d ' ')" = vmauto
check "the store was created under $DATA" test -d "$DATA/store"
stop_service

step "write data: a billing source in the conffile, then webhooks"
cat >>"$CONF" <<EOF

[sources.ci]
plugin = "ghl-workflow"
signature = "shared_token"
token = "$TOKEN"
token_in = "path"
EOF
start_service "$WORK/run-2.log"
check "a subscribe webhook is accepted (202)" test "$(webhook pkg-sub-1)" = 202
check "a second one is accepted (202)" test "$(webhook pkg-sub-2)" = 202
check "the same webhook again is a duplicate (200)" test "$(webhook pkg-sub-1)" = 200

step "export while running (a snapshot from the appliance), import into an empty store"
as_vmauto vmauto --config "$CONF" db export "$DATA/backup-1.surql"
check "the dump holds both webhooks" test "$(grep -c 'pkg-sub-' "$DATA/backup-1.surql")" -ge 2
RESTORE="$WORK/restore"
mkdir -p "$RESTORE"
"$BIN" --data-dir "$RESTORE" --log-level error db import "$DATA/backup-1.surql"
check "a second import into the same store is refused" sh -c "! '$BIN' --data-dir '$RESTORE' --log-level error db import '$DATA/backup-1.surql' 2>/dev/null"
check "an export by a user without the appliance key is refused" sh -c "! runuser -u nobody -- /usr/bin/vmauto --config /dev/null --set server.listen=127.0.0.1:$PORT --data-dir $DATA db export /tmp/nobody.surql 2>/dev/null"

step "upgrade to $VERSION-2 while it runs (data, key and configuration stay)"
dpkg -i --force-confold "$DEB2" | tee "$WORK/upgrade.log"
quiesce_systemd
stop_service   # systemd restarts it after the upgrade (restart-after-upgrade)
start_service "$WORK/run-3.log"
figure "start to ready (existing store)" "$READY_MS ms"
check "the installed version is $VERSION-2" test "$(dpkg-query -W -f '${Version}' vmauto)" = "$VERSION-2"
check "the edited conffile was kept" grep -q '^\[sources.ci\]' "$CONF"
check "the appliance key is unchanged" test "$(sha256sum "$DATA/appliance.key")" = "$KEY_SUM"
check "no new first-admin password on upgrade" sh -c "! grep -q 'first admin created' '$WORK/upgrade.log'"
check "data survived: the first webhook is still a duplicate (200)" test "$(webhook pkg-sub-1)" = 200
check "/healthz answers 200 after the upgrade" curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz"
stop_service
SCHEMA="$(as_vmauto vmauto --config "$CONF" --log-level error db version)"
echo "  $SCHEMA"
check "the store's schema is this version's (migrations ran at start)" \
    sh -c "echo '$SCHEMA' | grep -Eq 'store schema version ([0-9]+); this binary knows up to \1\$'"

step "a restart in the middle of provisioning converges, with the installed binary"
TEST_VMAUTO_BIN=/usr/bin/vmauto cargo test --locked --test integration -- --test-threads=2 crash::

step "remove: the data and the configuration stay"
dpkg -r vmauto
check "the binary is gone" test ! -e /usr/bin/vmauto
check "the store is still there" test -d "$DATA/store"
check "the key is still there" test "$(sha256sum "$DATA/appliance.key")" = "$KEY_SUM"
check "the configuration is still there" test -e "$CONF"
check "the user is still there" getent passwd vmauto

step "purge: data, configuration and user are gone"
dpkg -P vmauto
check "$DATA is gone" test ! -e "$DATA"
check "/etc/vmauto is gone" test ! -e /etc/vmauto
check "the user is gone" sh -c '! getent passwd vmauto'
check "the group is gone" sh -c '! getent group vmauto'

# --- monitoring ---------------------------------------------------------------------------
step "alert rules (promtool from Debian's prometheus package, unpacked, not installed)"
(cd "$WORK" && apt-get download -qq prometheus)
dpkg-deb -x "$WORK"/prometheus_*.deb "$WORK/prometheus"
"$WORK/prometheus/usr/bin/promtool" check rules packaging/monitoring/alerts.yml
"$WORK/prometheus/usr/bin/promtool" test rules packaging/monitoring/alerts.test.yml
check "the Grafana dashboard is valid JSON" python3 -c 'import json, sys; json.load(open(sys.argv[1]))' packaging/monitoring/grafana-dashboard.json

# --- the container image -----------------------------------------------------------------
step "container image (buildah, from the packaged binary)"
mkdir -p "$WORK/deb-root"
dpkg-deb -x "$DEB1" "$WORK/deb-root"
IMAGE_ARCHIVE="$WORK/vmauto-$VERSION.oci.tar"
bash packaging/container/build.sh "$WORK/deb-root/usr/bin/vmauto" "$IMAGE_ARCHIVE" 2>&1 | grep -v 'HEALTHCHECK is not supported' || true
IMAGE="localhost/vmauto:$VERSION"
figure "packaged binary (stripped)" "$(mib "$(stat -c %s "$WORK/deb-root/usr/bin/vmauto")")"
figure "image (uncompressed, buildah)" "$(buildah images --format '{{.Size}}' "$IMAGE")"
figure "image OCI archive" "$(mib "$(stat -c %s "$IMAGE_ARCHIVE")")"
INSPECT="$(buildah inspect --type image "$IMAGE")"
image_config() { printf '%s' "$INSPECT" | python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }
check "the image runs as a non-root user" test "$(image_config "d['OCIv1']['config']['User']")" = "10001:10001"
check "the image declares the volume /var/lib/vmauto" test "$(image_config "list(d['OCIv1']['config']['Volumes'])")" = "['/var/lib/vmauto']"
check "the image exposes 8080/tcp" test "$(image_config "list(d['OCIv1']['config']['ExposedPorts'])")" = "['8080/tcp']"
check "the image's health check is vmauto healthcheck" test "$(image_config "d['Docker']['config']['Healthcheck']['Test']")" = "['CMD', '/usr/bin/vmauto', 'healthcheck']"
check "the image carries its version label" test "$(image_config "d['OCIv1']['config']['Labels']['org.opencontainers.image.version']")" = "$VERSION"
check "the OCI archive holds an OCI layout" sh -c "tar -tf '$IMAGE_ARCHIVE' | grep -qx 'oci-layout'"

step "run the image"
VOLUME_DIR="$WORK/volume"
rm -rf "$VOLUME_DIR" && mkdir -p "$VOLUME_DIR" && chown 10001:10001 "$VOLUME_DIR"
CPORT="$(free_port)"
# The Docker-format archive keeps the HEALTHCHECK that `podman healthcheck run` uses.
podman load -q -i "${IMAGE_ARCHIVE%.oci.tar}.docker.tar" >/dev/null
# runc rather than crun: crun refuses hosts with cgroups v1 and v2 mixed. Resource limits
# at or below this shell's: without CAP_SYS_RESOURCE a runtime cannot raise them, and
# podman's defaults are higher.
NOFILE="$(ulimit -Hn)"; [ "$NOFILE" = unlimited ] || [ "$NOFILE" -gt 65536 ] && NOFILE=65536
NPROC="$(ulimit -Hu)"; [ "$NPROC" = unlimited ] || [ "$NPROC" -gt 8192 ] && NPROC=8192
NPROC=$((NPROC / 2))
PODMAN=(podman --runtime runc)
t0=$(date +%s%N)
if "${PODMAN[@]}" run -d --name vmauto-packaging-test --ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC" \
    -p "127.0.0.1:$CPORT:8080" -v "$VOLUME_DIR:/var/lib/vmauto" "$IMAGE" >"$WORK/podman.log" 2>&1; then
    RUNNER=podman
else
    # buildah's chroot isolation runs the same image, its user, environment and volume, in
    # the host's network namespace, where no OCI runtime can start a container.
    echo "  podman cannot run containers here: $(grep -m1 -i error "$WORK/podman.log" || tail -n1 "$WORK/podman.log")"
    echo "  running the image with buildah run --isolation chroot instead"
    "${PODMAN[@]}" rm -f vmauto-packaging-test >/dev/null 2>&1 || true
    RUNNER=buildah
    CTR="$(buildah from "$IMAGE")"
    buildah run --isolation chroot -e VMAUTO_SERVER__LISTEN="127.0.0.1:$CPORT" -v "$VOLUME_DIR:/var/lib/vmauto" \
        "$CTR" -- /usr/bin/vmauto serve >"$WORK/container.log" 2>&1 &
    CTR_PID=$!
fi
for _ in $(seq 1 600); do
    curl -fsS -o /dev/null "http://127.0.0.1:$CPORT/readyz" 2>/dev/null && break
    sleep 0.05
done
figure "container start to ready (fresh volume)" "$(( ($(date +%s%N) - t0) / 1000000 )) ms ($RUNNER)"
check "/healthz answers 200 from the container" curl -fsS -o /dev/null "http://127.0.0.1:$CPORT/healthz"
check "the store landed in the volume" test -d "$VOLUME_DIR/store"
check "the appliance key landed in the volume, owned by the image's user" test "$(stat -c '%u %a' "$VOLUME_DIR/appliance.key")" = "10001 600"
if [ "$RUNNER" = podman ]; then
    check "the image's health check (vmauto healthcheck) passes" "${PODMAN[@]}" healthcheck run vmauto-packaging-test
    check "the container's process runs as vmauto" test "$("${PODMAN[@]}" top vmauto-packaging-test user | tail -n +2 | tr -d ' ')" = vmauto
    # (Without systemd, podman logs that it cannot remove the health check's timer.)
    "${PODMAN[@]}" stop -t 30 vmauto-packaging-test >/dev/null 2>&1
    check "the container stopped gracefully on SIGTERM" \
        test "$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' vmauto-packaging-test 2>/dev/null)" = 0
    "${PODMAN[@]}" rm -f vmauto-packaging-test >/dev/null 2>&1
else
    APP_PID="$(descendant_named "$CTR_PID" vmauto || true)"
    check "the container's process runs as uid 10001" test "$(ps -o uid= -p "${APP_PID:-0}" | tr -d ' ')" = 10001
    check "vmauto healthcheck inside the image exits 0" \
        buildah run --isolation chroot -e VMAUTO_SERVER__LISTEN="127.0.0.1:$CPORT" "$CTR" -- /usr/bin/vmauto healthcheck
    kill -TERM "$APP_PID" 2>/dev/null || true
    wait "$CTR_PID" || true
    CTR_PID=""
    buildah rm "$CTR" >/dev/null
fi
podman rmi -f "$IMAGE" >/dev/null 2>&1 || true

step "packaging checks passed"

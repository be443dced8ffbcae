#!/usr/bin/env bash
# Builds the vmauto container image with buildah, without a Docker daemon and without
# pulling a base image: the image holds the vmauto binary, the shared libraries it links
# (taken from the build host's Debian packages: libc6, libgcc-s1), Debian's CA
# certificates, and passwd/group entries for the non-root user it runs as. Writes an OCI
# archive (`podman load -i FILE`, `skopeo copy oci-archive:FILE …`) and, beside it, a
# Docker-format archive, which keeps the HEALTHCHECK (OCI image configs have no such field).
#
#   packaging/container/build.sh [BINARY] [OUTPUT]
#
# BINARY defaults to $CARGO_TARGET_DIR/release/vmauto (build it with
# `cargo build --release --locked`); OUTPUT defaults to vmauto-<version>.oci.tar, and the
# Docker-format archive is OUTPUT with .oci.tar replaced by .docker.tar.
# Needs root (or a user namespace), buildah, and binutils for strip. The image name is
# localhost/vmauto:<version> in buildah's local storage (STORAGE_DRIVER, default vfs,
# which works on any file system).
set -euo pipefail

BIN="${1:-${CARGO_TARGET_DIR:-target}/release/vmauto}"
VERSION="$("$BIN" --version | awk '{ print $2 }')"
OUT="${2:-vmauto-$VERSION.oci.tar}"
DOCKER_OUT="${OUT%.oci.tar}.docker.tar"
[ "$DOCKER_OUT" != "$OUT" ] || DOCKER_OUT="$OUT.docker.tar"
IMAGE="localhost/vmauto:$VERSION"
REVISION="$(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)"
# The uid/gid the appliance runs as inside the image; own a mounted volume with it.
APP_UID=10001

export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"
export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"

ctr="$(buildah from scratch)"
trap 'buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
root="$(buildah mount "$ctr")"

# The binary, without debug symbols.
install -D -m 0755 "$BIN" "$root/usr/bin/vmauto"
strip --strip-debug "$root/usr/bin/vmauto"
# The shared libraries it links and the dynamic loader, at the same paths.
for lib in $(ldd "$BIN" | awk '/=> \// { print $3 } /^[[:space:]]*\/lib/ { print $1 }'); do
    cp -L --parents "$lib" "$root/"
done
# Trust anchors for TLS to Stripe, SMTP servers and SCP (unless provider.sangfor.ca_file).
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
# Users, name resolution, a writable /tmp, the data directory and the config directory.
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nvmauto:x:%s:%s:vmauto:/var/lib/vmauto:/usr/sbin/nologin\n' \
    "$APP_UID" "$APP_UID" > "$root/etc/passwd"
printf 'root:x:0:\nvmauto:x:%s:\n' "$APP_UID" > "$root/etc/group"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
install -d -m 1777 "$root/tmp"
install -d -m 0755 "$root/etc/vmauto"
install -d -m 0750 -o "$APP_UID" -g "$APP_UID" "$root/var/lib/vmauto" "$root/var/lib/vmauto/plugins"

buildah config \
    --user "$APP_UID:$APP_UID" \
    --workingdir /var/lib/vmauto \
    --volume /var/lib/vmauto \
    --port 8080/tcp \
    --env VMAUTO_SERVER__LISTEN=0.0.0.0:8080 \
    --entrypoint '["/usr/bin/vmauto"]' \
    --cmd '["serve"]' \
    --stop-signal SIGTERM \
    --healthcheck 'CMD /usr/bin/vmauto healthcheck' \
    --healthcheck-interval 30s \
    --healthcheck-timeout 5s \
    --healthcheck-start-period 30s \
    --healthcheck-retries 3 \
    --label org.opencontainers.image.title=vmauto \
    --label "org.opencontainers.image.description=VPS provisioning on Sangfor SCP from billing events" \
    --label "org.opencontainers.image.version=$VERSION" \
    --label "org.opencontainers.image.revision=$REVISION" \
    --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --label org.opencontainers.image.licenses=Apache-2.0 \
    --label "io.vmauto.healthcheck=/usr/bin/vmauto healthcheck" \
    "$ctr"

# Docker format keeps HEALTHCHECK in the image (OCI image configs have no such field; the
# label above names the command for runtimes that read only OCI).
buildah commit --quiet --format docker --rm "$ctr" "$IMAGE" >/dev/null
trap - EXIT
rm -f "$OUT" "$DOCKER_OUT"
buildah push --quiet "$IMAGE" "oci-archive:$OUT:$IMAGE"
buildah push --quiet "$IMAGE" "docker-archive:$DOCKER_OUT:$IMAGE"
echo "image $IMAGE written to $OUT (OCI) and $DOCKER_OUT (Docker format, with its HEALTHCHECK)"

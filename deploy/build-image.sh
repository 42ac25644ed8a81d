#!/bin/sh
# Builds Vestibule's container image from `scratch` with buildah, offline: no base image is
# pulled. The image holds the stripped release binary as /vestibule, only the shared libraries
# it links (from `ldd`), the CA bundle and the numeric user 65532 (deploy/image/rootfs.sh, the
# same layout as the Dockerfile's). Needs root (or a user namespace) for buildah, and Debian's
# buildah and libcap2-bin.
#
#   deploy/build-image.sh                 # builds target/release/vestibule if missing
#   IMAGE=localhost/vestibule:dev deploy/build-image.sh
set -eu
cd "$(dirname "$0")/.."
image=${IMAGE:-localhost/vestibule:0.1.0}
bin=${BIN:-target/release/vestibule}
[ -x "$bin" ] || cargo build --release --locked --bin vestibule

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
deploy/image/rootfs.sh "$bin" "$stage/rootfs"
echo "root filesystem:"
(cd "$stage/rootfs" && find . -type f | sort | while read -r f; do printf '  %8s  %s\n' "$(stat -c %s "$f")" "${f#.}"; done)

ctr=$(buildah from scratch)
# buildah copies the file capability (security.capability) along with the file.
buildah copy --quiet "$ctr" "$stage/rootfs/" / >/dev/null
buildah config \
    --user 65532:65532 \
    --entrypoint '["/vestibule"]' \
    --cmd controller \
    --port 80/tcp --port 443/tcp --port 443/udp --port 10254/tcp \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --label org.opencontainers.image.title=vestibule \
    --label org.opencontainers.image.version="$("$bin" --version | awk '{print $NF}')" \
    "$ctr"
buildah commit --quiet --rm "$ctr" "$image" >/dev/null
echo "image: $image"
buildah images --format '  {{.Name}}:{{.Tag}}  {{.ID}}  {{.Size}}' "$image"

#!/bin/sh
# Lays out the root filesystem of Vestibule's image in ROOTFS: the stripped binary as
# /vestibule, exactly the shared libraries `ldd` names for it (on glibc: libc, libm,
# libgcc_s and the loader), the CA bundle, and passwd/group entries for the numeric user
# 65532. Used by deploy/build-image.sh (buildah, offline) and by the Dockerfile's builder
# stage, so that both build the same image.
#
#   deploy/image/rootfs.sh BINARY ROOTFS
set -eu
bin=$1
root=$2
mkdir -p "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
install -m 0755 "$bin" "$root/vestibule"
strip --strip-unneeded "$root/vestibule"
# Bind ports 80 and 443 as a non-root user: the file capability works with the Deployment's
# `capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}`.
setcap cap_net_bind_service=+ep "$root/vestibule"
# Each library at the path the loader looks for it (symlinks resolved). `ldd` prints
# "name => /path (addr)" for libraries, "/path (addr)" for the loader, and no path for the vDSO.
ldd "$bin" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
echo 'nonroot:x:65532:65532:nonroot:/:/sbin/nologin' > "$root/etc/passwd"
echo 'nonroot:x:65532:' > "$root/etc/group"

#!/usr/bin/env bash
# A soak of Vestibule: mixed traffic for --duration seconds (default 1800) while objects churn
# every second; reports RSS, file descriptors, threads and runtime tasks at the start and end
# (bench/soak.py). Not part of CI. Installs h2load (nghttp2-client) when it is missing, builds
# Vestibule and bench/loadgen in release mode. Only 127.0.0.0/8 is used.
#
#   bench/soak.sh                        # 30 minutes, report to docs/soak.md
#   bench/soak.sh --duration 120 --out /tmp/soak.md
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
has_out=0
for a in "${args[@]}"; do [ "$a" = "--out" ] && has_out=1; done
[ "$has_out" = 1 ] || args+=(--out docs/soak.md)
if ! command -v h2load >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nghttp2-client openssl
fi
vbin="${VESTIBULE_BIN:-}"
if [ -z "$vbin" ]; then
  cargo build --release --locked
  vbin=target/release/vestibule
fi
(cd bench/loadgen && cargo build --release --locked)
exec python3 bench/soak.py --vestibule "$vbin" --loadgen bench/loadgen/target/release/loadgen "${args[@]}"

#!/usr/bin/env bash
# Vestibule beside nginx and HAProxy, and its control plane at up to 100,000 Ingresses: one command.
#
#   bench/run.sh            the full run (~30 minutes); writes docs/benchmarks.md
#   bench/run.sh --quick    a smoke test (~3 minutes, 3 s per scenario, 1,000 Ingresses)
#
# Installs what it uses from Debian's packages when missing (nginx and its stream module,
# haproxy, wrk, h2load, ...),
# builds Vestibule (`cargo build --release --locked`) and bench/loadgen, then runs
# bench/harness.py pinned to the load generator's CPU. Every other flag goes to the harness
# (`bench/run.sh --help` lists them); VESTIBULE_BIN=path skips building Vestibule.
# Raw results and logs: bench/out/. Only 127.0.0.0/8 is used; every process started is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

for arg in "$@"; do
  if [ "$arg" = "-h" ] || [ "$arg" = "--help" ]; then
    exec python3 bench/harness.py --vestibule x --loadgen x --help
  fi
done

# Tools, from Debian's packages (apt-get update once, only when something is missing).
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have nginx || need+=(nginx)
# nginx's `stream {}` (the TCP-service scenarios): Debian ships it as a module of its own.
stream_module=/usr/lib/nginx/modules/ngx_stream_module.so
[ -e "$stream_module" ] || need+=(libnginx-mod-stream)
have haproxy || need+=(haproxy)
have wrk || need+=(wrk)
have h2load || need+=(nghttp2-client)
have taskset || need+=(util-linux)
have openssl || need+=(openssl)
have python3 || need+=(python3)
have cc || need+=(build-essential)
if [ "${#need[@]}" -gt 0 ]; then
  echo "bench: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Package scripts must not start system-wide nginx/haproxy services on ports 80/443.
  policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_added=1
  fi
  status=0
  apt-get install -y -qq --no-install-recommends "${need[@]}" || status=$?
  if [ "$policy_added" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ "$status" != 0 ]; then echo "bench: apt-get install ${need[*]} failed" >&2; exit 1; fi
fi
for t in nginx haproxy wrk h2load taskset openssl python3; do
  have "$t" || { echo "bench: $t is still missing" >&2; exit 1; }
done
[ -e "$stream_module" ] || { echo "bench: $stream_module is still missing (libnginx-mod-stream)" >&2; exit 1; }
have cargo || { echo "bench: cargo is required (rustup)" >&2; exit 1; }

# Builds.
if [ -n "${VESTIBULE_BIN:-}" ]; then
  vestibule="$VESTIBULE_BIN"
else
  echo "bench: cargo build --release --locked"
  cargo build --release --locked --bin vestibule
  vestibule="$(cargo metadata --format-version 1 --no-deps 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/vestibule"
fi
echo "bench: building bench/loadgen"
locked=()
[ -f bench/loadgen/Cargo.lock ] && locked=(--locked)
(cd bench/loadgen && cargo build --release "${locked[@]}")
loadgen="bench/loadgen/target/release/loadgen"
[ -x "$vestibule" ] || { echo "bench: no vestibule binary at $vestibule" >&2; exit 1; }

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# The harness and everything it starts (backend, load generators) stay on the load CPU; it
# pins each proxy to the other CPU itself.
load_cpu=0
for ((i = 1; i <= $#; i++)); do
  if [ "${!i}" = "--load-cpu" ]; then j=$((i + 1)); load_cpu="${!j}"; fi
done
exec taskset -c "$load_cpu" python3 bench/harness.py --vestibule "$(realpath "$vestibule")" --loadgen "$(realpath "$loadgen")" "$@"

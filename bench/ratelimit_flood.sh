#!/usr/bin/env bash
# Floods a rate-limited route from many 127.x source addresses and reports Vestibule's RSS
# before and after: the bucket table is bounded (100,000 entries, least recently used evicted),
# so memory must level off however many clients there are. Loopback only; ~20 s.
#
#   bench/ratelimit_flood.sh [ADDRESSES] [SECONDS]     (defaults: 120000 addresses, 15 s)
#
# VESTIBULE_BIN=path picks the binary (default target/release/vestibule, else target/debug).
# Every process started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
addrs="${1:-120000}"
secs="${2:-15}"
bin="${VESTIBULE_BIN:-target/release/vestibule}"
[ -x "$bin" ] || bin=target/debug/vestibule
[ -x "$bin" ] || { echo "build Vestibule first (cargo build)"; exit 1; }

dir="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

echo_port=19091; http_port=19090; health_port=19092
"$bin" echo --listen "127.0.0.1:$echo_port" --service web >/dev/null 2>&1 & pids+=($!)
cat > "$dir/m.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {namespace: default, name: web}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: default, name: web-1, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: $echo_port}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  namespace: default
  name: flood
  annotations: {nginx.ingress.kubernetes.io/limit-rps: "1"}
spec:
  ingressClassName: vestibule
  rules: [{host: flood, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]
YAML
"$bin" serve --manifests "$dir/m.yaml" --bind-address 127.0.0.1 --http-port $http_port --https-port 0 --healthz-port $health_port >/dev/null 2>&1 & vpid=$!; pids+=($vpid)
for _ in $(seq 100); do curl -s -o /dev/null -H 'Host: flood' "http://127.0.0.1:$http_port/" && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$vpid/status"; }
before=$(rss)
python3 - "$http_port" "$addrs" "$secs" <<'PY'
import asyncio, socket, sys, time
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
codes, sent = {}, 0
async def one(i):
    global sent
    src = f"127.{(i >> 16) & 255}.{(i >> 8) & 255}.{(i & 255) or 1}"
    s = socket.socket(); s.setblocking(False); s.bind((src, 0))
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(s, ("127.0.0.1", port))
        await loop.sock_sendall(s, b"GET / HTTP/1.1\r\nHost: flood\r\nConnection: close\r\n\r\n")
        data = await loop.sock_recv(s, 64)
        code = data.split(b" ")[1].decode() if data else "none"
    except OSError as e:
        code = type(e).__name__
    finally:
        s.close()
    codes[code] = codes.get(code, 0) + 1
    sent += 1
async def main():
    end, i = time.time() + secs, 0
    while time.time() < end and i < n:
        await asyncio.gather(*(one(j) for j in range(i, min(i + 200, n))))
        i += 200
    print(f"flood: {sent} requests from {min(i, n)} addresses in {secs - max(0, end - time.time()):.1f} s; answers {codes}")
asyncio.run(main())
PY
after=$(rss)
echo "RSS before ${before} KiB, after ${after} KiB"

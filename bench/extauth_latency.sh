#!/usr/bin/env bash
# What external auth (`auth-url`) adds to each request: the same route with and without it,
# one keep-alive client sending requests one after another, latency percentiles for both and
# the difference. The auth service is an echo backend (it answers 200), reached through
# Vestibule's pooled upstream connections: the connections open to it at the end are counted, so
# the pool shows (a few, not one per request). Loopback only; about 2 x SECONDS.
#
#   bench/extauth_latency.sh [REQUESTS] [SECONDS]      (defaults: 5000 requests, at most 20 s each)
#
# VESTIBULE_BIN=path picks the binary (default target/release/vestibule, else target/debug).
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-5000}"
secs="${2:-20}"
bin="${VESTIBULE_BIN:-target/release/vestibule}"
[ -x "$bin" ] || bin=target/debug/vestibule
[ -x "$bin" ] || { echo "build Vestibule first (cargo build)"; exit 1; }

dir="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

web_port=19191; auth_port=19193; http_port=19190; health_port=19192
"$bin" echo --listen "127.0.0.1:$web_port" --service web >/dev/null 2>&1 & pids+=($!)
"$bin" echo --listen "127.0.0.1:$auth_port" --service auth >/dev/null 2>&1 & pids+=($!)
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
ports: [{name: http, port: $web_port}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {namespace: default, name: plain}
spec:
  rules: [{host: plain, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  namespace: default
  name: guarded
  annotations: {nginx.ingress.kubernetes.io/auth-url: "http://127.0.0.1:$auth_port/auth"}
spec:
  rules: [{host: guarded, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]
YAML
"$bin" serve --manifests "$dir/m.yaml" --bind-address 127.0.0.1 --http-port $http_port --https-port 0 --healthz-port $health_port --access-log off >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null -H 'Host: guarded' "http://127.0.0.1:$http_port/" && break; sleep 0.1; done
python3 - "$http_port" "$requests" "$secs" <<'PY'
import http.client, sys, time
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
def run(host):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    lat, end, errors = [], time.time() + secs, 0
    for _ in range(200):  # warm up: connections pooled on both hops
        c.request("GET", "/", headers={"Host": host}); c.getresponse().read()
    while len(lat) < n and time.time() < end:
        t = time.perf_counter()
        c.request("GET", "/", headers={"Host": host})
        r = c.getresponse(); r.read()
        lat.append(time.perf_counter() - t)
        errors += r.status != 200
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6
    return len(lat), errors, pick(0.5), pick(0.99), sum(lat) / len(lat) * 1e6
rows = {h: run(h) for h in ("plain", "guarded")}
for h, (k, e, p50, p99, mean) in rows.items():
    print(f"{h:8} {k} requests, {e} not 200: p50 {p50:.0f} us, p99 {p99:.0f} us, mean {mean:.0f} us")
(_, _, a50, a99, am), (_, _, b50, b99, bm) = rows["plain"], rows["guarded"]
print(f"auth-url adds: p50 {b50 - a50:.0f} us, p99 {b99 - a99:.0f} us, mean {bm - am:.0f} us per request")
PY
echo "connections open to the auth service at the end: $(ss -Htn state established "( sport = :$auth_port )" | wc -l)"

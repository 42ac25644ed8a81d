#!/usr/bin/env python3
"""Allocations and instructions per request on the HTTP/1.1 keep-alive path.

  cargo build --release --features count-allocations
  python3 bench/allocs.py --vestibule target/release/vestibule [--seconds 5] [--perf]

Starts an nginx backend (a fixed 29-byte body) and Vestibule (`--worker-threads 1`, access log
off, as bench/harness.py runs it) pinned to one CPU, drives `GET /` with wrk (1 thread, 64
keep-alive connections) pinned to the other, and prints one JSON line: requests per second,
allocations per request (read from /debug/allocations before and after the measured run;
needs the `count-allocations` feature) and, with --perf, Vestibule's instructions and cycles
per request from `perf stat`. Instructions per request is the steady figure to compare builds
by on a shared machine; requests per second moves with whatever else runs.
Only 127.0.0.1 is used; every process started is stopped.
"""
import argparse, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

HOST = "bench.example.com"
BENCH = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=1):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except Exception as e:  # noqa: BLE001 - any failure means "not yet"
        return 0, str(e)


def wait_until(f, secs):
    end = time.time() + secs
    while time.time() < end:
        if f():
            return True
        time.sleep(0.05)
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vestibule", required=True)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--proxy-cpu", type=int, default=1)
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--perf", action="store_true", help="also count Vestibule's instructions and cycles with perf stat")
    ap.add_argument("--events", default="", help="more perf stat events, comma-separated (e.g. uprobes on malloc: probe_libc:malloc)")
    ap.add_argument("--record", metavar="FILE", help="perf record -g Vestibule during the run into FILE")
    ap.add_argument("--callgrind", metavar="FILE", help="run Vestibule under valgrind's callgrind, instrumenting only the measured run, "
                    "and report instructions per request (exact, unlike a sampling profile); the profile goes to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="vestibule-allocs-")
    procs = []

    def start(argv, cpu, log):
        p = subprocess.Popen(["taskset", "-c", str(cpu)] + argv, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    try:
        p_backend, p_http, p_https, p_healthz = free_port(), free_port(), free_port(), free_port()
        prefix = os.path.join(work, "backend")
        os.makedirs(os.path.join(prefix, "logs"))
        conf = f"""worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    client_body_temp_path {prefix}/tmp;
    server {{
        listen 127.0.0.1:{p_backend} backlog=4096;
        location / {{ default_type text/plain; return 200 "hello from the bench backend\\n"; }}
    }}
}}
"""
        open(os.path.join(prefix, "nginx.conf"), "w").write(conf)
        start(["nginx", "-p", prefix, "-c", os.path.join(prefix, "nginx.conf")], a.load_cpu, os.path.join(work, "backend.log"))
        mdir = os.path.join(work, "manifests")
        os.makedirs(mdir)
        open(os.path.join(mdir, "bench.yaml"), "w").write(f"""apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: vestibule
spec:
  controller: vestibule.dev/ingress-controller
---
apiVersion: v1
kind: Service
metadata:
  name: bench-backend
  namespace: default
spec:
  ports:
  - name: http
    port: 80
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: bench-backend-1
  namespace: default
  labels:
    kubernetes.io/service-name: bench-backend
addressType: IPv4
ports:
- name: http
  port: {p_backend}
endpoints:
- addresses: ["127.0.0.1"]
  conditions:
    ready: true
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/ssl-redirect: "false"
spec:
  ingressClassName: vestibule
  rules:
  - host: {HOST}
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: bench-backend
            port:
              number: 80
""")
        vlog = os.path.join(work, "vestibule.log")
        wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={a.callgrind}"] if a.callgrind else []
        v = start(wrap + [a.vestibule, "--worker-threads", "1", "serve", "--manifests", mdir, "--bind-address", "127.0.0.1",
                   "--http-port", str(p_http), "--https-port", str(p_https), "--healthz-port", str(p_healthz),
                   "--access-log", "off", "--shutdown-delay", "0", "--shutdown-grace-period", "1s"], a.proxy_cpu, vlog)
        if not wait_until(lambda: get(f"http://127.0.0.1:{p_healthz}/healthz")[0] == 200, 120 if a.callgrind else 20):
            sys.exit(f"Vestibule did not become ready; see {vlog}")
        url = f"http://127.0.0.1:{p_http}/"
        if not wait_until(lambda: subprocess.run(["curl", "-sf", "-H", f"Host: {HOST}", url], capture_output=True).returncode == 0, 10):
            sys.exit("the route does not answer")

        def wrk(secs):
            argv = ["taskset", "-c", str(a.load_cpu), "wrk", "-t1", f"-c{a.conns}", f"-d{max(1, round(secs))}s", "--timeout", "5s",
                    "-s", os.path.join(BENCH, "wrk-report.lua"), "-H", f"Host: {HOST}", url]
            out = subprocess.run(argv, capture_output=True, text=True).stdout
            line = next((l for l in out.splitlines() if l.startswith("{")), None)
            return json.loads(line) if line else None

        def allocs():
            st, body = get(f"http://127.0.0.1:{p_healthz}/debug/allocations")
            return json.loads(body) if st == 200 else None

        wrk(a.warmup)
        vpid = subprocess.run(["pgrep", "-P", str(v.pid)], capture_output=True, text=True).stdout.split() or [str(v.pid)]
        vpid = vpid[0]
        perf = None
        if a.perf:
            perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", ",".join(["instructions,cycles,task-clock"] + ([a.events] if a.events else [])), "-p", vpid],
                                    stderr=subprocess.PIPE, text=True)
        elif a.record:
            perf = subprocess.Popen(["perf", "record", "-F", "1999", "--call-graph", "dwarf,32768", "-o", a.record, "-p", vpid], stderr=subprocess.PIPE, text=True)
        time.sleep(0.2)
        before = allocs()
        if a.callgrind:
            subprocess.run(["callgrind_control", "-i", "on", vpid], capture_output=True)
        w = wrk(a.seconds)
        if a.callgrind:
            subprocess.run(["callgrind_control", "-i", "off", vpid], capture_output=True)
            d = subprocess.run(["callgrind_control", "-d", vpid], capture_output=True, text=True)
        after = allocs()
        r = {}
        if perf:
            perf.send_signal(signal.SIGINT)
            err = perf.communicate(timeout=60)[1]
            if a.perf:
                for line in err.splitlines():
                    f = line.split(",")
                    if len(f) > 2 and f[0].replace(".", "").isdigit():
                        r[f[2]] = float(f[0])
        if not w:
            sys.exit("wrk printed no result")
        n = w["requests"]
        secs = w["duration_us"] / 1e6
        out = {"requests": n, "rps": round(n / secs), "p99_us": w["p99_us"],
               "errors": w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"], "non2xx": w["err_status"]}
        if before and after:
            out["allocs_per_req"] = round((after["allocations"] - before["allocations"]) / n, 2)
            out["alloc_bytes_per_req"] = round((after["bytes"] - before["bytes"]) / n)
        if a.callgrind:
            # callgrind_control -d writes FILE.1 (the measured run alone).
            for _ in range(50):
                text = open(a.callgrind + ".1").read() if os.path.exists(a.callgrind + ".1") else ""
                m = re.search(r"^totals: (\d+)", text, re.M)
                if m:
                    out["instructions_per_req"] = round(int(m.group(1)) / n)
                    break
                time.sleep(0.2)
        if "instructions" in r:
            out["instructions_per_req"] = round(r["instructions"] / n)
        if "cycles" in r:
            out["cycles_per_req"] = round(r["cycles"] / n)
        if "task-clock" in r:
            out["cpu_us_per_req"] = round(r["task-clock"] * 1000 / n, 2)
        for k, val in r.items():
            if k not in ("instructions", "cycles", "task-clock"):
                out[k + "_per_req"] = round(val / n, 2)
        print(json.dumps(out))
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        if a.keep:
            print(f"work directory: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

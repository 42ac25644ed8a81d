#!/usr/bin/env python3
"""A soak: mixed traffic through Vestibule for a long time while its objects churn every second.

Traffic (all light and steady, so the machine is not saturated and what is measured is growth):
HTTP/1.1 keep-alive at a fixed rate (loadgen `rate`), HTTP/2 over TLS (h2load with a request
rate), WebSocket echo round trips on connections that are opened and closed every cycle
(loadgen `ws` with pauses), and full TLS handshakes (loadgen `tls` with pauses). Each generator
runs in cycles of `--cycle` seconds, so connections come and go all through the run.

Churn, once a second, in turn: an Ingress file rewritten with a new path, an EndpointSlice
between one and two endpoints, an Ingress under a new name created and the previous one removed
(as preview environments do), a TLS Secret rewritten with the same certificate.

Every `--sample` seconds it records the proxy's RSS, open file descriptors, threads and the
runtime's alive tasks (`vestibule_runtime_tasks_alive` on /metrics). It prints the samples and
writes a Markdown report (`--out`). Nothing here asserts: the report shows whether the figures
are flat. Run through bench/soak.sh (which builds the binaries and installs h2load).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
from harness import PROCS, http_get, run_cmd, status_kb, wait_until  # noqa: E402

HOST = "soak.example.com"


def manifest_base():
    return f"""apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: vestibule
spec:
  controller: vestibule.dev/ingress-controller
---
apiVersion: v1
kind: Service
metadata:
  name: app
  namespace: default
spec:
  ports:
  - name: http
    port: 80
"""


def secret(crt_b64, key_b64, n):
    return f"""apiVersion: v1
kind: Secret
metadata:
  name: soak-tls
  namespace: default
  annotations:
    soak/revision: "{n}"
type: kubernetes.io/tls
data:
  tls.crt: {crt_b64}
  tls.key: {key_b64}
"""


def slice_(ports):
    eps = "".join(f"""- addresses: ["127.0.0.{i + 1}"]
  conditions:
    ready: true
""" for i in range(len(ports)))
    # One port for every endpoint: the echo backends listen on 127.0.0.1 and 127.0.0.2.
    return f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: app-1
  namespace: default
  labels:
    kubernetes.io/service-name: app
addressType: IPv4
ports:
- name: http
  port: {ports[0]}
endpoints:
{eps}"""


def ingress(name, host, extra_path=None):
    paths = "".join(f"""      - path: {p}
        pathType: Prefix
        backend:
          service:
            name: app
            port:
              number: 80
""" for p in ([extra_path] if extra_path else []) + ["/"])
    return f"""apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/ssl-redirect: "false"
spec:
  ingressClassName: vestibule
  tls:
  - hosts: [{host}]
    secretName: soak-tls
  rules:
  - host: {host}
    http:
      paths:
{paths}"""


def write(path, text):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def metric(port, name):
    status, body = http_get(port, "/metrics", host="localhost")
    if status != 200:
        return None
    found = re.findall(rb"(?m)^" + name.encode() + rb"(?:\{[^}]*\})? (\d+(?:\.\d+)?)", body)
    return sum(float(v) for v in found) if found else None


def sample(pid, healthz, t0):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {
        "t": round(time.monotonic() - t0),
        "rss_mb": round(status_kb(pid, "VmRSS") / 1024, 1),
        "fds": fds,
        "threads": int(status_kb(pid, "Threads")),
        "tasks": metric(healthz, "vestibule_runtime_tasks_alive"),
        "connections": metric(healthz, "vestibule_connections_active"),
    }


class Load(threading.Thread):
    """One generator run again and again until the end, each run `cycle` seconds."""

    def __init__(self, name, argv_for, cycle, end):
        super().__init__(daemon=True)
        self.name, self.argv_for, self.cycle, self.end = name, argv_for, cycle, end
        self.requests = self.errors = self.runs = 0
        self.failed_runs = []

    def run(self):
        while time.monotonic() < self.end - 1:
            d = max(1, min(self.cycle, self.end - time.monotonic()))
            rc, out, err = run_cmd(self.argv_for(d), d + 30)
            self.runs += 1
            req, errs = parse_load(self.name, out)
            self.requests += req
            self.errors += errs
            if rc != 0 or req == 0:
                self.failed_runs.append((rc, (err or out)[-300:]))


def parse_load(name, out):
    if name == "h2":
        m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
        return (int(m.group(2)), int(m.group(3)) + int(m.group(4))) if m else (0, 0)
    for line in out.splitlines()[::-1]:
        try:
            j = json.loads(line)
            return int(j.get("requests", 0)), int(j.get("errors", 0))
        except ValueError:
            continue
    return 0, 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vestibule", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--duration", type=float, default=1800)
    ap.add_argument("--sample", type=float, default=60)
    ap.add_argument("--cycle", type=float, default=60)
    ap.add_argument("--port-base", type=int, default=22000)  # below the ephemeral range
    ap.add_argument("--out", default=None, help="Markdown report to write")
    a = ap.parse_args()
    # The commit the run starts from (the binary is built from it by bench/soak.sh).
    a.commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    base = a.port_base
    p_http, p_https, p_healthz, p_echo = base, base + 1, base + 2, base + 3
    work = tempfile.mkdtemp(prefix="vestibule-soak-")
    mdir = os.path.join(work, "manifests")
    os.makedirs(mdir)
    crt, key = os.path.join(work, "soak.crt"), os.path.join(work, "soak.key")
    rc, _, err = run_cmd(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                          "-days", "30", "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST},DNS:*.soak.example.com",
                          "-keyout", key, "-out", crt], 30)
    if rc != 0:
        raise SystemExit("openssl: " + err)
    import base64
    crt_b64 = base64.b64encode(open(crt, "rb").read()).decode()
    key_b64 = base64.b64encode(open(key, "rb").read()).decode()
    for i in range(2):
        PROCS.start(f"echo{i}", [a.vestibule, "echo", "--listen", f"127.0.0.{i + 1}:{p_echo}"], log=os.path.join(work, f"echo{i}.log"))
    write(os.path.join(mdir, "base.yaml"), manifest_base())
    write(os.path.join(mdir, "secret.yaml"), secret(crt_b64, key_b64, 0))
    write(os.path.join(mdir, "slice.yaml"), slice_([p_echo, p_echo]))
    write(os.path.join(mdir, "main.yaml"), ingress("main", HOST))
    write(os.path.join(mdir, "preview.yaml"), ingress("preview-0", "pr-0.soak.example.com"))
    argv = [a.vestibule, "--worker-threads", "1", "serve", "--manifests", mdir, "--bind-address", "127.0.0.1",
            "--http-port", str(p_http), "--https-port", str(p_https), "--healthz-port", str(p_healthz),
            "--access-log", "off", "--default-ssl-certificate", "default/soak-tls", "--shutdown-delay", "0", "--shutdown-grace-period", "1s"]
    proxy = PROCS.start("vestibule", argv, log=os.path.join(work, "vestibule.log"))
    if not wait_until(lambda: http_get(p_http, "/", host=HOST)[0] == 200, 20):
        raise SystemExit("Vestibule did not serve; see " + os.path.join(work, "vestibule.log"))

    start = time.monotonic()
    end = start + a.duration
    lg = a.loadgen
    addr_http, addr_https = f"127.0.0.1:{p_http}", f"127.0.0.1:{p_https}"
    loads = [
        Load("h1", lambda d: [lg, "rate", "--addr", addr_http, "--host", HOST, "--rate", "200", "--connections", "16", "--duration", str(d)], a.cycle, end),
        Load("h2", lambda d: ["h2load", "-t1", "-c", "4", "-m", "8", "--rps", "25", "-D", str(max(1, int(d))), "--connect-to", addr_https, f"https://{HOST}:{p_https}/"], a.cycle, end),
        Load("ws", lambda d: [lg, "ws", "--addr", addr_http, "--host", HOST, "--path", "/ws", "--connections", "8", "--pause-ms", "20", "--duration", str(d)], a.cycle, end),
        Load("tls", lambda d: [lg, "tls", "--addr", addr_https, "--host", HOST, "--connections", "2", "--pause-ms", "50", "--duration", str(d)], a.cycle, end),
    ]
    for load in loads:
        load.start()

    changes = {"ingress path": 0, "endpoints": 0, "preview renamed": 0, "secret": 0}
    samples = []
    time.sleep(min(10, a.duration / 10))  # warm-up: connections open, pools fill
    samples.append(sample(proxy.pid, p_healthz, start))
    print(json.dumps(samples[-1]), flush=True)
    next_sample = time.monotonic() + a.sample
    tick = 0
    while time.monotonic() < end:
        kind = tick % 4
        if kind == 0:
            write(os.path.join(mdir, "main.yaml"), ingress("main", HOST, f"/v{tick}"))
            changes["ingress path"] += 1
        elif kind == 1:
            write(os.path.join(mdir, "slice.yaml"), slice_([p_echo] * (1 + (tick // 4) % 2)))
            changes["endpoints"] += 1
        elif kind == 2:
            write(os.path.join(mdir, "preview.yaml"), ingress(f"preview-{tick}", f"pr-{tick}.soak.example.com"))
            changes["preview renamed"] += 1
        else:
            write(os.path.join(mdir, "secret.yaml"), secret(crt_b64, key_b64, tick))
            changes["secret"] += 1
        tick += 1
        time.sleep(1)
        if proxy.poll() is not None:
            raise SystemExit("Vestibule exited during the soak; see " + os.path.join(work, "vestibule.log"))
        if time.monotonic() >= next_sample:
            samples.append(sample(proxy.pid, p_healthz, start))
            print(json.dumps(samples[-1]), flush=True)
            next_sample += a.sample
    # The last periodic sample is the end under load; then one after the generators have
    # stopped and their connections closed: what is left then is what the process holds.
    for load in loads:
        load.join(timeout=60)
    time.sleep(3)
    quiet = sample(proxy.pid, p_healthz, start)
    print(json.dumps(quiet), flush=True)
    PROCS.stop_all()
    report(a, samples, quiet, loads, changes)


def report(a, samples, quiet, loads, changes):
    first, last = samples[0], samples[-1]
    commit = a.commit
    lines = [f"# Soak: {a.duration / 60:.0f} minutes of mixed traffic while objects churn every second", "",
             f"Generated by `bench/soak.sh --duration {a.duration:.0f}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}.",
             "", "Under load, after the warm-up and at the end; then once the traffic has stopped:", "",
             "| | under load, start | under load, end | change | traffic stopped |", "| --- | --- | --- | --- | --- |"]
    for k, label in [("rss_mb", "RSS, MB"), ("fds", "open file descriptors"), ("threads", "threads"), ("tasks", "runtime tasks alive"), ("connections", "client connections")]:
        f, l = first.get(k), last.get(k)
        ch = f"{(l - f):+g}" if f is not None and l is not None else ""
        lines.append(f"| {label} | {f} | {l} | {ch} | {quiet.get(k)} |")
    lines += ["", "| traffic | runs | requests | errors |", "| --- | --- | --- | --- |"]
    for load in loads:
        lines.append(f"| {load.name} | {load.runs} | {load.requests:,} | {load.errors} |")
    lines += ["", "Changes applied: " + ", ".join(f"{v:,} {k}" for k, v in changes.items()) + ".", "",
              "Samples (seconds since start):", "", "| t | RSS MB | fds | threads | tasks | client connections |", "| --- | --- | --- | --- | --- | --- |"]
    for s in samples + [quiet]:
        lines.append(f"| {s['t']} | {s['rss_mb']} | {s['fds']} | {s['threads']} | {s['tasks']} | {s['connections']} |")
    failed = [(load.name, f) for load in loads for f in load.failed_runs]
    if failed:
        lines += ["", "Generator runs that failed or served nothing:", ""] + [f"- {n}: exit {rc}: `{t.strip()}`" for n, (rc, t) in failed[:10]]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()

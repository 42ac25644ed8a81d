#!/usr/bin/env python3
"""Vestibule side by side with nginx and HAProxy, and its control plane at scale.

Run through bench/run.sh (which installs the tools and builds the binaries). This script:
  1. data plane: starts one backend (nginx, fixed small body; `vestibule echo` for WebSocket)
     and, in turn, each proxy pinned to one CPU; drives each scenario with wrk, h2load or
     bench/loadgen from the other CPU; records requests/s, latency, the proxy's CPU seconds
     and peak RSS;
  2. control plane: N Ingresses as manifest files for Vestibule and the equivalent nginx.conf
     for nginx; start-to-ready, RSS, compile time, change-to-live under a light load;
  3. writes the Markdown report (docs/benchmarks.md) and bench/out/results.json.

Every process it starts is in its own session and is stopped on exit. Every load is bounded
in time. Only 127.0.0.0/8 is used.
"""

import argparse
import atexit
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in bench/
import h3  # noqa: E402  (bench/h3.py: the HTTP/3 scenario)
import l4  # noqa: E402  (bench/l4.py: the TCP-service scenarios)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

HOST = "bench.example.com"
BODY = "hello from the bench backend\n"
TARGETS = ["backend", "nginx", "haproxy", "vestibule"]
PROXIES = ["nginx", "haproxy", "vestibule"]


# ----------------------------------------------------------------------------------------------
# processes


class Procs:
    """Processes we started, each in its own session; stopped on exit, newest first."""

    def __init__(self):
        self.live = []  # (name, Popen)

    def start(self, name, argv, cpu=None, log=None, env=None, cwd=None):
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + list(argv)
        out = open(log, "ab") if log else subprocess.DEVNULL
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=cwd)
        if log:
            out.close()
        self.live.append((name, p))
        return p

    def stop(self, p, sig=signal.SIGTERM, wait=8.0):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        # The session may hold children (nginx workers) even after the leader exited.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        self.live = [(n, q) for (n, q) in self.live if q is not p]

    def stop_all(self):
        for _, p in reversed(list(self.live)):
            self.stop(p, wait=3.0)


PROCS = Procs()


def _on_signal(signum, _frame):
    PROCS.stop_all()
    sys.exit(128 + signum)


def all_stats():
    """pid -> (ppid, utime+stime ticks) for every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rfind(")") + 2:].split()
        out[int(d)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
    return out


def tree(pid):
    """pid and all its descendants."""
    st = all_stats()
    pids, frontier = [pid], [pid]
    while frontier:
        frontier = [c for c, (pp, _) in st.items() if pp in frontier]
        pids += frontier
    return [p for p in pids if p in st]


def cpu_seconds(pid):
    st = all_stats()
    return sum(st[p][1] for p in tree(pid) if p in st) / CLK_TCK


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def mem_mb(pid, field):
    """Sum of a /proc/PID/status field (VmHWM, VmRSS) over the process tree, in MB."""
    return sum(status_kb(p, field) for p in tree(pid)) / 1024.0


def cpu_times():
    """cpuN -> (busy, total) jiffies."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if re.match(r"cpu\d+ ", line):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + (v[4] if len(v) > 4 else 0)
                out[line.split()[0]] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


def busy_pct(before, after, cpu):
    b0, t0 = before.get(cpu, (0, 0))
    b1, t1 = after.get(cpu, (0, 0))
    return 100.0 * (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


# ----------------------------------------------------------------------------------------------
# tiny HTTP client (one connection per call; new connections see a reloaded nginx)


def http_get(port, path, host=HOST, tls=False, sni=None, timeout=2.0, read_body=True):
    """(status, body) or (None, error text)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return None, str(e)
    try:
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname=sni or host)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            c = s.recv(65536)
            if not c:
                break
            data += c
        head, _, body = data.partition(b"\r\n\r\n")
        parts = head.split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return None, "bad response: %r" % head[:80]
        status = int(parts[1])
        if read_body:
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            want = int(m.group(1)) if m else None
            while want is None or len(body) < want:
                c = s.recv(262144)
                if not c:
                    break
                body += c
        return status, body
    except (OSError, ssl.SSLError) as e:
        return None, str(e)
    finally:
        try:
            s.close()
        except OSError:
            pass


def wait_until(pred, timeout, interval=0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def pct(values, p):
    """Nearest-rank percentile."""
    if not values:
        return None
    s = sorted(values)
    k = max(1, int(-(-p * len(s) // 100)))
    return s[min(k, len(s)) - 1]


def run_cmd(argv, timeout, cpu=None):
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + list(argv)
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        return -1, (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""), "timed out"


# ----------------------------------------------------------------------------------------------
# the bench


class Bench:
    def __init__(self, a):
        self.a = a
        self.quick = a.quick
        base = a.port_base
        self.p_backend = base + 1  # nginx backend, plain HTTP (on 127.0.0.1 ... 127.0.0.10)
        self.p_backend_tls = base + 2  # the same backend over TLS + h2 (the ceiling of TLS scenarios)
        self.p_echo = base + 3  # vestibule echo (WebSocket)
        self.p_http = base + 80
        self.p_https = base + 443
        self.p_healthz = base + 254
        self.l4 = l4.Ports(base)  # TCP services: base+4, +5 (backend), +10, +11 (proxies)
        self.want_l4 = False  # set by run() when a TCP scenario is selected
        ncpu = os.cpu_count() or 1
        self.cpu_proxy = a.proxy_cpu if ncpu > 1 else 0
        self.cpu_load = a.load_cpu
        self.duration = a.duration or (3 if self.quick else 10)
        self.warmup = a.warmup if a.warmup is not None else (0.5 if self.quick else 2)
        self.work = tempfile.mkdtemp(prefix="vestibule-bench-")
        os.chmod(self.work, 0o755)  # nginx workers run as an unprivileged user
        self.out = os.path.join(BENCH, "out")
        self.logs = os.path.join(self.out, "logs")
        shutil.rmtree(self.out, ignore_errors=True)
        os.makedirs(self.logs)
        self.vbin = a.vestibule
        self.loadgen = a.loadgen
        self.results = {"scenarios": {}, "control_plane": {}, "notes": [], "commands": {}, "failures": []}
        self.configs = {}
        self.vestibule_log_lines = {}
        self.started = time.time()

    # -------------------------------------------------------------------- setup

    def log(self, msg):
        print(f"[{time.time() - self.started:7.1f}s] {msg}", flush=True)

    def fail(self, what):
        self.log("FAILED: " + what)
        self.results["failures"].append(what)

    def make_cert(self):
        d = os.path.join(self.work, "tls")
        os.makedirs(d)
        self.crt, self.key = os.path.join(d, "bench.crt"), os.path.join(d, "bench.key")
        rc, _, err = run_cmd(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                              "-nodes", "-days", "30", "-subj", f"/CN={HOST}",
                              "-addext", f"subjectAltName=DNS:{HOST},DNS:*.bench.local",
                              "-keyout", self.key, "-out", self.crt], 30)
        if rc != 0:
            raise SystemExit("openssl could not make the benchmark certificate: " + err)
        self.pem = os.path.join(d, "bench.pem")
        with open(self.pem, "w") as f:
            f.write(open(self.crt).read() + open(self.key).read())
        import base64
        self.crt_b64 = base64.b64encode(open(self.crt, "rb").read()).decode()
        self.key_b64 = base64.b64encode(open(self.key, "rb").read()).decode()

    def start_backend(self):
        """nginx with a fixed small body and a 1 MiB file, and `vestibule echo`, on the load CPU."""
        prefix = os.path.join(self.work, "backend")
        os.makedirs(os.path.join(prefix, "logs"))
        with open(os.path.join(prefix, "1m.bin"), "wb") as f:
            f.write(b"v" * (1 << 20))
        listens = "\n".join(f"        listen 127.0.0.{i}:{self.p_backend} backlog=4096;" for i in range(1, 11))
        conf = f"""# The backend every proxy gets: a fixed small body, or 1 MiB from a file.
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    client_body_temp_path {prefix}/tmp;
    server {{
{listens}
        listen 127.0.0.1:{self.p_backend_tls} ssl http2 backlog=4096;
        server_name _;
        ssl_certificate {self.crt};
        ssl_certificate_key {self.key};
        ssl_session_tickets off;
        location = /1m {{ alias {prefix}/1m.bin; default_type application/octet-stream; }}
        location / {{ default_type text/plain; return 200 "{BODY.strip()}\\n"; }}
    }}
}}
"""
        path = os.path.join(prefix, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.configs["backend nginx.conf"] = conf
        argv = ["nginx", "-p", prefix, "-c", path]
        self.results["commands"]["backend"] = "taskset -c %d %s" % (self.cpu_load, shlex.join(argv))
        self.backend = PROCS.start("backend", argv, cpu=self.cpu_load, log=os.path.join(self.logs, "backend.log"))
        argv = [self.vbin, "echo", "--listen", f"127.0.0.1:{self.p_echo}"]
        self.results["commands"]["echo"] = "taskset -c %d %s" % (self.cpu_load, shlex.join(argv))
        self.echo = PROCS.start("echo", argv, cpu=self.cpu_load, log=os.path.join(self.logs, "echo.log"))
        ok = wait_until(lambda: http_get(self.p_backend, "/")[0] == 200, 10) and \
            wait_until(lambda: http_get(self.p_echo, "/")[0] == 200, 10)
        if not ok:
            raise SystemExit("the backend did not answer; see bench/out/logs/backend.log and echo.log")
        # Something else on the ports answers too: the run would measure it instead.
        time.sleep(0.3)
        for name, p in (("backend", self.backend), ("echo", self.echo)):
            if p.poll() is not None:
                raise SystemExit(f"the {name} exited (code {p.returncode}), yet its port answers: another process "
                                 f"holds it; see bench/out/logs/{name}.log")
        if self.want_l4:
            argv = l4.backend_argv(self.loadgen, self.l4)
            self.results["commands"]["tcp-backend"] = "taskset -c %d %s" % (self.cpu_load, shlex.join(argv))
            log = os.path.join(self.logs, "tcp-backend.log")
            self.tcp_backend = PROCS.start("tcp-backend", argv, cpu=self.cpu_load, log=log)
            # Not a connection before it has bound: a connect to a port nobody listens on can
            # pick that very port as its own (the bench's ports are in the ephemeral range) and
            # connect to itself, and its TIME_WAIT then keeps the backend from binding.
            wait_until(lambda: self.tcp_backend.poll() is not None or "tcp-backend:" in open(log, errors="replace").read(), 10)
            problem = l4.check(self.l4.source, "source") or l4.check(self.l4.echo, "echo")
            if problem:
                raise SystemExit(f"the TCP backend did not answer ({problem}); see bench/out/logs/tcp-backend.log")

    # -------------------------------------------------------------------- proxies

    def nginx_location(self, path, upstream, indent="        "):
        """A location as ingress-nginx writes it (the parts that matter without Lua)."""
        lines = [
            f"location {path} {{",
            f'    set $proxy_upstream_name "{upstream}";',
            "    proxy_set_header Host $host;",
            "    proxy_set_header Upgrade $http_upgrade;",
            "    proxy_set_header Connection $connection_upgrade;",
            "    proxy_set_header X-Request-ID $request_id;",
            "    proxy_set_header X-Real-IP $remote_addr;",
            "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "    proxy_set_header X-Forwarded-Host $host;",
            "    proxy_set_header X-Forwarded-Port $server_port;",
            "    proxy_set_header X-Forwarded-Proto $scheme;",
            "    proxy_set_header X-Forwarded-Scheme $scheme;",
            "    proxy_set_header X-Scheme $scheme;",
            "    proxy_set_header X-Original-URI $request_uri;",
            '    proxy_set_header Proxy "";',
            "    proxy_connect_timeout 5s;",
            "    proxy_send_timeout 60s;",
            "    proxy_read_timeout 60s;",
            "    proxy_buffering off;",
            "    proxy_buffer_size 4k;",
            "    proxy_buffers 4 4k;",
            "    proxy_request_buffering on;",
            "    proxy_http_version 1.1;",
            "    proxy_next_upstream error timeout;",
            "    proxy_next_upstream_tries 3;",
            f"    proxy_pass http://{upstream};",
            "}",
        ]
        return "".join(indent + l + "\n" for l in lines)

    def nginx_http_head(self, prefix, names_hash=512):
        return f"""worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log notice;
worker_shutdown_timeout 240s;
events {{
    worker_connections 16384;
    multi_accept on;
    use epoll;
}}
http {{
    # As ingress-nginx's defaults: keep-alive, TLS, buffering, HTTP/2.
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    # ingress-nginx's default is 1000; since nginx 1.19.7 this also ends HTTP/2 connections (GOAWAY),
    # which h2load does not survive (it does not reconnect). Raised: see the report's method.
    keepalive_requests 1000000;
    reset_timedout_connection on;
    client_header_buffer_size 1k;
    large_client_header_buffers 4 8k;
    client_body_buffer_size 8k;
    client_max_body_size 1m;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    server_tokens off;
    server_names_hash_max_size {names_hash};
    server_names_hash_bucket_size 128;
    http2_max_concurrent_streams 128;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_prefer_server_ciphers on;
    ssl_session_cache shared:SSL:10m;
    ssl_session_timeout 10m;
    ssl_session_tickets off;
    ssl_buffer_size 4k;
    ssl_ecdh_curve auto;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}
"""

    def nginx_conf(self, prefix):
        upstream = lambda name, port: f"""    upstream {name} {{
        server 127.0.0.1:{port} max_fails=0;
        keepalive 320;
        keepalive_time 1h;
        keepalive_timeout 60s;
        keepalive_requests 10000;
    }}
"""
        return ((l4.nginx_load_module() if self.want_l4 else "") + self.nginx_http_head(prefix)
                + upstream("default-bench-backend-80", self.p_backend)
                + upstream("default-echo-80", self.p_echo)
                + f"""    server {{
        # ingress-nginx's catch-all: 404 for unknown hosts, the default certificate.
        listen 127.0.0.1:{self.p_http} default_server reuseport backlog=4096;
        listen 127.0.0.1:{self.p_https} default_server ssl http2 reuseport backlog=4096;
        server_name _;
        ssl_certificate {self.crt};
        ssl_certificate_key {self.key};
        location / {{ return 404; }}
    }}
    server {{
        server_name {HOST};
        listen 127.0.0.1:{self.p_http};
        listen 127.0.0.1:{self.p_https} ssl http2;
        ssl_certificate {self.crt};
        ssl_certificate_key {self.key};
"""
                + self.nginx_location("/ws", "default-echo-80")
                + self.nginx_location("/", "default-bench-backend-80")
                + "    }\n}\n" + (l4.nginx_stream(self.l4) if self.want_l4 else ""))

    def haproxy_conf(self):
        return self.haproxy_http_conf() + (l4.haproxy(self.l4) if self.want_l4 else "")

    def haproxy_http_conf(self):
        return f"""global
    nbthread 1
    maxconn 8000
    tune.ssl.default-dh-param 2048
    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
    ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305

defaults
    mode http
    maxconn 8000
    option http-keep-alive
    option forwardfor
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 60s
    timeout http-keep-alive 75s
    timeout tunnel 1h

frontend ingress
    bind 127.0.0.1:{self.p_http}
    bind 127.0.0.1:{self.p_https} ssl crt {self.pem} alpn h2,http/1.1
    http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
    http-request set-header X-Forwarded-Proto http unless {{ ssl_fc }}
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Port %[dst_port]
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Request-ID %[uuid] unless {{ req.hdr(x-request-id) -m found }}
    acl bench_host hdr(host),field(1,:) -i {HOST}
    acl ws_path path_beg /ws
    use_backend default-echo-80 if bench_host ws_path
    use_backend default-bench-backend-80 if bench_host
    default_backend default-404

backend default-bench-backend-80
    server s1 127.0.0.1:{self.p_backend} maxconn 20000

backend default-echo-80
    server s1 127.0.0.1:{self.p_echo} maxconn 20000

backend default-404
    http-request return status 404
"""

    def vestibule_manifests(self, d):
        os.makedirs(d, exist_ok=True)
        text = f"""apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: vestibule
spec:
  controller: vestibule.dev/ingress-controller
---
apiVersion: v1
kind: Secret
metadata:
  name: bench-tls
  namespace: default
type: kubernetes.io/tls
data:
  tls.crt: {self.crt_b64}
  tls.key: {self.key_b64}
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
  port: {self.p_backend}
endpoints:
- addresses: ["127.0.0.1"]
  conditions:
    ready: true
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: default
spec:
  ports:
  - name: http
    port: 80
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: default
  labels:
    kubernetes.io/service-name: echo
addressType: IPv4
ports:
- name: http
  port: {self.p_echo}
endpoints:
- addresses: ["127.0.0.1"]
  conditions:
    ready: true
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: vestibule-bench
  namespace: default
data:
  # As nginx's keepalive_requests here (see the method): h2load does not reconnect after GOAWAY.
  keep-alive-requests: "1000000"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  namespace: default
  annotations:
    # Plain HTTP is measured too: no redirect to HTTPS (nginx and HAProxy do not redirect either).
    nginx.ingress.kubernetes.io/ssl-redirect: "false"
spec:
  ingressClassName: vestibule
  tls:
  - hosts: [{HOST}]
    secretName: bench-tls
  rules:
  - host: {HOST}
    http:
      paths:
      - path: /ws
        pathType: Prefix
        backend:
          service:
            name: echo
            port:
              number: 80
      - path: /
        pathType: Prefix
        backend:
          service:
            name: bench-backend
            port:
              number: 80
""" + (l4.vestibule_manifests(self.l4) if self.want_l4 else "")
        with open(os.path.join(d, "bench.yaml"), "w") as f:
            f.write(text)
        self.configs["Vestibule manifests (bench.yaml; certificate data elided)"] = \
            text.replace(self.crt_b64, "<base64 certificate>").replace(self.key_b64, "<base64 key>")

    def vestibule_argv(self, manifests, default_cert=True):
        return [self.vbin, "--worker-threads", "1", "serve", "--manifests", manifests,
                "--bind-address", "127.0.0.1", "--http-port", str(self.p_http), "--https-port", str(self.p_https),
                "--healthz-port", str(self.p_healthz), "--access-log", "off"] + \
            (["--default-ssl-certificate", "default/bench-tls", "--configmap", "default/vestibule-bench"] if default_cert else []) + \
            ["--shutdown-delay", "0", "--shutdown-grace-period", "1s"]

    def prepare_proxies(self):
        d = os.path.join(self.work, "nginx")
        os.makedirs(os.path.join(d, "logs"))
        os.makedirs(os.path.join(d, "tmp"))
        self.nginx_dir = d
        conf = self.nginx_conf(d)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(conf)
        self.configs["nginx.conf (the proxy)"] = conf
        conf = self.haproxy_conf()
        self.haproxy_cfg = os.path.join(self.work, "haproxy.cfg")
        with open(self.haproxy_cfg, "w") as f:
            f.write(conf)
        self.configs["haproxy.cfg"] = conf
        self.vmanifests = os.path.join(self.work, "vestibule")
        self.vestibule_manifests(self.vmanifests)
        self.proxy_argv = {
            "nginx": ["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf")],
            "haproxy": ["haproxy", "-db", "-f", self.haproxy_cfg],
            "vestibule": self.vestibule_argv(self.vmanifests) + (l4.vestibule_args() if self.want_l4 else []),
        }
        for name, argv in self.proxy_argv.items():
            self.results["commands"][name] = "taskset -c %d %s" % (self.cpu_proxy, shlex.join(argv))
        # The same proxies with two workers, for the scenarios that give them both cores.
        nginx2 = os.path.join(d, "nginx-2.conf")
        with open(nginx2, "w") as f:
            f.write(self.nginx_conf(d).replace("worker_processes 1;", "worker_processes 2;", 1))
        haproxy2 = os.path.join(self.work, "haproxy-2.cfg")
        with open(haproxy2, "w") as f:
            f.write(self.haproxy_conf().replace("nbthread 1\n", "nbthread 2\n", 1))
        v2 = list(self.proxy_argv["vestibule"])
        v2[v2.index("--worker-threads") + 1] = "2"
        self.proxy_argv_2 = {
            "nginx": ["nginx", "-p", d, "-c", nginx2],
            "haproxy": ["haproxy", "-db", "-f", haproxy2],
            "vestibule": v2,
        }

    def start_proxy(self, name, tag, workers=1, cpus=None):
        """Starts `name` on the proxy CPU (or on `cpus`) with one worker (or two); returns its
        Popen once it routes, or None."""
        log = os.path.join(self.logs, f"{name}-{tag}.log")
        env = dict(os.environ, NO_COLOR="1")
        argv = self.proxy_argv_2[name] if workers == 2 else self.proxy_argv[name]
        p = PROCS.start(name, argv, cpu=self.cpu_proxy if cpus is None else cpus, log=log, env=env)
        if name == "vestibule":
            ready = wait_until(lambda: p.poll() is None and http_get(self.p_healthz, "/healthz")[0] == 200, 30)
        else:
            ready = True
        ready = ready and wait_until(lambda: p.poll() is None and http_get(self.p_http, "/")[0] == 200, 15)
        if not ready:
            self.fail(f"{name} ({tag}) did not start or route; see bench/out/logs/{name}-{tag}.log")
            PROCS.stop(p)
            return None
        return p

    # -------------------------------------------------------------------- load tools

    def addr_for(self, target, scheme):
        if target == "backend":
            return self.p_backend_tls if scheme == "https" else self.p_backend
        return self.p_https if scheme == "https" else self.p_http

    def l4_port(self, sc, target):
        if target == "backend":
            return self.l4.source if sc["l4"] == "source" else self.l4.echo
        return self.l4.proxy_source if sc["l4"] == "source" else self.l4.proxy_echo

    def load_argv(self, sc, target, duration, rate=None, logfile=None):
        """The load command of scenario `sc` against `target`."""
        kind = sc["tool"]
        if sc.get("l4"):
            return l4.load_argv(self.loadgen, sc, self.l4_port(sc, target), duration)
        if kind == "h3":
            return h3.load_argv(self.loadgen, sc, self.p_https, HOST, duration)
        scheme = "https" if kind in ("tls", "h2load") else sc.get("scheme", "http")
        port = self.addr_for(target, scheme)
        d = f"{duration:g}"
        if kind == "wrk":
            argv = ["wrk", "-t1", f"-c{sc['conns']}", f"-d{max(1, round(duration))}s", "--timeout", "5s",
                    "-s", os.path.join(BENCH, "wrk-report.lua"), "-H", f"Host: {HOST}"]
            for h in sc.get("headers", []):
                argv += ["-H", h]
            return argv + [f"{scheme}://127.0.0.1:{port}{sc.get('path', '/')}"]
        if kind == "h2load":
            argv = ["h2load", "-t1", f"-c{sc['clients']}", f"-m{sc['streams']}", "-D", str(max(1, round(duration))),
                    "--connect-to", f"127.0.0.1:{port}"]
            if logfile:
                argv += ["--log-file", logfile]
            return argv + [f"https://{HOST}:{port}/"]
        if kind == "tls":
            return [self.loadgen, "tls", "--addr", f"127.0.0.1:{port}", "--host", HOST, "--sni", HOST,
                    "--duration", d, "--connections", str(sc["conns"])]
        if kind == "rate":
            return [self.loadgen, "rate", "--addr", f"127.0.0.1:{port}", "--host", HOST, "--rate", str(int(rate)),
                    "--duration", d, "--connections", str(sc["conns"])]
        if kind == "ws":
            port = self.p_echo if target == "backend" else self.p_http
            return [self.loadgen, "ws", "--addr", f"127.0.0.1:{port}", "--host", HOST, "--path", "/ws",
                    "--duration", d, "--connections", str(sc["conns"]), "--size", str(sc.get("size", 64))]
        raise ValueError(kind)

    def parse_load(self, sc, rc, out, err, logfile):
        kind = sc["tool"]
        r = {}
        if kind == "wrk":
            line = next((l for l in out.splitlines() if l.startswith("{")), None)
            if not line:
                return {"error": f"wrk printed no result (rc {rc}): {err.strip()[:300]}"}
            w = json.loads(line)
            secs = w["duration_us"] / 1e6
            errs = w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"]
            r = {"requests": w["requests"], "seconds": secs, "rps": w["requests"] / secs if secs else 0,
                 "errors": errs, "non2xx": w["err_status"], "p50_us": w["p50_us"], "p99_us": w["p99_us"],
                 "p999_us": w["p999_us"], "max_us": w["max_us"], "mbytes_s": w["bytes"] / secs / 1e6 if secs else 0}
            # wrk counts a read error when a server closes a keep-alive connection it was told to
            # close (Connection: close): report those apart.
            r["err_detail"] = {k: w[k] for k in ("err_connect", "err_read", "err_write", "err_timeout") if w[k]}
            return r
        if kind == "h2load":
            m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
            m2 = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
            m3 = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
            proto = re.search(r"Application protocol: (\S+)", out)
            if not (m and m2):
                return {"error": f"h2load printed no result (rc {rc}): {(err or out).strip()[-300:]}"}
            lat = []
            if logfile and os.path.exists(logfile):
                with open(logfile) as f:
                    for line in f:
                        p = line.split("\t")
                        if len(p) >= 3 and p[1] == "200":
                            lat.append(int(p[2]))
                os.unlink(logfile)
            secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
            ok = int(m2.group(4))
            r = {"requests": ok, "seconds": secs, "rps": float(m.group(3)), "errors": int(m2.group(5)) + int(m2.group(6)) + int(m2.group(7)),
                 "non2xx": (int(m3.group(3)) + int(m3.group(4))) if m3 else 0,
                 "p50_us": pct(lat, 50), "p99_us": pct(lat, 99), "p999_us": pct(lat, 99.9), "max_us": max(lat) if lat else None,
                 "protocol": proto.group(1) if proto else "?"}
            if r["protocol"] != "h2":
                r["error"] = f"negotiated {r['protocol']}, not h2"
            return r
        line = next((l for l in out.splitlines() if l.startswith("{")), None)
        if not line:
            return {"error": f"loadgen printed no result (rc {rc}): {err.strip()[:300]}"}
        g = json.loads(line)
        if sc.get("l4"):
            return l4.parse(sc, g)
        r = {"requests": g["requests"], "seconds": g["seconds"], "rps": g["rps"], "errors": g["errors"], "non2xx": 0,
             "p50_us": g["p50_us"], "p99_us": g["p99_us"], "p999_us": g["p999_us"], "max_us": g["max_us"]}
        if g.get("first_error"):
            r["first_error"] = g["first_error"]
        if kind == "rate":
            r["target_rate"] = g["target_rate"]
        return r

    def run_load(self, sc, target, duration, rate=None):
        logfile = os.path.join(self.work, "h2load.log") if sc["tool"] == "h2load" else None
        argv = self.load_argv(sc, target, duration, rate, logfile)
        rc, out, err = run_cmd(argv, timeout=duration + 30, cpu=self.cpu_load)
        r = self.parse_load(sc, rc, out, err, logfile)
        r["command"] = "taskset -c %d %s" % (self.cpu_load, shlex.join(argv))
        return r

    # -------------------------------------------------------------------- data plane

    def check_target(self, sc, target):
        """One request the way the scenario sends them; None if fine, else what is wrong."""
        if sc["tool"] == "ws":
            return None  # the warm-up run checks the echo
        if sc.get("l4"):
            return l4.check(self.l4_port(sc, target), sc["l4"])
        if sc["tool"] == "h3":
            return h3.check(self.p_https, HOST)
        path = sc.get("path", "/")
        tls = sc.get("scheme") == "https" or sc["tool"] in ("tls", "h2load")
        status, body = http_get(self.addr_for(target, "https" if tls else "http"), path, tls=tls, sni=HOST, timeout=5)
        if status != 200:
            return f"GET {path}: {status} {body[:200]!r}"
        want = (1 << 20) if path == "/1m" else None
        if want and len(body) != want:
            return f"GET {path}: {len(body)} bytes, expected {want}"
        if not want and BODY.strip().encode() not in body:
            return f"GET {path}: unexpected body {body[:120]!r}"
        return None

    def run_scenario(self, sc):
        res = {}
        metric, unit = sc.get("metric", "rps"), sc.get("unit", "req/s")
        self.results["scenarios"][sc["id"]] = {"title": sc["title"], "runs": res, "setup": sc.get("setup", "")}
        rate = None
        if sc["tool"] == "rate":
            n = self.results["scenarios"].get("h1", {}).get("runs", {}).get("nginx", {})
            rate = max(100, int(n.get("rps", 0) / 2)) if n.get("rps") else (2000 if self.quick else 5000)
            self.results["scenarios"][sc["id"]]["rate"] = rate
            self.results["scenarios"][sc["id"]]["rate_from_nginx"] = bool(n.get("rps"))
        for target in self.targets:
            if target == "backend" and sc.get("both_cores"):
                continue
            self.log(f"{sc['id']}: {target}")
            unsupported = h3.skip_reason(sc, target)
            if unsupported:
                res[target] = {"unsupported": unsupported}
                self.log(f"    {unsupported}")
                continue
            p = None
            if target != "backend":
                p = self.start_proxy(target, sc["id"], sc.get("workers", 1), sc.get("cpus"))
                if p is None:
                    res[target] = {"error": "did not start"}
                    continue
            try:
                problem = self.check_target(sc, target)
                if problem:
                    res[target] = {"error": problem}
                    self.fail(f"{sc['id']} {target}: {problem}")
                    continue
                warm = self.run_load(sc, target, self.warmup, rate) if self.warmup > 0 else {"requests": 1}
                if warm.get("error") or not warm.get("requests"):
                    res[target] = {"error": "warm-up: " + (warm.get("error") or warm.get("first_error") or "no request succeeded")}
                    self.fail(f"{sc['id']} {target}: {res[target]['error']}")
                    continue
                cpu0 = cpu_seconds(p.pid) if p else None
                t0 = cpu_times()
                r = self.run_load(sc, target, self.duration, rate)
                t1 = cpu_times()
                if p:
                    r["cpu_s"] = cpu_seconds(p.pid) - cpu0
                    r["rss_peak_mb"] = mem_mb(p.pid, "VmHWM")
                    r["alive"] = p.poll() is None
                    if not r["alive"]:
                        r["error"] = f"{target} exited during the run (code {p.returncode})"
                r["cpu_busy"] = {c: busy_pct(t0, t1, c) for c in sorted(t1)}
                if r.get("requests"):
                    # CPU ms per 1,000 requests (connections), or per GB moved.
                    units = r["bytes"] / 1e9 if sc.get("metric") == "mbytes_s" else r["requests"] / 1000
                    r["cpu_ms_per_1k"] = 1000.0 * r["cpu_s"] / units if p and units else None
                if r.get("error") or not r.get("requests"):
                    self.fail(f"{sc['id']} {target}: {r.get('error') or r.get('first_error') or 'no request succeeded'}")
                res[target] = r
                self.log(f"    {r.get(metric) or 0:10.0f} {unit}  p99 {fmt_us(r.get('p99_us'))}  errors {r.get('errors', 0)}"
                         + (f"  cpu {r['cpu_s']:.2f}s  rss {r['rss_peak_mb']:.1f}MB" if p else ""))
            finally:
                if p:
                    PROCS.stop(p)
                    if target == "vestibule":
                        self.collect_vestibule_log(os.path.join(self.logs, f"vestibule-{sc['id']}.log"), sc["id"])
        v = res.get("vestibule", {}).get(metric)
        ratios = {f"vestibule/{o}": v / res[o][metric] for o in ("nginx", "haproxy")
                  if v and res.get(o, {}).get(metric)}
        if sc["tool"] == "h3" and h3.beside(self.results["scenarios"]):
            ratios[f"vestibule h3/{h3.BESIDE}"] = h3.beside(self.results["scenarios"])
        self.results["scenarios"][sc["id"]]["ratios"] = ratios
        if ratios:
            self.log(f"    {unit}: " + ", ".join(f"{k} {x:.2f}x" for k, x in ratios.items()))

    def collect_vestibule_log(self, path, tag):
        try:
            lines = open(path, errors="replace").read().splitlines()
        except OSError:
            return
        for l in lines:
            l = re.sub(r"\x1b\[[0-9;]*m", "", l)
            if re.search(r"\b(WARN|ERROR)\b|panicked", l):
                key = re.sub(r"^\S+\s+", "", l)  # drop the timestamp
                key = re.sub(r"\b[0-9a-f]*\d[0-9a-f.:]*\b", "N", key)[:240]
                self.vestibule_log_lines.setdefault(key, set()).add(tag)

    # -------------------------------------------------------------------- control plane

    def gen_scale(self, n, d):
        """n Ingresses (5 paths, 5 Services, 5 EndpointSlices of 10 endpoints each; TLS on every
        tenth host) as one file per Ingress, and the equivalent nginx.conf."""
        os.makedirs(d)
        if self.a.nginx_upstreams == "shared":
            # ingress-nginx's shape: one upstream that every location proxies to (its Lua balancer
            # then picks the Service's endpoint; here all Services have the same ten endpoints).
            ups = "".join(f"        server 127.0.0.{e}:{self.p_backend} max_fails=0;\n" for e in range(1, 11))
            upstreams = [f"    upstream upstream_balancer {{\n{ups}        keepalive 320;\n        keepalive_time 1h;\n"
                         f"        keepalive_timeout 60s;\n        keepalive_requests 10000;\n    }}\n"]
        else:
            upstreams = []
        with open(os.path.join(d, "00-class.yaml"), "w") as f:
            f.write("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: vestibule\n"
                    "spec:\n  controller: vestibule.dev/ingress-controller\n")
        endpoints = "".join(f"- addresses: [\"127.0.0.{e}\"]\n  conditions:\n    ready: true\n" for e in range(1, 11))
        servers = []
        for i in range(n):
            ns = f"team-{i % 50}"
            host = f"h{i}.bench.local"
            docs = []
            for j in range(5):
                svc = f"svc-{i}-{j}"
                docs.append(f"""apiVersion: v1
kind: Service
metadata:
  name: {svc}
  namespace: {ns}
spec:
  selector:
    app: {svc}
  ports:
  - name: http
    port: 80
    targetPort: 8080
""")
                docs.append(f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {svc}-abcde
  namespace: {ns}
  labels:
    kubernetes.io/service-name: {svc}
addressType: IPv4
ports:
- name: http
  port: {self.p_backend}
endpoints:
{endpoints}""")
                ups = "".join(f"        server 127.0.0.{e}:{self.p_backend} max_fails=0;\n" for e in range(1, 11))
                if self.a.nginx_upstreams == "per-service":
                    upstreams.append(f"    upstream {ns}-{svc}-80 {{\n{ups}        keepalive 4;\n    }}\n")
            tls = i % 10 == 0
            if tls:
                docs.append(f"""apiVersion: v1
kind: Secret
metadata:
  name: tls-{i}
  namespace: {ns}
type: kubernetes.io/tls
data:
  tls.crt: {self.crt_b64}
  tls.key: {self.key_b64}
""")
            self.cp_ingress[i] = (ns, host, tls)
            with open(os.path.join(d, f"ing-{i:05d}.yaml"), "w") as f:
                f.write("---\n".join(docs + [self.ingress_doc(i, [])]))
            locs = "".join(self.nginx_location(f"/p{j}", self.cp_upstream(ns, f"svc-{i}-{j}")) for j in range(5))
            tls_lines = (f"        listen 127.0.0.1:{self.p_https} ssl http2;\n        ssl_certificate {self.crt};\n"
                         f"        ssl_certificate_key {self.key};\n") if tls else ""
            servers.append((f"    server {{\n        server_name {host};\n        listen 127.0.0.1:{self.p_http};\n{tls_lines}", locs, "    }\n"))
        return upstreams, servers

    def cp_upstream(self, ns, svc):
        return "upstream_balancer" if self.a.nginx_upstreams == "shared" else f"{ns}-{svc}-80"

    def ingress_doc(self, i, extra_paths):
        ns, host, tls = self.cp_ingress[i]
        paths = [(f"/p{j}", f"svc-{i}-{j}") for j in range(5)] + [(p, f"svc-{i}-0") for p in extra_paths]
        body = "".join(f"""      - path: {p}
        pathType: Prefix
        backend:
          service:
            name: {s}
            port:
              number: 80
""" for p, s in paths)
        tls_block = f"  tls:\n  - hosts: [{host}]\n    secretName: tls-{i}\n" if tls else ""
        return f"""apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ing-{i}
  namespace: {ns}
  creationTimestamp: "2025-01-01T00:00:00Z"
spec:
  ingressClassName: vestibule
{tls_block}  rules:
  - host: {host}
    http:
      paths:
{body}"""

    def nginx_scale_conf(self, prefix, upstreams, servers, extra):
        """extra: server index -> [paths added]."""
        out = [self.nginx_http_head(prefix, names_hash=max(512, 4 * len(servers))),
               f"    server {{\n        listen 127.0.0.1:{self.p_http} default_server reuseport backlog=4096;\n"
               f"        server_name _;\n        location / {{ return 404; }}\n    }}\n"]
        out += upstreams
        for i, (head, locs, tail) in enumerate(servers):
            ns = self.cp_ingress[i][0]
            more = "".join(self.nginx_location(p, self.cp_upstream(ns, f"svc-{i}-0")) for p in extra.get(i, []))
            out.append(head + locs + more + tail)
        out.append("}\n")
        return "".join(out)

    def change_targets(self, n, count):
        """Distinct non-TLS Ingresses spread over the set."""
        picks, k = [], 0
        step = max(1, n // max(1, count)) | 1
        i = 1
        while len(picks) < min(count, n - n // 10 - 1) and k < 10 * n:
            i = (i + step) % n
            if i % 10 and i not in picks and i != 1:
                picks.append(i)
            k += 1
        return picks

    def change_ingress(self, n, mdir, i, path):
        """Rewrites Ingress `i`'s file with one new path, in place of any added before (a
        hidden temporary file, then a rename); seconds until the path answers, or None."""
        ns, host, _ = self.cp_ingress[i]
        st, _ = http_get(self.p_http, path, host=host, read_body=False)
        if st == 200:
            self.fail(f"control plane {n}: {host}{path} answered 200 before the change")
        text = self.ingress_doc(i, [path])
        fn = os.path.join(mdir, f"ing-{i:05d}.yaml")
        old = open(fn).read()
        new = old[:old.rfind("apiVersion: networking.k8s.io/v1\nkind: Ingress")] + text
        tmp = os.path.join(mdir, f".ing-{i:05d}.tmp")
        t_change = time.perf_counter()
        with open(tmp, "w") as f:
            f.write(new)
        os.replace(tmp, fn)
        t_live = self.poll_route(self.p_http, path, host, timeout=30)
        return None if t_live is None else t_live - t_change

    def churn(self, n, mdir, p):
        """`--churn` more changes, back to back (each one live before the next), over a wider
        set of Ingresses than the timed ones; then the resident memory once the deferred sweep
        of unused connections and balancer state has had its time (3 s at most), so that a
        leak per change would show."""
        self.log(f"control plane {n}: churn of {self.a.churn} changes")
        picks = self.change_targets(n, min(self.a.churn, max(1, n // 2)))
        times, failed, skipped = [], 0, 0
        rss_before = mem_mb(p.pid, "VmRSS")
        end = time.monotonic() + self.a.churn_budget
        for c in range(self.a.churn):
            if time.monotonic() > end:
                skipped = self.a.churn - c
                break
            took = self.change_ingress(n, mdir, picks[c % len(picks)], f"/churn-{c}")
            if took is None:
                failed += 1
            else:
                times.append(took)
        time.sleep(4)
        r = {"changes": len(times), "failed": failed, "skipped_budget": skipped, "change_to_live_ms": summarize_ms(times),
             "rss_before_mb": rss_before, "rss_after_mb": mem_mb(p.pid, "VmRSS"), "ingresses": len(picks)}
        self.log(f"    churn: {r['changes']} changes, change-to-live {r['change_to_live_ms']}, "
                 f"RSS {rss_before:.0f} -> {r['rss_after_mb']:.0f} MB")
        return r

    def poll_route(self, port, path, host, timeout, sample=None):
        """Polls with a new connection each time until the route answers 200; seconds or None."""
        t0 = time.perf_counter()
        end = t0 + timeout
        while time.perf_counter() < end:
            st, _ = http_get(port, path, host=host, timeout=1.0, read_body=False)
            if st == 200:
                return time.perf_counter()
            if sample:
                sample()
            time.sleep(0.001)
        return None

    def light_load(self, host):
        """A light fixed-rate load on one route while changes are made (bounded in time)."""
        rate = 200 if self.quick else 500
        argv = [self.loadgen, "rate", "--addr", f"127.0.0.1:{self.p_http}", "--host", host, "--path", "/p0",
                "--rate", str(rate), "--duration", "900", "--connections", "8"]
        log = os.path.join(self.work, f"light-{time.time_ns()}.json")
        p = PROCS.start("light-load", argv, cpu=self.cpu_load, log=log)
        return p, log, rate

    def end_light_load(self, handle):
        p, log, rate = handle
        PROCS.stop(p, sig=signal.SIGTERM, wait=15)
        try:
            line = next((l for l in open(log).read().splitlines() if l.startswith("{")), None)
            r = json.loads(line) if line else {}
        except OSError:
            r = {}
        r["rate"] = rate
        return r

    def scale(self, n):
        self.log(f"control plane: generating {n} Ingresses")
        cp = {"n": n}
        self.results["control_plane"][str(n)] = cp
        self.cp_ingress = {}
        d = os.path.join(self.work, f"scale-{n}")
        t = time.perf_counter()
        upstreams, servers = self.gen_scale(n, os.path.join(d, "manifests"))
        cp["generate_s"] = time.perf_counter() - t
        size = sum(os.path.getsize(os.path.join(d, "manifests", f)) for f in os.listdir(os.path.join(d, "manifests")))
        cp["manifest_mb"] = size / 1e6
        cp["objects"] = 1 + n * 11 + (n + 9) // 10
        picks = self.change_targets(n, self.a.changes)
        light_host = self.cp_ingress[1][1]

        # Vestibule
        self.log(f"control plane {n}: Vestibule start")
        mdir = os.path.join(d, "manifests")
        argv = self.vestibule_argv(mdir, default_cert=False)
        cp["vestibule_command"] = "taskset -c %d %s" % (self.cpu_proxy, shlex.join(argv))
        log = os.path.join(self.logs, f"vestibule-scale-{n}.log")
        t0 = time.perf_counter()
        p = PROCS.start("vestibule", argv, cpu=self.cpu_proxy, log=log, env=dict(os.environ, NO_COLOR="1"))
        ready = wait_until(lambda: p.poll() is not None or http_get(self.p_healthz, "/healthz", timeout=1)[0] == 200,
                           self.a.ready_timeout, interval=0.01)
        v = cp["vestibule"] = {}
        try:
            if not ready or p.poll() is not None:
                self.fail(f"control plane {n}: Vestibule not ready within {self.a.ready_timeout}s (exit {p.poll()}); see {log}")
                return
            v["ready_s"] = time.perf_counter() - t0
            st, _ = http_get(self.p_http, "/p0", host=light_host)
            if st != 200:
                self.fail(f"control plane {n}: Vestibule ready but {light_host}/p0 answers {st}")
            time.sleep(1 if self.quick else 3)
            v["rss_after_start_mb"] = mem_mb(p.pid, "VmRSS")
            v["rss_peak_start_mb"] = mem_mb(p.pid, "VmHWM")
            load = self.light_load(light_host)
            time.sleep(0.5)
            times, failed, skipped = [], 0, 0
            budget_end = time.monotonic() + self.a.change_budget
            mdir_files = os.path.join(d, "manifests")
            for c, i in enumerate(picks):
                if time.monotonic() > budget_end:
                    skipped = len(picks) - c
                    break
                took = self.change_ingress(n, mdir_files, i, f"/new-{c}")
                if took is None:
                    failed += 1
                else:
                    times.append(took)
                time.sleep(0.1)
            v["light_load"] = self.end_light_load(load)
            v["changes"] = len(times)
            v["changes_failed"] = failed
            v["changes_skipped_budget"] = skipped
            v["change_to_live_ms"] = summarize_ms(times)
            v["rss_steady_mb"] = mem_mb(p.pid, "VmRSS")
            if self.a.churn:
                v["churn"] = self.churn(n, mdir_files, p)
            v["rss_peak_mb"] = mem_mb(p.pid, "VmHWM")
            v["cpu_s_total"] = cpu_seconds(p.pid)
            st, metrics = http_get(self.p_healthz, "/metrics", timeout=5)
            if st == 200:
                v["metrics"] = parse_histograms(metrics.decode(errors="replace"),
                                                ["vestibule_compile_duration_seconds", "vestibule_change_to_live_seconds"])
        finally:
            PROCS.stop(p)
            try:
                text = re.sub(r"\x1b\[[0-9;]*m", "", open(log, errors="replace").read())
                ms = [float(x) for x in re.findall(r"compile_ms=([\d.]+)", text)]
                if ms:
                    v["compile_ms_initial"] = ms[0]
                    v["compile_ms_changes"] = summarize_ms([x / 1000 for x in ms[1:]]) if len(ms) > 1 else None
            except OSError:
                pass
            self.collect_vestibule_log(log, f"scale-{n}")
            self.log(f"    Vestibule: ready {v.get('ready_s', 0):.2f}s, change-to-live {v.get('change_to_live_ms')}, "
                     f"RSS peak {v.get('rss_peak_mb', 0):.0f}MB")

        # nginx
        g = cp["nginx"] = {}
        if n > self.a.nginx_max_scale:
            g["skipped"] = (f"not run above {self.a.nginx_max_scale:,} Ingresses (--nginx-max-scale): at 10,000 its "
                            "reloads already peak near 6 GB, as old and new workers overlap")
            self.log(f"    nginx: {g['skipped']}")
            if not self.a.keep:
                shutil.rmtree(d, ignore_errors=True)
            return
        prefix = os.path.join(d, "nginx")
        os.makedirs(os.path.join(prefix, "logs"))
        os.makedirs(os.path.join(prefix, "tmp"))
        conf_path = os.path.join(prefix, "nginx.conf")
        extra = {}
        with open(conf_path, "w") as f:
            f.write(self.nginx_scale_conf(prefix, upstreams, servers, extra))
        g["conf_mb"] = os.path.getsize(conf_path) / 1e6
        argv = ["nginx", "-p", prefix, "-c", conf_path]
        g["command"] = "taskset -c %d %s" % (self.cpu_proxy, shlex.join(argv))
        self.log(f"control plane {n}: nginx start ({g['conf_mb']:.0f} MB nginx.conf)")
        log = os.path.join(self.logs, f"nginx-scale-{n}.log")
        t0 = time.perf_counter()
        p = PROCS.start("nginx", argv, cpu=self.cpu_proxy, log=log)
        try:
            ok = wait_until(lambda: p.poll() is not None or http_get(self.p_http, "/p0", host=light_host, timeout=1)[0] == 200,
                            self.a.ready_timeout)
            if not ok or p.poll() is not None:
                self.fail(f"control plane {n}: nginx did not start (exit {p.poll()}); see {log} and {prefix}/logs/error.log")
                return
            g["ready_s"] = time.perf_counter() - t0
            time.sleep(1 if self.quick else 3)
            g["rss_after_start_mb"] = mem_mb(p.pid, "VmRSS")
            g["pss_after_start_mb"] = sum(pss_kb(q) for q in tree(p.pid)) / 1024
            load = self.light_load(light_host)
            time.sleep(0.5)
            peak = {"rss": g["rss_after_start_mb"], "pss": g["pss_after_start_mb"]}

            def sample():
                pids = tree(p.pid)
                peak["rss"] = max(peak["rss"], sum(status_kb(q, "VmRSS") for q in pids) / 1024)
                peak["pss"] = max(peak["pss"], sum(pss_kb(q) for q in pids) / 1024)

            times, reload_cmd, failed, skipped = [], [], 0, 0
            budget_end = time.monotonic() + self.a.nginx_change_budget
            count = min(len(picks), self.a.nginx_changes)
            for c, i in enumerate(picks[:count]):
                if time.monotonic() > budget_end:
                    skipped = count - c
                    break
                # The old workers of the previous reload have to be gone (bounded wait).
                wait_until(lambda: len(tree(p.pid)) <= 2, 30, interval=0.05)
                ns, host, _ = self.cp_ingress[i]
                path = f"/new-{c}"
                extra.setdefault(i, []).append(path)
                with open(conf_path, "w") as f:
                    f.write(self.nginx_scale_conf(prefix, upstreams, servers, extra))
                t_change = time.perf_counter()
                rc, _, err = run_cmd(["nginx", "-p", prefix, "-c", conf_path, "-s", "reload"], 120, cpu=self.cpu_load)
                reload_cmd.append(time.perf_counter() - t_change)
                if rc != 0:
                    self.fail(f"control plane {n}: nginx -s reload failed: {err.strip()[:300]}")
                    failed += 1
                    continue
                t_live = self.poll_route(self.p_http, path, host, timeout=self.a.ready_timeout, sample=sample)
                if t_live is None:
                    failed += 1
                else:
                    times.append(t_live - t_change)
                sample()
            g["light_load"] = self.end_light_load(load)
            g["changes"] = len(times)
            g["changes_failed"] = failed
            g["changes_skipped_budget"] = skipped
            g["change_to_live_ms"] = summarize_ms(times)
            g["reload_command_ms"] = summarize_ms(reload_cmd)
            wait_until(lambda: len(tree(p.pid)) <= 2, 30, interval=0.1)
            time.sleep(0.5)
            g["rss_steady_mb"] = mem_mb(p.pid, "VmRSS")
            g["pss_steady_mb"] = sum(pss_kb(q) for q in tree(p.pid)) / 1024
            g["rss_peak_mb"] = peak["rss"]
            g["pss_peak_mb"] = peak["pss"]
        finally:
            PROCS.stop(p)
            self.log(f"    nginx: ready {g.get('ready_s', 0):.2f}s, change-to-live {g.get('change_to_live_ms')}, "
                     f"RSS peak {g.get('rss_peak_mb', 0):.0f}MB")
        if not self.a.keep:
            shutil.rmtree(d, ignore_errors=True)

    # -------------------------------------------------------------------- main

    def machine(self):
        m = {}
        rc, out, _ = run_cmd(["lscpu"], 10)
        for line in out.splitlines():
            k, _, val = line.partition(":")
            if k.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Hypervisor vendor", "L3 cache"):
                m[k.strip()] = val.strip()
        with open("/proc/meminfo") as f:
            m["Memory"] = "%.1f GiB" % (int(f.readline().split()[1]) / 1024 / 1024)
        m["Kernel"] = os.uname().release
        try:
            m["OS"] = re.search(r'PRETTY_NAME="([^"]+)"', open("/etc/os-release").read()).group(1)
        except (OSError, AttributeError):
            pass
        m["loadavg at start"] = open("/proc/loadavg").read().split()[:3]
        return m

    def versions(self):
        v = {}

        def first(argv, stream="out"):
            rc, out, err = run_cmd(argv, 10)
            text = (out if stream == "out" else err) or out or err
            return text.strip().splitlines()[0] if text.strip() else "?"
        v["Vestibule"] = first([self.vbin, "--version"])
        rc, out, _ = run_cmd(["git", "-C", ROOT, "describe", "--always", "--dirty"], 10)
        v["Vestibule commit"] = out.strip() or "?"
        v["rustc"] = first(["rustc", "--version"])
        v["nginx"] = first(["nginx", "-v"], "err")
        v["HAProxy"] = first(["haproxy", "-v"])
        v["OpenSSL"] = first(["openssl", "version"])
        v["wrk"] = first(["wrk", "-v"])
        v["h2load"] = first(["h2load", "--version"])
        v["loadgen"] = "bench/loadgen (tokio, hyper, rustls with aws-lc-rs; quinn and h3 for HTTP/3)"
        return v

    def run(self):
        self.results["mode"] = "quick" if self.quick else "full"
        self.results["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.results["machine"] = self.machine()
        self.results["versions"] = self.versions()
        self.results["settings"] = {"duration_s": self.duration, "warmup_s": self.warmup, "proxy_cpu": self.cpu_proxy,
                                    "load_cpu": self.cpu_load, "nginx_upstreams": self.a.nginx_upstreams}
        self.make_cert()
        self.want_l4 = not self.a.skip_data_plane and any(
            sc.get("l4") and (not self.a.only or sc["id"] in self.a.only.split(",")) for sc in SCENARIOS)
        self.start_backend()
        self.prepare_proxies()
        self.targets = [t for t in TARGETS if t in self.a.targets.split(",")]
        if not self.a.skip_data_plane:
            for sc in SCENARIOS:
                if self.a.only and sc["id"] not in self.a.only.split(","):
                    continue
                self.run_scenario(sc)
        if not self.a.skip_control_plane:
            for n in [int(x) for x in self.a.scales.split(",") if x]:
                self.scale(n)
        self.results["vestibule_log_warnings"] = {k: sorted(v) for k, v in self.vestibule_log_lines.items()}
        self.results["elapsed_s"] = time.time() - self.started
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(self.results, f, indent=2, default=list)
        report = render(self.results, self.configs)
        os.makedirs(os.path.dirname(self.a.report), exist_ok=True)
        with open(self.a.report, "w") as f:
            f.write(report)
        self.log(f"report: {os.path.relpath(self.a.report, ROOT)}; raw results: bench/out/results.json; logs: bench/out/logs/")


SCENARIOS = [
    {"id": "h1", "title": "1. HTTP/1.1 keep-alive, small responses", "tool": "wrk", "conns": 64,
     "setup": "wrk, 1 thread, 64 keep-alive connections, `GET /` (a 29-byte body)."},
    {"id": "h1close", "title": "2. HTTP/1.1, a new connection per request", "tool": "wrk", "conns": 32,
     "headers": ["Connection: close"],
     "setup": "wrk, 1 thread, 32 connections, `Connection: close` on every request (the proxy closes; wrk reconnects). "
              "wrk's latency starts after connect."},
    {"id": "h1w1", "title": "1b. HTTP/1.1 keep-alive on both cores, one worker", "tool": "wrk", "conns": 64,
     "cpus": "0,1", "workers": 1, "both_cores": True,
     "setup": "As scenario 1, but each proxy may run on both CPUs (`taskset -c 0,1`), which it shares with "
              "the load generator and the backend; one worker, as in scenario 1. The baseline of 1c."},
    {"id": "h1w2", "title": "1c. HTTP/1.1 keep-alive on both cores, two workers", "tool": "wrk", "conns": 64,
     "cpus": "0,1", "workers": 2, "both_cores": True,
     "setup": "As 1b, with two workers: nginx `worker_processes 2`, HAProxy `nbthread 2`, Vestibule "
              "`--worker-threads 2`. Same load, same CPUs: the question is whether a second worker wins "
              "or loses against one."},
    {"id": "https", "title": "3. HTTPS keep-alive, small responses", "tool": "wrk", "conns": 64, "scheme": "https",
     "setup": "wrk, 1 thread, 64 keep-alive TLS connections (TLS 1.3, HTTP/1.1)."},
    {"id": "tls", "title": "4. Full TLS handshakes per second (no resumption)", "tool": "tls", "conns": 16,
     "setup": "bench/loadgen `tls`: 16 workers, each: connect, full TLS 1.3 handshake (X25519, ECDSA P-256 "
              "certificate, resumption disabled in the client), one `GET /` with `Connection: close`, read, "
              "wait for the server's close. Latency is the whole exchange. The client skips certificate "
              "verification to keep its own CPU small."},
    {"id": "h2", "title": "5. HTTP/2, many streams per connection", "tool": "h2load", "clients": 4, "streams": 64,
     "setup": "h2load, 1 thread, 4 TLS connections (ALPN h2), 64 concurrent streams each, `GET /`. "
              "Latency from h2load's per-request log."},
    *h3.SCENARIOS,
    {"id": "1m", "title": "6. 1 MiB responses", "tool": "wrk", "conns": 8, "path": "/1m",
     "setup": "wrk, 1 thread, 8 keep-alive connections, `GET /1m` (1 MiB from the backend's page cache)."},
    {"id": "rate", "title": "7. Latency at a fixed rate", "tool": "rate", "conns": 64,
     "setup": "bench/loadgen `rate`: HTTP/1.1 keep-alive, 64 connections, open loop at half of nginx's "
              "scenario-1 maximum; latency counted from when each request was due when the client was "
              "behind (coordinated omission corrected), 1 ms timer resolution (as wrk2)."},
    {"id": "ws", "title": "8. WebSocket echo round trips", "tool": "ws", "conns": 16, "size": 64,
     "setup": "bench/loadgen `ws`: 16 upgraded connections, each sending a 64-byte binary message and waiting "
              "for its echo from `vestibule echo`, back to back."},
] + l4.SCENARIOS


# ----------------------------------------------------------------------------------------------
# report


def summarize_ms(seconds):
    if not seconds:
        return None
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50": pct(ms, 50), "p99": pct(ms, 99), "max": max(ms), "mean": sum(ms) / len(ms)}


def parse_histograms(text, names):
    out = {}
    for name in names:
        h = {"buckets": []}
        for line in text.splitlines():
            if line.startswith(name + "_sum"):
                h["sum"] = float(line.split()[-1])
            elif line.startswith(name + "_count"):
                h["count"] = float(line.split()[-1])
            elif line.startswith(name + "_bucket"):
                m = re.search(r'le="([^"]+)"\}\s+(\S+)', line)
                if m:
                    h["buckets"].append((m.group(1), float(m.group(2))))
        if h.get("count"):
            h["mean_ms"] = 1000 * h["sum"] / h["count"]
            # The upper bound of the bucket holding the 99th percentile.
            for le, c in h["buckets"]:
                if c >= 0.99 * h["count"]:
                    h["p99_le_ms"] = (float(le) * 1000) if le != "+Inf" else None
                    break
            for le, c in h["buckets"]:
                if c >= 0.5 * h["count"]:
                    h["p50_le_ms"] = (float(le) * 1000) if le != "+Inf" else None
                    break
        out[name] = h
    return out


def fmt_us(us):
    if us is None:
        return "–"
    if us >= 1_000_000:
        return f"{us / 1e6:.2f} s"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def fmt_num(x, digits=0):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def fmt_ms(x):
    return "–" if x is None else (f"{x:.1f}" if x < 100 else f"{x:,.0f}")


def le(h, q):
    """The bucket bound of a quantile, or that it is above the largest finite bucket."""
    v = h.get(f"{q}_le_ms")
    if v is not None:
        return f"{q} ≤ {fmt_ms(v)} ms"
    finite = [float(b) for b, _ in h.get("buckets", []) if b != "+Inf"]
    return f"{q} > {max(finite) * 1000:,.0f} ms" if finite else f"{q} –"


def light(ll):
    if not ll.get("rate"):
        return "–"
    return (f"{fmt_us(ll.get('p99_us'))} / {fmt_us(ll.get('max_us'))} ({ll.get('rps', 0):,.0f} of {ll['rate']:,} req/s served, "
            f"{ll.get('errors', 0)} errors)")


def ratio(a, b, better="higher"):
    if a is None or b in (None, 0):
        return "–"
    return f"{a / b:.2f}×"


def render(R, configs):
    L = []
    w = L.append
    quick = R["mode"] == "quick"
    w("# Benchmarks: Vestibule beside nginx and HAProxy")
    w("")
    w("Generated by `bench/run.sh%s` on %s; do not edit by hand (run it again)." % (" --quick" if quick else "", R["date"]))
    w("")
    if quick:
        w("> **Quick mode (smoke test): %g s per scenario. These numbers only show that the harness works; "
          "they are not measurements.** Run `bench/run.sh` on a quiet machine for real numbers." % R["settings"]["duration_s"])
        w("")
    if R["failures"]:
        w("> **Problems in this run:**")
        for f in R["failures"]:
            w(f"> - {f}")
        w("")
    sc = R["scenarios"]

    def run_of(sid, t):
        return sc.get(sid, {}).get("runs", {}).get(t, {})

    # headline
    w("## Headline")
    w("")
    w("Targets from issues #5 and #15, reported as measured (not asserted):")
    w("")
    w("| what | target | measured | |")
    w("| --- | --- | --- | --- |")
    v1, n1 = run_of("h1", "vestibule"), run_of("h1", "nginx")

    def verdict(ok):
        return "–" if ok is None else ("met" if ok else "**not met**")
    if v1.get("rps") and n1.get("rps"):
        r = v1["rps"] / n1["rps"]
        w(f"| 1. HTTP/1.1 keep-alive req/s, one core | ≥ 1.5× nginx | {r:.2f}× ({v1['rps']:,.0f} vs {n1['rps']:,.0f}) | {verdict(r >= 1.5)} |")
        if v1.get("p99_us") and n1.get("p99_us"):
            r = v1["p99_us"] / n1["p99_us"]
            w(f"| 1. p99 latency | no worse than nginx | {r:.2f}× ({fmt_us(v1['p99_us'])} vs {fmt_us(n1['p99_us'])}) | {verdict(r <= 1.0)} |")
    v4, n4 = run_of("tls", "vestibule"), run_of("tls", "nginx")
    if v4.get("rps") and n4.get("rps"):
        r = v4["rps"] / n4["rps"]
        w(f"| 4. full TLS handshakes/s | ≥ 1.2× nginx | {r:.2f}× ({v4['rps']:,.0f} vs {n4['rps']:,.0f}) | {verdict(r >= 1.2)} |")
    # The control plane's goals, at the scales that have them (issue 15): ready, steady RSS
    # (after the churn when there was one), change to live.
    goals = {10000: (3, 200, 20, 50), 100000: (30, 1536, 100, 100)}
    for k in sorted(R["control_plane"], key=int):
        if int(k) not in goals:
            continue
        ready_goal, rss_goal, p50_goal, p99_goal = goals[int(k)]
        v = R["control_plane"][k].get("vestibule", {})
        if v.get("ready_s"):
            w(f"| ready at {int(k):,} Ingresses | ≤ {ready_goal} s | {v['ready_s']:.2f} s | {verdict(v['ready_s'] <= ready_goal)} |")
        c = v.get("change_to_live_ms")
        if c:
            w(f"| change to live at {int(k):,} Ingresses, p50 / p99 | ≤ {p50_goal} / {p99_goal} ms | {c['p50']:.1f} / {c['p99']:.1f} ms "
              f"({c['n']} changes) | {verdict(c['p50'] <= p50_goal and c['p99'] <= p99_goal)} |")
        ch = v.get("churn") or {}
        rss = ch.get("rss_after_mb") or v.get("rss_steady_mb")
        if rss:
            after = f"after a churn of {ch['changes']:,} changes" if ch.get("rss_after_mb") else "after the timed changes"
            w(f"| steady RSS at {int(k):,} Ingresses | ≤ {rss_goal:,} MB | {rss:,.0f} MB {after} (peak {v.get('rss_peak_mb', 0):,.0f} MB) | "
              f"{verdict(rss <= rss_goal)} |")
    w("")
    # ratios summary
    w("Vestibule as a ratio to nginx in every scenario (throughput: req/s, or conn/s and MB/s for the TCP "
      "services, higher is better; p99, CPU per request, peak RSS: lower is better), and to HAProxy:")
    w("")
    w("| scenario | throughput | p99 | CPU per request (per GB for MB/s) | peak RSS | HAProxy throughput | Vestibule vs HAProxy |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    for s in SCENARIOS:
        if s["id"] not in sc:
            continue
        v, n, h = run_of(s["id"], "vestibule"), run_of(s["id"], "nginx"), run_of(s["id"], "haproxy")
        m = s.get("metric", "rps")
        if n.get("unsupported") and h.get("unsupported"):
            # HTTP/3: no nginx or HAProxy figure to compare with; Vestibule against its own HTTP/2.
            own = h3.beside(sc)
            w(f"| {sc[s['id']]['title']} | nginx: {n['unsupported'].split(' (')[0]} | | | | HAProxy: "
              f"{h['unsupported'].split(' (')[0]} | " + (f"none; HTTP/3 vs its own HTTP/2 (5.): {own:.2f}× |" if own else "– |"))
            continue
        w(f"| {sc[s['id']]['title']} | {ratio(v.get(m), n.get(m))} | {ratio(v.get('p99_us'), n.get('p99_us'))} | "
          f"{ratio(v.get('cpu_ms_per_1k'), n.get('cpu_ms_per_1k'))} | {ratio(v.get('rss_peak_mb'), n.get('rss_peak_mb'))} | "
          f"{ratio(h.get(m), n.get(m))} | {ratio(v.get(m), h.get(m))} |")
    w("")

    # method
    st = R["settings"]
    w("## Method")
    w("")
    w(f"- **Placement.** The machine has {R['machine'].get('CPU(s)', '?')} CPUs. Each proxy in turn runs alone on "
      f"CPU {st['proxy_cpu']} (`taskset -c {st['proxy_cpu']}`), with one worker: nginx `worker_processes 1`, "
      f"HAProxy `nbthread 1`, Vestibule `--worker-threads 1`. The load generator, the backend and this harness "
      f"share CPU {st['load_cpu']}. With two cores that is the only split that gives the proxy a core of its own; "
      f"it means the load generator and the backend compete for the other one, so the **ceiling** row (the same "
      f"load sent straight to the backend, no proxy) shows what that side can do at most. A proxy close to the "
      f"ceiling is limited by the client side, not by itself. The columns *CPU0/CPU1 busy* show how loaded each "
      f"core was during the run (anything else running on the machine shows there too).")
    w("- **Backend.** One nginx (its own prefix and config in a temporary directory, one worker, CPU "
      f"{st['load_cpu']}) answers `return 200 \"{BODY.strip()}\\n\"`, serves `/1m` (1 MiB) from a file, and "
      f"listens on 127.0.0.1–127.0.0.10 (ten endpoints for the control-plane test) and on a TLS+h2 port for the "
      f"ceiling of the TLS scenarios; `keepalive_requests` is unlimited so that upstream connections are kept. "
      f"WebSocket echo: `vestibule echo`.")
    w("- **Proxies**, configured alike (configs at the end): HTTP/1.1 keep-alive to the backend with idle "
      "connections kept (nginx `keepalive 320`, `proxy_http_version 1.1`; HAProxy `http-reuse always`; "
      "Vestibule's pool), `X-Forwarded-*`, `X-Real-IP` and `X-Request-ID` set, access logs off, TLS 1.2/1.3 with "
      "the same ECDSA P-256 certificate, ALPN h2 and http/1.1. nginx follows ingress-nginx's generated "
      "configuration: proxy_buffering off with its 4k proxy buffer (which costs nginx in the 1 MiB scenario), "
      "TLS session cache on and tickets off, the same proxy_set_header lines. Two differences: ingress-nginx's "
      "Lua balancer is left out, as Debian's nginx has no Lua (static upstreams are cheaper, so this favours "
      "nginx), and `keepalive_requests` is raised from ingress-nginx's 1000 to 1,000,000, because since nginx "
      "1.19.7 it also ends HTTP/2 connections (GOAWAY) and h2load does not reconnect (Vestibule gets the same "
      "1,000,000 through its ConfigMap's `keep-alive-requests`, whose default is ingress-nginx's 1000; HAProxy sets "
      "no such limit). "
      "Vestibule serves the equivalent Ingress from a manifest file with "
      "`--default-ssl-certificate` set to the same certificate (nginx's default server and HAProxy's `crt` "
      "serve it for any name, and wrk sends SNI 127.0.0.1). Vestibule is built with `cargo build --release`.")
    w(f"- **Each run**: a fresh proxy process per scenario (so peak RSS is that scenario's), one request checked "
      f"by hand (status and body), a {st['warmup_s']:g} s warm-up with the same load, then {st['duration_s']:g} s "
      f"measured. **CPU s** is the proxy's utime+stime from /proc/PID/stat (all its processes) across the "
      f"measured run; **CPU ms / 1k req** divides it by the requests served. **Peak RSS** is VmHWM, summed over "
      f"nginx's master and worker (shared pages count twice, so this overstates nginx a little). Errors are "
      f"failed connections, reads, timeouts; *non-2xx* are answers other than 2xx/3xx.")
    if any(s.get("l4") and s["id"] in sc for s in SCENARIOS):
        w("- **TCP services** (scenarios 9 and 10): the backend is bench/loadgen `tcp-backend` on CPU "
          f"{st['load_cpu']} (a source port writing 64 KiB chunks until the client goes, and an echo port that closes after the first newline). Each "
          "proxy forwards one port to each as plain TCP: nginx with a `stream {}` server per port (Debian's "
          "libnginx-mod-stream, loaded by `load_module`) carrying the directives ingress-nginx writes for a TCP "
          "service (`proxy_timeout 600s`, `proxy_next_upstream on`, 3 tries; a static upstream in place of its "
          "Lua balancer), HAProxy with a `listen` section per port in `mode tcp`, Vestibule with "
          "`--tcp-services-configmap` naming a ConfigMap of the two ports (`default/tcp-source:9000`, "
          "`default/tcp-echo:9001`). *CPU ms / GB* divides the proxy's CPU time by the bytes it moved.")
    w("- **Control plane**: N Ingresses, one file each, with 5 paths to 5 Services, an EndpointSlice of 10 ready "
      "endpoints per Service, and TLS on every tenth host (one generated certificate reused by all Secrets), in "
      "50 namespaces. Vestibule serves the directory. nginx gets the equivalent nginx.conf: one server block per "
      "host, one location per path with ingress-nginx's directives, and, as ingress-nginx has it, one "
      "`upstream_balancer` (here with the ten endpoints and `keepalive 320`) that every location proxies to: "
      "ingress-nginx keeps endpoints out of nginx.conf and picks them in Lua. (`--nginx-upstreams per-service` "
      "writes one upstream per Service with its endpoints instead; nginx looks up each `proxy_pass` upstream "
      "by a linear search, so with 5 N upstreams its start and reload time grow with N²: at 10,000 Ingresses "
      "over a minute per reload on this machine.) This run: " + R["settings"].get("nginx_upstreams", "shared") + ". "
      "TLS hosts carry their own `ssl_certificate` "
      "(ingress-nginx loads certificates through Lua instead, which Debian's nginx cannot). "
      "Both on CPU 1 with one worker. *Ready*: from process start until Vestibule's /healthz answers 200, or "
      "until nginx answers a route. *Change to live*: one Ingress file rewritten with a new path (write to a "
      "hidden temporary file, then rename), polled with a new connection every ~1 ms until the new path "
      "answers 200; for nginx, the server block gets the location, the whole nginx.conf is written (not "
      "timed: ingress-nginx's template rendering and `nginx -t` are not counted), then `nginx -s reload` "
      "is timed until the new path answers; before each change, the previous reload's old worker must have "
      "exited. A light fixed-rate load (bench/loadgen `rate`, 8 connections) runs on another route during the "
      "changes, and its latency shows how much the changes disturb traffic. nginx memory is given as RSS "
      "summed over its processes and as PSS (shared pages divided among them). *Churn* (Vestibule): "
      "after the timed changes, `--churn` more back to back, each live before the next, over up to half "
      "of the Ingresses; the steady RSS is read again 4 s after the last one. nginx is not run above "
      "`--nginx-max-scale` Ingresses.")
    w("")
    w("## Machine")
    w("")
    for k, val in R["machine"].items():
        w(f"- {k}: {' '.join(val) if isinstance(val, list) else val}")
    w(f"- whole run: {R.get('elapsed_s', 0) / 60:.1f} min")
    w("")
    w("## Versions")
    w("")
    for k, val in R["versions"].items():
        w(f"- {k}: {val}")
    w("")

    # scenarios
    w("## Data plane")
    w("")
    w("`ceiling` is the load sent straight to the backend (no proxy). Ratios are to nginx, and in one column to HAProxy.")
    w("")
    for s in SCENARIOS:
        if s["id"] not in sc:
            continue
        x = sc[s["id"]]
        w(f"### {x['title']}")
        w("")
        setup = x.get("setup") or s["setup"]
        if s["id"] == "rate" and x.get("rate"):
            setup += f" Rate: **{x['rate']:,} req/s**" + ("" if x.get("rate_from_nginx") else " (nginx's maximum was not measured: a fixed default)") + "."
        w(setup)
        w("")
        m, unit, per = s.get("metric", "rps"), s.get("unit", "req/s"), s.get("per", "1k req")
        w(f"| | {unit} | p50 | p99 | p99.9 | max | errors | non-2xx | CPU s | CPU ms / {per} | peak RSS MB | {unit} vs nginx | {unit} vs HAProxy | p99 vs nginx | CPU/{per.split()[-1]} vs nginx | RSS vs nginx | CPU0 / CPU1 busy |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        n = x["runs"].get("nginx", {})
        hp = x["runs"].get("haproxy", {})
        for t in TARGETS:
            r = x["runs"].get(t)
            if r is None:
                continue
            name = "ceiling (backend alone)" if t == "backend" else t
            if r.get("unsupported"):
                w(f"| {name} | {r['unsupported']} |" + " |" * 16)
                continue
            if r.get("error") and not r.get("requests"):
                w(f"| {name} | failed: {r['error'][:160]} |" + " |" * 16)
                continue
            busy = r.get("cpu_busy", {})
            w(f"| {name} | {fmt_num(r.get(m))} | {fmt_us(r.get('p50_us'))} | {fmt_us(r.get('p99_us'))} | "
              f"{fmt_us(r.get('p999_us'))} | {fmt_us(r.get('max_us'))} | {fmt_num(r.get('errors'))} | {fmt_num(r.get('non2xx'))} | "
              f"{fmt_num(r.get('cpu_s'), 2)} | {fmt_num(r.get('cpu_ms_per_1k'), 1)} | {fmt_num(r.get('rss_peak_mb'), 1)} | "
              f"{ratio(r.get(m), n.get(m)) if t != 'nginx' else '1'} | "
              f"{ratio(r.get(m), hp.get(m)) if t != 'haproxy' else '1'} | "
              f"{ratio(r.get('p99_us'), n.get('p99_us')) if t != 'nginx' else '1'} | "
              f"{ratio(r.get('cpu_ms_per_1k'), n.get('cpu_ms_per_1k')) if t not in ('nginx', 'backend') else ('1' if t == 'nginx' else '–')} | "
              f"{ratio(r.get('rss_peak_mb'), n.get('rss_peak_mb')) if t not in ('nginx', 'backend') else ('1' if t == 'nginx' else '–')} | "
              f"{busy.get('cpu0', 0):.0f}% / {busy.get('cpu1', 0):.0f}% |")
        notes = []
        if s["id"] == "h1w2":
            pairs = [(t, run_of("h1w2", t).get("rps"), run_of("h1w1", t).get("rps")) for t in TARGETS if t != "backend"]
            said = [f"{t} {a / b:.2f}× ({a:,.0f} vs {b:,.0f})" for t, a, b in pairs if a and b]
            if said:
                notes.append("Two workers against one (1c over 1b, same load and CPUs): " + ", ".join(said) + ".")
        if s["tool"] == "h3" and h3.beside(sc):
            v3, v2 = run_of("h3", "vestibule"), run_of(h3.BESIDE, "vestibule")
            notes.append(f"Vestibule over HTTP/3 against itself over HTTP/2 (scenario 5, same run): "
                         f"{h3.beside(sc):.2f}× the req/s ({v3['rps']:,.0f} vs {v2['rps']:,.0f}), "
                         f"p99 {fmt_us(v3.get('p99_us'))} vs {fmt_us(v2.get('p99_us'))}.")
        for t in TARGETS:
            r = x["runs"].get(t, {})
            if r.get("first_error"):
                notes.append(f"{t}: first error: `{r['first_error'][:200]}`")
            if r.get("err_detail"):
                notes.append(f"{t}: wrk errors by kind: {r['err_detail']}")
            if r.get("error") and r.get("requests"):
                notes.append(f"{t}: {r['error']}")
        if notes:
            w("")
            for nt in notes:
                w(f"- {nt}")
        w("")

    # control plane
    if R["control_plane"]:
        w("## Control plane at scale")
        w("")
        w("| | Ingresses | objects | manifests MB | ready s | RSS after start MB | peak RSS MB | steady RSS MB | change-to-live p50 ms | p99 ms | max ms | changes | compile ms p50 / p99 (per change) | initial compile ms | light load p99 / max during changes |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for k in sorted(R["control_plane"], key=int):
            cp = R["control_plane"][k]
            v, g = cp.get("vestibule", {}), cp.get("nginx", {})
            c = v.get("change_to_live_ms") or {}
            cm = v.get("compile_ms_changes") or {}
            ll = v.get("light_load", {})
            w(f"| Vestibule | {int(k):,} | {cp.get('objects', 0):,} | {cp.get('manifest_mb', 0):.1f} | {fmt_num(v.get('ready_s'), 2)} | "
              f"{fmt_num(v.get('rss_after_start_mb'), 0)} | {fmt_num(v.get('rss_peak_mb'), 0)} | {fmt_num(v.get('rss_steady_mb'), 0)} | "
              f"{fmt_ms(c.get('p50'))} | {fmt_ms(c.get('p99'))} | {fmt_ms(c.get('max'))} | {c.get('n', 0)}"
              f"{' (' + str(v.get('changes_failed')) + ' failed)' if v.get('changes_failed') else ''} | "
              f"{fmt_ms(cm.get('p50'))} / {fmt_ms(cm.get('p99'))} | {fmt_ms(v.get('compile_ms_initial'))} | "
              f"{light(ll)} |")
            c = g.get("change_to_live_ms") or {}
            ll = g.get("light_load", {})
            if g.get("skipped"):
                w(f"| nginx | {int(k):,} | {g['skipped']} |" + " |" * 12)
                continue
            w(f"| nginx | {int(k):,} | nginx.conf {g.get('conf_mb', 0):.0f} MB | | {fmt_num(g.get('ready_s'), 2)} | "
              f"{fmt_num(g.get('rss_after_start_mb'), 0)} (PSS {fmt_num(g.get('pss_after_start_mb'), 0)}) | "
              f"{fmt_num(g.get('rss_peak_mb'), 0)} (PSS {fmt_num(g.get('pss_peak_mb'), 0)}) | "
              f"{fmt_num(g.get('rss_steady_mb'), 0)} (PSS {fmt_num(g.get('pss_steady_mb'), 0)}) | "
              f"{fmt_ms(c.get('p50'))} | {fmt_ms(c.get('p99'))} | {fmt_ms(c.get('max'))} | {c.get('n', 0)}"
              f"{' (' + str(g.get('changes_failed')) + ' failed)' if g.get('changes_failed') else ''} | "
              f"`nginx -s reload` itself: {fmt_ms((g.get('reload_command_ms') or {}).get('p50'))} (p50) | | "
              f"{light(ll)} |")
        w("")
        for k in sorted(R["control_plane"], key=int):
            cp = R["control_plane"][k]
            v, g = cp.get("vestibule", {}), cp.get("nginx", {})
            m = v.get("metrics", {})
            cd, cl = m.get("vestibule_compile_duration_seconds", {}), m.get("vestibule_change_to_live_seconds", {})
            if cd.get("count"):
                w(f"- {int(k):,} Ingresses, Vestibule's /metrics: `vestibule_compile_duration_seconds` mean "
                  f"{cd['mean_ms']:.1f} ms over {cd['count']:.0f} compiles ({le(cd, 'p99')} by bucket); "
                  f"`vestibule_change_to_live_seconds` mean {cl.get('mean_ms', 0):.1f} ms over {cl.get('count', 0):.0f} "
                  f"({le(cl, 'p50')}, {le(cl, 'p99')} by bucket; it "
                  f"starts when the watcher sees the change, so it leaves out the notification delay but includes the debounce).")
            ch = v.get("churn")
            if ch:
                cl = ch.get("change_to_live_ms") or {}
                w(f"- {int(k):,} Ingresses, churn: {ch['changes']:,} more changes back to back over {ch['ingresses']:,} "
                  f"Ingresses, each live before the next{' (' + str(ch['failed']) + ' not live within 30 s)' if ch.get('failed') else ''}"
                  f"{', ' + str(ch['skipped_budget']) + ' left out when the time budget ran out' if ch.get('skipped_budget') else ''}: "
                  f"change to live p50 {fmt_ms(cl.get('p50'))} / p99 {fmt_ms(cl.get('p99'))} / max {fmt_ms(cl.get('max'))} ms; "
                  f"**steady RSS after the churn {ch['rss_after_mb']:.0f} MB** (before it {ch['rss_before_mb']:.0f} MB, 4 s after the last change).")
            if g.get("changes_skipped_budget") or v.get("changes_skipped_budget"):
                w(f"- {int(k):,} Ingresses: changes left out when the time budget ran out: Vestibule "
                  f"{v.get('changes_skipped_budget', 0)}, nginx {g.get('changes_skipped_budget', 0)} (fewer changes for nginx, as it is slow).")
        w("")
        last = R["control_plane"][max(R["control_plane"], key=int)]
        w("Commands (manifests and nginx.conf generated by bench/harness.py into a temporary directory):")
        w("")
        w("```sh")
        w(last.get("vestibule_command", ""))
        w(last.get("nginx", {}).get("command", ""))
        w("```")
        w("")

    if R.get("vestibule_log_warnings"):
        w("## Warnings and errors Vestibule logged")
        w("")
        for k, tags in R["vestibule_log_warnings"].items():
            w(f"- `{k}` (in: {', '.join(tags)})")
        w("")

    w("## Commands")
    w("")
    w("Processes (the backend, then each proxy in turn):")
    w("")
    w("```sh")
    for k, val in R["commands"].items():
        w(val)
    w("```")
    w("")
    w("Load, per scenario (shown against Vestibule; the ceiling uses the backend's ports "
      "instead, the other proxies the same ports):")
    w("")
    w("```sh")
    for s in SCENARIOS:
        r = sc.get(s["id"], {}).get("runs", {}).get("vestibule") or next(iter(sc.get(s["id"], {}).get("runs", {}).values()), {})
        if r.get("command"):
            w(f"# {sc[s['id']]['title']}")
            w(r["command"])
    w("```")
    w("")
    w("## Configurations")
    w("")
    for name, text in configs.items():
        w(f"<details><summary>{name}</summary>")
        w("")
        w("```")
        w(text.rstrip())
        w("```")
        w("")
        w("</details>")
        w("")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 s per scenario, 1,000 Ingresses")
    ap.add_argument("--vestibule", required=True, help="the vestibule binary")
    ap.add_argument("--loadgen", required=True, help="the bench/loadgen binary")
    ap.add_argument("--report", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--duration", type=float, help="seconds per scenario (10; 3 with --quick)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds (2; 0.5 with --quick)")
    ap.add_argument("--only", help="comma-separated scenario ids: " + ",".join(s["id"] for s in SCENARIOS))
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--scales", help="Ingress counts for the control plane (1000,10000,100000; 1000 with --quick)")
    ap.add_argument("--changes", type=int, help="changes per scale for Vestibule (100; 10 with --quick)")
    ap.add_argument("--churn", type=int, help="changes made back to back after the timed ones, before Vestibule's "
                    "steady memory is read again (1000; 50 with --quick; 0 skips)")
    ap.add_argument("--churn-budget", type=float, default=600, help="seconds at most for the churn per scale")
    ap.add_argument("--nginx-max-scale", type=int, default=10000, help="largest scale nginx is run at (10000)")
    ap.add_argument("--nginx-changes", type=int, help="changes per scale for nginx (100; 5 with --quick)")
    ap.add_argument("--change-budget", type=float, help="seconds at most for Vestibule's changes per scale")
    ap.add_argument("--nginx-change-budget", type=float, help="seconds at most for nginx's changes per scale")
    ap.add_argument("--ready-timeout", type=float, default=300)
    ap.add_argument("--nginx-upstreams", choices=["shared", "per-service"], default="shared",
                    help="control plane nginx.conf: one upstream for all locations, as ingress-nginx (Lua "
                         "balancer) has, or one upstream per Service with its endpoints")
    ap.add_argument("--skip-data-plane", action="store_true")
    ap.add_argument("--skip-control-plane", action="store_true")
    ap.add_argument("--proxy-cpu", type=int, default=1)
    ap.add_argument("--load-cpu", type=int, default=0)
    # Below Linux's default ephemeral range (32768-60999): a listener there can collide with
    # a client connection's local port (EADDRINUSE), since the load opens tens of thousands.
    ap.add_argument("--port-base", type=int, default=21000,
                    help="first of ~500 loopback ports; keep it outside net.ipv4.ip_local_port_range")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    try:
        lo, hi = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
        if a.port_base + 500 >= lo and a.port_base <= hi:
            print(f"bench: warning: ports {a.port_base}-{a.port_base + 500} overlap the ephemeral range {lo}-{hi}; "
                  "a listener may fail with 'Address already in use'", file=sys.stderr)
    except (OSError, ValueError):
        pass
    a.scales = a.scales or ("1000" if a.quick else "1000,10000,100000")
    a.changes = a.changes if a.changes is not None else (10 if a.quick else 100)
    a.churn = a.churn if a.churn is not None else (50 if a.quick else 1000)
    a.nginx_changes = a.nginx_changes if a.nginx_changes is not None else (5 if a.quick else 100)
    a.change_budget = a.change_budget or (30 if a.quick else 120)
    a.nginx_change_budget = a.nginx_change_budget or (30 if a.quick else 90)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    atexit.register(PROCS.stop_all)
    b = Bench(a)
    atexit.register(lambda: a.keep or shutil.rmtree(b.work, ignore_errors=True))
    b.run()
    if b.results["failures"]:
        print(f"{len(b.results['failures'])} problem(s); see the report's first lines", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

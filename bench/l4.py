"""TCP services in the side-by-side bench: the parts of each proxy's configuration, the backend,
the check and the load of the two TCP scenarios (throughput, connection rate). harness.py
calls these when a TCP scenario is selected.

The backend is `loadgen tcp-backend`: a source port that writes bytes until the client goes,
and an echo port that closes after the first newline. Each proxy forwards one external port to
each, as plain TCP:
  nginx    a `stream {}` server per port (Debian's libnginx-mod-stream, loaded with load_module),
           with the directives ingress-nginx writes for a TCP service;
  HAProxy  a `listen` section per port in `mode tcp`;
  Vestibule `--tcp-services-configmap default/tcp-services`, a ConfigMap of two entries.
"""

import os
import re
import socket
import subprocess
import time

CONFIGMAP = "default/tcp-services"
# Where Debian's libnginx-mod-stream puts the module (its modules-enabled snippet loads it by
# this path relative to /usr/share/nginx; the bench's nginx runs with its own prefix).
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


class Ports:
    def __init__(self, base):
        self.source = base + 4  # backend: bytes until the client closes
        self.echo = base + 5  # backend: echo
        self.proxy_source = base + 10  # each proxy: to the source
        self.proxy_echo = base + 11  # each proxy: to the echo


def backend_argv(loadgen, p):
    return [loadgen, "tcp-backend", "--source", f"127.0.0.1:{p.source}", "--echo", f"127.0.0.1:{p.echo}"]


def nginx_load_module():
    """The load_module line, unless this nginx has the stream module built in."""
    try:
        v = subprocess.run(["nginx", "-V"], capture_output=True, text=True, timeout=10).stderr
    except (OSError, subprocess.TimeoutExpired):
        v = ""
    if re.search(r"--with-stream(\s|$)", v):
        return ""
    if not os.path.exists(NGINX_STREAM_MODULE):
        raise SystemExit(f"nginx has no stream module at {NGINX_STREAM_MODULE}: install libnginx-mod-stream "
                         "(bench/run.sh does)")
    return f"load_module {NGINX_STREAM_MODULE};\n"


def nginx_stream(p):
    """ingress-nginx's TCP service server block (without its Lua balancer: a static upstream)."""
    def server(port, upstream):
        return f"""    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        proxy_timeout 600s;
        proxy_next_upstream on;
        proxy_next_upstream_timeout 600s;
        proxy_next_upstream_tries 3;
        proxy_pass {upstream};
    }}
"""
    return f"""stream {{
    # TCP services: as ingress-nginx's stream section (proxy-stream-* defaults), access log off.
    access_log off;
    tcp_nodelay on;
    upstream tcp-default-tcp-source-9000 {{
        server 127.0.0.1:{p.source} max_fails=0;
    }}
    upstream tcp-default-tcp-echo-9001 {{
        server 127.0.0.1:{p.echo} max_fails=0;
    }}
{server(p.proxy_source, "tcp-default-tcp-source-9000")}{server(p.proxy_echo, "tcp-default-tcp-echo-9001")}}}
"""


def haproxy(p):
    return f"""
# TCP services: plain TCP proxies.
defaults
    mode tcp
    maxconn 8000
    timeout connect 5s
    timeout client 600s
    timeout server 600s

listen tcp-source
    bind 127.0.0.1:{p.proxy_source}
    server s1 127.0.0.1:{p.source} maxconn 20000

listen tcp-echo
    bind 127.0.0.1:{p.proxy_echo}
    server s1 127.0.0.1:{p.echo} maxconn 20000
"""


def vestibule_manifests(p):
    ns, name = CONFIGMAP.split("/")

    def service(svc, port, target):
        return f"""---
apiVersion: v1
kind: Service
metadata:
  name: {svc}
  namespace: default
spec:
  ports:
  - name: tcp
    port: {port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {svc}-1
  namespace: default
  labels:
    kubernetes.io/service-name: {svc}
addressType: IPv4
ports:
- name: tcp
  port: {target}
endpoints:
- addresses: ["127.0.0.1"]
  conditions:
    ready: true
"""
    return (service("tcp-source", 9000, p.source) + service("tcp-echo", 9001, p.echo) + f"""---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: {ns}
data:
  "{p.proxy_source}": "default/tcp-source:9000"
  "{p.proxy_echo}": "default/tcp-echo:9001"
""")


def vestibule_args():
    return ["--tcp-services-configmap", CONFIGMAP]


def check(port, kind, timeout=10.0):
    """None if `port` forwards as it should (bytes from the source; the echo of a line), else
    what is wrong. Retries until `timeout`: a proxy may open its TCP ports after its HTTP ones."""
    end = time.monotonic() + timeout
    last = "not tried"
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.getsockname() == s.getpeername():
                    # Nobody listened, and the kernel picked `port` itself as the ephemeral port.
                    return f"127.0.0.1:{port}: nothing listening (the check connected to itself)"
                s.settimeout(2)
                if kind == "echo":
                    msg = b"vestibule bench echo\n"
                    s.sendall(msg)
                    got = b""
                    while len(got) < len(msg):
                        c = s.recv(4096)
                        if not c:
                            break
                        got += c
                    if got == msg:
                        return None
                    last = f"echo: sent {msg!r}, got {got!r}"
                else:
                    got = 0
                    while got < (1 << 20):
                        c = s.recv(1 << 16)
                        if not c:
                            break
                        got += len(c)
                    if got >= (1 << 20):
                        return None
                    last = f"source: {got} bytes, then closed"
        except OSError as e:
            last = f"127.0.0.1:{port}: {e}"
        time.sleep(0.05)
    return last


def load_argv(loadgen, sc, port, duration):
    argv = [loadgen, sc["tool"], "--addr", f"127.0.0.1:{port}", "--duration", f"{duration:g}",
            "--connections", str(sc["conns"])]
    if sc["tool"] == "tcp-connect":
        argv += ["--size", str(sc.get("size", 64))]
    return argv


def parse(sc, g):
    """A result from loadgen's JSON line: MB/s for streams; connections/s for connect."""
    r = {"errors": g["errors"], "non2xx": 0, "seconds": g["seconds"]}
    if sc["tool"] == "tcp-stream":
        r.update({"requests": g["requests"], "streams": g["requests"], "bytes": g["bytes"], "mbytes_s": g["mbytes_s"],
                  "rps": None, "p50_us": None, "p99_us": None, "p999_us": None, "max_us": None})
        if not g["bytes"]:
            r["requests"] = 0
    else:
        r.update({"requests": g["requests"], "rps": g["rps"], "p50_us": g["p50_us"], "p99_us": g["p99_us"],
                  "p999_us": g["p999_us"], "max_us": g["max_us"]})
    if g.get("first_error"):
        r["first_error"] = g["first_error"]
    return r


SCENARIOS = [
    {"id": "tcp", "title": "9. TCP service throughput", "tool": "tcp-stream", "conns": 8, "l4": "source",
     "metric": "mbytes_s", "unit": "MB/s", "per": "GB",
     "setup": "bench/loadgen `tcp-stream`: 8 TCP connections to a TCP service (nginx `stream`, HAProxy "
              "`mode tcp`, Vestibule `--tcp-services-configmap`) whose backend (`loadgen tcp-backend`) writes "
              "64 KiB chunks as fast as it can; the client reads with a 256 KiB buffer and counts the bytes "
              "(MB = 10⁶ bytes). Latency is not measured."},
    {"id": "tcpconn", "title": "10. TCP service connection rate", "tool": "tcp-connect", "conns": 32, "size": 64,
     "l4": "echo", "metric": "rps", "unit": "conn/s", "per": "1k conn",
     "setup": "bench/loadgen `tcp-connect`: 32 workers, each in a loop: connect to a TCP service, send 64 bytes, "
              "the last a newline, read the echo (`loadgen tcp-backend`; checked), which the backend closes after "
              "the newline; wait for that close to reach the client, close. Latency is from connect to the whole "
              "echo. The server side closes first (as in scenario 4), so TIME_WAIT stays on listening ports."},
]

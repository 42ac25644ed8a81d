"""HTTP/3 in the side-by-side bench: the scenario beside HTTP/2 (same shape: 4 connections, 64
streams each, `GET /`), its load command, its check, and which proxies can take part.

h2load has no HTTP/3 in Debian's build (nghttp2 1.52 without ngtcp2 and nghttp3: no `--h3`), so the load is bench/loadgen `h3` (quinn + h3).
Vestibule serves HTTP/3 on the HTTPS port's UDP twin (`--http3`, on by default). Debian's nginx is
built without `http_v3_module` and Debian's HAProxy without QUIC (`-QUIC` in `haproxy -vv`), and
the backend is that nginx: those rows say so instead of a figure. Vestibule's HTTP/3 req/s is
also given as a ratio to its own HTTP/2 figure from the same run, when scenario h2 ran.
"""

import re
import socket
import ssl
import subprocess

# The HTTP/2 scenario this one is compared with.
BESIDE = "h2"


def _output(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return p.stdout + p.stderr
    except (OSError, subprocess.TimeoutExpired):
        return ""


def support():
    """{target: None if it can serve HTTP/3 in this bench, else why not}, from the installed builds."""
    out = {"vestibule": None}
    nginx = _output(["nginx", "-V"])
    out["nginx"] = None if "--with-http_v3_module" in nginx else \
        "not supported by the Debian build (`nginx -V` has no `--with-http_v3_module`)"
    out["backend"] = "no ceiling: the backend is Debian's nginx, which has no HTTP/3"
    haproxy = _output(["haproxy", "-vv"])
    out["haproxy"] = None if re.search(r"(^|\s)\+QUIC(\s|$)", haproxy) else \
        "not supported by the Debian build (`haproxy -vv` lists `-QUIC`)"
    for t in ("nginx", "haproxy"):
        if out[t] is None:
            # A build with HTTP/3 (not Debian's today): the bench has no configuration for it yet.
            out[t] = "this build has HTTP/3, but the bench does not configure it yet"
    return out


_support = None


def skip_reason(sc, target):
    """Why `target` has no figure in scenario `sc` (None: it runs)."""
    global _support
    if sc.get("tool") != "h3":
        return None
    if _support is None:
        _support = support()
    return _support.get(target)


def load_argv(loadgen, sc, port, host, duration):
    return [loadgen, "h3", "--addr", f"127.0.0.1:{port}", "--host", host, "--sni", host, "--path", sc.get("path", "/"),
            "--duration", f"{duration:g}", "--connections", str(sc["clients"]), "--streams", str(sc["streams"])]


def check(port, host, timeout=5.0):
    """None if the HTTPS answer over TCP advertises HTTP/3 on the same port (Alt-Svc), else what
    is wrong. The requests themselves are checked by the warm-up: only 200s count."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while b"\r\n\r\n" not in data:
                    c = s.recv(65536)
                    if not c:
                        break
                    data += c
    except (OSError, ssl.SSLError) as e:
        return f"HTTPS 127.0.0.1:{port}: {e}"
    head = data.partition(b"\r\n\r\n")[0].decode(errors="replace")
    m = re.search(r"(?im)^alt-svc:\s*(.+)$", head)
    if not m:
        return f"HTTPS 127.0.0.1:{port}: no Alt-Svc header (HTTP/3 off?): {head[:200]!r}"
    if f'h3=":{port}"' not in m.group(1):
        return f"HTTPS 127.0.0.1:{port}: Alt-Svc {m.group(1).strip()!r} does not name UDP port {port}"
    return None


def beside(scenarios):
    """Vestibule's HTTP/3 req/s over its HTTP/2 req/s in the same run, or None."""
    v3 = scenarios.get("h3", {}).get("runs", {}).get("vestibule", {}).get("rps")
    v2 = scenarios.get(BESIDE, {}).get("runs", {}).get("vestibule", {}).get("rps")
    return v3 / v2 if v3 and v2 else None


SCENARIOS = [
    {"id": "h3", "title": "5b. HTTP/3, many streams per connection", "tool": "h3", "clients": 4, "streams": 64,
     "setup": "bench/loadgen `h3` (quinn and h3, one thread): 4 QUIC connections (TLS 1.3, ALPN h3, each its "
              "own UDP socket) to the HTTPS port's UDP twin, 64 requests in flight on each, `GET /`, a new "
              "request as soon as one is answered; latency from sending a request to the end of its body; "
              "only 200s count. The client skips certificate verification, as in scenario 4. Before the run, "
              "an HTTPS answer over TCP must advertise the port in `Alt-Svc`. h2load cannot be used: Debian's "
              "nghttp2 1.52 is built without HTTP/3 (no `--h3`). The same shape as scenario 5, so Vestibule's "
              "HTTP/3 figure is also given as a ratio to its HTTP/2 one."},
]

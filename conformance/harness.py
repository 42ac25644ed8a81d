"""Starts what the conformance scripts test: a backend and Vestibule in front of it, on
127.0.0.1, with manifests and a certificate written to a temporary directory.

    with Stack(backend="echo") as s:      # `vestibule echo` as the backend
        s.http_port, s.https_port          # Vestibule's listeners
    with Stack(backend_port=PORT) as s:    # a backend the caller runs (e.g. a recorder)

Every process started here is stopped on exit. The binary is $VESTIBULE_BIN, or
target/debug/vestibule (conformance/setup.sh builds it).
"""
import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "conformance.test"


def vestibule_bin():
    b = os.environ.get("VESTIBULE_BIN") or os.path.join(ROOT, "target", "debug", "vestibule")
    if not os.access(b, os.X_OK):
        raise SystemExit(f"no vestibule binary at {b}: run conformance/setup.sh or set VESTIBULE_BIN")
    return b


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def make_cert(d):
    """A self-signed RSA certificate for HOST (openssl req), as PEM files in d."""
    crt, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)
    return crt, key


def manifests(d, backend_port, crt, key, extra_annotations=""):
    b64 = lambda p: base64.b64encode(open(p, "rb").read()).decode()
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
  name: conformance-tls
  namespace: default
type: kubernetes.io/tls
data:
  tls.crt: {b64(crt)}
  tls.key: {b64(key)}
---
apiVersion: v1
kind: Service
metadata:
  name: backend
  namespace: default
spec:
  ports:
  - name: http
    port: 80
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-1
  namespace: default
  labels:
    kubernetes.io/service-name: backend
addressType: IPv4
ports:
- name: http
  port: {backend_port}
endpoints:
- addresses: ["127.0.0.1"]
  conditions:
    ready: true
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: conformance
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/ssl-redirect: "false"{extra_annotations}
spec:
  ingressClassName: vestibule
  tls:
  - hosts: [{HOST}]
    secretName: conformance-tls
  rules:
  - http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: backend
            port:
              number: 80
"""
    with open(os.path.join(d, "conformance.yaml"), "w") as f:
        f.write(text)


class Stack:
    def __init__(self, backend="echo", backend_port=None, extra_args=()):
        self.backend = backend
        self.backend_port = backend_port
        self.extra_args = list(extra_args)
        self.procs = []

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="vestibule-conformance-")
        vbin = vestibule_bin()
        log = open(os.path.join(self.dir, "vestibule.log"), "w")
        if self.backend == "echo":
            self.backend_port = free_port()
            self.procs.append(subprocess.Popen([vbin, "echo", "--listen", f"127.0.0.1:{self.backend_port}"],
                                               stdout=log, stderr=subprocess.STDOUT))
            wait_port(self.backend_port)
        self.crt, self.key = make_cert(self.dir)
        mdir = os.path.join(self.dir, "manifests")
        os.makedirs(mdir)
        manifests(mdir, self.backend_port, self.crt, self.key)
        self.http_port, self.https_port, self.healthz_port = free_port(), free_port(), free_port()
        argv = [vbin, "serve", "--manifests", mdir, "--bind-address", "127.0.0.1",
                "--http-port", str(self.http_port), "--https-port", str(self.https_port),
                "--healthz-port", str(self.healthz_port), "--default-ssl-certificate", "default/conformance-tls",
                "--access-log", "off", "--shutdown-delay", "0", "--shutdown-grace-period", "1s"] + self.extra_args
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        wait_port(self.http_port)
        wait_port(self.https_port)
        end = time.time() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.healthz_port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > end:
                raise RuntimeError("vestibule did not become ready; see " + log.name)
            time.sleep(0.1)
        return self

    def __exit__(self, *exc):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        if not os.environ.get("CONFORMANCE_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

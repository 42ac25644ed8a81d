"""HTTP/2 frame-level checks in the manner of h2spec, written against RFC 9113 and RFC 7541,
run against Vestibule over TLS (ALPN h2) and over cleartext with prior knowledge (h2c).

    python h2checks.py OUT_DIR      writes OUT_DIR/h2.json, exits 1 on a failure

The checks are in h2checks_conn.py and h2checks_frames.py; the wire helpers in h2wire.py.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import h2checks_conn  # noqa: E402,F401  (registers its checks)
import h2checks_frames  # noqa: E402,F401
from h2wire import CHECKS, Conn  # noqa: E402


def main():
    out = sys.argv[1]
    results = []
    with harness.Stack() as s:
        for transport, port, tls in (("h2 (TLS, ALPN)", s.https_port, True), ("h2c (prior knowledge)", s.http_port, False)):
            for section, ref, title, fn in CHECKS:
                c = Conn(port, tls)
                try:
                    ok, detail = fn(c)
                except Exception as e:  # a check that could not run fails
                    ok, detail = False, f"{type(e).__name__}: {e}"
                finally:
                    c.close()
                results.append({"transport": transport, "section": section, "rfc": ref, "check": title, "pass": bool(ok), "detail": detail})
                print(f"{'PASS' if ok else 'FAIL'}  {transport:22} {ref:10} {title}: {detail}", flush=True)
    with open(os.path.join(out, "h2.json"), "w") as f:
        json.dump(results, f, indent=1)
    n, failed = len(results), [r for r in results if not r["pass"]]
    print(f"{n - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# TLS: testssl.sh (Debian package testssl.sh) against Vestibule's HTTPS port with a generated
# self-signed certificate. Writes out/testssl.json (its findings) and out/testssl.log.
source "$(dirname "$0")/setup.sh"
have testssl || apt_need testssl.sh
rm -f "$OUT/testssl.json"
"$CONFORMANCE_PY" - "$OUT" <<'PY'
import os, subprocess, sys
sys.path.insert(0, os.environ["CONF_DIR"])
import harness
out = sys.argv[1]
with harness.Stack() as s:
    # -p protocols, -s cipher categories, -f forward secrecy, -P server preferences, -S the
    # certificate, -h HTTP headers, -U every vulnerability check (renegotiation included).
    argv = ["testssl", "--quiet", "--color", "0", "--warnings", "batch", "--ip", "one",
            "--jsonfile", os.path.join(out, "testssl.json"), "-p", "-s", "-f", "-P", "-S", "-h", "-U",
            f"127.0.0.1:{s.https_port}"]
    with open(os.path.join(out, "testssl.log"), "w") as log:
        subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, timeout=1800)
PY
test -s "$OUT/testssl.json"

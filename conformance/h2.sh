#!/usr/bin/env bash
# HTTP/2 frame-level checks (RFC 9113, RFC 7541) with raw frames, over TLS (ALPN h2) and h2c
# prior knowledge. Writes out/h2.json.
source "$(dirname "$0")/setup.sh"
"$CONFORMANCE_PY" "$CONF_DIR/h2checks.py" "$OUT"

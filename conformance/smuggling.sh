#!/usr/bin/env bash
# HTTP/1.1 request smuggling differential: the corpus in smuggling.py, sent raw to Vestibule in
# front of a recording backend. Writes out/smuggling.json.
source "$(dirname "$0")/setup.sh"
"$CONFORMANCE_PY" "$CONF_DIR/smuggling.py" "$OUT"

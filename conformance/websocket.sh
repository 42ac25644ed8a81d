#!/usr/bin/env bash
# WebSocket: the Autobahn testsuite (wstest, PyPI autobahntestsuite 0.8.2, which runs on Python
# 2.7 only) through Vestibule to `vestibule echo`, and directly to the echo for comparison.
# Python 2.7: $PYTHON2, or python2.7 on PATH, or pyenv's 2.7. Writes out/websocket.json.
source "$(dirname "$0")/setup.sh"
PY2="${PYTHON2:-}"
if [ -z "$PY2" ]; then
  PY2="$(command -v python2.7 || true)"
  [ -z "$PY2" ] && PY2="$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python 2>/dev/null | tail -1 || true)"
fi
if [ -z "$PY2" ] || ! "$PY2" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
  echo "websocket: no Python 2.7 (set PYTHON2); the Autobahn testsuite does not run on Python 3" >&2
  echo '{"skipped": "no Python 2.7"}' > "$OUT/websocket.json"
  exit 2
fi
SITE="$CONF_DIR/.py2"
if [ ! -d "$SITE/autobahntestsuite" ]; then
  "$PY2" -m pip install -q --disable-pip-version-check --target "$SITE" autobahntestsuite==0.8.2
fi
rm -rf "$OUT/autobahn"
"$CONFORMANCE_PY" "$CONF_DIR/autobahn.py" "$OUT" "$PY2" "$SITE"

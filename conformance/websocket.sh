#!/usr/bin/env bash
# WebSocket: the Autobahn testsuite (wstest, PyPI autobahntestsuite 0.8.2, which runs on Python
# 2.7 only) through Vestibule to `vestibule echo`, and directly to the echo for comparison.
# Python 2.7: $PYTHON2, or python2.7 on PATH, or pyenv's 2.7. Writes out/websocket.json.
source "$(dirname "$0")/setup.sh"
is_py27() { [ -n "$1" ] && "$1" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; }
PY2=""
for candidate in "${PYTHON2:-}" "$(command -v python2.7 || true)" \
    $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python 2>/dev/null || true); do
  if is_py27 "$candidate"; then PY2="$candidate"; break; fi
done
if [ -z "$PY2" ]; then
  echo "websocket: no Python 2.7 (set PYTHON2); the Autobahn testsuite does not run on Python 3" >&2
  echo '{"skipped": "no Python 2.7 on this machine (Debian 12 has none; set PYTHON2)"}' > "$OUT/websocket.json"
  exit 2
fi
SITE="$CONF_DIR/.py2"
if [ ! -d "$SITE/autobahntestsuite" ]; then
  "$PY2" -m pip install -q --disable-pip-version-check --target "$SITE" autobahntestsuite==0.8.2
fi
rm -rf "$OUT/autobahn"
"$CONFORMANCE_PY" "$CONF_DIR/autobahn.py" "$OUT" "$PY2" "$SITE"

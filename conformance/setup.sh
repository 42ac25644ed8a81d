# Sourced by the conformance scripts: installs what they need when missing and builds Vestibule.
#   CONFORMANCE_PY      a Python 3 with the `h2` package (a venv in conformance/.venv)
#   VESTIBULE_BIN       target/debug/vestibule unless already set
# Debian packages come from apt-get (one `apt-get update`, only when something is missing),
# Python packages from PyPI with pip.
set -euo pipefail
export CONF_DIR; CONF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$CONF_DIR")"
OUT="$CONF_DIR/out"
mkdir -p "$OUT"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
have() { command -v "$1" >/dev/null 2>&1; }

apt_updated=0
apt_need() {   # apt_need PACKAGE...: installs the packages given
  export DEBIAN_FRONTEND=noninteractive
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  apt-get install -y -qq --no-install-recommends "$@"
}
have openssl || apt_need openssl
have python3 || apt_need python3 python3-venv

VENV="$CONF_DIR/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || { apt_need python3-venv; python3 -m venv "$VENV"; }
fi
"$VENV/bin/python" -c 'import h2' 2>/dev/null || "$VENV/bin/pip" install -q h2
export CONFORMANCE_PY="$VENV/bin/python"

if [ -z "${VESTIBULE_BIN:-}" ]; then
  export VESTIBULE_BIN="$ROOT/target/debug/vestibule"
  # A debug binary newer than every source (as `cargo test` leaves it) is used as it is:
  # `cargo build` would recompile the dependencies, whose features differ without dev-deps.
  if [ ! -x "$VESTIBULE_BIN" ] || [ -n "$(find "$ROOT/src" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$VESTIBULE_BIN" -print -quit)" ]; then
    (cd "$ROOT" && cargo build -q --bin vestibule)
  fi
fi

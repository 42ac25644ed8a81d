#!/usr/bin/env bash
# Runs every conformance suite against a debug build of Vestibule and writes
# docs/conformance.md from their results (conformance/out/). Installs what the suites need when
# missing (apt-get, pip). Only 127.0.0.1 is used; every process started is stopped.
#
#   conformance/run.sh              all four: tls h2 smuggling websocket
#   conformance/run.sh h2 tls       some of them (the report covers what out/ holds)
# Exits non-zero when a suite could not run or a failure has no explanation in report.py.
source "$(dirname "$0")/setup.sh"
suites=("$@")
[ "${#suites[@]}" -gt 0 ] || suites=(tls h2 smuggling websocket)
status=0
declare -A result=([tls]=testssl.json [h2]=h2.json [smuggling]=smuggling.json [websocket]=websocket.json)
for s in "${suites[@]}"; do
  [ -n "${result[$s]:-}" ] || { echo "conformance: no suite $s (tls, h2, smuggling, websocket)" >&2; exit 2; }
  echo "== $s"
  rm -f "$OUT/${result[$s]}"
  rc=0
  bash "$CONF_DIR/$s.sh" > "$OUT/$s.log" 2>&1 || rc=$?
  tail -n 3 "$OUT/$s.log"
  # A suite exits 1 when a check fails (report.py then decides whether each failure is
  # explained); without its results file, or with another exit code, it did not run.
  if [ ! -s "$OUT/${result[$s]}" ] || [ "$rc" -gt 1 ]; then
    echo "conformance: $s did not run (exit $rc), see conformance/out/$s.log" >&2
    status=1
  fi
done
commit="$(git -C "$ROOT" rev-parse --short HEAD)"
git -C "$ROOT" diff --quiet HEAD -- src || commit="$commit (with uncommitted changes in src/)"
"$CONFORMANCE_PY" "$CONF_DIR/report.py" "$OUT" "$ROOT/docs/conformance.md" "$commit" || status=1
echo "conformance: wrote docs/conformance.md"
exit "$status"

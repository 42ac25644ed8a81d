"""WebSocket: the Autobahn testsuite's fuzzingclient (wstest, Python 2.7) against `vestibule
echo` twice: through Vestibule, and directly. Vestibule tunnels the bytes after the upgrade,
so each case's outcome is the echo server's; the direct run shows which outcomes those are,
and any case whose outcome differs between the two runs is Vestibule's doing.

    python autobahn.py OUT_DIR PYTHON2 SITE_DIR     writes OUT_DIR/websocket.json
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# 9.*: throughput; only the single messages of 64 KiB to 1 MiB run (9.1.1-9.1.3 text,
# 9.2.1-9.2.3 binary): the rest send 4 to 16 MiB messages or thousands of frames and measure
# speed, not protocol rules. 12.* and 13.*: permessage-deflate, which the echo does not offer.
EXCLUDE = ["9.1.4", "9.1.5", "9.1.6", "9.2.4", "9.2.5", "9.2.6", "9.3.*", "9.4.*", "9.5.*", "9.6.*", "9.7.*", "9.8.*",
           "12.*", "13.*"]


def main():
    out, py2, site = sys.argv[1:4]
    report_dir = os.path.join(out, "autobahn")
    with harness.Stack() as s:
        spec = {"outdir": report_dir, "cases": ["*"], "exclude-cases": EXCLUDE, "exclude-agent-cases": {},
                "servers": [{"agent": "through-vestibule", "url": f"ws://127.0.0.1:{s.http_port}/"},
                            {"agent": "echo-direct", "url": f"ws://127.0.0.1:{s.backend_port}/"}]}
        spec_path = os.path.join(out, "fuzzingclient.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        boot = ("import site, sys; site.addsitedir(sys.argv[1]); sys.argv = ['wstest'] + sys.argv[2:]; "
                "from autobahntestsuite.wstest import run; run()")
        with open(os.path.join(out, "wstest.log"), "w") as log:
            subprocess.run([py2, "-c", boot, site, "-m", "fuzzingclient", "-s", spec_path], cwd=out,
                           stdout=log, stderr=subprocess.STDOUT, timeout=3600, check=True)
    index = json.load(open(os.path.join(report_dir, "index.json")))
    results = []
    via, direct = index["through-vestibule"], index["echo-direct"]
    for case_id in sorted(via, key=lambda c: [int(x) for x in c.split(".")]):
        a, b = via[case_id], direct.get(case_id, {})
        results.append({"case": case_id, "section": case_id.split(".")[0], "behavior": a["behavior"], "close": a["behaviorClose"],
                        "direct": b.get("behavior"), "direct_close": b.get("behaviorClose")})
    with open(os.path.join(out, "websocket.json"), "w") as f:
        json.dump({"excluded": EXCLUDE, "cases": results}, f, indent=1)
    differ = [r for r in results if (r["behavior"], r["close"]) != (r["direct"], r["direct_close"])]
    bad = [r for r in results if r["behavior"] == "FAILED"]
    print(f"{len(results)} cases; {len(bad)} FAILED through Vestibule; {len(differ)} differ from the direct run")
    for r in differ:
        print("differs:", r)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

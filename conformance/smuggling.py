"""HTTP/1.1 request smuggling differential: a corpus of framing variants (CL.TE, TE.CL, TE.TE
obfuscations, Content-Length forms, chunk-size forms, request-line and header oddities), each
sent raw to Vestibule in front of the recording backend (recorder.py).

A case passes when Vestibule refuses it (a 4xx/5xx, or the connection closed, and nothing
reaches the backend) or forwards it unambiguously (the backend receives exactly one request,
well framed by RFC 9112's strict grammar, with nothing left over, and no request for the
smuggled target). Every hidden request in the corpus asks for /smuggled.

    python smuggling.py OUT_DIR      writes OUT_DIR/smuggling.json, exits 1 on a failure
"""
import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from recorder import Recorder, strict_parse, wait_quiet  # noqa: E402

H = b"Host: conformance.test\r\n"
SM = b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"
CHUNKED_SM = b"0\r\n\r\n" + SM            # ends a chunked body, then a hidden request
CASES = []


def case(family, name, raw):
    CASES.append((family, name, raw))


def post(headers, body):
    return b"POST / HTTP/1.1\r\n" + H + headers + b"\r\n" + body


def cl(n):
    return b"Content-Length: %d\r\n" % n


# ---- controls: well-formed requests must be forwarded ------------------------------------
case("control", "GET", b"GET / HTTP/1.1\r\n" + H + b"\r\n")
case("control", "POST with Content-Length", post(cl(5), b"hello"))
case("control", "POST chunked", post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"))
case("control", "a hidden request inside a Content-Length body", post(cl(len(SM)), SM))

# ---- CL.TE and TE.CL ---------------------------------------------------------------------
case("CL.TE", "Content-Length then Transfer-Encoding: chunked", post(cl(len(CHUNKED_SM)) + b"Transfer-Encoding: chunked\r\n", CHUNKED_SM))
case("CL.TE", "Transfer-Encoding: chunked then Content-Length", post(b"Transfer-Encoding: chunked\r\n" + cl(len(CHUNKED_SM)), CHUNKED_SM))
_te_cl_body = b"%x\r\n" % len(SM) + SM + b"\r\n0\r\n\r\n"
case("TE.CL", "Content-Length: 4 over a chunk holding a request", post(cl(4) + b"Transfer-Encoding: chunked\r\n", _te_cl_body))
case("TE.CL", "Content-Length: 0 with a chunked body", post(cl(0) + b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"))

# ---- TE.TE: obfuscated Transfer-Encoding, beside a Content-Length and alone ---------------
TE_FORMS = [
    ("xchunked", b"Transfer-Encoding: xchunked\r\n"),
    ("space before the colon", b"Transfer-Encoding : chunked\r\n"),
    ("tab before the colon", b"Transfer-Encoding\t: chunked\r\n"),
    ("leading space (obs-fold)", b"X-Pad: 1\r\n Transfer-Encoding: chunked\r\n"),
    ("folded value", b"Transfer-Encoding: x\r\n chunked\r\n"),
    ("chunked, identity", b"Transfer-Encoding: chunked, identity\r\n"),
    ("identity, chunked", b"Transfer-Encoding: identity, chunked\r\n"),
    ("gzip, chunked", b"Transfer-Encoding: gzip, chunked\r\n"),
    ("two headers, chunked first", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n"),
    ("two headers, chunked last", b"Transfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n"),
    ("quoted", b'Transfer-Encoding: "chunked"\r\n'),
    ("NUL in the value", b"Transfer-Encoding: chun\x00ked\r\n"),
    ("vertical tab before the value", b"Transfer-Encoding:\x0bchunked\r\n"),
    ("form feed after the value", b"Transfer-Encoding: chunked\x0c\r\n"),
    ("underscore in the name", b"Transfer_Encoding: chunked\r\n"),
    ("bare LF after the header", b"Transfer-Encoding: chunked\n"),
    ("upper case value", b"Transfer-Encoding: CHUNKED\r\n"),
    ("parameter", b"Transfer-Encoding: chunked;q=1\r\n"),
]
for label, te in TE_FORMS:
    case("TE.TE + CL", label, post(cl(len(CHUNKED_SM)) + te, CHUNKED_SM))
    case("TE.TE alone", label, post(te, CHUNKED_SM))
case("TE.TE alone", "chunked in HTTP/1.0", b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_SM)

# ---- Content-Length forms ----------------------------------------------------------------
for label, header in [
    ("repeated, same value", cl(len(SM)) + cl(len(SM))),
    ("repeated, different values", cl(0) + cl(len(SM))),
    ("a list", b"Content-Length: %d, %d\r\n" % (len(SM), len(SM))),
    ("plus sign", b"Content-Length: +%d\r\n" % len(SM)),
    ("minus sign", b"Content-Length: -1\r\n"),
    ("hex", b"Content-Length: 0x%x\r\n" % len(SM)),
    ("exponent", b"Content-Length: %de0\r\n" % len(SM)),
    ("space inside", b"Content-Length: 4 %d\r\n" % len(SM)),
    ("space before the colon", b"Content-Length : %d\r\n" % len(SM)),
    ("NUL after the value", b"Content-Length: %d\x00\r\n" % len(SM)),
    ("overflowing 2^64", b"Content-Length: 18446744073709551616%d\r\n" % len(SM)),
    ("folded value", b"Content-Length:\r\n %d\r\n" % len(SM)),
    ("empty", b"Content-Length: \r\n"),
    ("named as hop-by-hop in Connection", b"Connection: Content-Length\r\n" + cl(len(SM))),
]:
    case("Content-Length", label, post(header, SM))
case("Content-Length", "leading zeros", post(b"Content-Length: 000%d\r\n" % len(SM), SM))
case("Content-Length", "GET with a body", b"GET / HTTP/1.1\r\n" + H + cl(len(SM)) + b"\r\n" + SM)
case("Content-Length", "Transfer-Encoding named in Connection", post(b"Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n", CHUNKED_SM))

# ---- chunk-size forms --------------------------------------------------------------------
TE = b"Transfer-Encoding: chunked\r\n"
for label, body in [
    ("extension", b"5;name=value\r\nhello\r\n0\r\n\r\n"),
    ("quoted extension with CRLF", b'5;a="x\r\n' + SM + b'"\r\nhello\r\n0\r\n\r\n'),
    ("0x prefix", b"0x5\r\nhello\r\n0\r\n\r\n" + SM),
    ("plus sign", b"+5\r\nhello\r\n0\r\n\r\n" + SM),
    ("minus sign", b"-5\r\nhello\r\n0\r\n\r\n" + SM),
    ("leading space", b" 5\r\nhello\r\n0\r\n\r\n" + SM),
    ("space before an extension", b"5 ;x\r\nhello\r\n0\r\n\r\n"),
    ("leading zeros", b"0000000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("overflowing 64 bits", b"10000000000000005\r\nhello\r\n0\r\n\r\n" + SM),
    ("bare LF line ends", b"5\nhello\n0\n\n" + SM),
    ("data longer than its size", b"3\r\nhello\r\n0\r\n\r\n" + SM),
    ("extension on the last chunk", b"0;x=1\r\n\r\n"),
    ("trailer fields", b"0\r\nX-Trailer: 1\r\n\r\n"),
    ("trailer holding Content-Length", b"0\r\nContent-Length: 50\r\n\r\n" + SM),
    ("no CRLF after the last chunk", b"0\r\n" + SM),
]:
    case("chunk size", label, post(TE, body))

# ---- heads with bare LF line ends (RFC 9112 §2.2 lets a recipient accept them) ------------
LF = lambda raw: raw.replace(b"\r\n", b"\n")
case("bare LF heads", "repeated Content-Length, same value", LF(b"POST / HTTP/1.1\r\n" + H + cl(len(SM)) + cl(len(SM)) + b"\r\n") + SM)
case("bare LF heads", "repeated Content-Length, different values", LF(b"POST / HTTP/1.1\r\n" + H + cl(0) + cl(len(SM)) + b"\r\n") + SM)
case("bare LF heads", "Content-Length and Transfer-Encoding", LF(b"POST / HTTP/1.1\r\n" + H + cl(len(CHUNKED_SM)) + TE + b"\r\n") + CHUNKED_SM)
case("bare LF heads", "CRLF lines, LF blank line", b"POST / HTTP/1.1\r\n" + H + cl(len(SM)) + cl(len(SM)) + b"\n" + SM)

# ---- request line, Host and header oddities ------------------------------------------------
for label, raw in [
    ("two spaces before the version", b"GET /  HTTP/1.1\r\n" + H + b"\r\n"),
    ("a fourth word", b"GET / HTTP/1.1 x\r\n" + H + b"\r\n"),
    ("tab as separator", b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n"),
    ("bare LF line ends", b"GET / HTTP/1.1\n" + H.replace(b"\r\n", b"\n") + b"\n"),
    ("bare CR line ends", b"GET / HTTP/1.1\r" + H.replace(b"\r\n", b"\r") + b"\r"),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n"),
    ("HTTP/2.0 over HTTP/1", b"GET / HTTP/2.0\r\n" + H + b"\r\n"),
    ("HTTP/0.9 simple request", b"GET /\r\n\r\n"),
    ("blank lines before the request", b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n"),
    ("NUL in the target", b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n"),
    ("absolute-form naming another host", b"GET http://other.test/ HTTP/1.1\r\n" + H + b"\r\n"),
    ("absolute-form with user information", b"GET http://a@other.test/ HTTP/1.1\r\n" + H + b"\r\n"),
    ("two Host headers", b"GET / HTTP/1.1\r\n" + H + b"Host: other.test\r\n\r\n"),
    ("no Host", b"GET / HTTP/1.1\r\n\r\n"),
    ("Host with a space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
    ("Host with a path", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
    ("NUL in a header value", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\x002\r\n\r\n"),
    ("NUL in a header name", b"GET / HTTP/1.1\r\n" + H + b"X-\x00A: 1\r\n\r\n"),
    ("space in a header name", b"GET / HTTP/1.1\r\n" + H + b"X A: 1\r\n\r\n"),
    ("empty header name", b"GET / HTTP/1.1\r\n" + H + b": 1\r\n\r\n"),
    ("header line without a colon", b"GET / HTTP/1.1\r\n" + H + b"X-A\r\n\r\n"),
    ("obs-fold on an ordinary header", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r\n 2\r\n\r\n"),
    ("CR inside a header value", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r2\r\n\r\n"),
    ("h2c upgrade with a body", post(b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n" + cl(len(SM)), SM)),
    ("Expect: 100-continue", post(b"Expect: 100-continue\r\n" + cl(5), b"hello")),
]:
    case("request line and headers", label, raw)


def send(port, raw, quiet=1.0):
    """Sends raw, returns (statuses answered, closed by Vestibule)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(raw)
    got, closed, end = b"", False, time.time() + 8
    s.settimeout(quiet)
    while time.time() < end:
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            closed = True
            break
        if not data:
            closed = True
            break
        got += data
    s.close()
    return [int(x) for x in re.findall(rb"HTTP/1\.[01] (\d{3}) ", got)], closed


def expected(raw):
    """The requests the client sent, by the strict grammar; when that fails, by the reading
    RFC 9112 §2.2 allows (a bare LF ends a line). None when neither reading is clean."""
    for reading in (raw, re.sub(rb"(?<!\r)\n", b"\r\n", raw)):
        reqs, problems = strict_parse(reading)
        if not problems:
            return [(m, t) for m, t, _ in reqs]
    return None


def judge(raw, statuses, closed, seen):
    sent = expected(raw) or []
    reqs, problems = [], []
    for data in seen.values():
        r, p = strict_parse(data)
        reqs += r
        problems += p
    smuggled = [r for r in reqs if "smuggled" in r[1]]
    if problems:
        return False, "backend saw: " + "; ".join(problems)
    got = [(m, t) for m, t, _ in reqs]
    if len(got) > 1 and got == sent:
        # The client sent two requests by any reading (a pipeline, not a smuggle) and the
        # backend got the same two, each well framed.
        return True, "a pipeline of %d requests, forwarded as sent, each well framed" % len(got)
    if smuggled or len(reqs) > 1:
        return False, f"backend saw {len(reqs)} requests ({', '.join(m + ' ' + t for m, t in got)})"
    if reqs:
        return True, "forwarded as one well-framed request"
    refused = [s for s in statuses if s >= 400]
    if refused and statuses[0] >= 400:
        return True, f"refused with {refused[0]}" + (", connection closed" if closed else ", connection kept open")
    if not statuses and closed:
        return True, "refused: connection closed without an answer"
    return False, f"neither refused nor forwarded (answers {statuses}, closed={closed})"


def main():
    out = sys.argv[1]
    rec = Recorder()
    results = []
    with harness.Stack(backend=None, backend_port=rec.port) as s:
        for family, name, raw in CASES:
            wait_quiet(rec, 0.1)
            rec.take()
            statuses, closed = send(s.http_port, raw)
            wait_quiet(rec)
            seen = rec.take()
            ok, detail = judge(raw, statuses, closed, seen)
            results.append({"family": family, "case": name, "pass": ok, "detail": detail, "answers": statuses,
                            "closed": closed, "sent": raw.decode("latin-1"), "backend": {str(k): v.decode("latin-1") for k, v in seen.items()}})
            print(f"{'PASS' if ok else 'FAIL'}  {family:25} {name}: {detail} {statuses}", flush=True)
    with open(os.path.join(out, "smuggling.json"), "w") as f:
        json.dump(results, f, indent=1)
    failed = [r for r in results if not r["pass"]]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

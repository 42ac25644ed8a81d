"""HTTP/2 checks, part 2: frame sizes and definitions, HPACK (RFC 7541), malformed requests, GOAWAY."""
import struct
import time

from h2wire import *  # noqa: F401,F403


# ---- 4.2 / 6 frame sizes and frame definitions -------------------------------------------
S = "Frame size and frame definitions"


@check(S, "4.2", "DATA larger than SETTINGS_MAX_FRAME_SIZE: FRAME_SIZE_ERROR")
def _(c):
    c.start()
    c.send(POST_OPEN(c), frame(DATA, 0, 1, b"x" * (c.server_settings.get(S_MAX_FRAME_SIZE, 16384) + 1)))
    return conn_error(c, FRAME_SIZE_ERROR)


@check(S, "4.2", "HEADERS larger than SETTINGS_MAX_FRAME_SIZE: FRAME_SIZE_ERROR")
def _(c):
    c.start()
    big = c.req(extra=[("x-pad", "p" * (c.server_settings.get(S_MAX_FRAME_SIZE, 16384) + 1))])
    c.send(hdrs(c, 1, big))
    return conn_error(c, FRAME_SIZE_ERROR)


@check(S, "4.1", "a frame of an unknown type is ignored")
def _(c):
    c.start()
    c.send(frame(0xfa, 0xff, 0, b"ignore me"))
    return alive(c)


@check(S, "4.1", "unknown flags on a frame are ignored")
def _(c):
    c.start()
    c.send(frame(HEADERS, END_STREAM | END_HEADERS | 0x40 | 0x10, 1, block(c.req())))
    return response(c, 1)


@check(S, "6.1", "DATA on stream 0: PROTOCOL_ERROR")
def _(c):
    c.start()
    c.send(frame(DATA, 0, 0, b"x"))
    return conn_error(c, PROTOCOL_ERROR)


@check(S, "6.1", "DATA whose padding is as long as the payload: PROTOCOL_ERROR")
def _(c):
    c.start()
    c.send(POST_OPEN(c), frame(DATA, PADDED, 1, bytes([5]) + b"abcd"))
    return conn_error(c, PROTOCOL_ERROR)


@check(S, "6.2", "HEADERS on stream 0: PROTOCOL_ERROR")
def _(c):
    c.start()
    c.send(hdrs(c, 0, c.req()))
    return conn_error(c, PROTOCOL_ERROR)


@check(S, "6.2", "HEADERS whose padding exceeds the payload: PROTOCOL_ERROR")
def _(c):
    c.start()
    b = block(c.req())
    c.send(frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1, bytes([len(b) + 10]) + b))
    return conn_error(c, PROTOCOL_ERROR)


@check(S, "6.3", "PRIORITY on stream 0: PROTOCOL_ERROR")
def _(c):
    c.start()
    c.send(frame(PRIORITY, 0, 0, struct.pack(">IB", 1, 15)))
    return conn_error(c, PROTOCOL_ERROR)


@check(S, "6.3", "PRIORITY of 4 bytes: FRAME_SIZE_ERROR")
def _(c):
    c.start()
    c.send(frame(PRIORITY, 0, 1, b"\x00\x00\x00\x03"))
    return stream_error(c, 1, FRAME_SIZE_ERROR)


@check(S, "6.4", "RST_STREAM on stream 0: PROTOCOL_ERROR")
def _(c):
    c.start()
    c.send(rst(0))
    return conn_error(c, PROTOCOL_ERROR)


@check(S, "6.4", "RST_STREAM of 3 bytes: FRAME_SIZE_ERROR")
def _(c):
    c.start()
    c.send(POST_OPEN(c), frame(RST_STREAM, 0, 1, b"\x00\x00\x08"))
    return conn_error(c, FRAME_SIZE_ERROR)


@check(S, "6.6", "PUSH_PROMISE from a client: PROTOCOL_ERROR")
def _(c):
    c.start()
    c.send(POST_OPEN(c), frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) + block(c.req())))
    return conn_error(c, PROTOCOL_ERROR)


@check(S, "6.8", "GOAWAY on a stream other than 0: PROTOCOL_ERROR")
def _(c):
    c.start()
    c.send(frame(GOAWAY, 0, 1, struct.pack(">II", 0, 0)))
    return conn_error(c, PROTOCOL_ERROR)


@check(S, "6.10", "HEADERS split over CONTINUATION is one request")
def _(c):
    c.start()
    b = block(c.req())
    c.send(frame(HEADERS, END_STREAM, 1, b[:10]), frame(CONTINUATION, 0, 1, b[10:20]), frame(CONTINUATION, END_HEADERS, 1, b[20:]))
    return response(c, 1)


@check(S, "6.10", "CONTINUATION without HEADERS before it: PROTOCOL_ERROR")
def _(c):
    c.start()
    c.send(frame(CONTINUATION, END_HEADERS, 1, block(c.req())))
    return conn_error(c, PROTOCOL_ERROR)


@check(S, "6.10", "another frame between HEADERS and its CONTINUATION: PROTOCOL_ERROR")
def _(c):
    c.start()
    b = block(c.req())
    c.send(frame(HEADERS, END_STREAM, 1, b[:10]), ping(), frame(CONTINUATION, END_HEADERS, 1, b[10:]))
    return conn_error(c, PROTOCOL_ERROR)


@check(S, "6.10", "CONTINUATION on another stream than its HEADERS: PROTOCOL_ERROR")
def _(c):
    c.start()
    b = block(c.req())
    c.send(frame(HEADERS, END_STREAM, 1, b[:10]), frame(CONTINUATION, END_HEADERS, 3, b[10:]))
    return conn_error(c, PROTOCOL_ERROR)


# ---- 4.3 / RFC 7541 HPACK ------------------------------------------------------------------
S = "HPACK"


def hpack_case(c, raw):
    c.start()
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, raw))
    return conn_error(c, COMPRESSION_ERROR)


@check(S, "7541 6.1", "an indexed field with index 0: COMPRESSION_ERROR")
def _(c):
    return hpack_case(c, block(c.req()) + b"\x80")


@check(S, "7541 2.3.3", "an index past the static and dynamic tables: COMPRESSION_ERROR")
def _(c):
    return hpack_case(c, block(c.req()) + hint(200, 7, 0x80))


@check(S, "7541 6.3", "a table size update above SETTINGS_HEADER_TABLE_SIZE: COMPRESSION_ERROR")
def _(c):
    return hpack_case(c, hint(1 << 20, 5, 0x20) + block(c.req()))


@check(S, "7541 4.2", "a table size update after a header field: COMPRESSION_ERROR")
def _(c):
    return hpack_case(c, block(c.req()) + hint(0, 5, 0x20))


@check(S, "7541 5.2", "a Huffman string holding EOS: COMPRESSION_ERROR")
def _(c):
    return hpack_case(c, block(c.req()) + b"\x00\x01a" + bytes([0x84]) + b"\xff\xff\xff\xff")


@check(S, "7541 5.2", "a string length past the end of the block: COMPRESSION_ERROR")
def _(c):
    return hpack_case(c, block(c.req()) + b"\x00\x01a\x7f\x20ab")


@check(S, "7541 2.3.2", "dynamic table entries carry over between requests")
def _(c):
    c.start()
    enc = hpack.Encoder()
    ok = True
    for sid in (1, 3):
        c.send(frame(HEADERS, END_STREAM | END_HEADERS, sid, enc.encode(c.req(extra=[("x-repeat", "same value")]))))
        good, why = response(c, sid)
        ok = ok and good
    return ok, why


# ---- 8 HTTP semantics: malformed requests --------------------------------------------------
S = "Request headers (malformed requests)"


def malformed(c, headers, body=None, trailers=None):
    c.start()
    if body is None and trailers is None:
        c.send(hdrs(c, 1, headers))
    else:
        frames = [hdrs(c, 1, headers, END_HEADERS)]
        if body is not None:
            frames.append(frame(DATA, 0 if trailers else END_STREAM, 1, body))
        if trailers is not None:
            frames.append(hdrs(c, 1, trailers))
        c.send(*frames)
    return stream_error(c, 1, PROTOCOL_ERROR, allow_400=True)


def without(c, name):
    return [h for h in c.req() if h[0] != name]


for _name in (":method", ":scheme", ":path"):
    check(S, "8.3.1", f"no {_name} pseudo-header: PROTOCOL_ERROR or 400")(lambda c, n=_name: malformed(c, without(c, n)))
check(S, "8.3.1", "an empty :path: PROTOCOL_ERROR or 400")(lambda c: malformed(c, [(k, "" if k == ":path" else v) for k, v in c.req()]))
check(S, "8.3", "an unknown pseudo-header: PROTOCOL_ERROR or 400")(lambda c: malformed(c, c.req() + [(":foo", "bar")]))
check(S, "8.3", "a response pseudo-header (:status) in a request: PROTOCOL_ERROR or 400")(lambda c: malformed(c, c.req() + [(":status", "200")]))
check(S, "8.3", "a pseudo-header after a regular header: PROTOCOL_ERROR or 400")(lambda c: malformed(c, c.req()[:3] + [("x-a", "1")] + c.req()[3:]))
check(S, "8.3.1", "a :path given twice: PROTOCOL_ERROR or 400")(lambda c: malformed(c, c.req() + [(":path", "/other")]))
check(S, "8.1", "a pseudo-header in trailers: PROTOCOL_ERROR or 400")(
    lambda c: malformed(c, c.req("POST"), body=b"x", trailers=[(":method", "GET")]))
check(S, "8.2", "an uppercase header name: PROTOCOL_ERROR or 400")(lambda c: malformed(c, c.req(extra=[("X-Upper", "1")])))
check(S, "8.2.1", "a header name with a space: PROTOCOL_ERROR or 400")(lambda c: malformed(c, c.req(extra=[("x bad", "1")])))
check(S, "8.2.1", "a header value with a line feed: PROTOCOL_ERROR or 400")(lambda c: malformed(c, c.req(extra=[("x-a", "1\nx-b: 2")])))
check(S, "8.2.1", "a header value with NUL: PROTOCOL_ERROR or 400")(lambda c: malformed(c, c.req(extra=[("x-a", "1\x002")])))
for _h, _v in (("connection", "keep-alive"), ("keep-alive", "timeout=5"), ("proxy-connection", "keep-alive"),
               ("transfer-encoding", "chunked"), ("upgrade", "websocket")):
    check(S, "8.2.2", f"connection-specific header {_h}: PROTOCOL_ERROR or 400")(lambda c, h=_h, v=_v: malformed(c, c.req(extra=[(h, v)])))
check(S, "8.2.2", "TE other than trailers: PROTOCOL_ERROR or 400")(lambda c: malformed(c, c.req(extra=[("te", "gzip")])))


@check(S, "8.2.2", "TE: trailers is allowed")
def _(c):
    c.start()
    c.send(hdrs(c, 1, c.req(extra=[("te", "trailers")])))
    return response(c, 1)


check(S, "8.1.1", "content-length larger than the DATA sent: PROTOCOL_ERROR or 400")(
    lambda c: malformed(c, c.req("POST", extra=[("content-length", "10")]), body=b"abc"))
check(S, "8.1.1", "content-length smaller than the DATA sent: PROTOCOL_ERROR or 400")(
    lambda c: malformed(c, c.req("POST", extra=[("content-length", "1")]), body=b"abc"))


@check(S, "8.3.1", "a Host header naming another authority than :authority: 400")
def _(c):
    c.start()
    c.send(hdrs(c, 1, c.req(extra=[("host", "other.test")])))
    return response(c, 1, "400")


# ---- 6.8 GOAWAY ------------------------------------------------------------------------------
S = "GOAWAY"


@check(S, "6.8", "after a connection error, GOAWAY names the last stream processed")
def _(c):
    c.start()
    c.send(GET(c, 1))
    response(c, 1)
    c.send(GET(c, 3))
    response(c, 3)
    c.send(frame(DATA, 0, 0, b"x"))
    for f in c.frames():
        if f is None:
            return False, "closed without GOAWAY"
        if f[0] == GOAWAY:
            last = struct.unpack(">I", f[3][:4])[0] & 0x7fffffff
            return last == 3 and goaway_code(f) == PROTOCOL_ERROR, c.describe(f)
    return False, "no GOAWAY"


@check(S, "6.8", "a client GOAWAY lets the stream in flight finish, then the connection closes")
def _(c):
    c.start()
    c.send(GET(c, 1, path="/?delay_ms=300"), frame(GOAWAY, 0, 0, struct.pack(">II", 0, NO_ERROR)))
    got = False
    for f in c.frames():
        if f is None:
            return got, "response, then close" if got else "closed before the response"
        if f[0] == HEADERS and f[2] == 1:
            got = f[4].get(":status") == "200"
    return False, "still open %ss after GOAWAY" % WAIT


@check(S, "6.8", "the server's GOAWAY on an error is its last frame: the connection is closed")
def _(c):
    c.start()
    c.send(window_update(0, 0))
    seen = False
    for f in c.frames():
        if f is None:
            return seen, "GOAWAY, then close" if seen else "close without GOAWAY"
        seen = seen or f[0] == GOAWAY
    return False, "not closed after GOAWAY"

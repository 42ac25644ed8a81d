"""HTTP/2 on the wire for the frame-level checks: raw frames built by hand (so that invalid
ones can be sent), a reader of the server's frames, and the outcomes RFC 9113 asks for.

Header blocks sent are built here too (HPACK literals without Huffman coding, or raw bytes),
so nothing normalises what a check sends; the server's blocks are decoded with `hpack`.
"""
import socket
import ssl
import struct
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIO = 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = range(10)
CODES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR", 4: "SETTINGS_TIMEOUT",
         5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR",
         10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE = 1, 2, 3, 4, 5
WAIT = 3.0


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def settings(*pairs, flags=0, stream=0):
    return frame(SETTINGS, flags, stream, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def ping(data=b"conform!", flags=0, stream=0):
    return frame(PING, flags, stream, data)


def window_update(stream, inc):
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", inc))


def rst(stream, code=CANCEL):
    return frame(RST_STREAM, 0, stream, struct.pack(">I", code))


def hint(value, prefix, first=0):
    """An HPACK integer with an N-bit prefix (RFC 7541 §5.1)."""
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes([first | value])
    out, value = [first | limit], value - limit
    while value >= 128:
        out.append((value & 0x7f) | 0x80)
        value >>= 7
    return bytes(out + [value])


def literal(name, value):
    """Literal header field without indexing, new name, no Huffman (RFC 7541 §6.2.2)."""
    name, value = (x.encode() if isinstance(x, str) else x for x in (name, value))
    return b"\x00" + hint(len(name), 7) + name + hint(len(value), 7) + value


def block(headers):
    return b"".join(literal(k, v) for k, v in headers)


class Closed(Exception):
    pass


class Conn:
    """One client connection: TLS with ALPN h2, or cleartext with prior knowledge."""

    def __init__(self, port, tls):
        self.port, self.tls, self.scheme = port, tls, "https" if tls else "http"
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="conformance.test")
            assert sock.selected_alpn_protocol() == "h2", "ALPN did not select h2"
        self.sock, self.buf, self.decoder = sock, b"", hpack.Decoder()
        self.server_settings, self.closed = {}, False
        self.log = []

    def req(self, method="GET", path="/", extra=(), authority="conformance.test"):
        return [(":method", method), (":scheme", self.scheme), (":path", path), (":authority", authority)] + list(extra)

    def send(self, *chunks):
        try:
            self.sock.sendall(b"".join(chunks))
        except OSError:
            self.closed = True

    def start(self, *our_settings, ack=True):
        """Preface, our SETTINGS, the server's SETTINGS (ACKed). Frames read before return are kept."""
        self.send(PREFACE, settings(*our_settings))
        f = self.read()
        if f is None or f[0] != SETTINGS or f[1] & ACK:
            raise AssertionError(f"server's first frame is not SETTINGS: {self.describe(f)}")
        p = f[3]
        self.server_settings = {struct.unpack(">H", p[i:i + 2])[0]: struct.unpack(">I", p[i + 2:i + 6])[0] for i in range(0, len(p), 6)}
        if ack:
            self.send(settings(flags=ACK))
        return self

    def read(self, timeout=WAIT):
        """The next frame as (type, flags, stream, payload); None when the connection closed."""
        end = time.time() + timeout
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            left = end - time.time()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError
            except (ssl.SSLError, OSError):
                data = b""
            if not data:
                self.closed = True
                return None
            self.buf += data
        n = int.from_bytes(self.buf[:3], "big")
        f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7fffffff, self.buf[9:9 + n])
        self.buf = self.buf[9 + n:]
        if f[0] in (HEADERS, CONTINUATION):
            f = self._headers(f)
        self.log.append(self.describe(f))
        return f

    def _headers(self, f):
        payload = f[3]
        if f[0] == HEADERS:
            if f[1] & PADDED:
                payload = payload[1:len(payload) - payload[0]]
            if f[1] & PRIO:
                payload = payload[5:]
        try:
            return f[:3] + (payload, dict(self.decoder.decode(payload, raw=False)))
        except Exception:
            return f[:3] + (payload, {})

    @staticmethod
    def describe(f):
        if f is None:
            return "connection closed"
        names = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING", "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]
        t = names[f[0]] if f[0] < len(names) else f"type {f[0]}"
        if f[0] == GOAWAY:
            return f"GOAWAY {CODES.get(struct.unpack('>I', f[3][4:8])[0], '?')} last={struct.unpack('>I', f[3][:4])[0] & 0x7fffffff}"
        if f[0] == RST_STREAM:
            return f"RST_STREAM {CODES.get(struct.unpack('>I', f[3][:4])[0], '?')} stream={f[2]}"
        if f[0] == HEADERS and len(f) > 4:
            return f"HEADERS stream={f[2]} :status={f[4].get(':status')}"
        return f"{t} stream={f[2]} flags={f[1]:#x} len={len(f[3])}"

    def frames(self, timeout=WAIT):
        """Frames until the connection closes or is quiet for `timeout`."""
        while True:
            try:
                f = self.read(timeout)
            except TimeoutError:
                return
            yield f
            if f is None:
                return

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def goaway_code(f):
    return struct.unpack(">I", f[3][4:8])[0]


def conn_error(c, *codes):
    """A connection error of one of `codes`: GOAWAY with it; a close without GOAWAY passes too
    (as h2spec counts it), reported as such."""
    for f in c.frames():
        if f is None:
            return True, "connection closed without GOAWAY"
        if f[0] == GOAWAY:
            code = goaway_code(f)
            return code in codes, c.describe(f)
    return False, "no GOAWAY and no close within %ss (saw: %s)" % (WAIT, ", ".join(c.log[-4:]) or "nothing")


def stream_error(c, stream, *codes, allow_400=False):
    """A stream error of one of `codes` on `stream`: RST_STREAM with it (or GOAWAY with it, a
    connection error being allowed in place of a stream error); with allow_400 a 400 response
    (RFC 9113 §8.1.1 lets an intermediary answer a malformed request with 4xx)."""
    for f in c.frames():
        if f is None:
            return True, "connection closed"
        if f[0] == RST_STREAM and f[2] == stream:
            code = struct.unpack(">I", f[3][:4])[0]
            return code in codes, c.describe(f)
        if f[0] == GOAWAY:
            return goaway_code(f) in codes, c.describe(f)
        if f[0] == HEADERS and f[2] == stream and len(f) > 4:
            status = f[4].get(":status")
            return allow_400 and status == "400", f"response :status {status}"
    return False, "no RST_STREAM within %ss (saw: %s)" % (WAIT, ", ".join(c.log[-4:]) or "nothing")


def response(c, stream, want="200"):
    """A response with :status `want` on `stream`, the connection staying up."""
    for f in c.frames():
        if f is None:
            return False, "connection closed"
        if f[0] == HEADERS and f[2] == stream and len(f) > 4:
            status = f[4].get(":status")
            return status == want, f"response :status {status}"
        if f[0] == GOAWAY or (f[0] == RST_STREAM and f[2] == stream):
            return False, c.describe(f)
    return False, "no response within %ss" % WAIT


def alive(c):
    """The connection still works: a PING is answered with a PING ACK carrying its data."""
    c.send(ping(b"alive?!!"))
    for f in c.frames():
        if f is None:
            return False, "connection closed"
        if f[0] == GOAWAY:
            return False, c.describe(f)
        if f[0] == PING and f[1] & ACK and f[3] == b"alive?!!":
            return True, "PING answered"
    return False, "PING not answered"


# ---- the registry of checks, and request helpers shared by h2checks_*.py ----------------
CHECKS = []


def check(section, ref, title):
    def wrap(fn):
        CHECKS.append((section, ref, title, fn))
        return fn
    return wrap


def hdrs(c, stream, headers, flags=END_STREAM | END_HEADERS):
    return frame(HEADERS, flags, stream, block(headers))


GET = lambda c, s=1, **kw: hdrs(c, s, c.req(**kw))
POST_OPEN = lambda c, s=1, extra=(): hdrs(c, s, c.req("POST", "/", extra), END_HEADERS)

"""A raw-socket HTTP/1 backend that records exactly the bytes it receives, per connection,
and answers each request it can delimit with a small 200. `strict_parse` then reads what was
recorded by RFC 9112's grammar with no leniency, to tell whether what reached the backend is
unambiguous."""
import re
import socket
import threading
import time

TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
HEADER = re.compile(rb"^(" + TOKEN + rb"):[ \t]*([\x21-\x7e\x80-\xff]([\x20-\x7e\x80-\xff\t]*[\x21-\x7e\x80-\xff])?)?[ \t]*$")
REQUEST_LINE = re.compile(rb"^(" + TOKEN + rb") ([\x21-\x7e\x80-\xff]+) HTTP/1\.[01]$")
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nContent-Type: text/plain\r\n\r\nrecorded\n"


class Recorder:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.chunks = []  # (connection number, bytes), in arrival order
        self.conns = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                n = self.conns
            threading.Thread(target=self._serve, args=(s, n), daemon=True).start()

    def _serve(self, s, n):
        pending = b""
        with s:
            while True:
                try:
                    data = s.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                with self.lock:
                    self.chunks.append((n, data))
                pending += data
                while True:
                    used = lenient_length(pending)
                    if used is None:
                        break
                    pending = pending[used:]
                    try:
                        s.sendall(ANSWER)
                    except OSError:
                        return

    def take(self):
        """What arrived since the last take, per connection."""
        with self.lock:
            chunks, self.chunks = self.chunks, []
        per = {}
        for n, data in chunks:
            per[n] = per.get(n, b"") + data
        return per


def lenient_length(buf):
    """How many bytes the first request in buf takes, if it is complete (for answering only)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head, rest = buf[:end], end + 4
    cl, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            cl = int(value.strip())
        if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return rest + cl if len(buf) >= rest + cl else None
    i = rest
    while True:
        nl = buf.find(b"\r\n", i)
        if nl < 0:
            return None
        try:
            size = int(buf[i:nl].split(b";")[0], 16)
        except ValueError:
            return len(buf)
        if size == 0:
            t = buf.find(b"\r\n\r\n", nl)
            return t + 4 if t >= 0 else None
        i = nl + 2 + size + 2
        if i > len(buf):
            return None


def strict_parse(data):
    """Requests in data as [(method, target, headers)], and the problems found: anything a
    lenient parser could read differently. Parsing stops at the first problem."""
    reqs, problems, i = [], [], 0
    while i < len(data):
        end = data.find(b"\r\n\r\n", i)
        if end < 0:
            problems.append(f"{len(data) - i} bytes that are not a complete request head")
            break
        lines = data[i:end].split(b"\r\n")
        i = end + 4
        if any(b"\n" in l or b"\r" in l or b"\x00" in l for l in lines):
            problems.append("a bare CR, LF or NUL in the head")
            break
        m = REQUEST_LINE.match(lines[0])
        if not m:
            problems.append(f"a request line off the grammar: {lines[0][:60]!r}")
            break
        headers = []
        for l in lines[1:]:
            hm = HEADER.match(l)
            if not hm:
                problems.append(f"a header line off the grammar: {l[:60]!r}")
                break
            headers.append((hm.group(1).lower().decode(), (hm.group(2) or b"").decode("latin-1")))
        if problems:
            break
        names = [h[0] for h in headers]
        cls = [v for k, v in headers if k == "content-length"]
        tes = [v for k, v in headers if k == "transfer-encoding"]
        if names.count("host") != 1:
            problems.append(f"{names.count('host')} Host headers")
        if cls and tes:
            problems.append("both Content-Length and Transfer-Encoding")
            break
        if len(cls) > 1 or len(tes) > 1:
            problems.append("a repeated framing header")
            break
        reqs.append((m.group(1).decode(), m.group(2).decode("latin-1"), headers))
        if tes:
            if tes[0].lower() != "chunked":
                problems.append(f"Transfer-Encoding {tes[0]!r}")
                break
            while True:
                nl = data.find(b"\r\n", i)
                line = data[i:nl] if nl >= 0 else b""
                if nl < 0 or not re.fullmatch(rb"[0-9a-fA-F]{1,16}", line):
                    problems.append(f"a chunk-size line off the grammar: {line[:40]!r}")
                    return reqs, problems
                size, i = int(line, 16), nl + 2
                if size == 0:
                    # Trailer fields, each by the header grammar, then the blank line.
                    while data[i:i + 2] != b"\r\n":
                        nl = data.find(b"\r\n", i)
                        if nl < 0 or not HEADER.match(data[i:nl]) or b"\n" in data[i:nl]:
                            problems.append("a trailer line off the grammar, or no CRLF after the last chunk")
                            return reqs, problems
                        i = nl + 2
                    i += 2
                    break
                if data[i + size:i + size + 2] != b"\r\n":
                    problems.append("chunk data not followed by CRLF")
                    return reqs, problems
                i += size + 2
        elif cls:
            if not re.fullmatch(r"[0-9]{1,15}", cls[0]):
                problems.append(f"Content-Length {cls[0]!r}")
                break
            n = int(cls[0])
            if len(data) < i + n:
                problems.append("a body shorter than its Content-Length")
                break
            i += n
    return reqs, problems


def wait_quiet(rec, seconds=0.3):
    """Waits until nothing has arrived at the recorder for `seconds`."""
    while True:
        with rec.lock:
            before = len(rec.chunks)
        time.sleep(seconds)
        with rec.lock:
            if len(rec.chunks) == before:
                return

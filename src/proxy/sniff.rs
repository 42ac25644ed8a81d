//! A passive reader of HTTP/1 request heads as they arrive, before the HTTP parser normalises
//! them. The parser merges duplicate Content-Length headers and lets Transfer-Encoding override
//! Content-Length; both are how requests are smuggled past proxies, so Vestibule wants to see
//! them as sent and refuse them.
//!
//! The sniffer follows the message framing (Content-Length or chunked bodies) to find each head,
//! records a verdict per request, and never changes a byte. The request path takes the verdicts
//! in order and checks that each one is for the request it is handling.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the sniffer saw in one request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `METHOD target`, to match the verdict with the request the parser produced.
    pub request_line: String,
    pub problem: Option<&'static str>,
}

/// Verdicts of one connection, oldest first.
#[derive(Debug, Default)]
pub struct Verdicts {
    queue: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    verdicts: VecDeque<Verdict>,
    /// Request-line strings of verdicts already taken, reused for the next heads so that a
    /// keep-alive connection does not allocate one per request.
    spare: Vec<String>,
}

impl Verdicts {
    /// The framing problem of the request `method target`, if the sniffer saw one. A verdict that
    /// does not match the request (the sniffer lost track) makes it stop judging.
    pub fn take(&self, method: &str, target: &str) -> Option<&'static str> {
        let mut q = self.queue.lock().expect("verdicts lock");
        let v = q.verdicts.pop_front()?;
        let line = v.request_line.as_str();
        let matches = line.len() == method.len() + 1 + target.len()
            && line.starts_with(method)
            && line.as_bytes()[method.len()] == b' '
            && line.ends_with(target);
        if q.spare.len() < 4 {
            q.spare.push(v.request_line);
        }
        if !matches {
            q.verdicts.clear();
            return None;
        }
        v.problem
    }

    fn push(&self, method: &str, target: &str, problem: Option<&'static str>) {
        let mut q = self.queue.lock().expect("verdicts lock");
        let mut line = q.spare.pop().unwrap_or_default();
        line.clear();
        line.push_str(method);
        line.push(' ');
        line.push_str(target);
        q.verdicts.push_back(Verdict { request_line: line, problem });
    }
}

const MAX_HEAD: usize = 1024 * 1024;

#[derive(Debug)]
enum State {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    /// No longer HTTP/1 framing (upgrade, HTTP/2 preface, or lost): stop looking.
    Off,
}

/// Wraps a connection's byte stream; reads pass through unchanged.
pub struct Sniffer<IO> {
    io: IO,
    state: State,
    buf: Vec<u8>,
    verdicts: Arc<Verdicts>,
}

impl<IO> Sniffer<IO> {
    pub fn new(io: IO, verdicts: Arc<Verdicts>) -> Self {
        Sniffer { io, state: State::Head, buf: Vec::new(), verdicts }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Off => return,
                State::Head => {
                    // Blank lines before a request are allowed and skipped.
                    if self.buf.is_empty() {
                        while let Some(b'\r' | b'\n') = data.first() {
                            data = &data[1..];
                        }
                        if data.is_empty() {
                            return;
                        }
                    }
                    if self.buf.is_empty() {
                        // The usual case: the whole head arrived in this read; judged in place.
                        if let Some(end) = head_end(data) {
                            self.state = self.judge(&data[..end]);
                            data = &data[end..];
                            continue;
                        }
                    }
                    let start = self.buf.len().saturating_sub(3);
                    self.buf.extend_from_slice(data);
                    match head_end(&self.buf[start..]) {
                        Some(p) => {
                            let end = start + p;
                            // Continue with what followed the head in this read.
                            let consumed_from_data = data.len() - (self.buf.len() - end);
                            let mut head = std::mem::take(&mut self.buf);
                            self.state = self.judge(&head[..end]);
                            // The buffer is kept for the next head that spans reads.
                            head.clear();
                            self.buf = head;
                            data = &data[consumed_from_data..];
                        }
                        None => {
                            if self.buf.len() > MAX_HEAD {
                                self.state = State::Off;
                            }
                            return;
                        }
                    }
                }
                State::Body(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.state = State::Head;
                    }
                }
                State::ChunkSize | State::Trailers => {
                    let Some(nl) = data.iter().position(|b| *b == b'\n') else {
                        self.buf.extend_from_slice(data);
                        if self.buf.len() > 64 * 1024 {
                            self.state = State::Off;
                        }
                        return;
                    };
                    self.buf.extend_from_slice(&data[..=nl]);
                    data = &data[nl + 1..];
                    let line = std::mem::take(&mut self.buf);
                    let line = line.strip_suffix(b"\n").unwrap_or(&line);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if matches!(self.state, State::Trailers) {
                        if line.is_empty() {
                            self.state = State::Head;
                        }
                        continue;
                    }
                    let hex: &[u8] = line.split(|b| *b == b';').next().unwrap_or(b"");
                    let size = std::str::from_utf8(hex).ok().and_then(|h| u64::from_str_radix(h.trim(), 16).ok());
                    self.state = match size {
                        Some(0) => State::Trailers,
                        Some(n) => State::ChunkData(n),
                        // The parser refuses a bad chunk size and closes the connection.
                        None => State::Off,
                    };
                }
                State::ChunkData(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.state = State::ChunkDataEnd;
                    }
                }
                State::ChunkDataEnd => {
                    // The CRLF after chunk data.
                    let Some(nl) = data.iter().position(|b| *b == b'\n') else { return };
                    data = &data[nl + 1..];
                    self.state = State::ChunkSize;
                }
            }
        }
    }

    /// Records the verdict for a complete head and says how its body is framed.
    fn judge(&mut self, head: &[u8]) -> State {
        let text = String::from_utf8_lossy(head);
        // Lines end with CRLF or, as the parser also accepts, a bare LF.
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let request_line = lines.next().unwrap_or("");
        if request_line.starts_with("PRI * HTTP/2") {
            return State::Off;
        }
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or("");
        let target = parts.next().unwrap_or("");
        let (mut cls, mut tes, mut cl_value, mut chunked_last, mut upgrade) = (0, 0, None::<u64>, false, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let name = name.trim();
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                cls += 1;
                cl_value = value.parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                tes += 1;
                chunked_last = value.rsplit(',').next().is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        let problem = if cls > 0 && tes > 0 {
            Some("both Content-Length and Transfer-Encoding")
        } else if cls > 1 {
            Some("several Content-Length headers")
        } else {
            None
        };
        self.verdicts.push(method, target, problem);
        if upgrade || method.eq_ignore_ascii_case("CONNECT") {
            return State::Off;
        }
        if tes > 0 {
            return if chunked_last { State::ChunkSize } else { State::Off };
        }
        match cl_value {
            Some(0) | None if cls == 0 => State::Head,
            Some(0) => State::Head,
            Some(n) => State::Body(n),
            None => State::Off,
        }
    }
}

/// Where a head ends: after the empty line that closes it, whether its lines end with CRLF or
/// with a bare LF (the parser accepts both, so the sniffer must see both).
fn head_end(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = data[from..].iter().position(|b| *b == b'\n') {
        let lf = from + i;
        match data.get(lf + 1..) {
            Some([b'\n', ..]) => return Some(lf + 2),
            Some([b'\r', b'\n', ..]) => return Some(lf + 3),
            _ => from = lf + 1,
        }
    }
    None
}

impl<IO: AsyncRead + Unpin> AsyncRead for Sniffer<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            if !matches!(self.state, State::Off) {
                let this = &mut *self;
                this.feed(&buf.filled()[before..]);
            }
        }
        poll
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Sniffer<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff(input: &[u8], split: usize) -> Vec<Verdict> {
        let v = Arc::new(Verdicts::default());
        let mut s = Sniffer::new((), v.clone());
        for chunk in input.chunks(split.max(1)) {
            s.feed(chunk);
        }
        v.queue.lock().unwrap().verdicts.iter().cloned().collect()
    }

    #[test]
    fn follows_framing_and_flags_ambiguity() {
        let stream = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nGET /\r\n0\r\nT: 1\r\n\r\n\
POST /d HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        for split in [1, 3, 7, 1000] {
            let v = sniff(stream, split);
            let lines: Vec<_> = v.iter().map(|v| (v.request_line.as_str(), v.problem)).collect();
            assert_eq!(
                lines,
                vec![("POST /a", None), ("GET /b", None), ("POST /c", None), ("POST /d", Some("both Content-Length and Transfer-Encoding"))],
                "split {split}"
            );
        }
        let v = sniff(b"POST / HTTP/1.1\r\nContent-Length: 4\r\ncontent-length: 4\r\n\r\nabcd", 5);
        assert_eq!(v[0].problem, Some("several Content-Length headers"));
    }

    #[test]
    fn body_bytes_are_not_read_as_heads() {
        let body = b"\r\n\r\nPOST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut stream = format!("POST /up HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        stream.extend_from_slice(body);
        stream.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        let v = sniff(&stream, 4);
        assert_eq!(v.iter().map(|v| v.request_line.as_str()).collect::<Vec<_>>(), vec!["POST /up", "GET /next"]);
        assert!(v.iter().all(|v| v.problem.is_none()));
    }

    #[test]
    fn heads_with_bare_lf_line_ends_are_judged() {
        let stream = b"POST /a HTTP/1.1\nHost: x\nContent-Length: 4\nContent-Length: 4\n\nabcd\
POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\n\r\n0\r\n\r\n\
GET /c HTTP/1.1\nHost: x\n\n";
        for split in [1, 2, 5, 1000] {
            let v = sniff(stream, split);
            let lines: Vec<_> = v.iter().map(|v| (v.request_line.as_str(), v.problem)).collect();
            assert_eq!(
                lines,
                vec![("POST /a", Some("several Content-Length headers")), ("POST /b", Some("both Content-Length and Transfer-Encoding")), ("GET /c", None)],
                "split {split}"
            );
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\nA: b\n\nrest"), Some(21));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    #[test]
    fn verdicts_must_match_their_request() {
        let v = Verdicts::default();
        v.push("GET", "/a", Some("x"));
        v.push("GET", "/b", Some("y"));
        assert_eq!(v.take("GET", "/other"), None);
        assert_eq!(v.take("GET", "/b"), None, "a mismatch stops judging");
    }
}

//! The HTTP/1.1 upstream exchange without hyper, for cleartext HTTP/1.1 backends and requests
//! without a body (the common case). The request's own task writes the head and reads the
//! answer on a pooled connection: no connection task, no channel between them and no wakeup
//! across tasks, and the read buffer is kept with the connection.
//!
//! The response head is parsed with httparse (what hyper parses with) into the same
//! `http::response::Parts` hyper would give, and its body framed by length, chunked framing or
//! the connection's close, so that everything after it is the general path's.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Method, StatusCode, Version};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::Span;
use super::chunked::{Chunked, Step};
use crate::proxy::upstream::{BoxError, OpenGuard, Pool, ReadTimeout};

/// hyper's client limits: header fields in a response head, and the head's size.
const MAX_HEADERS: usize = 100;
const MAX_HEAD: usize = 400 * 1024;
/// Reads are made into at least this much free room.
const READ_ROOM: usize = 8 * 1024;

/// A cleartext HTTP/1.1 connection to an endpoint, with its read buffer.
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
    write: Vec<u8>,
    _open: OpenGuard,
    /// Taken from the pool rather than dialled for this request.
    pub reused: bool,
}

impl RawConn {
    pub(crate) fn new(stream: TcpStream, open: OpenGuard) -> Self {
        RawConn { stream, buf: BytesMut::new(), write: Vec::new(), _open: open, reused: false }
    }

    /// Whether an idle connection can still be used: the peer has not closed it nor sent
    /// anything unasked. Costs no system call unless the socket was reported readable.
    pub(crate) fn idle_ok(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// The head could not be written: the endpoint received nothing usable.
    #[error("writing the request failed: {0}")]
    Unsent(io::Error),
    /// The connection closed after the request and before any byte of an answer, which is how
    /// a pooled connection the endpoint closed meanwhile shows.
    #[error("connection closed before an answer")]
    Closed,
    #[error("reading the answer failed: {0}")]
    Io(io::Error),
    #[error("invalid response: {0}")]
    Invalid(&'static str),
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    Close,
}

/// The target as sent upstream: origin form (the general path has already rewritten it).
fn target(uri: &http::Uri) -> &str {
    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}

fn write_head<B>(out: &mut Vec<u8>, req: &http::Request<B>) {
    out.clear();
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target(req.uri()).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    super::put_fields(out, req.headers());
    out.extend_from_slice(b"\r\n");
}

/// Whether `headers` list `token` in Connection.
fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    crate::proxy::head::has_token(headers, &header::CONNECTION, token)
}

/// The response head at the front of `buf`, taken off it: parsed on the borrowed bytes, then
/// frozen, with every value shared from it rather than copied.
fn parse_head(buf: &mut BytesMut) -> Result<Option<http::response::Parts>, RawError> {
    let mut fields = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut spans = [Span::default(); MAX_HEADERS];
    let (n, status, version, count) = {
        let mut r = httparse::Response::new(&mut []);
        let n = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut r, buf, &mut fields) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
            Ok(httparse::Status::Partial) => return Err(RawError::Invalid("response head too large")),
            Err(httparse::Error::TooManyHeaders) => return Err(RawError::Invalid("too many response header fields")),
            Err(_) => return Err(RawError::Invalid("malformed response head")),
        };
        let status = r.code.and_then(|c| StatusCode::from_u16(c).ok()).ok_or(RawError::Invalid("bad status"))?;
        for (f, span) in r.headers.iter().zip(spans.iter_mut()) {
            *span = Span::of(buf, f);
        }
        (n, status, if r.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 }, r.headers.len())
    };
    let head = buf.split_to(n).freeze();
    let headers = super::fields(&head, &spans[..count], ADDED).ok_or(RawError::Invalid("bad header field"))?;
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(parts))
}

/// Fields the proxy may add to an answer (Server, Date, `add-headers`, ...): the map is made
/// with room for them.
const ADDED: usize = 4;

/// The body's framing (RFC 9112 §6.3). Transfer-Encoding wins over Content-Length, which is
/// then removed, as it would otherwise be forwarded beside a body it does not describe.
fn framing(method: &Method, parts: &mut http::response::Parts) -> Result<Option<Framing>, RawError> {
    let s = parts.status;
    if *method == Method::HEAD || s.is_informational() || s == StatusCode::NO_CONTENT || s == StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    if let Some(te) = parts.headers.get_all(header::TRANSFER_ENCODING).iter().last() {
        let chunked = te.to_str().ok().and_then(|s| s.rsplit(',').next()).is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        parts.headers.remove(header::CONTENT_LENGTH);
        return Ok(Some(if chunked { Framing::Chunked } else { Framing::Close }));
    }
    let mut length = None;
    for v in parts.headers.get_all(header::CONTENT_LENGTH) {
        for item in v.to_str().map_err(|_| RawError::Invalid("bad content-length"))?.split(',') {
            let n: u64 = item.trim().parse().map_err(|_| RawError::Invalid("bad content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(RawError::Invalid("conflicting content-length"));
            }
            length = Some(n);
        }
    }
    Ok(Some(length.map_or(Framing::Close, Framing::Length)))
}

fn poll_fill(stream: &mut TcpStream, buf: &mut BytesMut, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_ROOM / 2 {
        buf.reserve(READ_ROOM);
    }
    let spare = buf.spare_capacity_mut();
    let mut rb = ReadBuf::uninit(spare);
    ready!(Pin::new(stream).poll_read(cx, &mut rb))?;
    let n = rb.filled().len();
    // SAFETY: `poll_read` initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Poll::Ready(Ok(n))
}

/// A request whose head is ready to go on a connection.
pub struct Ready {
    conn: RawConn,
    head_request: bool,
    close: bool,
}

/// Writes the head of a request without a body into the connection's buffer.
pub fn ready<B>(mut conn: RawConn, req: &http::Request<B>) -> Ready {
    write_head(&mut conn.write, req);
    Ready { conn, head_request: req.method() == Method::HEAD, close: connection_has(req.headers(), "close") }
}

impl Ready {
    /// Sends the head and reads the answer's. 1xx answers other than 101 are skipped, as hyper
    /// does. The error comes with whether the connection was a reused one.
    pub async fn exchange(self) -> Result<(http::response::Parts, RawBody), (RawError, bool)> {
        let Ready { mut conn, head_request, close } = self;
        let reused = conn.reused;
        if let Err(e) = conn.stream.write_all(&conn.write).await {
            return Err((RawError::Unsent(e), reused));
        }
        let method = if head_request { Method::HEAD } else { Method::GET };
        let mut got_any = false;
        loop {
            if !conn.buf.is_empty() {
                got_any = true;
                if let Some(mut head) = parse_head(&mut conn.buf).map_err(|e| (e, reused))? {
                    if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                        continue;
                    }
                    let framing = framing(&method, &mut head).map_err(|e| (e, reused))?;
                    let keep = framing != Some(Framing::Close)
                        && head.status != StatusCode::SWITCHING_PROTOCOLS
                        && !close
                        && if head.version == Version::HTTP_11 { !connection_has(&head.headers, "close") } else { connection_has(&head.headers, "keep-alive") };
                    let state = match framing {
                        None | Some(Framing::Length(0)) => State::Done,
                        Some(Framing::Length(n)) => State::Length(n),
                        Some(Framing::Chunked) => State::Chunked(Chunked::default()),
                        Some(Framing::Close) => State::Close,
                    };
                    return Ok((head, RawBody { conn: Some(conn), state, keep, pool: None, deadline: None, armed: false }));
                }
            }
            let n = std::future::poll_fn(|cx| poll_fill(&mut conn.stream, &mut conn.buf, cx)).await;
            match n {
                Ok(0) if !got_any => return Err((RawError::Closed, reused)),
                Ok(0) => return Err((RawError::Io(io::ErrorKind::UnexpectedEof.into()), reused)),
                Ok(_) => {}
                Err(e) if !got_any && matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => return Err((RawError::Closed, reused)),
                Err(e) => return Err((RawError::Io(e), reused)),
            }
        }
    }
}

enum State {
    Length(u64),
    Chunked(Chunked),
    Close,
    Done,
}

/// A response body read from a raw connection, which goes back to the pool once the body has
/// been read to its end (when both sides allow keeping it), and fails when the endpoint sends
/// nothing for longer than the read timeout.
pub struct RawBody {
    conn: Option<RawConn>,
    state: State,
    keep: bool,
    pool: Option<(Arc<Pool>, SocketAddr, Duration)>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl RawBody {
    /// Where the connection goes back to, and the read timeout.
    pub fn pooled(mut self, pool: Arc<Pool>, addr: SocketAddr, read_timeout: Duration) -> Self {
        self.pool = Some((pool, addr, read_timeout));
        if matches!(self.state, State::Done) {
            self.finish();
        }
        self
    }

    fn finish(&mut self) {
        self.state = State::Done;
        if let (Some(conn), Some((pool, addr, _))) = (self.conn.take(), &self.pool)
            && self.keep
            && conn.buf.is_empty()
        {
            pool.put_raw(*addr, conn);
        }
    }

    fn fail(&mut self, e: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.state = State::Done;
        Poll::Ready(Some(Err(e.into())))
    }
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            // What the buffer already holds.
            let data = match &mut this.state {
                State::Done => {
                    this.finish();
                    return Poll::Ready(None);
                }
                State::Length(left) if !conn.buf.is_empty() => {
                    let n = (conn.buf.len() as u64).min(*left) as usize;
                    *left -= n as u64;
                    let d = conn.buf.split_to(n).freeze();
                    if *left == 0 {
                        this.finish();
                    }
                    Some(d)
                }
                State::Chunked(c) => match c.step(&mut conn.buf) {
                    Ok(Step::Data(d)) => Some(d),
                    Ok(Step::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::More) => None,
                    Err(e) => return this.fail(e),
                },
                State::Close if !conn.buf.is_empty() => Some(conn.buf.split().freeze()),
                _ => None,
            };
            if let Some(d) = data {
                this.armed = false;
                return Poll::Ready(Some(Ok(Frame::data(d))));
            }
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            match poll_fill(&mut conn.stream, &mut conn.buf, cx) {
                Poll::Ready(Ok(0)) if matches!(this.state, State::Close) => {
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => return this.fail(io::Error::from(io::ErrorKind::UnexpectedEof)),
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => return this.fail(e),
                Poll::Pending => {}
            }
            let timeout = this.pool.as_ref().map_or(Duration::from_secs(60), |p| p.2);
            let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
            if !this.armed {
                deadline.as_mut().reset(tokio::time::Instant::now() + timeout);
                this.armed = true;
            }
            return match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => this.fail(ReadTimeout(timeout)),
                Poll::Pending => Poll::Pending,
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// Whether the raw exchange can carry this request to this backend: cleartext HTTP/1.1, no
/// request body, no upgrade (the caller handles those before), and a method hyper would send
/// the same way.
pub fn carries(protocol: crate::config::BackendProtocol, req: &http::Request<crate::proxy::upstream::ReqBody>) -> bool {
    protocol == crate::config::BackendProtocol::Http && req.body().is_end_stream() && *req.method() != Method::CONNECT && req.version() == Version::HTTP_11
}

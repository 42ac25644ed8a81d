//! The client side of the HTTP/1.1 fast path: a keep-alive loop that parses request heads with
//! httparse into one reused buffer, hands each request to the same handler every protocol uses,
//! and writes the answer's head and body itself, without a task or a channel per request.
//!
//! It serves only heads that are plainly HTTP/1.1 requests without a body: no Content-Length,
//! Transfer-Encoding, Upgrade or Expect, an origin-form target, one Host, and no more fields
//! or bytes than the limits. Anything else, or anything httparse refuses, ends the fast path
//! for the connection: the bytes read so far are replayed into hyper (behind the framing
//! sniffer), which serves the rest of the connection exactly as it serves any other.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Sleep;

use super::Span;
use crate::proxy::Shared;
use crate::proxy::handler::{ConnInfo, handle};
use crate::proxy::head::has_token;
use crate::proxy::l4::prefixed::Prefixed;
use crate::proxy::respond::RespBody;
use crate::proxy::sniff::{Sniffer, Verdicts};

/// Heads longer than this go to hyper, which applies the configured limit (431 above it).
const FAST_HEAD: usize = 8 * 1024;
/// Field count above which the head goes to hyper.
const FAST_FIELDS: usize = 64;
/// Answer bytes gathered before a write.
const WRITE_BATCH: usize = 64 * 1024;

/// What the head at the front of the buffer is.
enum Parsed {
    /// A request the fast path serves; its head has been taken off the buffer.
    Request(Request<Empty<Bytes>>),
    /// Not complete yet.
    Partial,
    /// Something for hyper; the buffer is as it was.
    Elsewhere,
}

/// Parses the head at the front of `buf`. Everything that decides between the fast path and
/// hyper is checked on the borrowed bytes; only then is the head taken off the buffer and
/// frozen, and the target and every value shared from it.
fn parse(buf: &mut BytesMut, max_fields: usize) -> Parsed {
    let mut fields = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; FAST_FIELDS];
    let mut spans = [Span::default(); FAST_FIELDS];
    let (n, method, path, count) = {
        let mut r = httparse::Request::new(&mut []);
        let n = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut r, buf, &mut fields) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() < FAST_HEAD => return Parsed::Partial,
            _ => return Parsed::Elsewhere,
        };
        let (Some(method), Some(path), Some(1)) = (r.method, r.path, r.version) else { return Parsed::Elsewhere };
        if n > FAST_HEAD || r.headers.len() > max_fields || !path.starts_with('/') {
            return Parsed::Elsewhere;
        }
        let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Parsed::Elsewhere };
        if method == Method::CONNECT {
            return Parsed::Elsewhere;
        }
        let mut hosts = 0;
        for (f, span) in r.headers.iter().zip(spans.iter_mut()) {
            // Bodies, upgrades and 100-continue are hyper's.
            if ["content-length", "transfer-encoding", "upgrade", "expect"].iter().any(|n| f.name.eq_ignore_ascii_case(n)) {
                return Parsed::Elsewhere;
            }
            hosts += usize::from(f.name.eq_ignore_ascii_case("host"));
            *span = Span::of(buf, f);
        }
        if hosts > 1 {
            return Parsed::Elsewhere;
        }
        (n, method, super::range(buf, path.as_bytes()), r.headers.len())
    };
    let head = buf.split_to(n).freeze();
    let target = super::slice(&head, path).and_then(|t| Uri::from_maybe_shared(t).ok());
    let (Some(target), Some(headers)) = (target, super::fields(&head, &spans[..count], ADDED)) else {
        // Not reached for anything httparse accepts; if it were, hyper gets the bytes back.
        restore(buf, head);
        return Parsed::Elsewhere;
    };
    let mut req = Request::new(Empty::new());
    *req.method_mut() = method;
    *req.uri_mut() = target;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Parsed::Request(req)
}

/// Fields the proxy adds to a request before it goes upstream (`X-Forwarded-*`, `X-Real-IP`,
/// `X-Request-ID`, ...): the map is made with room for them.
const ADDED: usize = 12;

/// Puts a head taken off the front of `buf` back.
fn restore(buf: &mut BytesMut, head: Bytes) {
    let mut back = BytesMut::from(&head[..]);
    back.unsplit(std::mem::take(buf));
    *buf = back;
}

/// How waiting for a head ended.
enum Wait {
    Parsed(Request<Empty<Bytes>>),
    Elsewhere,
    /// Closed, timed out or draining: the connection ends.
    End,
}

/// Reads until the buffer starts with a complete head. Idle, the connection waits `idle`; the
/// head must be complete within `header_timeout` of the start, as hyper's header timeout.
/// `timer` is the connection's one timer, moved rather than made anew for each head (moving it
/// later is an atomic store; a new one is a timer-wheel insertion and removal).
async fn wait_head<I: AsyncRead + Unpin>(io: &mut I, buf: &mut BytesMut, idle: Duration, header_timeout: Duration, max_fields: usize, stop: &mut tokio::sync::watch::Receiver<bool>, mut timer: Pin<&mut Sleep>) -> Wait {
    let start = tokio::time::Instant::now();
    let mut set = None;
    loop {
        if !buf.is_empty() {
            match parse(buf, max_fields) {
                Parsed::Request(req) => return Wait::Parsed(req),
                Parsed::Elsewhere => return Wait::Elsewhere,
                Parsed::Partial => {}
            }
        }
        let limit = if buf.is_empty() { idle.min(header_timeout) } else { header_timeout };
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let deadline = start + limit;
        if set != Some(deadline) {
            timer.as_mut().reset(deadline);
            set = Some(deadline);
        }
        tokio::select! {
            r = io.read_buf(buf) => match r {
                Ok(0) | Err(_) => return Wait::End,
                Ok(_) => {}
            },
            _ = timer.as_mut() => return Wait::End,
            _ = stop.changed(), if buf.is_empty() => return Wait::End,
        }
    }
}

thread_local! {
    /// The Date value, made once a second.
    static DATE: std::cell::RefCell<(u64, HeaderValue)> = std::cell::RefCell::new((0, HeaderValue::from_static("")));
}

fn date() -> HeaderValue {
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            *d = (secs, HeaderValue::from_str(&httpdate::fmt_http_date(now)).unwrap_or(HeaderValue::from_static("")));
        }
        d.1.clone()
    })
}

enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Writes an answer; `false` when the connection must close after it (or already failed).
async fn write_response<I: AsyncWrite + Unpin>(io: &mut I, out: &mut Vec<u8>, resp: Response<RespBody>, head_request: bool, mut last: bool) -> bool {
    let (mut parts, mut body) = resp.into_parts();
    if has_token(&parts.headers, &header::CONNECTION, "close") {
        last = true;
    }
    let status = parts.status;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let no_body = head_request || status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let framing = match (no_body, declared, body.size_hint().exact()) {
        (true, _, _) => Framing::None,
        (false, Some(n), _) => Framing::Length(n),
        (false, None, Some(n)) => {
            let _ = write!(out, "content-length: {n}\r\n");
            Framing::Length(n)
        }
        (false, None, None) => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        }
    };
    super::put_fields(out, &parts.headers);
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if last && !parts.headers.contains_key(header::CONNECTION) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    // The head is in `out`: its map can serve the next one.
    super::recycle(std::mem::take(&mut parts.headers));
    let mut left = match framing {
        Framing::None => {
            drop(body);
            return io.write_all(out).await.is_ok() && io.flush().await.is_ok() && !last;
        }
        Framing::Length(n) => n,
        Framing::Chunked => u64::MAX,
    };
    let chunked = matches!(framing, Framing::Chunked);
    let mut complete = true;
    loop {
        // Gathered while frames are ready; written before waiting for the next one.
        let frame = match futures::FutureExt::now_or_never(body.frame()) {
            Some(f) => f,
            None => {
                if !out.is_empty() && (io.write_all(out).await.is_err() || io.flush().await.is_err()) {
                    return false;
                }
                out.clear();
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(_)) => {
                complete = false;
                break;
            }
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        let data = if chunked {
            data
        } else {
            // Never more than the length declared.
            let n = (data.len() as u64).min(left) as usize;
            left -= n as u64;
            data.slice(..n)
        };
        if chunked {
            let _ = write!(out, "{:x}\r\n", data.len());
        }
        if data.len() > WRITE_BATCH / 4 {
            if io.write_all(out).await.is_err() || io.write_all(&data).await.is_err() {
                return false;
            }
            out.clear();
        } else {
            out.extend_from_slice(&data);
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= WRITE_BATCH {
            if io.write_all(out).await.is_err() {
                return false;
            }
            out.clear();
        }
    }
    if chunked && complete {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    let ok = io.write_all(out).await.is_ok() && io.flush().await.is_ok();
    out.clear();
    // A body that failed or ended short leaves the client unable to find the next answer.
    ok && complete && (chunked || left == 0) && !last
}

/// Serves a client's HTTP/1.1 connection on the fast path while its requests allow it, then
/// gives the connection, with the bytes read and not yet served, to hyper.
pub async fn serve<I>(shared: Arc<Shared>, builder: Arc<hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>>, mut io: I, info: ConnInfo)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let active = shared.drain.track();
    let mut stop = shared.drain.subscribe();
    let crate::proxy::listener::ConnLimits { keep_alive, max_requests, first } = crate::proxy::listener::ConnLimits::of(&shared);
    let header_timeout = shared.opts.header_read_timeout;
    let max_fields = shared.opts.max_headers.min(FAST_FIELDS);
    let fast_info = Arc::new(ConnInfo { verdicts: None, ..info.clone() });
    let (mut buf, mut out) = (BytesMut::with_capacity(4096), Vec::with_capacity(4096));
    let mut served: u64 = 0;
    let timer = tokio::time::sleep(first);
    tokio::pin!(timer);
    loop {
        if buf.is_empty() && *stop.borrow() {
            return;
        }
        let idle = if served == 0 { first } else { keep_alive };
        let req = match wait_head(&mut io, &mut buf, idle, header_timeout, max_fields, &mut stop, timer.as_mut()).await {
            Wait::Parsed(req) => req,
            Wait::Elsewhere => break,
            Wait::End => return,
        };
        served += 1;
        let head_request = req.method() == Method::HEAD;
        let close_asked = has_token(req.headers(), &header::CONNECTION, "close");
        let resp = match handle(shared.clone(), fast_info.clone(), req, ()).await {
            Ok(r) => r,
            Err(e) => match e {},
        };
        let last = close_asked || served >= max_requests || *stop.borrow();
        if !write_response(&mut io, &mut out, resp, head_request, last).await {
            let _ = io.shutdown().await;
            return;
        }
    }
    // The rest is hyper's, with the sniffer watching the replayed bytes too.
    drop(active);
    let verdicts = Arc::new(Verdicts::default());
    let info = Arc::new(ConnInfo { verdicts: Some(verdicts.clone()), ..info });
    let io = Sniffer::new(Prefixed::new(buf.to_vec(), io), verdicts);
    crate::proxy::listener::serve(shared, builder, io, info, served).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `parse` makes of a buffer, and what it leaves in it.
    fn run(bytes: &[u8]) -> (&'static str, Option<Request<Empty<Bytes>>>, Vec<u8>) {
        let mut buf = BytesMut::from(bytes);
        let (kind, req) = match parse(&mut buf, FAST_FIELDS) {
            Parsed::Request(r) => ("request", Some(r)),
            Parsed::Partial => ("partial", None),
            Parsed::Elsewhere => ("elsewhere", None),
        };
        (kind, req, buf.to_vec())
    }

    #[test]
    fn heads_are_taken_off_the_buffer_only_when_the_fast_path_serves_them() {
        let pipelined = b"GET /a?b=c HTTP/1.1\r\nHost: x.example\r\nX-Many: 1\r\nx-many: 2\r\n\r\nGET /next HTTP/1.1\r\n";
        let cases: &[(&[u8], &str, usize)] = &[
            (pipelined, "request", b"GET /next HTTP/1.1\r\n".len()),
            (b"GET / HTTP/1.1\r\nHost: x\r\n", "partial", 0),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz", "elsewhere", 0),
            (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "elsewhere", 0),
            (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", "elsewhere", 0),
            (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", "elsewhere", 0),
            (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", "elsewhere", 0),
            (b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", "elsewhere", 0),
            (b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", "elsewhere", 0),
            (b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", "elsewhere", 0),
            (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", "elsewhere", 0),
        ];
        for (bytes, want, left) in cases {
            let (kind, _, rest) = run(bytes);
            assert_eq!(kind, *want, "{}", String::from_utf8_lossy(bytes));
            // What is not served stays for hyper, byte for byte.
            let expect_left = if *want == "request" { &bytes[bytes.len() - left..] } else { &bytes[..] };
            assert_eq!(rest, expect_left, "{}", String::from_utf8_lossy(bytes));
        }
        let (_, req, _) = run(pipelined);
        let req = req.unwrap();
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path_and_query().unwrap().as_str(), "/a?b=c");
        assert_eq!(req.headers()["host"], "x.example");
        let many: Vec<_> = req.headers().get_all("x-many").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(many, ["1", "2"]);
    }
}

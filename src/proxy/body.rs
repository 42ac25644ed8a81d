//! Request and response bodies on their way through: the body limit, progress for the idle
//! timeout, the small-body prebuffer that makes retries possible, and in-flight accounting.
//! Generic over the client's body type, so every protocol shares them.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use super::balance;
use super::upstream::{BoxError, PooledBody};

/// What a client body must be for the request path to carry it.
pub trait ClientBody: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static {}
impl<B: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static> ClientBody for B {}

/// When the request body last moved, so that the upstream timeout counts inactivity rather
/// than the time a large upload takes.
pub struct Progress {
    base: Instant,
    last_ms: AtomicU64,
    /// Request body bytes forwarded so far.
    pub bytes: AtomicU64,
    /// The whole request body has been handed on (or read into memory).
    sent: AtomicBool,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Progress { base: Instant::now(), last_ms: AtomicU64::new(0), bytes: AtomicU64::new(0), sent: AtomicBool::new(false) })
    }
    /// The request body is complete: from now on only the answer is waited for.
    pub fn body_sent(&self) {
        if !self.sent.swap(true, Ordering::Relaxed) {
            self.touch(0);
        }
    }
    pub fn is_body_sent(&self) -> bool {
        self.sent.load(Ordering::Relaxed)
    }
    pub fn touch(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.last_ms.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Waits for an exchange with an endpoint: while the request body is still being sent, at most
/// `send` without it moving (`proxy-send-timeout`); once it is sent, at most `read` for the
/// answer (`proxy-read-timeout`), counted from when the body was last moved.
pub async fn with_exchange_timeout<F: std::future::Future>(fut: F, send: Duration, read: Duration, progress: &Progress) -> Option<F::Output> {
    tokio::pin!(fut);
    let limit = || if progress.is_body_sent() { read } else { send };
    // Wakes at least this often: the body may finish (and the limit change) while waiting.
    let tick = send.min(read);
    let started = Instant::now();
    let mut wake = started + tick;
    loop {
        tokio::select! {
            out = &mut fut => return Some(out),
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                let deadline = progress.last().max(started) + limit();
                if deadline <= now {
                    return None;
                }
                wake = deadline.min(now + tick);
            }
        }
    }
}

/// The request body as forwarded: fails once more than `limit` bytes have arrived.
pub struct LimitedBody<B> {
    pub inner: B,
    pub remaining: u64,
    pub progress: Arc<Progress>,
}

#[derive(Debug, thiserror::Error)]
#[error("request body larger than the limit")]
struct BodyTooLarge;

impl<B: ClientBody> Body for LimitedBody<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    self.remaining -= len;
                    self.progress.touch(len);
                }
                if self.inner.is_end_stream() {
                    self.progress.body_sent();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                self.progress.body_sent();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pub fn caused_by_body_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<BodyTooLarge>() {
            return true;
        }
        cur = e.source();
    }
    false
}

pub fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Bodies up to this size are read before the request is forwarded.
pub const PREBUFFER: usize = 64 * 1024;

pub enum Prebuffered<B> {
    Complete(Bytes),
    Partial(Bytes, B),
}

/// Reads the start of a request body: all of it when it is small.
pub async fn prebuffer<B: ClientBody>(mut body: B, read_timeout: Duration, body_limit: u64, progress: &Progress) -> Result<Prebuffered<B>, StatusCode> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    loop {
        let frame = match tokio::time::timeout(read_timeout, body.frame()).await {
            Err(_) => return Err(StatusCode::REQUEST_TIMEOUT),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(StatusCode::BAD_REQUEST),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            total += data.len();
            progress.touch(data.len() as u64);
            if total as u64 > body_limit {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
            chunks.push(data);
            if total > PREBUFFER {
                return Ok(Prebuffered::Partial(concat(chunks, total), body));
            }
        }
    }
    Ok(Prebuffered::Complete(concat(chunks, total)))
}

fn concat(mut chunks: Vec<Bytes>, total: usize) -> Bytes {
    if chunks.len() == 1 {
        return chunks.pop().expect("one chunk");
    }
    let mut v = Vec::with_capacity(total);
    for c in chunks {
        v.extend_from_slice(&c);
    }
    Bytes::from(v)
}

/// A prefix already read, then the rest of the body as it arrives.
pub struct ChainBody<B> {
    pub prefix: Option<Bytes>,
    pub rest: LimitedBody<B>,
}

impl<B: ClientBody> Body for ChainBody<B> {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(p) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }
}

/// Counts a request against its endpoint until the response body is done.
pub struct InFlight(Arc<balance::EndpointState>);

impl InFlight {
    pub fn new(s: Arc<balance::EndpointState>) -> Self {
        s.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(s)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Tracked<B = PooledBody> {
    pub inner: B,
    pub in_flight: InFlight,
}

impl<B: Body<Data = Bytes, Error = BoxError> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The send timeout bounds a stalled body; once the body is sent, the read timeout applies.
    #[tokio::test]
    async fn send_then_read_timeouts() {
        let (send, read) = (Duration::from_millis(200), Duration::from_millis(800));
        let p = Progress::new();
        let started = Instant::now();
        assert!(with_exchange_timeout(std::future::pending::<()>(), send, read, &p).await.is_none());
        let waited = started.elapsed();
        assert!(waited >= send && waited < read, "a stalled body ends after the send timeout: {waited:?}");

        let p = Progress::new();
        p.body_sent();
        let started = Instant::now();
        assert!(with_exchange_timeout(std::future::pending::<()>(), send, read, &p).await.is_none());
        assert!(started.elapsed() >= read, "a sent body waits the read timeout: {:?}", started.elapsed());

        let p = Progress::new();
        let fut = async {
            tokio::time::sleep(Duration::from_millis(260)).await;
            7
        };
        let mover = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            p.touch(1);
        };
        let (out, _) = tokio::join!(with_exchange_timeout(fut, send, read, &p), mover);
        assert_eq!(out, Some(7), "body progress extends the send timeout");

        // The body is sent while a longer send timeout runs: the shorter read timeout applies.
        let (send, read) = (Duration::from_millis(1200), Duration::from_millis(200));
        let p = Progress::new();
        let started = Instant::now();
        let sender = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            p.body_sent();
        };
        let (out, _) = tokio::join!(with_exchange_timeout(std::future::pending::<()>(), send, read, &p), sender);
        assert!(out.is_none());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250) && waited < Duration::from_millis(900), "the read timeout from when the body was sent: {waited:?}");
    }
}

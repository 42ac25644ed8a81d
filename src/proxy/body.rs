//! Request and response bodies on their way through: the body limit, progress for the idle
//! timeout, the small-body prebuffer that makes retries possible, and in-flight accounting.
//! Generic over the client's body type, so every protocol shares them.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Progress { base: Instant::now(), last_ms: AtomicU64::new(0), bytes: AtomicU64::new(0) })
    }
    pub fn touch(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.last_ms.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Waits for `fut`, giving up after `timeout` with neither an answer nor request body progress.
pub async fn with_idle_timeout<F: std::future::Future>(fut: F, timeout: Duration, progress: &Progress) -> Option<F::Output> {
    tokio::pin!(fut);
    let mut deadline = Instant::now() + timeout;
    loop {
        tokio::select! {
            out = &mut fut => return Some(out),
            _ = tokio::time::sleep_until(deadline.into()) => {
                let next = progress.last() + timeout;
                if next > Instant::now() {
                    deadline = next;
                } else {
                    return None;
                }
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
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
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

pub struct Tracked {
    pub inner: PooledBody,
    pub in_flight: InFlight,
}

impl Body for Tracked {
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


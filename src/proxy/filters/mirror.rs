//! Gateway API `RequestMirror`: a copy of the request (as the route's filters left it) goes to
//! the mirror backend, and its answer is read and thrown away. A mirror never slows or fails the
//! request it copies: it runs in its own task; at most `MAX_IN_FLIGHT` run at once (more are
//! not sent); a body is copied only up to `MAX_BODY` bytes (a larger request is not mirrored),
//! and the copy waits for the client to finish sending it; each mirror gets `MAX_TIME`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{Request, StatusCode};
use hyper::body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tokio::sync::oneshot;

use super::super::Shared;
use super::super::body::ClientBody;
use super::super::context::Ctx;
use super::super::forwarded::{self, UpstreamHost};
use super::super::ids::random_u64;
use super::super::upstream::PooledBody;
use crate::config::filter::Mirror;
use crate::config::{Backend, Filter};

/// Mirrors in flight at once, for the whole process.
pub const MAX_IN_FLIGHT: usize = 256;
/// The largest request body copied to mirrors.
pub const MAX_BODY: usize = 64 * 1024;
/// How long one mirror may take, connecting to the end of its answer.
pub const MAX_TIME: Duration = Duration::from_secs(30);

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Mirrors started and not yet finished.
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Relaxed)
}

struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        IN_FLIGHT.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_IN_FLIGHT).then_some(n + 1)).ok().map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether any of these filters mirrors.
pub fn has_mirror(filters: &[Filter]) -> bool {
    filters.iter().any(|f| matches!(f, Filter::Mirror(_)))
}

/// The mirrors of `filters` that take this request (by their fraction).
fn chosen(filters: &[Filter]) -> Vec<Arc<Backend>> {
    filters
        .iter()
        .filter_map(|f| match f {
            Filter::Mirror(m) if fires(m) => Some(m.backend.clone()),
            _ => None,
        })
        .collect()
}

fn fires(m: &Mirror) -> bool {
    m.numerator >= m.denominator || (m.numerator > 0 && random_u64() % (m.denominator.max(1) as u64) < m.numerator as u64)
}

/// Starts the mirrors of `filters` (`route` and `backend`: the route's and the picked
/// backendRef's) for `req`; returns the request with its body wrapped so that the mirrors get a
/// copy of it once the client has sent it.
pub fn start<B: ClientBody>(route: &[Filter], backend: &[Filter], ctx: &Ctx<'_>, req: Request<B>) -> Request<Tee<B>> {
    let mut targets = chosen(route);
    targets.extend(chosen(backend));
    let (parts, body) = req.into_parts();
    if targets.is_empty() {
        return Request::from_parts(parts, Tee::pass(body));
    }
    let empty = body.is_end_stream();
    let too_large = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok()).is_some_and(|n| n > MAX_BODY as u64);
    if too_large {
        tracing::debug!(request_id = ?ctx.request_id, "request body larger than {MAX_BODY} bytes: not mirrored");
        return Request::from_parts(parts, Tee::pass(body));
    }
    let heads: Vec<(Arc<Backend>, Parts)> = targets.into_iter().map(|b| {
        let head = copy_head(&parts, ctx, &b);
        (b, head)
    }).collect();
    let shared = ctx.shared.clone();
    let connect = shared.opts.connect_timeout;
    if empty {
        for (b, head) in heads {
            spawn(shared.clone(), b, head, Bytes::new(), connect);
        }
        return Request::from_parts(parts, Tee::pass(body));
    }
    let (tx, rx) = oneshot::channel::<Bytes>();
    tokio::spawn(async move {
        // The client's body, once it has all arrived; nothing when it was too large or the
        // request ended first.
        let Ok(bytes) = rx.await else { return };
        for (b, head) in heads {
            spawn(shared.clone(), b, head, bytes.clone(), connect);
        }
    });
    Request::from_parts(parts, Tee { inner: body, copy: Some((BytesMut::new(), tx)) })
}

/// The head of the mirror's request: the request as it stands, rewritten as it would be for
/// that backend.
fn copy_head(parts: &Parts, ctx: &Ctx<'_>, backend: &Backend) -> Parts {
    let mut r = Request::new(());
    *r.method_mut() = parts.method.clone();
    *r.uri_mut() = parts.uri.clone();
    *r.version_mut() = parts.version;
    *r.headers_mut() = parts.headers.clone();
    if let Some(h) = parts.extensions.get::<UpstreamHost>() {
        r.extensions_mut().insert(h.clone());
    }
    let (mut head, ()) = r.into_parts();
    forwarded::rewrite(&mut head, ctx, backend.protocol, false);
    // The copy carries its whole body: nothing to wait for.
    head.headers.remove(http::header::EXPECT);
    head
}

fn spawn(shared: Arc<Shared>, backend: Arc<Backend>, mut head: Parts, body: Bytes, connect: Duration) {
    let Some(slot) = Slot::take() else {
        tracing::debug!(backend = %backend.name, "{MAX_IN_FLIGHT} mirrors in flight: this one is not sent");
        return;
    };
    if !body.is_empty() || head.headers.contains_key(http::header::CONTENT_LENGTH) {
        head.headers.remove(http::header::TRANSFER_ENCODING);
        head.headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(body.len()));
    }
    tokio::spawn(async move {
        let _slot = slot;
        let outcome = tokio::time::timeout(MAX_TIME, send(&shared, &backend, head, body, connect)).await;
        match outcome {
            Ok(Ok(status)) => tracing::debug!(backend = %backend.name, %status, "mirror answered"),
            Ok(Err(e)) => tracing::debug!(backend = %backend.name, error = %e, "mirror failed"),
            Err(_) => tracing::debug!(backend = %backend.name, "mirror timed out"),
        }
    });
}

async fn send(shared: &Shared, backend: &Backend, head: Parts, body: Bytes, connect: Duration) -> Result<StatusCode, String> {
    if backend.endpoints.is_empty() {
        return Err("no endpoints".into());
    }
    let addr = backend.endpoints[(random_u64() % backend.endpoints.len() as u64) as usize];
    let mut c = shared.pool.get(addr, backend.protocol, backend.tls.as_ref(), connect).await.map_err(|e| e.to_string())?;
    let req = Request::from_parts(head, Full::new(body).map_err(|e: std::convert::Infallible| match e {}).boxed_unsync());
    let resp = c.sender.send(req).await.map_err(|e| e.into_error().to_string())?;
    let (parts, incoming) = resp.into_parts();
    let mut rest = PooledBody::new(incoming, shared.pool.clone(), addr, c.tls, c.sender, MAX_TIME);
    // Read to the end, so the connection can go back to the pool.
    while let Some(frame) = rest.frame().await {
        if frame.is_err() {
            break;
        }
    }
    Ok(parts.status)
}

/// The request body on its way to the main backend; with `copy`, what passes is kept (up to
/// `MAX_BODY`) and handed to the mirrors at the end.
pub struct Tee<B> {
    inner: B,
    copy: Option<(BytesMut, oneshot::Sender<Bytes>)>,
}

impl<B> Tee<B> {
    fn pass(inner: B) -> Self {
        Tee { inner, copy: None }
    }
}

impl<B: ClientBody> Body for Tee<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let out = Pin::new(&mut this.inner).poll_frame(cx);
        match &out {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Some((buf, _)) = &mut this.copy
                {
                    if buf.len() + data.len() > MAX_BODY {
                        this.copy = None;
                    } else {
                        buf.extend_from_slice(data);
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) => this.copy = None,
            Poll::Pending => {}
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Tee<B> {
    fn finish(&mut self) {
        if let Some((buf, tx)) = self.copy.take() {
            let _ = tx.send(buf.freeze());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    #[test]
    fn at_most_max_in_flight() {
        let held: Vec<Slot> = (0..MAX_IN_FLIGHT).map(|_| Slot::take().expect("a free slot")).collect();
        assert!(Slot::take().is_none(), "the cap holds");
        drop(held);
        assert!(Slot::take().is_some(), "slots come back");
        assert_eq!(in_flight(), 0);
    }

    fn body(chunks: Vec<usize>) -> impl ClientBody<Error = std::convert::Infallible> {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = chunks.into_iter().map(|n| Ok(Frame::data(Bytes::from(vec![b'x'; n])))).collect();
        StreamBody::new(futures::stream::iter(frames))
    }

    async fn tee(chunks: Vec<usize>) -> (u64, Option<usize>) {
        let (tx, rx) = oneshot::channel();
        let mut t = Tee { inner: body(chunks), copy: Some((BytesMut::new(), tx)) };
        let mut passed = 0;
        while let Some(f) = t.frame().await {
            passed += f.unwrap().into_data().map(|d| d.len() as u64).unwrap_or(0);
        }
        drop(t);
        (passed, rx.await.ok().map(|b| b.len()))
    }

    #[tokio::test]
    async fn the_copy_is_whole_or_nothing() {
        assert_eq!(tee(vec![10, 20]).await, (30, Some(30)));
        assert_eq!(tee(vec![MAX_BODY, 1]).await, ((MAX_BODY + 1) as u64, None), "over the limit: no copy, the request unharmed");
    }
}

//! `limit-rps`, `limit-rpm`, `limit-connections`, `limit-rate`: per client address per Ingress.
//! Buckets and active-request counts live in `Shared::limits` (they outlive swaps); the
//! connection slot is held by the response body until it ends, and `limit-rate` paces that body.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use super::super::context::Ctx;
use super::super::limits::ConnGuard;
use super::super::respond::RespBody;
use super::super::upstream::BoxError;
use crate::config::limits::{RateLimit, contains};

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

pub fn on_request(l: &RateLimit, ctx: &Ctx<'_>) -> Option<Response<RespBody>> {
    let ip = ctx.client_ip;
    if contains(&l.exempt, ip) {
        return None;
    }
    let now = Instant::now();
    for (i, rate) in l.rates.iter().enumerate() {
        if !ctx.shared.limits.take(&l.zone, i as u8, *rate, ip, now) {
            return Some(ctx.fail(status(l.req_status)));
        }
    }
    if l.connections > 0 {
        match ctx.shared.limits.connect(&l.zone, ip, l.connections) {
            Some(g) => *ctx.conn_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(g),
            None => return Some(ctx.fail(status(l.conn_status))),
        }
    }
    None
}

/// The answer's body keeps the connection slot until it ends, paced by `limit-rate`.
pub fn on_response(l: &RateLimit, ctx: &Ctx<'_>, resp: Response<RespBody>) -> Response<RespBody> {
    let guard = ctx.conn_slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    // `limit-allowlist` exempts from the request and connection limits only, not from `limit-rate`.
    if guard.is_none() && l.bytes_per_second == 0 {
        return resp;
    }
    let (parts, inner) = resp.into_parts();
    let body = Paced { inner, _guard: guard, rate: l.bytes_per_second, after: l.rate_after, sent: 0, start: None, sleep: None, pending: None };
    Response::from_parts(parts, body.boxed_unsync())
}

/// A response body held to `rate` bytes a second after its first `after` bytes.
struct Paced {
    inner: RespBody,
    _guard: Option<ConnGuard>,
    rate: u64,
    after: u64,
    sent: u64,
    start: Option<Instant>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    pending: Option<Frame<Bytes>>,
}

impl Body for Paced {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(s) = &mut this.sleep {
            if s.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
            return Poll::Ready(this.pending.take().map(Ok));
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => f,
            other => return other,
        };
        let Some(n) = frame.data_ref().map(|d| d.len() as u64) else { return Poll::Ready(Some(Ok(frame))) };
        this.sent += n;
        if this.rate == 0 || this.sent <= this.after {
            return Poll::Ready(Some(Ok(frame)));
        }
        let start = *this.start.get_or_insert_with(Instant::now);
        // When the bytes past the free allowance may have been sent at the rate.
        let due = start + Duration::from_secs_f64((this.sent - this.after) as f64 / this.rate as f64);
        if due <= Instant::now() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let mut s = Box::pin(tokio::time::sleep_until(due.into()));
        if s.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Ok(frame)));
        }
        this.sleep = Some(s);
        this.pending = Some(frame);
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

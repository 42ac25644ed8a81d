//! The log phase: once a response has been sent (or abandoned), the request is counted in the
//! route's metrics and written to the access log.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use std::net::SocketAddr;

use bytes::Bytes;
use http::header;
use http::{Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use super::Shared;
use super::body::Progress;
use super::respond::{RespBody, X_REQUEST_ID};
use super::upstream::BoxError;
use crate::accesslog;
use crate::metrics::RouteStats;

/// What the request path learned about one request, for metrics and the access log.
#[derive(Default)]
pub struct Outcome {
    pub stats: Option<Arc<RouteStats>>,
    pub upstream: Option<UpstreamInfo>,
}

pub struct UpstreamInfo {
    /// The backend, for its name in the access log (a reference count, not a copy per request).
    pub backend: Arc<crate::config::Backend>,
    pub addr: Option<SocketAddr>,
    pub status: Option<u16>,
    pub started: Instant,
    pub connect: Option<Duration>,
}

/// The parts of the request the access log needs, taken before the request is forwarded.
pub struct LogRequest {
    method: String,
    uri: String,
    protocol: &'static str,
    referer: String,
    user_agent: String,
    host: String,
    user: String,
}

fn protocol_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The request head's length as it arrived (request line and headers), as nginx counts it.
pub fn head_length<B>(req: &Request<B>) -> u64 {
    let line = req.method().as_str().len() + req.uri().path_and_query().map(|p| p.as_str().len()).unwrap_or(1) + 12;
    let headers: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    (line + headers + 2) as u64
}

fn header_string<B>(req: &Request<B>, name: header::HeaderName) -> String {
    req.headers().get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default()
}

impl LogRequest {
    /// What the access log will need of `req`, when the log is on.
    pub fn of<B>(shared: &Shared, req: &Request<B>, host: &str) -> Option<LogRequest> {
        shared.access_log.enabled().then(|| LogRequest {
            method: req.method().as_str().to_string(),
            uri: req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into()),
            protocol: protocol_name(req.version()),
            referer: header_string(req, header::REFERER),
            user_agent: header_string(req, header::USER_AGENT),
            host: host.to_string(),
            user: String::new(),
        })
    }
}

/// What is known of a request before it is answered, for the log phase.
pub struct Started {
    pub at: Instant,
    pub method: &'static str,
    pub request_length: u64,
    pub log: Option<LogRequest>,
    pub remote: std::net::IpAddr,
}

/// Wraps the response so that the request is logged once its body ends.
pub fn observe(shared: &Arc<Shared>, started: Started, progress: Arc<Progress>, outcome: Outcome, resp: Response<RespBody>) -> Response<RespBody> {
    let (parts, body) = resp.into_parts();
    // The response head as sent: status line, headers, blank line (nginx's $bytes_sent counts it).
    let response_head = 17 + parts.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>() as u64 + 2;
    // Only the access log reads it: no copy when the log is off.
    let request_id = started.log.as_ref().map(|_| parts.headers.get(&X_REQUEST_ID).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default());
    let finish = Finish {
        shared: shared.clone(),
        started: started.at,
        status: parts.status.as_u16(),
        method: started.method,
        request_length: started.request_length,
        response_head,
        progress,
        outcome,
        log: started.log,
        remote: started.remote,
        request_id,
    };
    let body = Observed { inner: body, bytes: 0, finish: Some(finish) };
    Response::from_parts(parts, body.boxed_unsync())
}

struct Finish {
    shared: Arc<Shared>,
    started: Instant,
    status: u16,
    method: &'static str,
    request_length: u64,
    response_head: u64,
    progress: Arc<Progress>,
    outcome: Outcome,
    log: Option<LogRequest>,
    remote: std::net::IpAddr,
    request_id: Option<String>,
}

impl Finish {
    fn done(self, bytes: u64) {
        let elapsed = self.started.elapsed();
        let body_in = self.progress.bytes.load(Ordering::Relaxed);
        let upstream_time = self.outcome.upstream.as_ref().map(|u| u.started.elapsed());
        if self.shared.opts.metrics {
            let stats = self.outcome.stats.as_ref().unwrap_or(&self.shared.metrics.unrouted);
            let s = stats.get(self.status, self.method);
            s.requests.fetch_add(1, Ordering::Relaxed);
            s.request_duration.observe(elapsed.as_secs_f64());
            s.request_size.observe((self.request_length + body_in) as f64);
            s.response_size.observe((self.response_head + bytes) as f64);
            if let (Some(u), Some(t)) = (&self.outcome.upstream, upstream_time) {
                if u.status.is_some() {
                    s.response_duration.observe(t.as_secs_f64());
                }
                if let Some(c) = u.connect {
                    s.connect_duration.observe(c.as_secs_f64());
                }
            }
        }
        if let Some(l) = self.log {
            let up = self.outcome.upstream.as_ref();
            self.shared.access_log.log(accesslog::Entry {
                remote_addr: self.remote,
                remote_user: l.user,
                time: SystemTime::now(),
                method: l.method,
                uri: l.uri,
                protocol: l.protocol,
                status: self.status,
                body_bytes_sent: bytes,
                referer: l.referer,
                user_agent: l.user_agent,
                request_length: self.request_length + body_in,
                request_time: elapsed,
                upstream_name: up.map(|u| u.backend.name.clone()).unwrap_or_default(),
                upstream_addr: up.and_then(|u| u.addr),
                upstream_response_length: up.and_then(|u| u.status.map(|_| bytes)),
                upstream_response_time: up.and_then(|u| u.status.map(|_| upstream_time.unwrap_or_default())),
                upstream_status: up.and_then(|u| u.status),
                request_id: self.request_id.unwrap_or_default(),
                host: l.host,
            });
        }
    }
}

/// A response body that reports the request once it has been sent (or abandoned).
struct Observed {
    inner: RespBody,
    bytes: u64,
    /// Inline: the boxed body is the one allocation.
    finish: Option<Finish>,
}

impl Body for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.bytes += d.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.complete();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.complete(),
            Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Observed {
    fn complete(&mut self) {
        if let Some(f) = self.finish.take() {
            f.done(self.bytes);
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.complete();
    }
}


//! The request path: route, redirect or proxy, and answer.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;

use super::Shared;
use super::router;
use crate::accesslog;
use crate::config::Target;
use crate::metrics::{self, RouteStats};
use super::balance;
use super::upstream::{BoxError, ConnectError, PooledBody, ReqBody};
use crate::config::{Backend, Policy};

pub type RespBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub const SERVER_NAME: &str = "vestibule";

/// Facts about the client connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// The client's address as a PROXY protocol header gave it, when there was one.
    pub proxied_client: Option<SocketAddr>,
    /// What the HTTP/1 head sniffer saw, request by request.
    pub verdicts: Option<Arc<super::sniff::Verdicts>>,
}

impl ConnInfo {
    /// The address of the client: from the PROXY protocol header, else the TCP peer.
    pub fn client_ip(&self) -> std::net::IpAddr {
        self.proxied_client.unwrap_or(self.peer).ip().to_canonical()
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_SCHEME: HeaderName = HeaderName::from_static("x-forwarded-scheme");
static X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in [&header::CONNECTION, &KEEP_ALIVE, &PROXY_CONNECTION, &header::TE, &header::TRAILER, &header::TRANSFER_ENCODING, &header::UPGRADE] {
        headers.remove(n);
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0));
        h.finish() | 1
    });
    static DATE: RefCell<(u64, HeaderValue)> = RefCell::new((0, HeaderValue::from_static("")));
}

/// A fast pseudo-random number (request IDs, balancing choices); not for secrets.
pub fn random_u64() -> u64 {
    RNG.with(|s| {
        // wyrand: fast and good enough for request IDs (not for secrets).
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = (x as u128).wrapping_mul((x ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A new request ID: 32 hex characters, like nginx's `$request_id`.
pub fn new_request_id() -> HeaderValue {
    let s = format!("{:016x}{:016x}", random_u64(), random_u64());
    HeaderValue::from_str(&s).expect("hex is a valid header value")
}

/// The `Date` header value, formatted once per second per thread.
pub fn date_value() -> HeaderValue {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            *d = (secs, HeaderValue::from_str(&httpdate::fmt_http_date(now)).expect("http date is a valid header value"));
        }
        d.1.clone()
    })
}

fn finish_headers(headers: &mut HeaderMap, request_id: &HeaderValue) {
    headers.insert(header::SERVER, HeaderValue::from_static(SERVER_NAME));
    headers.insert(header::DATE, date_value());
    if !headers.contains_key(&X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    }
}

fn reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        404 => "Not Found",
        413 => "Request Entity Too Large",
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => status.canonical_reason().unwrap_or(""),
    }
}

/// A small HTML error page that carries the request ID, so a user's report can be found in logs.
pub fn error_page(status: StatusCode, request_id: &HeaderValue, head: bool) -> Response<RespBody> {
    let code = status.as_u16();
    let text = reason(status);
    let id = request_id.to_str().unwrap_or("");
    let body = format!(
        "<html>\r\n<head><title>{code} {text}</title></head>\r\n<body>\r\n<center><h1>{code} {text}</h1></center>\r\n<hr><center>{SERVER_NAME}</center>\r\n<p>request id: {id}</p>\r\n</body>\r\n</html>\r\n"
    );
    let len = body.len();
    let body = if head { Full::new(Bytes::new()) } else { Full::new(Bytes::from(body)) };
    let mut resp = Response::new(body.map_err(|e: Infallible| match e {}).boxed_unsync());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    finish_headers(h, request_id);
    resp
}

fn redirect(location: &str, request_id: &HeaderValue) -> Response<RespBody> {
    let mut resp = error_page(StatusCode::PERMANENT_REDIRECT, request_id, false);
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The answer to a request head refused before routing; the connection is closed after it.
fn refuse(refusal: super::head::Refusal, request_id: &HeaderValue, head: bool) -> Response<RespBody> {
    let mut resp = match refusal {
        super::head::Refusal::BadRequest(why) => {
            tracing::debug!(request_id = ?request_id, "rejected request: {why}");
            error_page(StatusCode::BAD_REQUEST, request_id, head)
        }
        super::head::Refusal::MethodNotAllowed => {
            let mut r = error_page(StatusCode::METHOD_NOT_ALLOWED, request_id, head);
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(super::head::ALLOW));
            r
        }
    };
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// When the request body last moved, so that the upstream timeout counts inactivity rather
/// than the time a large upload takes.
struct Progress {
    base: Instant,
    last_ms: AtomicU64,
    /// Request body bytes forwarded so far.
    bytes: AtomicU64,
}

impl Progress {
    fn new() -> Arc<Self> {
        Arc::new(Progress { base: Instant::now(), last_ms: AtomicU64::new(0), bytes: AtomicU64::new(0) })
    }
    fn touch(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.last_ms.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Waits for `fut`, giving up after `timeout` with neither an answer nor request body progress.
async fn with_idle_timeout<F: std::future::Future>(fut: F, timeout: Duration, progress: &Progress) -> Option<F::Output> {
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
struct LimitedBody {
    inner: Incoming,
    remaining: u64,
    progress: Arc<Progress>,
}

#[derive(Debug, thiserror::Error)]
#[error("request body larger than the limit")]
struct BodyTooLarge;

impl Body for LimitedBody {
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
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
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

fn caused_by_body_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<BodyTooLarge>() {
            return true;
        }
        cur = e.source();
    }
    false
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// What the request path learned about one request, for metrics and the access log.
#[derive(Default)]
struct Outcome {
    stats: Option<Arc<RouteStats>>,
    upstream: Option<UpstreamInfo>,
}

struct UpstreamInfo {
    name: String,
    addr: Option<SocketAddr>,
    status: Option<u16>,
    started: Instant,
    connect: Option<Duration>,
}

/// The parts of the request the access log needs, taken before the request is forwarded.
struct LogRequest {
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
fn head_length<B>(req: &Request<B>) -> u64 {
    let line = req.method().as_str().len() + req.uri().path_and_query().map(|p| p.as_str().len()).unwrap_or(1) + 12;
    let headers: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    (line + headers + 2) as u64
}

fn header_string<B>(req: &Request<B>, name: header::HeaderName) -> String {
    req.headers().get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default()
}

/// Answers one request, and records it in metrics and the access log once its response ends.
pub async fn handle(shared: Arc<Shared>, conn: Arc<ConnInfo>, req: Request<Incoming>) -> Result<Response<RespBody>, Infallible> {
    let started = Instant::now();
    let method = metrics::method_label(req.method());
    let request_length = head_length(&req);
    let log = shared.access_log.enabled().then(|| LogRequest {
        method: req.method().as_str().to_string(),
        uri: req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into()),
        protocol: protocol_name(req.version()),
        referer: header_string(&req, header::REFERER),
        user_agent: header_string(&req, header::USER_AGENT),
        host: router::request_host(&req),
        user: String::new(),
    });
    let progress = Progress::new();
    let mut outcome = Outcome::default();
    let resp = proxy(&shared, &conn, req, &progress, &mut outcome).await;
    let (parts, body) = resp.into_parts();
    // The response head as sent: status line, headers, blank line (nginx's $bytes_sent counts it).
    let response_head = 17 + parts.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>() as u64 + 2;
    let request_id = parts.headers.get(&X_REQUEST_ID).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default();
    let finish = Finish {
        shared: shared.clone(),
        started,
        status: parts.status.as_u16(),
        method,
        request_length,
        response_head,
        progress,
        outcome,
        log,
        remote: conn.client_ip(),
        request_id,
    };
    let body = Observed { inner: body, bytes: 0, finish: Some(Box::new(finish)) };
    Ok(Response::from_parts(parts, body.boxed_unsync()))
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
    request_id: String,
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
                upstream_name: up.map(|u| u.name.clone()).unwrap_or_default(),
                upstream_addr: up.and_then(|u| u.addr),
                upstream_response_length: up.and_then(|u| u.status.map(|_| bytes)),
                upstream_response_time: up.and_then(|u| u.status.map(|_| upstream_time.unwrap_or_default())),
                upstream_status: up.and_then(|u| u.status),
                request_id: self.request_id,
                host: l.host,
            });
        }
    }
}

/// A response body that reports the request once it has been sent (or abandoned).
struct Observed {
    inner: RespBody,
    bytes: u64,
    finish: Option<Box<Finish>>,
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

/// Routes, redirects or proxies one request.
async fn proxy(shared: &Arc<Shared>, conn: &ConnInfo, mut req: Request<Incoming>, progress: &Arc<Progress>, outcome: &mut Outcome) -> Response<RespBody> {
    let request_id = match req.headers().get(&X_REQUEST_ID) {
        Some(v) if !v.is_empty() && v.len() <= 200 => v.clone(),
        _ => new_request_id(),
    };
    let head = req.method() == Method::HEAD;
    let upgrade = match super::head::check(&mut req) {
        Ok(u) => u == super::head::Upgrade::WebSocket,
        Err(refusal) => return refuse(refusal, &request_id, head),
    };
    let host = router::request_host(&req);
    let config = shared.config.load_full();
    let path = router::normalize_path(req.uri().path());
    let target = config.route(&host, &path);
    drop(path);
    outcome.stats = if !shared.opts.metrics { None } else { match &target {
        Target::Route { route, .. } => Some(route.observed.stats(&shared.metrics).clone()),
        Target::HostDefault { default, .. } => Some(default.observed.stats(&shared.metrics).clone()),
        Target::Default(d) => Some(d.observed.stats(&shared.metrics).clone()),
        Target::HostNotFound { .. } | Target::NotFound => None,
    } };

    if !conn.tls && target.ssl_redirect() {
        let port = shared.opts.https_port;
        let authority = if port == 443 { host.clone() } else { format!("{host}:{port}") };
        let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        return redirect(&format!("https://{authority}{pq}"), &request_id);
    }
    let grpc = is_grpc(&req);
    let Some(backend) = target.backend().cloned() else {
        return if grpc { grpc_error(StatusCode::NOT_FOUND, &request_id) } else { error_page(StatusCode::NOT_FOUND, &request_id, head) };
    };
    drop(target);
    drop(config);
    outcome.upstream = Some(UpstreamInfo { name: backend.name.clone(), addr: None, status: None, started: Instant::now(), connect: None });
    if backend.endpoints.is_empty() {
        return if grpc { grpc_error(StatusCode::SERVICE_UNAVAILABLE, &request_id) } else { error_page(StatusCode::SERVICE_UNAVAILABLE, &request_id, head) };
    }
    let opts = &shared.opts;
    let fail = |status: StatusCode| if grpc { grpc_error(status, &request_id) } else { error_page(status, &request_id, head) };
    let sniffed = match &conn.verdicts {
        Some(v) if req.version() < Version::HTTP_2 => v.take(req.method().as_str(), &req.uri().to_string()),
        _ => None,
    };
    if let Some(problem) = sniffed.or_else(|| framing_problem(&req)) {
        // Ambiguous framing is how requests are smuggled: refuse, and close the connection.
        tracing::warn!(request_id = ?request_id, "rejected request: {problem}");
        let mut resp = error_page(StatusCode::BAD_REQUEST, &request_id, head);
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    if content_length(&req).is_some_and(|n| n > opts.body_limit) {
        return fail(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let deadline = grpc.then(|| grpc_timeout(&req)).flatten();

    let client_upgrade = if upgrade { Some(hyper::upgrade::on(&mut req)) } else { None };
    let upgrade_value = req.headers().get(header::UPGRADE).cloned();
    let hash_key = match &backend.policy {
        Policy::Hash(k) => Some(balance::hash_input(k, &req, conn.client_ip())),
        _ => None,
    };
    // Small bodies (and chunked HTTP/1.1 bodies, up to a point) are read before connecting: a
    // malformed body is refused before anything reaches a backend, and a complete body can be
    // sent again to another endpoint.
    let buffer_first = !upgrade
        && !grpc
        && match content_length(&req) {
            Some(n) => n <= PREBUFFER as u64,
            None => req.version() < Version::HTTP_2 && req.headers().contains_key(header::TRANSFER_ENCODING),
        };

    let (mut parts, body) = req.into_parts();
    let original_host = match parts.headers.get(header::HOST) {
        Some(h) => h.clone(),
        None => match parts.uri.authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).unwrap_or_else(|_| HeaderValue::from_static("")),
            None => HeaderValue::from_static(""),
        },
    };
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    if let (true, Some(u)) = (upgrade, upgrade_value) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
    if grpc {
        // gRPC needs trailers end to end.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if !original_host.is_empty() {
        headers.insert(header::HOST, original_host.clone());
    }
    let client_ip = conn.client_ip().to_string();
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {client_ip}"),
        _ => client_ip.clone(),
    };
    headers.remove(&X_FORWARDED_FOR);
    headers.insert(X_FORWARDED_FOR.clone(), HeaderValue::from_str(&xff).unwrap_or_else(|_| HeaderValue::from_static("")));
    headers.insert(X_REAL_IP.clone(), HeaderValue::from_str(&client_ip).expect("an IP is a valid header value"));
    let proto = HeaderValue::from_static(if conn.tls { "https" } else { "http" });
    headers.insert(X_FORWARDED_PROTO.clone(), proto.clone());
    headers.insert(X_FORWARDED_SCHEME.clone(), proto.clone());
    headers.insert(X_SCHEME.clone(), proto);
    headers.insert(X_FORWARDED_HOST.clone(), original_host.clone());
    headers.insert(X_FORWARDED_PORT.clone(), HeaderValue::from(conn.local.port()));
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    if backend.protocol.http2() {
        // HTTP/2 carries the authority in the URI; Host must not be sent twice.
        headers.remove(header::HOST);
        let scheme = if backend.protocol.tls() { "https" } else { "http" };
        let authority = original_host.to_str().ok().filter(|a| !a.is_empty()).unwrap_or("backend");
        let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        parts.uri = Uri::try_from(format!("{scheme}://{authority}{pq}")).unwrap_or_else(|_| Uri::from_static("/"));
        parts.version = Version::HTTP_2;
    } else {
        parts.uri = parts.uri.path_and_query().map(|pq| Uri::from(pq.clone())).unwrap_or_else(|| Uri::from_static("/"));
        parts.version = Version::HTTP_11;
    }

    // The body: buffered (replayable), or streamed (sent at most once).
    let mut buffered: Option<Bytes> = None;
    let mut stream: Option<ReqBody> = None;
    if upgrade || body.is_end_stream() {
        buffered = Some(Bytes::new());
    } else if buffer_first {
        match prebuffer(body, opts, progress).await {
            Ok(Prebuffered::Complete(b)) => buffered = Some(b),
            Ok(Prebuffered::Partial(prefix, rest)) => {
                // The limit counts the prefix already read.
                let remaining = opts.body_limit.saturating_sub(prefix.len() as u64);
                stream = Some(ChainBody { prefix: Some(prefix), rest: LimitedBody { inner: rest, remaining, progress: progress.clone() } }.boxed_unsync())
            }
            Err(status) => {
                let mut resp = fail(status);
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                return resp;
            }
        }
    } else {
        stream = Some(LimitedBody { inner: body, remaining: opts.body_limit, progress: progress.clone() }.boxed_unsync());
    }
    let idempotent = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE);
    // A request that may be sent again keeps a copy of its head.
    let replay_head = (buffered.is_some() && idempotent).then(|| (parts.method.clone(), parts.uri.clone(), parts.version, parts.headers.clone()));
    let make_body = |b: &Bytes| -> ReqBody { Full::new(b.clone()).map_err(|e: Infallible| match e {}).boxed_unsync() };
    let first_body = match (&buffered, stream.take()) {
        (Some(b), _) => make_body(b),
        (None, Some(s)) => s,
        (None, None) => make_body(&Bytes::new()),
    };
    let mut upstream_req = Some(Request::from_parts(parts, first_body));

    let bound = backend.bound(&shared.registry);
    let order = bound.order(&backend.policy, hash_key.as_deref(), opts.upstream_tries);
    let exchange_timeout = deadline.map(|d| d.min(opts.read_timeout)).unwrap_or(opts.read_timeout);
    let mut last = StatusCode::BAD_GATEWAY;
    for (attempt, &idx) in order.iter().enumerate() {
        let state = bound.states[idx].clone();
        let addr = state.addr;
        if attempt > 0 {
            shared.metrics.retries.inc();
        }
        // The request for this attempt: the one not yet sent, or a copy of a replayable one.
        let req_now = match upstream_req.take() {
            Some(r) => r,
            None => match (&replay_head, &buffered) {
                (Some((m, u, v, h)), Some(b)) => {
                    let mut r = Request::new(make_body(b));
                    *r.method_mut() = m.clone();
                    *r.uri_mut() = u.clone();
                    *r.version_mut() = *v;
                    *r.headers_mut() = h.clone();
                    r
                }
                _ => break,
            },
        };
        if let Some(u) = outcome.upstream.as_mut() {
            u.addr = Some(addr);
        }
        if let Some(client_upgrade) = client_upgrade {
            let resp = proxy_upgrade(shared, &backend, addr, req_now, client_upgrade, &request_id).await;
            if let Some(u) = outcome.upstream.as_mut() {
                u.status = Some(resp.status().as_u16());
            }
            return resp;
        }
        let mut pending = Some(req_now);
        // A pooled connection that turns out closed before the request was written is
        // replaced by a fresh one to the same endpoint; that does not count as a try.
        for _fresh in 0..3 {
            let Some(r) = pending.take() else { break };
            let connect_started = Instant::now();
            let mut c = match shared.pool.get(addr, backend.protocol, backend.tls.as_ref(), opts.connect_timeout).await {
                Ok(c) => {
                    state.connect_succeeded();
                    c
                }
                Err(e) => {
                    tracing::warn!(request_id = ?request_id, backend = %backend.name, error = %e, "upstream connect failed");
                    // A TLS failure says more about this backend's TLS settings than about the
                    // endpoint, which other Ingresses may reach fine: it does not count for
                    // ejection.
                    if !matches!(e, ConnectError::Tls(..)) && state.connect_failed() {
                        shared.metrics.endpoint_ejections.inc();
                        tracing::warn!(backend = %backend.name, endpoint = %addr, "endpoint ejected after {} connect failures in a row", balance::EJECT_AFTER);
                    }
                    upstream_req = Some(r);
                    last = if matches!(e, ConnectError::Timeout(_)) { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
                    break;
                }
            };
            if let Some(u) = outcome.upstream.as_mut() {
                u.connect = Some(if c.reused { Duration::ZERO } else { connect_started.elapsed() });
            }
            let guard = InFlight::new(state.clone());
            let sent_at = Instant::now();
            match with_idle_timeout(c.sender.send(r), exchange_timeout, progress).await {
                None => {
                    tracing::warn!(request_id = ?request_id, backend = %backend.name, %addr, "upstream timed out");
                    last = StatusCode::GATEWAY_TIMEOUT;
                    if replay_head.is_none() || deadline.is_some() {
                        return fail(last);
                    }
                    break;
                }
                Some(Ok(resp)) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    // No upgrade was forwarded: a backend that switches protocols anyway would
                    // turn this connection into a tunnel past the routing rules.
                    tracing::warn!(request_id = ?request_id, backend = %backend.name, %addr, "upstream answered 101 to a request that asked for no upgrade");
                    return fail(StatusCode::BAD_GATEWAY);
                }
                Some(Ok(resp)) => {
                    state.observe(sent_at.elapsed());
                    let (mut rparts, rbody) = resp.into_parts();
                    if let Some(u) = outcome.upstream.as_mut() {
                        u.status = Some(rparts.status.as_u16());
                    }
                    strip_hop_by_hop(&mut rparts.headers);
                    finish_headers(&mut rparts.headers, &request_id);
                    rparts.version = Version::HTTP_11;
                    let body = PooledBody::new(rbody, shared.pool.clone(), addr, c.tls, c.sender, opts.read_timeout);
                    let body = Tracked { inner: body, _in_flight: guard }.boxed_unsync();
                    return Response::from_parts(rparts, body);
                }
                Some(Err(mut e)) => match e.take_message() {
                    Some(back) => {
                        // Never written: safe to send on a fresh connection.
                        pending = Some(back);
                        if !c.reused {
                            upstream_req = pending.take();
                            break;
                        }
                    }
                    None => {
                        let err = e.into_error();
                        if caused_by_body_limit(&err) {
                            return fail(StatusCode::PAYLOAD_TOO_LARGE);
                        }
                        tracing::warn!(request_id = ?request_id, backend = %backend.name, %addr, error = %err, "upstream request failed");
                        last = StatusCode::BAD_GATEWAY;
                        if replay_head.is_none() {
                            return fail(last);
                        }
                        break;
                    }
                },
            }
        }
        if let Some(r) = pending.take() {
            upstream_req = Some(r);
        }
    }
    fail(last)
}

/// Bodies up to this size are read before the request is forwarded.
const PREBUFFER: usize = 64 * 1024;

enum Prebuffered {
    Complete(Bytes),
    Partial(Bytes, Incoming),
}

/// Reads the start of a request body: all of it when it is small.
async fn prebuffer(mut body: Incoming, opts: &super::ProxyOptions, progress: &Progress) -> Result<Prebuffered, StatusCode> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    loop {
        let frame = match tokio::time::timeout(opts.read_timeout, body.frame()).await {
            Err(_) => return Err(StatusCode::REQUEST_TIMEOUT),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(StatusCode::BAD_REQUEST),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            total += data.len();
            progress.touch(data.len() as u64);
            if total as u64 > opts.body_limit {
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
struct ChainBody {
    prefix: Option<Bytes>,
    rest: LimitedBody,
}

impl Body for ChainBody {
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
struct InFlight(Arc<balance::EndpointState>);

impl InFlight {
    fn new(s: Arc<balance::EndpointState>) -> Self {
        s.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(s)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Tracked {
    inner: PooledBody,
    _in_flight: InFlight,
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

/// Why an HTTP/1 request's framing is ambiguous, if it is: the ways requests are smuggled.
fn framing_problem<B>(req: &Request<B>) -> Option<&'static str> {
    let h = req.headers();
    let cls = h.get_all(header::CONTENT_LENGTH).iter().count();
    if cls > 1 {
        return Some("several Content-Length headers");
    }
    if let Some(cl) = h.get(header::CONTENT_LENGTH) {
        if cl.is_empty() || !cl.as_bytes().iter().all(u8::is_ascii_digit) {
            return Some("an invalid Content-Length");
        }
    }
    let tes: Vec<_> = h.get_all(header::TRANSFER_ENCODING).iter().collect();
    if !tes.is_empty() {
        if cls > 0 {
            return Some("both Content-Length and Transfer-Encoding");
        }
        if tes.len() > 1 || !tes[0].to_str().is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked")) {
            return Some("a Transfer-Encoding other than chunked");
        }
        if req.version() < Version::HTTP_11 {
            return Some("Transfer-Encoding in an HTTP/1.0 request");
        }
    }
    None
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/grpc"))
}

/// The `grpc-timeout` header: a number and a unit (H, M, S, m, u, n).
fn grpc_timeout<B>(req: &Request<B>) -> Option<Duration> {
    let v = req.headers().get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// An error as a gRPC client understands it: HTTP 200, trailers-only, with a grpc-status.
fn grpc_error(status: StatusCode, request_id: &HeaderValue) -> Response<RespBody> {
    let (code, msg) = match status.as_u16() {
        404 => (12, "no route for this request"),
        413 => (8, "request message larger than the limit"),
        400 => (13, "malformed request"),
        504 => (4, "deadline exceeded before the upstream answered"),
        _ => (14, "upstream unavailable"),
    };
    let mut resp = Response::new(Empty::<Bytes>::new().map_err(|e: Infallible| match e {}).boxed_unsync());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(code));
    h.insert("grpc-message", HeaderValue::from_static(msg));
    finish_headers(h, request_id);
    resp
}

/// Forwards an upgrade request (WebSocket) on a fresh connection and, on 101, splices the two
/// upgraded connections together.
async fn proxy_upgrade(
    shared: &Shared,
    backend: &Backend,
    addr: SocketAddr,
    req: Request<ReqBody>,
    client_upgrade: hyper::upgrade::OnUpgrade,
    request_id: &HeaderValue,
) -> Response<RespBody> {
    let mut sender = match shared.pool.connect_upgradable(addr, backend.protocol, backend.tls.as_ref(), shared.opts.connect_timeout).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(request_id = ?request_id, error = %e, "upstream connect failed");
            return error_page(StatusCode::BAD_GATEWAY, request_id, false);
        }
    };
    let mut resp = match tokio::time::timeout(shared.opts.read_timeout, sender.send_request(req)).await {
        Err(_) => return error_page(StatusCode::GATEWAY_TIMEOUT, request_id, false),
        Ok(Err(e)) => {
            tracing::warn!(request_id = ?request_id, error = %e, "upstream upgrade request failed");
            return error_page(StatusCode::BAD_GATEWAY, request_id, false);
        }
        Ok(Ok(r)) => r,
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        finish_headers(&mut parts.headers, request_id);
        return Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync());
    }
    let websocket = resp.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    if !websocket {
        // Only the WebSocket upgrade that was asked for is tunnelled.
        tracing::warn!(request_id = ?request_id, "upstream switched to a protocol other than websocket");
        return error_page(StatusCode::BAD_GATEWAY, request_id, false);
    }
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    // The tunnel counts as an open connection, and closes cleanly on shutdown.
    let active = shared.drain.track();
    let stop = shared.drain.subscribe();
    tokio::spawn(async move {
        let _active = active;
        let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
            (Ok(c), Ok(u)) => (c, u),
            _ => return,
        };
        super::tunnel::splice(TokioIo::new(client), TokioIo::new(upstream), stop, websocket).await;
    });
    let (mut parts, _) = resp.into_parts();
    finish_headers(&mut parts.headers, request_id);
    Response::from_parts(parts, Empty::<Bytes>::new().map_err(|e: Infallible| match e {}).boxed_unsync())
}

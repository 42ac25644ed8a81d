//! The upstream phase: check the request can be forwarded, rewrite its head, read a small body
//! first so it can be replayed, pick endpoints, send, and retry what is safe to retry.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};

use super::affinity::Sticky;
use super::balance::{self, Bound};
use super::body::{self, ChainBody, ClientBody, InFlight, LimitedBody, PREBUFFER, Prebuffered, Progress, Tracked};
use super::context::Ctx;
use super::forwarded;
use super::log::{Outcome, UpstreamInfo};
use super::respond::{self, RespBody};
use super::upstream::{ConnectError, PooledBody, ReqBody};
use crate::config::{Backend, Policy, ProxySettings};

/// The backend a routed request goes to, with its limits and balancing state.
pub struct Upstream<'a> {
    pub backend: &'a Arc<Backend>,
    pub proxy: &'a ProxySettings,
    pub bound: &'a Bound,
    /// Cookie session affinity, when the route has it.
    pub affinity: Option<&'a crate::config::Affinity>,
}

/// A request ready to send: the first copy, and what is needed to send it again.
struct Prepared {
    first: Option<Request<ReqBody>>,
    /// Head and complete body of a request that may be replayed on another endpoint.
    replay: Option<(Method, Uri, Version, HeaderMap, Bytes)>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    hash_key: Option<Vec<u8>>,
    /// gRPC's deadline, when the client set one.
    deadline: Option<Duration>,
}

/// The methods RFC 9110 calls idempotent, which may be sent again after a failed try.
fn is_idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}

fn full(b: &Bytes) -> ReqBody {
    if b.is_empty() {
        // The same body to hyper and to the raw exchange (ended, exactly 0 bytes), boxed
        // without an allocation: most requests have none.
        return http_body_util::Empty::new().map_err(|e: Infallible| match e {}).boxed_unsync();
    }
    Full::new(b.clone()).map_err(|e: Infallible| match e {}).boxed_unsync()
}

/// The request target as the client wrote it: an origin-form target as it is, without
/// formatting the URI again.
fn request_target(uri: &Uri) -> std::borrow::Cow<'_, str> {
    match uri.path_and_query() {
        Some(pq) if uri.scheme().is_none() && uri.authority().is_none() => std::borrow::Cow::Borrowed(pq.as_str()),
        _ => std::borrow::Cow::Owned(uri.to_string()),
    }
}

/// Forwards `req` to one of the backend's endpoints and returns its response head.
pub async fn forward<B: ClientBody>(ctx: &Ctx<'_>, up: Upstream<'_>, req: Request<B>, websocket: bool, progress: &Arc<Progress>, outcome: &mut Outcome) -> Response<RespBody> {
    let backend = up.backend;
    outcome.upstream = Some(UpstreamInfo { backend: backend.clone(), addr: None, status: None, started: Instant::now(), connect: None });
    if backend.endpoints.is_empty() {
        return ctx.fail(StatusCode::SERVICE_UNAVAILABLE);
    }
    let sniffed = match &ctx.conn.verdicts {
        Some(v) if req.version() < Version::HTTP_2 => v.take(req.method().as_str(), &request_target(req.uri())),
        _ => None,
    };
    if let Some(problem) = sniffed.or_else(|| super::head::framing_problem(&req)) {
        // Ambiguous framing is how requests are smuggled: refuse, and close the connection.
        tracing::warn!(request_id = ?ctx.request_id, "rejected request: {problem}");
        let mut resp = respond::error_page(StatusCode::BAD_REQUEST, &ctx.request_id, ctx.head);
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    if body::content_length(&req).is_some_and(|n| n > up.proxy.body_limit) {
        return ctx.fail(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let sticky = up.affinity.map(|a| Sticky::read(a, backend, req.headers(), ctx.conn.tls));
    let prepared = match prepare(ctx, &up, req, websocket, progress).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    send(ctx, &up, prepared, sticky.as_ref(), progress, outcome).await
}

/// Rewrites the head and reads small bodies (and chunked HTTP/1.1 bodies, up to a point) before
/// connecting: a malformed body is refused before anything reaches a backend, and a complete
/// body can be sent again to another endpoint.
async fn prepare<B: ClientBody>(ctx: &Ctx<'_>, up: &Upstream<'_>, mut req: Request<B>, websocket: bool, progress: &Arc<Progress>) -> Result<Prepared, Response<RespBody>> {
    let deadline = ctx.grpc.then(|| respond::grpc_timeout(&req)).flatten();
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let hash_key = match &up.backend.policy {
        Policy::Hash(k) => Some(balance::hash_input(k, &req, ctx.client_ip)),
        _ => None,
    };
    let buffer_first = !websocket
        && !ctx.grpc
        && up.proxy.request_buffering
        && match body::content_length(&req) {
            Some(n) => n <= PREBUFFER as u64,
            None => req.version() < Version::HTTP_2 && req.headers().contains_key(header::TRANSFER_ENCODING),
        };
    let (mut parts, body) = req.into_parts();
    forwarded::rewrite(&mut parts, ctx, up.backend.protocol, websocket);
    if up.proxy.http10 && !up.backend.protocol.http2() && !websocket {
        // `proxy-http-version: 1.0`, in part: the request still goes as HTTP/1.1, but the
        // connection is not kept alive, as nginx's HTTP/1.0 upstream connections are not.
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }

    // The body: buffered (replayable), or streamed (sent at most once).
    let limit = up.proxy.body_limit;
    let (buffered, stream): (Option<Bytes>, Option<ReqBody>) = if websocket || body.is_end_stream() {
        progress.body_sent();
        (Some(Bytes::new()), None)
    } else if buffer_first {
        match body::prebuffer(body, up.proxy.read_timeout, limit, progress).await {
            Ok(Prebuffered::Complete(b)) => {
                progress.body_sent();
                (Some(b), None)
            }
            Ok(Prebuffered::Partial(prefix, rest)) => {
                // The limit counts the prefix already read.
                let remaining = limit.saturating_sub(prefix.len() as u64);
                let rest = LimitedBody { inner: rest, remaining, progress: progress.clone() };
                (None, Some(ChainBody { prefix: Some(prefix), rest }.boxed_unsync()))
            }
            Err(status) => return Err(ctx.fail_and_close(status)),
        }
    } else {
        (None, Some(LimitedBody { inner: body, remaining: limit, progress: progress.clone() }.boxed_unsync()))
    };
    // nginx sends POST, PATCH and LOCK again only with `proxy-next-upstream: non_idempotent`.
    let idempotent = up.proxy.next_upstream.non_idempotent || is_idempotent(&parts.method);
    // A request that may be sent again keeps a copy of its head: only when a second try can
    // happen (another endpoint, or the affinity endpoint again).
    let may_retry = up.proxy.upstream_tries > 1 && (up.bound.states.len() > 1 || up.affinity.is_some());
    let replay = match (&buffered, idempotent && may_retry) {
        (Some(b), true) => Some((parts.method.clone(), parts.uri.clone(), parts.version, parts.headers.clone(), b.clone())),
        _ => None,
    };
    let first_body = match (buffered, stream) {
        (Some(b), _) => full(&b),
        (None, Some(s)) => s,
        (None, None) => full(&Bytes::new()),
    };
    Ok(Prepared { first: Some(Request::from_parts(parts, first_body)), replay, client_upgrade, hash_key, deadline })
}

/// What one try on one endpoint came to.
enum Attempt {
    /// Vestibule's own answer (an error that cannot be retried).
    Answered(Response<RespBody>),
    /// The endpoint's answer.
    Backend(Response<RespBody>),
    /// Try the next endpoint if the route's `proxy-next-upstream` allows it for this failure,
    /// with the request back if it was never sent.
    Next(Option<Request<ReqBody>>, StatusCode, Failure),
}

/// Why a try failed, in `proxy-next-upstream`'s terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// `error`: connecting, or sending the request, failed.
    Error,
    /// `timeout`: connecting or the answer took too long.
    Timeout,
}

/// Sends the request to endpoints in balancing order until one answers or the tries run out.
/// With affinity, the cookie's endpoint comes first, and a new pick issues a cookie.
async fn send(ctx: &Ctx<'_>, up: &Upstream<'_>, mut p: Prepared, sticky: Option<&Sticky<'_>>, progress: &Arc<Progress>, outcome: &mut Outcome) -> Response<RespBody> {
    let (policy, tries) = (&up.backend.policy, up.proxy.upstream_tries);
    // The endpoints in the order tried and, with affinity, its plan, which also gives the
    // cookie key each try issues (so that the usual case builds one list, not a second of
    // pairs).
    let (order, plan): (Vec<usize>, Option<Vec<(usize, Option<u64>)>>) = match sticky {
        Some(s) => {
            let plan = s.plan(up.bound, policy, p.hash_key.as_deref(), tries);
            (plan.iter().map(|(i, _)| *i).collect(), Some(plan))
        }
        None => (up.bound.order(policy, p.hash_key.as_deref(), tries), None),
    };
    let issue = |resp: &mut Response<RespBody>, key: Option<u64>| {
        if let (Some(s), Some(k)) = (sticky, key) {
            s.issue(resp, k);
        }
    };
    let next = &up.proxy.next_upstream;
    let started = Instant::now();
    let mut last = StatusCode::BAD_GATEWAY;
    // An answer whose status `proxy-next-upstream` retries; the client gets the last one.
    let mut last_answer: Option<(Response<RespBody>, Option<u64>)> = None;
    for (attempt, &idx) in order.iter().enumerate() {
        let key = plan.as_ref().and_then(|plan| plan[attempt].1);
        let state = up.bound.states[idx].clone();
        if attempt > 0 {
            // `proxy-next-upstream-timeout`: no new try once it has passed since the first.
            if up.proxy.next_upstream_timeout.is_some_and(|t| started.elapsed() >= t) {
                break;
            }
            ctx.shared.metrics.retries.inc();
        }
        // The request for this attempt: the one not yet sent, or a copy of a replayable one.
        let req_now = match p.first.take() {
            Some(r) => r,
            None => match &p.replay {
                Some((m, u, v, h, b)) => {
                    let mut r = Request::new(full(b));
                    *r.method_mut() = m.clone();
                    *r.uri_mut() = u.clone();
                    *r.version_mut() = *v;
                    *r.headers_mut() = h.clone();
                    r
                }
                None => break,
            },
        };
        if let Some(u) = outcome.upstream.as_mut() {
            u.addr = Some(state.addr);
        }
        if let Some(client_upgrade) = p.client_upgrade.take() {
            let mut resp = Box::pin(super::upgrade::proxy_upgrade(ctx, up, state.addr, req_now, client_upgrade)).await;
            if let Some(u) = outcome.upstream.as_mut() {
                u.status = Some(resp.status().as_u16());
            }
            issue(&mut resp, key);
            return resp;
        }
        match try_endpoint(ctx, up, &state, req_now, p.replay.is_some(), p.deadline, progress, outcome).await {
            Attempt::Answered(mut resp) => {
                issue(&mut resp, key);
                return resp;
            }
            Attempt::Backend(mut resp) => {
                let retry = attempt + 1 < order.len() && p.replay.is_some() && next.statuses.contains(&resp.status().as_u16());
                if !retry {
                    issue(&mut resp, key);
                    return resp;
                }
                last_answer = Some((resp, key));
            }
            Attempt::Next(back, status, why) => {
                let allowed = match why {
                    Failure::Error => next.error,
                    Failure::Timeout => next.timeout,
                };
                if !allowed {
                    return ctx.fail(status);
                }
                last = status;
                last_answer = None;
                p.first = back;
            }
        }
    }
    match last_answer {
        Some((mut resp, key)) => {
            issue(&mut resp, key);
            resp
        }
        None => ctx.fail(last),
    }
}

/// One endpoint: a pooled connection that turns out closed before the request was written is
/// replaced by a fresh one to the same endpoint, which does not count as a try.
#[allow(clippy::too_many_arguments)]
async fn try_endpoint(
    ctx: &Ctx<'_>,
    up: &Upstream<'_>,
    state: &Arc<balance::EndpointState>,
    req: Request<ReqBody>,
    replayable: bool,
    deadline: Option<Duration>,
    progress: &Progress,
    outcome: &mut Outcome,
) -> Attempt {
    let (backend, shared, addr): (&Backend, _, SocketAddr) = (up.backend, ctx.shared, state.addr);
    let read_timeout = up.proxy.read_timeout;
    let exchange_timeout = deadline.map(|d| d.min(read_timeout)).unwrap_or(read_timeout);
    // A gRPC deadline bounds sending the request too.
    let send_timeout = deadline.map(|d| d.min(up.proxy.send_timeout)).unwrap_or(up.proxy.send_timeout);
    // Passive health: a try that fails as `error` or `timeout` counts towards ejection.
    let failed = || {
        if state.failed() {
            shared.metrics.endpoint_ejections.inc();
            tracing::warn!(backend = %backend.name, endpoint = %addr, "endpoint ejected after {} failed tries in a row", balance::EJECT_AFTER);
        }
    };
    // Cleartext HTTP/1.1 without a request body: the raw exchange, in this task.
    let raw = shared.opts.http1_fast_path && super::h1::client::carries(backend.protocol, &req);
    let idempotent = is_idempotent(req.method());
    let mut pending = Some(req);
    for _fresh in 0..3 {
        let Some(r) = pending.take() else { break };
        let connect_started = Instant::now();
        let connect_timeout = up.proxy.try_timeout.map_or(up.proxy.connect_timeout, |t| t.min(up.proxy.connect_timeout));
        let link = if raw { shared.pool.get_raw(addr, connect_timeout).await.map(Link::Raw) } else { shared.pool.get(addr, backend.protocol, backend.tls.as_ref(), connect_timeout).await.map(Link::Hyper) };
        let link = match link {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(request_id = ?ctx.request_id, backend = %backend.name, error = %e, "upstream connect failed");
                // A TLS failure says more about this backend's TLS settings than about the
                // endpoint, which other Ingresses may reach fine, and running out of file
                // descriptors or memory (ENFILE, EMFILE, ENOMEM, ENOBUFS) is our own state:
                // neither counts for ejection.
                let local = matches!(&e, ConnectError::Io(_, io) if matches!(io.raw_os_error(), Some(23 | 24 | 12 | 105)));
                if !matches!(e, ConnectError::Tls(..)) && !local {
                    failed();
                }
                let (status, why) = if matches!(e, ConnectError::Timeout(_)) { (StatusCode::GATEWAY_TIMEOUT, Failure::Timeout) } else { (StatusCode::BAD_GATEWAY, Failure::Error) };
                return Attempt::Next(Some(r), status, why);
            }
        };
        let reused = link.reused();
        if let Some(u) = outcome.upstream.as_mut() {
            u.connect = Some(if reused { Duration::ZERO } else { connect_started.elapsed() });
        }
        let guard = InFlight::new(state.clone());
        let sent_at = Instant::now();
        let exchange = body::with_exchange_timeout(link.exchange(r, idempotent, shared, addr, read_timeout), send_timeout, exchange_timeout, progress);
        // `try_timeout` (Gateway API `backendRequest`) bounds the whole try, not only silences.
        let result = match up.proxy.try_timeout {
            Some(t) => tokio::time::timeout(t.saturating_sub(connect_started.elapsed()), exchange).await.ok().flatten(),
            None => exchange.await,
        };
        match result {
            None => {
                tracing::warn!(request_id = ?ctx.request_id, backend = %backend.name, %addr, "upstream timed out");
                failed();
                if !replayable || deadline.is_some() {
                    return Attempt::Answered(ctx.fail(StatusCode::GATEWAY_TIMEOUT));
                }
                return Attempt::Next(None, StatusCode::GATEWAY_TIMEOUT, Failure::Timeout);
            }
            Some(Exchanged::Answer(rparts, _)) if rparts.status == StatusCode::SWITCHING_PROTOCOLS => {
                state.answered();
                // No upgrade was forwarded: a backend that switches protocols anyway would turn
                // this connection into a tunnel past the routing rules.
                tracing::warn!(request_id = ?ctx.request_id, backend = %backend.name, %addr, "upstream answered 101 to a request that asked for no upgrade");
                return Attempt::Answered(ctx.fail(StatusCode::BAD_GATEWAY));
            }
            Some(Exchanged::Answer(mut rparts, body)) => {
                state.answered();
                state.observe(sent_at.elapsed());
                if let Some(u) = outcome.upstream.as_mut() {
                    u.status = Some(rparts.status.as_u16());
                }
                forwarded::strip_hop_by_hop(&mut rparts.headers);
                // `hide-headers`: the backend's headers ingress-nginx's proxy_hide_header drops.
                ctx.http.hide_headers.iter().for_each(|h| drop(rparts.headers.remove(h)));
                respond::finish_headers(&mut rparts.headers, &ctx.request_id);
                rparts.version = Version::HTTP_11;
                let body = match body {
                    UpBody::Hyper(b) => Tracked { inner: b, in_flight: guard }.boxed_unsync(),
                    UpBody::Raw(b) => Tracked { inner: b, in_flight: guard }.boxed_unsync(),
                };
                return Attempt::Backend(Response::from_parts(rparts, body));
            }
            // Never written (or, on a reused connection, closed before any answer to a request
            // that may be sent again): safe to send on a fresh connection.
            Some(Exchanged::Back(back)) => {
                if !reused {
                    failed();
                    return Attempt::Next(Some(back), StatusCode::BAD_GATEWAY, Failure::Error);
                }
                pending = Some(back);
            }
            Some(Exchanged::Failed(err, user)) => {
                if body::caused_by_body_limit(&*err) {
                    return Attempt::Answered(ctx.fail(StatusCode::PAYLOAD_TOO_LARGE));
                }
                tracing::warn!(request_id = ?ctx.request_id, backend = %backend.name, %addr, error = %err, "upstream request failed");
                // The endpoint's failure, unless it was the client's request body.
                if !user {
                    failed();
                }
                if !replayable {
                    return Attempt::Answered(ctx.fail(StatusCode::BAD_GATEWAY));
                }
                return Attempt::Next(None, StatusCode::BAD_GATEWAY, Failure::Error);
            }
        }
    }
    Attempt::Next(pending, StatusCode::BAD_GATEWAY, Failure::Error)
}

/// A connection for one try: hyper's (HTTP/2, TLS, request bodies) or the raw HTTP/1.1 one.
enum Link {
    Hyper(super::upstream::Conn),
    Raw(super::h1::client::RawConn),
}

/// An answer's body before it is tracked.
enum UpBody {
    Hyper(PooledBody),
    Raw(super::h1::client::RawBody),
}

/// What one exchange on one connection came to.
enum Exchanged {
    Answer(http::response::Parts, UpBody),
    /// The request, given back: it can go on a fresh connection.
    Back(Request<ReqBody>),
    /// Failed after (part of) the request was sent; `true` when the client's body caused it.
    Failed(super::upstream::BoxError, bool),
}

impl Link {
    fn reused(&self) -> bool {
        match self {
            Link::Hyper(c) => c.reused,
            Link::Raw(c) => c.reused,
        }
    }

    async fn exchange(self, req: Request<ReqBody>, idempotent: bool, shared: &super::Shared, addr: SocketAddr, read_timeout: Duration) -> Exchanged {
        use super::h1::client::{RawError, ready};
        match self {
            Link::Hyper(mut c) => match c.sender.send(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    Exchanged::Answer(parts, UpBody::Hyper(PooledBody::new(body, shared.pool.clone(), addr, c.tls, c.sender, read_timeout)))
                }
                Err(mut e) => match e.take_message() {
                    Some(back) => Exchanged::Back(back),
                    None => {
                        let err = e.into_error();
                        let user = err.is_user();
                        Exchanged::Failed(Box::new(err), user)
                    }
                },
            },
            Link::Raw(c) => match ready(c, &req).exchange().await {
                Ok((parts, body)) => {
                    // Sent and answered: the request's field map can serve the next head.
                    super::h1::recycle(req.into_parts().0.headers);
                    Exchanged::Answer(parts, UpBody::Raw(body.pooled(shared.pool.clone(), addr, read_timeout)))
                }
                Err((RawError::Unsent(_), _)) => Exchanged::Back(req),
                Err((RawError::Closed, true)) if idempotent => Exchanged::Back(req),
                Err((e, _)) => Exchanged::Failed(Box::new(e), false),
            },
        }
    }
}

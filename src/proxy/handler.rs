//! The request handler: one request through the phases, in order.
//!
//! admit (the connection, in `listener.rs`/`admit.rs`) → head checks (`head.rs`) → route
//! (`router.rs`) → request filters (`filters/`) → upstream (`forward.rs`) → response filters
//! → log (`log.rs`). One `Ctx` flows through them. The handler is generic over the client's
//! body type, so every protocol shares it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};

use super::Shared;
use super::body::{ClientBody, Progress};
use super::context::Ctx;
use super::error_pages;
use super::filters;
use super::forward::{self, Upstream};
use super::head::{self, Upgrade};
use super::log::{self, LogRequest, Outcome, Started};
use super::respond::{self, RespBody};
use super::router;
use crate::config::Target;
use crate::metrics;

/// `fut`, or a 504 once `deadline` passes (a route's `request_timeout`). A plain future rather
/// than an `async fn`: an `async` wrapper holds `fut` twice (as its argument and as what it
/// awaits), and the request's whole future, moved into place once per request, grows with it.
fn within<'a, F>(ctx: &'a Ctx<'_>, deadline: Option<tokio::time::Instant>, fut: F) -> impl std::future::Future<Output = Response<RespBody>> + 'a
where
    F: std::future::Future<Output = Response<RespBody>> + 'a,
{
    use futures::future::{Either, FutureExt};
    match deadline {
        Some(d) => Either::Left(tokio::time::timeout_at(d, fut).map(move |r| r.unwrap_or_else(|_| ctx.fail(StatusCode::GATEWAY_TIMEOUT)))),
        None => Either::Right(fut),
    }
}

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
    /// The client certificate and its verification, when SNI named a host with `auth-tls-*`.
    pub client_cert: Option<Arc<super::client_auth::ClientCert>>,
}

impl ConnInfo {
    /// The address of the client: from the PROXY protocol header, else the TCP peer.
    pub fn client_ip(&self) -> std::net::IpAddr {
        self.proxied_client.unwrap_or(self.peer).ip().to_canonical()
    }
}

/// Answers one request, and records it in metrics and the access log once its response ends.
/// `turn` is dropped once the answer is made (the connection's count of requests in flight).
/// The protocols call this directly: a wrapping `async` block would copy this whole future
/// once per request.
pub async fn handle<B: ClientBody, T>(shared: Arc<Shared>, conn: Arc<ConnInfo>, req: Request<B>, turn: T) -> Result<Response<RespBody>, Infallible> {
    let ctx = Ctx::new(&shared, &conn, &req);
    let alt_svc = alt_svc(&shared, &ctx, &req);
    let started = Started {
        at: Instant::now(),
        method: metrics::method_label(req.method()),
        request_length: log::head_length(&req),
        log: LogRequest::of(&shared, &req, ctx.host()),
        remote: ctx.client_ip,
    };
    let progress = Progress::new();
    let mut outcome = Outcome::default();
    let mut resp = pipeline(&ctx, req, &progress, &mut outcome).await;
    respond::server_header(resp.headers_mut(), ctx.http.server_tokens);
    respond::global_headers(resp.headers_mut(), &ctx.http, ctx.conn.tls);
    if let Some(v) = alt_svc {
        resp.headers_mut().insert(http::header::ALT_SVC, v);
    }
    let answer = log::observe(&shared, started, progress, outcome, resp);
    drop(turn);
    Ok(answer)
}

/// HTTPS answers over TCP name the HTTP/3 port, for hosts HTTP/3 serves.
fn alt_svc<B>(shared: &Shared, ctx: &Ctx<'_>, req: &Request<B>) -> Option<http::HeaderValue> {
    let v = shared.alt_svc.get()?;
    if !ctx.conn.tls || req.version() == http::Version::HTTP_3 {
        return None;
    }
    let live = shared.live.load();
    if !live.config.client_auth.hosts.is_empty() && !super::h3::serves_host(&live.config, ctx.host()) {
        return None;
    }
    Some(v.clone())
}

/// Head checks, route, request filters, upstream, response filters.
async fn pipeline<B: ClientBody>(ctx: &Ctx<'_>, mut req: Request<B>, progress: &Arc<Progress>, outcome: &mut Outcome) -> Response<RespBody> {
    let shared = ctx.shared;
    // Where a route's `request_timeout` counts from.
    let started = tokio::time::Instant::now();
    let websocket = match head::check(&mut req) {
        Ok(u) => u == Upgrade::WebSocket,
        Err(refusal) => return respond::refuse(refusal, &ctx.request_id, ctx.head),
    };
    // `block-cidrs`: refused on every host and path.
    if crate::config::limits::contains(&ctx.http.block_cidrs, ctx.client_ip) {
        return ctx.fail(StatusCode::FORBIDDEN);
    }
    let live = shared.live();
    let target = router::route_host(&live.config, ctx.host(), &req, ctx.conn.local.port());
    if shared.opts.metrics {
        outcome.stats = target.route_id().map(|(id, labels)| live.stats(id, labels, &shared.metrics).clone());
    }
    let filters = target.filters();
    if let Some(answer) = super::client_auth::on_request(ctx, &live.config, &target, &mut req) {
        return filters::on_response(filters, ctx, answer);
    }
    let host = filters::has_async(filters).then(|| filters::original_host(&req));
    if let Some(answer) = filters::on_request(filters, ctx, &mut req) {
        return filters::on_response(filters, ctx, answer);
    }
    let mut cookies = filters::external_auth::AuthCookies::default();
    if let Some(host) = &host
        && let Some(mut answer) = Box::pin(filters::on_request_async(filters, ctx, host, &mut req, &mut cookies)).await
    {
        cookies.apply(&mut answer);
        return filters::on_response(filters, ctx, answer);
    }
    let pages = filters::error_pages(filters);
    let original = pages.map(|_| error_pages::Original::of(&req));
    // A weighted split picks one of the route's backends; that backendRef's own filters run
    // after the route's.
    let (main, own): (Option<&Arc<crate::config::Backend>>, &[crate::config::Filter]) = match &target {
        Target::Route { route, .. } => match super::split::weighted(&route.backends) {
            Some(w) => (Some(&w.backend), &w.filters),
            None => return filters::on_response(filters, ctx, ctx.fail(StatusCode::INTERNAL_SERVER_ERROR)),
        },
        _ => (target.backend(), &[]),
    };
    if let Some(answer) = filters::on_request(own, ctx, &mut req) {
        return filters::on_response(filters, ctx, filters::on_response(own, ctx, answer));
    }
    let proxy = target.proxy(&live.config);
    let mut resp = match main {
        None => ctx.fail(StatusCode::NOT_FOUND),
        // A Gateway API backendRef that could not be resolved: 500, as the spec says.
        Some(b) if b.unresolved => ctx.fail(StatusCode::INTERNAL_SERVER_ERROR),
        Some(main) => {
            // The canary, when the route has one and the request goes to it.
            let choice = super::split::choose(main, target.affinity(), target.canary(), req.headers());
            let backend = choice.backend;
            let up = Upstream { backend, proxy, bound: live.bound(backend, &shared.registry), affinity: choice.affinity };
            let mirrored = filters::mirror::has_mirror(filters) || filters::mirror::has_mirror(own);
            let deadline = proxy.request_timeout.map(|l| started + l);
            if mirrored {
                // Off the common path: boxed, so that every request's future stays small (it
                // is moved into place once per request).
                let req = filters::mirror::start(filters, own, ctx, req);
                Box::pin(within(ctx, deadline, forward::forward(ctx, up, req, websocket, progress, outcome))).await
            } else {
                within(ctx, deadline, forward::forward(ctx, up, req, websocket, progress, outcome)).await
            }
        }
    };
    resp = filters::on_response(own, ctx, resp);
    // The error-page step: an answer with one of the route's custom-http-errors codes is
    // replaced by the error backend's.
    if let (Some(pages), Some(original)) = (pages, &original)
        && error_pages::applies(pages, &resp, outcome)
    {
        let code = resp.status();
        drop(resp);
        resp = Box::pin(error_pages::answer(ctx, &live, pages, target.proxy(&live.config), original, code)).await;
    }
    cookies.apply(&mut resp);
    filters::on_response(filters, ctx, resp)
}

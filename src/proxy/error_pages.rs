//! The error-page step (`custom-http-errors`): after the upstream phase, an answer with one of
//! the route's codes is replaced by what the error backend answers to a fresh `GET /` (the
//! original query kept) that carries only ingress-nginx's headers: `X-Code`, `X-Format`,
//! `X-Original-URI`, `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port`,
//! `X-Request-ID`, `X-Forwarded-For` and `Host`. The error backend's answer is not intercepted
//! again. Without an error backend the answer is 404, as ingress-nginx's internal default.

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::Empty;

use super::Live;
use super::body::Progress;
use super::context::Ctx;
use super::filters::default_backend_headers::context_headers;
use super::forward::{self, Upstream};
use super::handler::ConnInfo;
use super::log::Outcome;
use super::respond::{RespBody, X_REQUEST_ID};
use crate::config::ProxySettings;
use crate::config::filter::ErrorPages;

/// What the error request needs from the client's request, taken before it is forwarded.
pub struct Original {
    host: HeaderValue,
    accept: HeaderValue,
}

impl Original {
    pub fn of<B>(req: &Request<B>) -> Self {
        let host = req.headers().get(header::HOST).cloned().or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
        Original { host: host.unwrap_or_else(|| HeaderValue::from_static("")), accept: req.headers().get(header::ACCEPT).cloned().unwrap_or_else(|| HeaderValue::from_static("")) }
    }
}

/// Whether `resp` is replaced: one of the codes, and either intercepting or Vestibule's own
/// answer (not the backend's).
pub fn applies(pages: &ErrorPages, resp: &Response<RespBody>, outcome: &Outcome) -> bool {
    let status = resp.status().as_u16();
    if !pages.codes.contains(&status) {
        return false;
    }
    let from_backend = outcome.upstream.as_ref().and_then(|u| u.status) == Some(status);
    pages.intercept || !from_backend
}

/// The error backend's answer for `code`.
pub async fn answer(ctx: &Ctx<'_>, live: &Live, pages: &ErrorPages, proxy: &ProxySettings, original: &Original, code: StatusCode) -> Response<RespBody> {
    let Some(backend) = &pages.backend else { return ctx.fail(StatusCode::NOT_FOUND) };
    let req = request(ctx, pages, original, code);
    // The error request is not the one the HTTP/1 sniffer saw: it must not consume its verdict.
    let conn = ConnInfo { verdicts: None, ..ctx.conn.clone() };
    let inner = Ctx {
        shared: ctx.shared,
        conn: &conn,
        request_id: ctx.request_id.clone(),
        head: ctx.head,
        grpc: false,
        original_uri: ctx.original_uri.clone(),
        client_ip: ctx.client_ip,
        http: ctx.http.clone(),
        send_request_id: true,
        conn_slot: Default::default(),
        origin: ctx.origin.clone(),
        host: ctx.host.clone(),
    };
    let up = Upstream { backend, proxy, bound: live.bound(backend, &ctx.shared.registry), affinity: None };
    let mut outcome = Outcome::default();
    forward::forward(&inner, up, req, false, &Progress::new(), &mut outcome).await
}

fn request(ctx: &Ctx<'_>, pages: &ErrorPages, original: &Original, code: StatusCode) -> Request<Empty<bytes::Bytes>> {
    let target = match ctx.original_uri.query() {
        Some(q) => format!("/?{q}"),
        None => "/".to_string(),
    };
    let mut req = Request::new(Empty::new());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = Uri::try_from(target).unwrap_or_else(|_| Uri::from_static("/"));
    let h = req.headers_mut();
    h.insert(HeaderName::from_static("x-code"), HeaderValue::from(code.as_u16()));
    h.insert(HeaderName::from_static("x-format"), original.accept.clone());
    h.insert(HeaderName::from_static("x-original-uri"), HeaderValue::from_str(ctx.request_uri()).unwrap_or_else(|_| HeaderValue::from_static("/")));
    for (k, v) in context_headers(&pages.context) {
        h.insert(k, v);
    }
    h.insert(X_REQUEST_ID.clone(), ctx.request_id.clone());
    if !original.host.is_empty() {
        h.insert(header::HOST, original.host.clone());
    }
    req
}

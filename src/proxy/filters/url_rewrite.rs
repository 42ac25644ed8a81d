//! Gateway API `URLRewrite`: the Host sent upstream (marked for the head rewrite, as
//! `upstream-vhost` does, the client's host kept in `X-Forwarded-Host`), and the path: replaced
//! whole, or its matched prefix replaced. The query is kept.

use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};

use super::super::context::Ctx;
use super::super::forwarded::UpstreamHost;
use super::super::respond::RespBody;
use super::super::router::normalize_path;
use super::rewrite::escape;
use crate::config::filter::UrlRewrite;

pub fn on_request<B>(r: &UrlRewrite, ctx: &Ctx<'_>, req: &mut Request<B>) -> Option<Response<RespBody>> {
    if let Some(h) = &r.hostname {
        req.extensions_mut().insert(UpstreamHost(h.clone()));
    }
    let Some(p) = &r.path else { return None };
    let path = escape(&p.apply(&normalize_path(req.uri().path())));
    let pq = match req.uri().query() {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}")),
        None => PathAndQuery::try_from(path),
    };
    let Ok(pq) = pq else { return Some(ctx.fail(StatusCode::INTERNAL_SERVER_ERROR)) };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(pq);
    match Uri::from_parts(parts) {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return Some(ctx.fail(StatusCode::INTERNAL_SERVER_ERROR)),
    }
    None
}

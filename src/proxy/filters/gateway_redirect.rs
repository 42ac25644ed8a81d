//! Gateway API `RequestRedirect`: the Location is the request's URL with the parts the filter
//! names replaced. Host: the filter's hostname, else the request's (without its port). Port:
//! the filter's; else, when the filter names a scheme, that scheme's well-known port; else the
//! port the request arrived on. 80 with `http` and 443 with `https` are left out. Path: as
//! sent, or replaced (whole, or the matched prefix); the query is kept.

use http::{Request, Response, StatusCode};

use super::super::context::Ctx;
use super::super::respond::{self, RespBody};
use super::super::router::{normalize_path, request_host};
use super::rewrite::escape;
use crate::config::filter::Redirect;

pub fn on_request<B>(r: &Redirect, ctx: &Ctx<'_>, req: &Request<B>) -> Option<Response<RespBody>> {
    let scheme = r.scheme.as_deref().unwrap_or(if ctx.conn.tls { "https" } else { "http" });
    let host = match &r.hostname {
        Some(h) => h.clone(),
        None => request_host(req),
    };
    let port = match (r.port, r.scheme.as_deref()) {
        (Some(p), _) => p,
        (None, Some("http")) => 80,
        (None, Some("https")) => 443,
        _ => ctx.conn.local.port(),
    };
    let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
    let path = match &r.path {
        Some(p) => escape(&p.apply(&normalize_path(req.uri().path()))),
        None => req.uri().path().to_string(),
    };
    let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host };
    let location = if default_port { format!("{scheme}://{host}{path}{query}") } else { format!("{scheme}://{host}:{port}{path}{query}") };
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND);
    Some(respond::redirect(status, &location, &ctx.request_id))
}

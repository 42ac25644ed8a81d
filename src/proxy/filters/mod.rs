//! The filter phases: a route's typed filters, applied in order. Request filters may answer
//! the request themselves (a redirect, later auth, CORS preflights, rate limits); response
//! filters change the answer on its way back. Each filter is one file.

mod https_redirect;
mod redirect;
mod rewrite;
mod location_denied;
mod proxy_cookie;
mod proxy_redirect;
mod response_headers;
mod upstream_vhost;
mod ip_filter;
mod rate_limit;
mod cors;
mod basic_auth;
mod htpasswd;
pub mod external_auth;
mod auth_request;
mod header_edit;
mod gateway_redirect;
mod url_rewrite;
pub mod mirror;

pub mod default_backend_headers;

use http::{Request, Response};

use super::context::Ctx;
use super::respond::RespBody;
use crate::config::Filter;

/// Runs the request filters in order; the first that answers ends the request.
pub fn on_request<B>(filters: &[Filter], ctx: &Ctx<'_>, req: &mut Request<B>) -> Option<Response<RespBody>> {
    for f in filters {
        let answer = match f {
            Filter::HttpsRedirect { status, preserve_trailing_slash, use_port } => https_redirect::on_request(*status, *preserve_trailing_slash, *use_port, ctx, req),
            Filter::Rewrite { pattern, target, prefix } => rewrite::on_request(pattern, target, prefix.as_deref(), ctx, req),
            Filter::AppRoot { root } => redirect::app_root(root, ctx, req),
            Filter::FixedRedirect { status, location } => redirect::fixed(*status, location, ctx),
            Filter::WwwRedirect { to_host, status } => redirect::www(to_host, *status, ctx),
            Filter::LocationDenied { status } => location_denied::on_request(*status, ctx),
            Filter::UpstreamVhost { host } => {
                upstream_vhost::on_request(host, req);
                None
            }
            Filter::DefaultBackendHeaders(c) => {
                default_backend_headers::on_request(c, ctx, req);
                None
            }
            Filter::IpFilter(f) => ip_filter::on_request(f, ctx),
            Filter::RateLimit(l) => rate_limit::on_request(l, ctx),
            Filter::Cors(p) => cors::on_request(p, ctx, req),
            Filter::BasicAuth(a) => basic_auth::on_request(a, ctx, req),
            // The async pass (`on_request_async`).
            Filter::ExternalAuth(_) => None,
            Filter::RequestHeaderEdit(e) => {
                header_edit::apply(e, req.headers_mut());
                None
            }
            Filter::Redirect(r) => gateway_redirect::on_request(r, ctx, req),
            Filter::UrlRewrite(r) => url_rewrite::on_request(r, ctx, req),
            // Started by the handler once the backend is known (`mirror::start`).
            Filter::Mirror(_) => None,
            // Act on responses only (error pages: the handler's error-page step).
            Filter::ResponseHeaders { .. } | Filter::ResponseHeaderEdit(_) | Filter::ProxyRedirect { .. } | Filter::ProxyCookie { .. } | Filter::ErrorPages(_) => None,
        };
        if answer.is_some() {
            return answer;
        }
    }
    None
}

/// Runs the response filters in order on every answer: the backend's and Vestibule's own.
pub fn on_response(filters: &[Filter], ctx: &Ctx<'_>, mut resp: Response<RespBody>) -> Response<RespBody> {
    for f in filters {
        match f {
            // Act on requests only.
            Filter::HttpsRedirect { .. } | Filter::Rewrite { .. } | Filter::AppRoot { .. } | Filter::FixedRedirect { .. } | Filter::WwwRedirect { .. } => {}
            Filter::UpstreamVhost { .. } | Filter::LocationDenied { .. } | Filter::DefaultBackendHeaders(_) | Filter::ErrorPages(_) => {}
            Filter::BasicAuth(_) | Filter::ExternalAuth(_) => {}
            Filter::RequestHeaderEdit(_) | Filter::Redirect(_) | Filter::UrlRewrite(_) | Filter::Mirror(_) => {}
            Filter::ResponseHeaderEdit(e) => header_edit::apply(e, resp.headers_mut()),
            Filter::ResponseHeaders { headers } => response_headers::on_response(headers, &mut resp),
            Filter::ProxyRedirect { from, to } => proxy_redirect::on_response(from, to, &mut resp),
            Filter::ProxyCookie { path, domain } => proxy_cookie::on_response(path.as_ref(), domain.as_ref(), &mut resp),
            Filter::IpFilter(_) => {}
            Filter::RateLimit(l) => resp = rate_limit::on_response(l, ctx, resp),
            Filter::Cors(p) => cors::on_response(p, ctx, &mut resp),
        }
    }
    resp
}

/// The route's `custom-http-errors`, if it has them.
pub fn error_pages(filters: &[Filter]) -> Option<&crate::config::filter::ErrorPages> {
    filters.iter().find_map(|f| match f {
        Filter::ErrorPages(p) => Some(p),
        _ => None,
    })
}

/// Whether the route has request filters that need I/O (`on_request_async`).
pub fn has_async(filters: &[Filter]) -> bool {
    filters.iter().any(|f| matches!(f, Filter::ExternalAuth(_)))
}

/// The client's Host as sent, for filters that need it after others changed the request.
pub fn original_host<B>(req: &Request<B>) -> String {
    auth_request::original_host(req)
}

/// The request filters that need I/O (the `auth-url` sub-request), after the sync ones, in
/// order; the first that answers ends the request. `host` is the client's Host as sent.
pub async fn on_request_async<B>(filters: &[Filter], ctx: &Ctx<'_>, host: &str, req: &mut Request<B>, cookies: &mut external_auth::AuthCookies) -> Option<Response<RespBody>> {
    for f in filters {
        if let Filter::ExternalAuth(a) = f
            && let Some(answer) = external_auth::on_request(a, ctx, host, req, cookies).await
        {
            return Some(answer);
        }
    }
    None
}

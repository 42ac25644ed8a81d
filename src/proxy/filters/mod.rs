//! The filter phases: a route's typed filters, applied in order. Request filters may answer
//! the request themselves (a redirect, later auth, CORS preflights, rate limits); response
//! filters change the answer on its way back. Each filter is one file.

mod https_redirect;
mod redirect;
mod rewrite;

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
        };
        if answer.is_some() {
            return answer;
        }
    }
    None
}

/// Runs the response filters in order on every answer: the backend's and Vestibule's own.
pub fn on_response(filters: &[Filter], _ctx: &Ctx<'_>, resp: Response<RespBody>) -> Response<RespBody> {
    for f in filters {
        match f {
            // Acts on requests only.
            Filter::HttpsRedirect { .. } => {}
            Filter::Rewrite { .. } | Filter::AppRoot { .. } | Filter::FixedRedirect { .. } | Filter::WwwRedirect { .. } => {}
        }
    }
    resp
}

//! Vestibule's own redirects besides the HTTPS one: `app-root`, the fixed Location of
//! `permanent-redirect` / `temporal-redirect`, and the extra host of `from-to-www-redirect`.

use http::{Request, Response, StatusCode};

use super::super::context::Ctx;
use super::super::respond::{self, RespBody};
use super::super::router::normalize_path;

fn status(code: u16, fallback: StatusCode) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(fallback)
}

/// The Host as the client sent it, port included (nginx's `$http_host`).
fn raw_host<B>(req: &Request<B>) -> &str {
    match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or(""),
    }
}

fn scheme(ctx: &Ctx<'_>) -> &'static str {
    if ctx.conn.tls { "https" } else { "http" }
}

/// `app-root`: exactly `/` (normalised; the query is dropped) → 302 to the root.
pub fn app_root<B>(root: &str, ctx: &Ctx<'_>, req: &Request<B>) -> Option<Response<RespBody>> {
    if normalize_path(req.uri().path()) != "/" {
        return None;
    }
    let location = format!("{}://{}{root}", scheme(ctx), raw_host(req));
    Some(respond::redirect(StatusCode::FOUND, &location, &ctx.request_id))
}

/// `permanent-redirect` / `temporal-redirect`: the Location as written.
pub fn fixed(code: u16, location: &str, ctx: &Ctx<'_>) -> Option<Response<RespBody>> {
    Some(respond::redirect(status(code, StatusCode::MOVED_PERMANENTLY), location, &ctx.request_id))
}

/// `from-to-www-redirect`: to the other name, on the port the request arrived on (always
/// named, as ingress-nginx does), with the target less one trailing `/`.
pub fn www(to_host: &str, code: u16, ctx: &Ctx<'_>) -> Option<Response<RespBody>> {
    let uri = ctx.request_uri();
    let uri = uri.strip_suffix('/').unwrap_or(uri);
    let location = format!("{}://{to_host}:{}{uri}", scheme(ctx), ctx.conn.local.port());
    Some(respond::redirect(status(code, StatusCode::PERMANENT_REDIRECT), &location, &ctx.request_id))
}

//! `enable-cors`: as ingress-nginx, a request whose `Origin` the route allows (every request
//! when the origin is `*`) gets the CORS headers on its answer, whatever its status; an
//! `OPTIONS` request that gets them is answered by Vestibule itself: 204, no body. A request
//! from an origin not allowed gets no CORS headers, and an `OPTIONS` from it goes upstream.

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::super::context::Ctx;
use super::super::respond::{self, RespBody};
use crate::config::cors::CorsPolicy;

static ALLOW_ORIGIN: HeaderName = HeaderName::from_static("access-control-allow-origin");
static ALLOW_CREDENTIALS: HeaderName = HeaderName::from_static("access-control-allow-credentials");
static ALLOW_METHODS: HeaderName = HeaderName::from_static("access-control-allow-methods");
static ALLOW_HEADERS: HeaderName = HeaderName::from_static("access-control-allow-headers");
static EXPOSE_HEADERS: HeaderName = HeaderName::from_static("access-control-expose-headers");
static MAX_AGE: HeaderName = HeaderName::from_static("access-control-max-age");

fn origin<'a>(ctx: &'a Ctx<'_>) -> Option<&'a str> {
    ctx.origin.as_ref().and_then(|v| v.to_str().ok())
}

/// An allowed `OPTIONS` request is answered 204 with the headers.
pub fn on_request<B>(p: &CorsPolicy, ctx: &Ctx<'_>, req: &Request<B>) -> Option<Response<RespBody>> {
    if req.method() != Method::OPTIONS {
        return None;
    }
    p.allow_origin(origin(ctx))?;
    if p.gateway {
        return Some(gateway_preflight(p, ctx, req));
    }
    let mut resp = Response::new(respond::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    // The Content-Type ingress-nginx sends with its preflight answers, as written there. It
    // also sets `Content-Length: 0`, but a 204 must not carry one (RFC 9110) and hyper drops
    // it, so none is sent.
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain charset=UTF-8"));
    respond::finish_headers(h, &ctx.request_id);
    // The CORS headers themselves are added by `on_response`, which runs on this answer too.
    Some(resp)
}

/// The Gateway API's preflight answer: 200, the methods and headers allowed (what the
/// preflight asked for where the filter allows `*`), and the max age. The origin, credentials
/// and exposed headers are added by `on_response`, as on every answer.
fn gateway_preflight<B>(p: &CorsPolicy, ctx: &Ctx<'_>, req: &Request<B>) -> Response<RespBody> {
    let mut resp = Response::new(respond::empty());
    let asked = |name: &str| req.headers().get(name).cloned();
    let h = resp.headers_mut();
    let pick = |allowed: &str, asked: Option<HeaderValue>| match (allowed, asked) {
        ("*", Some(v)) => Some(v),
        (a, _) if !a.is_empty() => HeaderValue::from_str(a).ok(),
        _ => None,
    };
    if let Some(v) = pick(&p.allow_methods, asked("access-control-request-method")) {
        h.insert(ALLOW_METHODS.clone(), v);
    }
    if let Some(v) = pick(&p.allow_headers, asked("access-control-request-headers")) {
        h.insert(ALLOW_HEADERS.clone(), v);
    }
    h.insert(MAX_AGE.clone(), HeaderValue::from(p.max_age));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    respond::finish_headers(h, &ctx.request_id);
    resp
}

/// The CORS headers on the answer to an allowed request, replacing any the backend sent.
pub fn on_response(p: &CorsPolicy, ctx: &Ctx<'_>, resp: &mut Response<RespBody>) {
    if p.gateway {
        return gateway_response(p, ctx, resp);
    }
    let Some(allow) = p.allow_origin(origin(ctx)) else { return };
    let Ok(allow) = HeaderValue::from_str(allow) else { return };
    let h = resp.headers_mut();
    h.insert(ALLOW_ORIGIN.clone(), allow);
    if p.allow_credentials {
        h.insert(ALLOW_CREDENTIALS.clone(), HeaderValue::from_static("true"));
    }
    let mut set = |name: &HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(name.clone(), v);
        }
    };
    set(&ALLOW_METHODS, &p.allow_methods);
    set(&ALLOW_HEADERS, &p.allow_headers);
    if !p.expose_headers.is_empty() {
        set(&EXPOSE_HEADERS, &p.expose_headers);
    }
    set(&MAX_AGE, &p.max_age.to_string());
}

/// The Gateway API's headers on every answer to an allowed origin: that origin echoed (so
/// credentials can go with it, and caches keep answers apart by `Vary: Origin`), credentials
/// when allowed, and the exposed headers.
fn gateway_response(p: &CorsPolicy, ctx: &Ctx<'_>, resp: &mut Response<RespBody>) {
    let Some(origin_value) = &ctx.origin else { return };
    if p.allow_origin(origin(ctx)).is_none() {
        return;
    }
    let h = resp.headers_mut();
    h.insert(ALLOW_ORIGIN.clone(), origin_value.clone());
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if p.allow_credentials {
        h.insert(ALLOW_CREDENTIALS.clone(), HeaderValue::from_static("true"));
    }
    if !p.expose_headers.is_empty()
        && let Ok(v) = HeaderValue::from_str(&p.expose_headers)
    {
        h.insert(EXPOSE_HEADERS.clone(), v);
    }
}

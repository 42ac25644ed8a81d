//! The answers Vestibule gives itself: error pages that carry the request ID, redirects, gRPC
//! errors, refusals before routing; and the headers every response leaves with.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};

use super::ids::date_value;
use super::upstream::BoxError;

pub type RespBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub const SERVER_NAME: &str = "vestibule";

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// An empty response body.
pub fn empty() -> RespBody {
    Empty::<Bytes>::new().map_err(|e: Infallible| match e {}).boxed_unsync()
}

/// The headers every response of Vestibule's leaves with. No `Server` header: that is
/// `server_header`'s, once per response, as the ConfigMap's `server-tokens` says.
pub fn finish_headers(headers: &mut HeaderMap, request_id: &HeaderValue) {
    headers.insert(header::DATE, date_value());
    if !headers.contains_key(&X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    }
}

/// `server-tokens`: ingress-nginx sends no `Server` header by default (an upstream's is removed
/// too); with `true`, `Server: vestibule`.
pub fn server_header(headers: &mut HeaderMap, server_tokens: bool) {
    if server_tokens {
        headers.insert(header::SERVER, HeaderValue::from_static(SERVER_NAME));
    } else {
        headers.remove(header::SERVER);
    }
}

/// The ConfigMap's headers on every answer: `add-headers`, and `Strict-Transport-Security`
/// (`hsts*`) on HTTPS ones, replacing a backend's, as ingress-nginx sets it.
pub fn global_headers(headers: &mut HeaderMap, http: &crate::config::http::HttpSettings, tls: bool) {
    for (name, value) in &http.add_headers {
        headers.insert(name.clone(), value.clone());
    }
    if let (true, Some(v)) = (tls, &http.hsts) {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
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

pub fn redirect(status: StatusCode, location: &str, request_id: &HeaderValue) -> Response<RespBody> {
    let mut resp = error_page(status, request_id, false);
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The answer to a request head refused before routing; the connection is closed after it.
pub fn refuse(refusal: super::head::Refusal, request_id: &HeaderValue, head: bool) -> Response<RespBody> {
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


pub fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/grpc"))
}

/// The `grpc-timeout` header: a number and a unit (H, M, S, m, u, n).
pub fn grpc_timeout<B>(req: &Request<B>) -> Option<Duration> {
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
pub fn grpc_error(status: StatusCode, request_id: &HeaderValue) -> Response<RespBody> {
    let (code, msg) = match status.as_u16() {
        404 => (12, "no route for this request"),
        413 => (8, "request message larger than the limit"),
        400 => (13, "malformed request"),
        504 => (4, "deadline exceeded before the upstream answered"),
        _ => (14, "upstream unavailable"),
    };
    let mut resp = Response::new(empty());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(code));
    h.insert("grpc-message", HeaderValue::from_static(msg));
    finish_headers(h, request_id);
    resp
}


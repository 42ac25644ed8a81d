//! The Ingress's `default-backend` serves a rule whose Service has no endpoints: like
//! ingress-nginx, it is told why with `X-Code: 503`, `X-Format` (the client's Accept), the
//! rule's namespace, Ingress, Service and port, and the request ID. The path is unchanged.

use http::{HeaderName, HeaderValue, Request, header};

use super::super::context::Ctx;
use super::super::respond::X_REQUEST_ID;
use crate::config::filter::ErrorContext;

/// The context headers every error backend gets.
pub fn context_headers(c: &ErrorContext) -> [(HeaderName, HeaderValue); 4] {
    let v = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""));
    [
        (HeaderName::from_static("x-namespace"), v(&c.namespace)),
        (HeaderName::from_static("x-ingress-name"), v(&c.ingress)),
        (HeaderName::from_static("x-service-name"), v(&c.service)),
        (HeaderName::from_static("x-service-port"), v(&c.port)),
    ]
}

pub fn on_request<B>(c: &ErrorContext, ctx: &Ctx<'_>, req: &mut Request<B>) {
    let format = req.headers().get(header::ACCEPT).cloned().unwrap_or_else(|| HeaderValue::from_static(""));
    let h = req.headers_mut();
    h.insert(HeaderName::from_static("x-code"), HeaderValue::from_static("503"));
    h.insert(HeaderName::from_static("x-format"), format);
    for (k, v) in context_headers(c) {
        h.insert(k, v);
    }
    h.insert(X_REQUEST_ID.clone(), ctx.request_id.clone());
}

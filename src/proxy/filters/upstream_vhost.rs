//! `upstream-vhost`: the Host header the backend sees. The request is only marked here; the
//! upstream head rewrite (`forwarded.rs`) sends it, and keeps the client's host in
//! `X-Forwarded-Host`.

use http::{HeaderValue, Request};

use super::super::forwarded::UpstreamHost;

pub fn on_request<B>(host: &str, req: &mut Request<B>) {
    if let Ok(v) = HeaderValue::from_str(host) {
        req.extensions_mut().insert(UpstreamHost(v));
    }
}

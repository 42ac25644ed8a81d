//! The route phase: a request's host, path and other facts → the target the live
//! configuration gives it.

use http::Request;

pub use crate::config::path::{normalize_path, strip_port};
use crate::config::{Config, RequestFacts, Target};

/// The request's host: from the URI authority (HTTP/2, absolute-form) or the Host header;
/// lowercase, without port or trailing dot. Empty when the client sent none.
pub fn request_host<B>(req: &Request<B>) -> String {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or(""),
    };
    let raw = raw.rsplit_once('@').map(|(_, h)| h).unwrap_or(raw);
    strip_port(raw).trim_end_matches('.').to_ascii_lowercase()
}

/// Routes `req`, which arrived on the listener port `port`, in `config`: the port's table
/// (Gateway API routes attach to one port) or the Ingress hosts, then host (exact, wildcard,
/// host-less), then the first route whose conditions all hold, among those the host's route
/// index (`config::index`, built with the configuration) gives for the path.
pub fn route<'c, B>(config: &'c Config, req: &Request<B>, port: u16) -> Target<'c> {
    route_host(config, &request_host(req), req, port)
}

/// `route`, with the request's host already found (`Ctx::host`).
pub fn route_host<'c, B>(config: &'c Config, host: &str, req: &Request<B>, port: u16) -> Target<'c> {
    let path = normalize_path(req.uri().path());
    let facts = RequestFacts { path: &path, method: req.method(), headers: req.headers(), query: req.uri().query().unwrap_or("") };
    if config.ports.is_empty() {
        // Ingress only: one table for every port.
        return config.route(host, &facts);
    }
    config.route_on(port, host, &facts)
}

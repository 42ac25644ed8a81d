//! The request head as it is sent upstream: hop-by-hop headers removed, the `X-Forwarded-*`,
//! `X-Real-IP` and `X-Request-ID` headers set, and the target in the form the backend's
//! protocol wants.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Uri, Version};

use super::handler::ConnInfo;
use super::respond::X_REQUEST_ID;
use crate::config::BackendProtocol;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_SCHEME: HeaderName = HeaderName::from_static("x-forwarded-scheme");
static X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in [&header::CONNECTION, &KEEP_ALIVE, &PROXY_CONNECTION, &header::TE, &header::TRAILER, &header::TRANSFER_ENCODING, &header::UPGRADE] {
        headers.remove(n);
    }
}


/// Set by the `upstream-vhost` filter: the Host sent upstream instead of the client's (which
/// `X-Forwarded-Host` keeps).
#[derive(Debug, Clone)]
pub struct UpstreamHost(pub HeaderValue);

/// Rewrites `parts` for the upstream request. `websocket` keeps the (already vetted) upgrade.
pub fn rewrite(parts: &mut Parts, conn: &ConnInfo, request_id: &HeaderValue, protocol: BackendProtocol, websocket: bool, grpc: bool) {
    let original_host = match parts.headers.get(header::HOST) {
        Some(h) => h.clone(),
        None => match parts.uri.authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).unwrap_or_else(|_| HeaderValue::from_static("")),
            None => HeaderValue::from_static(""),
        },
    };
    let upstream_host = parts.extensions.get::<UpstreamHost>().map(|h| h.0.clone()).unwrap_or_else(|| original_host.clone());
    let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    if let (true, Some(u)) = (websocket, upgrade_value) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
    if grpc {
        // gRPC needs trailers end to end.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if !upstream_host.is_empty() {
        headers.insert(header::HOST, upstream_host.clone());
    }
    let client_ip = conn.client_ip().to_string();
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {client_ip}"),
        _ => client_ip.clone(),
    };
    headers.remove(&X_FORWARDED_FOR);
    headers.insert(X_FORWARDED_FOR.clone(), HeaderValue::from_str(&xff).unwrap_or_else(|_| HeaderValue::from_static("")));
    headers.insert(X_REAL_IP.clone(), HeaderValue::from_str(&client_ip).expect("an IP is a valid header value"));
    let proto = HeaderValue::from_static(if conn.tls { "https" } else { "http" });
    headers.insert(X_FORWARDED_PROTO.clone(), proto.clone());
    headers.insert(X_FORWARDED_SCHEME.clone(), proto.clone());
    headers.insert(X_SCHEME.clone(), proto);
    headers.insert(X_FORWARDED_HOST.clone(), original_host.clone());
    headers.insert(X_FORWARDED_PORT.clone(), HeaderValue::from(conn.local.port()));
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    if protocol.http2() {
        // HTTP/2 carries the authority in the URI; Host must not be sent twice.
        headers.remove(header::HOST);
        let scheme = if protocol.tls() { "https" } else { "http" };
        let authority = upstream_host.to_str().ok().filter(|a| !a.is_empty()).unwrap_or("backend");
        let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        parts.uri = Uri::try_from(format!("{scheme}://{authority}{pq}")).unwrap_or_else(|_| Uri::from_static("/"));
        parts.version = Version::HTTP_2;
    } else {
        parts.uri = parts.uri.path_and_query().map(|pq| Uri::from(pq.clone())).unwrap_or_else(|| Uri::from_static("/"));
        parts.version = Version::HTTP_11;
    }
}

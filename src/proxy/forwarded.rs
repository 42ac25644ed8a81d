//! The request head as it is sent upstream: hop-by-hop headers removed, the `X-Forwarded-*`,
//! `X-Real-IP` and `X-Request-ID` headers set, and the target in the form the backend's
//! protocol wants.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Uri, Version};

use std::net::IpAddr;

use super::context::Ctx;
use super::handler::ConnInfo;
use super::respond::X_REQUEST_ID;
use crate::config::BackendProtocol;
use crate::config::http::HttpSettings;
use crate::config::limits::contains;

static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_SCHEME: HeaderName = HeaderName::from_static("x-forwarded-scheme");
static X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
static HOP_BY_HOP: [&HeaderName; 7] = [&header::CONNECTION, &KEEP_ALIVE, &PROXY_CONNECTION, &header::TE, &header::TRAILER, &header::TRANSFER_ENCODING, &header::UPGRADE];

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present, instead of a lookup per hop-by-hop name: most heads
    // carry none of them, or only `Connection: keep-alive`.
    let mut found = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| *h == name) {
            found[i] = true;
        }
    }
    if !found.contains(&true) {
        return;
    }
    if found[0] {
        // Headers named in Connection are hop-by-hop too (the names removed below anyway are
        // skipped, so the usual `keep-alive` builds no list).
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !HOP_BY_HOP.iter().any(|h| n.eq_ignore_ascii_case(h.as_str())))
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if found[i] {
            headers.remove(*n);
        }
    }
}

/// Whether `headers` has `name` (lowercase), by a pass over the names present: cheaper than a
/// hashed lookup for the few headers a request usually has, when the answer is usually no.
fn has(headers: &HeaderMap, name: &str) -> bool {
    headers.keys().any(|k| k.as_str() == name)
}

/// Every value of `name` as one comma-separated string (how nginx's `$http_*` reads a header
/// sent more than once), or `None` when absent or empty.
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    if !headers.keys().any(|k| k.as_str().eq_ignore_ascii_case(name)) {
        return None;
    }
    let parts: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The client address (nginx's `$remote_addr`): the PROXY protocol's or TCP peer's, unless the
/// ConfigMap trusts the forwarded-for header (`use-forwarded-headers` or `enable-real-ip`).
/// Only a peer inside `proxy-real-ip-cidr` (everyone, by default) is trusted to name the client;
/// the header is walked from the right, and the first address outside those CIDRs is the client
/// (with every source trusted, the leftmost). The walk also stops at an entry that is not an
/// address, as nginx's realip with `real_ip_recursive` does.
pub fn client_addr(conn: &ConnInfo, headers: &HeaderMap, http: &HttpSettings) -> IpAddr {
    let peer = conn.client_ip();
    if !http.real_ip_from_header() || !contains(&http.real_ip_cidrs, peer) {
        return peer;
    }
    let Some(list) = joined(headers, &http.forwarded_for_header) else { return peer };
    let mut found = peer;
    for entry in list.rsplit(',') {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) => {
                found = ip.to_canonical();
                if !contains(&http.real_ip_cidrs, found) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    found
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

thread_local! {
    /// The last client address and port formatted on this thread: a keep-alive connection's
    /// requests (and most of a busy client's) format theirs once, not per request.
    static IP_VALUE: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> = const { std::cell::RefCell::new(None) };
    static PORT_VALUE: std::cell::RefCell<Option<(u16, HeaderValue)>> = const { std::cell::RefCell::new(None) };
}

/// `ip` as a header value.
fn ip_value(ip: IpAddr) -> HeaderValue {
    IP_VALUE.with(|c| {
        let mut c = c.borrow_mut();
        match &*c {
            Some((a, v)) if *a == ip => v.clone(),
            _ => {
                let v = value(&ip.to_string());
                *c = Some((ip, v.clone()));
                v
            }
        }
    })
}

/// `port` as a header value.
fn port_value(port: u16) -> HeaderValue {
    PORT_VALUE.with(|c| {
        let mut c = c.borrow_mut();
        match &*c {
            Some((p, v)) if *p == port => v.clone(),
            _ => {
                let v = HeaderValue::from(port);
                *c = Some((port, v.clone()));
                v
            }
        }
    })
}

/// Sets `name` to `v` when there is a value, else removes what the client sent under it (as
/// nginx's `proxy_set_header` with an empty value does).
fn set_or_remove(headers: &mut HeaderMap, name: &'static str, v: Option<String>) {
    match v {
        // `insert` replaces every value the client sent.
        Some(v) => drop(headers.insert(HeaderName::from_static(name), value(&v))),
        None if has(headers, name) => drop(headers.remove(name)),
        None => {}
    }
}

/// Set by the `upstream-vhost` filter: the Host sent upstream instead of the client's (which
/// `X-Forwarded-Host` keeps).
#[derive(Debug, Clone)]
pub struct UpstreamHost(pub HeaderValue);

/// Rewrites `parts` for the upstream request, as ingress-nginx's location does: the client's
/// `X-Forwarded-*` are replaced unless `use-forwarded-headers` trusts them, and travel as
/// `X-Original-Forwarded-*`. `websocket` keeps the (already vetted) upgrade.
pub fn rewrite(parts: &mut Parts, ctx: &Ctx<'_>, protocol: BackendProtocol, websocket: bool) {
    let (conn, http) = (ctx.conn, &*ctx.http);
    let client_host = match parts.headers.get(header::HOST) {
        Some(h) => h.clone(),
        None => match parts.uri.authority() {
            Some(a) => value(a.as_str()),
            None => HeaderValue::from_static(""),
        },
    };
    let trusted = |name: &HeaderName| if http.use_forwarded_headers { parts.headers.get(name).filter(|v| !v.is_empty()).cloned() } else { None };
    // nginx's $best_http_host: with trusted headers, the first X-Forwarded-Host element.
    let forwarded_host = trusted(&X_FORWARDED_HOST).and_then(|v| v.to_str().ok().and_then(|s| s.split(',').next()).map(|s| value(s.trim()))).filter(|v| !v.is_empty());
    let host = forwarded_host.unwrap_or(client_host);
    let proto = trusted(&X_FORWARDED_PROTO).unwrap_or(HeaderValue::from_static(if conn.tls { "https" } else { "http" }));
    // $pass_port: the HTTPS listener is reported as 443, the port clients use in front of it.
    let port = trusted(&X_FORWARDED_PORT).unwrap_or_else(|| if conn.tls { HeaderValue::from_static("443") } else { port_value(conn.local.port()) });
    let original_for = joined(&parts.headers, &http.forwarded_for_header);
    let original_host = joined(&parts.headers, &http.forwarded_host_header);
    let full_xff = (http.use_forwarded_headers && http.compute_full_forwarded_for).then(|| {
        let peer = conn.client_ip();
        match joined(&parts.headers, "x-forwarded-for") {
            Some(xff) => format!("{xff}, {peer}"),
            None => peer.to_string(),
        }
    });
    // `upstream-vhost`: the Host sent upstream; X-Forwarded-Host keeps the client's.
    let upstream_host = parts.extensions.get::<UpstreamHost>().map(|h| h.0.clone()).unwrap_or_else(|| host.clone());
    let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
    let headers = &mut parts.headers;
    // Room for the headers set below, grown once rather than insert by insert.
    headers.reserve(10);
    strip_hop_by_hop(headers);
    // httpoxy: a Proxy header must never reach an application that reads it as HTTP_PROXY.
    if has(headers, "proxy") {
        headers.remove("proxy");
    }
    if let (true, Some(u)) = (websocket, upgrade_value) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
    if ctx.grpc {
        // gRPC needs trailers end to end.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if !upstream_host.is_empty() {
        headers.insert(header::HOST, upstream_host.clone());
    }
    let client_ip = ip_value(ctx.client_ip);
    headers.insert(X_FORWARDED_FOR.clone(), full_xff.map(|v| value(&v)).unwrap_or_else(|| client_ip.clone()));
    headers.insert(X_REAL_IP.clone(), client_ip);
    headers.insert(X_FORWARDED_PROTO.clone(), proto.clone());
    headers.insert(X_FORWARDED_SCHEME.clone(), proto.clone());
    headers.insert(X_SCHEME.clone(), proto);
    headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    headers.insert(X_FORWARDED_PORT.clone(), port);
    set_or_remove(headers, "x-original-forwarded-for", original_for);
    set_or_remove(headers, "x-original-forwarded-host", original_host);
    if http.proxy_add_original_uri_header {
        headers.insert(HeaderName::from_static("x-original-uri"), value(ctx.request_uri()));
    }
    if ctx.send_request_id {
        headers.insert(X_REQUEST_ID.clone(), ctx.request_id.clone());
    } else if has(headers, X_REQUEST_ID.as_str()) {
        headers.remove(&X_REQUEST_ID);
    }
    // `proxy-set-headers`, values literal (never nginx variables).
    for (name, value) in &http.proxy_set_headers {
        headers.insert(name.clone(), value.clone());
    }
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

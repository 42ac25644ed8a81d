//! The sub-request of `auth-url`: the head sent (ingress-nginx's auth location: the client's
//! headers, no body, `X-Original-URL` and friends), through the shared upstream pool, within
//! the connect and read timeouts; and the cache of its answers (`auth-cache-key`).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};

use super::super::context::Ctx;
use super::super::forwarded::strip_hop_by_hop;
use super::super::upstream::{BoxError, PooledBody};
use crate::config::BackendProtocol;
use crate::config::auth::{ExternalAuth, KeyPart};

/// What the auth service answered: its status and the headers that matter.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

/// The most of an auth answer's body read (then dropped) so its connection can be reused.
const BODY_LIMIT: usize = 64 * 1024;

/// The client's `$http_host`, before any filter changes the Host.
pub fn original_host<B>(req: &Request<B>) -> String {
    match req.headers().get(header::HOST).and_then(|v| v.to_str().ok()) {
        Some(h) => h.to_string(),
        None => req.uri().authority().map(|a| a.as_str().to_string()).unwrap_or_default(),
    }
}

/// The head of the sub-request.
pub fn head<B>(auth: &ExternalAuth, ctx: &Ctx<'_>, host: &str, req: &Request<B>) -> Request<super::super::upstream::ReqBody> {
    let mut h = req.headers().clone();
    strip_hop_by_hop(&mut h);
    for name in [header::CONTENT_LENGTH, header::HOST, header::EXPECT] {
        h.remove(name);
    }
    h.remove("x-forwarded-proto");
    let scheme = if ctx.conn.tls { "https" } else { "http" };
    let uri = ctx.request_uri();
    let mut set = |name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set("host", auth.url.authority().map(|a| a.as_str()).unwrap_or(""));
    set("x-original-url", &format!("{scheme}://{host}{uri}"));
    set("x-original-method", req.method().as_str());
    set("x-sent-from", "nginx-ingress-controller");
    set("x-real-ip", &ctx.client_ip.to_string());
    set("x-forwarded-for", &ctx.client_ip.to_string());
    if auth.method != http::Method::GET {
        set("x-original-uri", uri);
        set("x-scheme", scheme);
    }
    match &auth.request_redirect {
        Some(v) => {
            h.insert(HeaderName::from_static("x-auth-request-redirect"), v.clone());
        }
        None => set("x-auth-request-redirect", uri),
    }
    h.insert(HeaderName::from_static("x-request-id"), ctx.request_id.clone());
    for (n, v) in &auth.set_headers {
        h.insert(n.clone(), v.clone());
    }
    let target = auth.url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let body = Empty::<Bytes>::new().map_err(|e: std::convert::Infallible| -> BoxError { match e {} }).boxed_unsync();
    let mut sub = Request::new(body);
    *sub.method_mut() = auth.method.clone();
    *sub.uri_mut() = target.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
    *sub.headers_mut() = h;
    sub
}

/// Sends the sub-request and reads its answer; `None` when the auth service cannot be reached
/// or does not answer in time.
pub async fn send(auth: &ExternalAuth, ctx: &Ctx<'_>, sub: Request<super::super::upstream::ReqBody>) -> Option<Verdict> {
    let https = auth.url.scheme_str() == Some("https");
    let host = auth.url.host()?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = auth.url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addr = resolve(&host, port, auth.connect_timeout).await?;
    let protocol = if https { BackendProtocol::Https } else { BackendProtocol::Http };
    let pool = &ctx.shared.pool;
    let mut conn = match pool.get(addr, protocol, None, auth.connect_timeout).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(request_id = ?ctx.request_id, "auth-url {}: {e}", auth.url);
            return None;
        }
    };
    let work = async move {
        let resp = conn.sender.send(sub).await.ok()?;
        let (parts, body) = resp.into_parts();
        let mut body = PooledBody::new(body, pool.clone(), addr, conn.tls, conn.sender, auth.read_timeout);
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            read += frame.ok()?.data_ref().map(|d| d.len()).unwrap_or(0);
            if read > BODY_LIMIT {
                break;
            }
        }
        Some(Verdict { status: parts.status, headers: parts.headers })
    };
    match tokio::time::timeout(auth.read_timeout, work).await {
        Ok(v) => v,
        Err(_) => {
            tracing::warn!(request_id = ?ctx.request_id, "auth-url {}: no answer within {:?}", auth.url, auth.read_timeout);
            None
        }
    }
}

async fn resolve(host: &str, port: u16, timeout: Duration) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await.ok()?.ok()?;
    found.into_iter().next()
}

/// The cache key's value for this request.
pub fn cache_key<B>(parts: &[KeyPart], ctx: &Ctx<'_>, host: &str, req: &Request<B>) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            KeyPart::Text(t) => out.push_str(t),
            KeyPart::Header(h) => out.push_str(&String::from_utf8_lossy(req.headers().get(h).map(|v| v.as_bytes()).unwrap_or_default())),
            KeyPart::Cookie(name) => out.push_str(&cookie(req.headers(), name).unwrap_or_default()),
            KeyPart::Arg(name) => {
                let q = ctx.original_uri.query().unwrap_or("");
                out.push_str(q.split('&').find_map(|kv| kv.strip_prefix(name.as_str())?.strip_prefix('=')).unwrap_or(""));
            }
            KeyPart::Host => out.push_str(super::super::router::strip_port(host)),
            KeyPart::RemoteAddr => out.push_str(&ctx.client_ip.to_string()),
            KeyPart::RequestUri => out.push_str(ctx.request_uri()),
            KeyPart::Uri => out.push_str(req.uri().path()),
            KeyPart::Method => out.push_str(req.method().as_str()),
        }
        // Parts are separated so that different splits never give one key.
        out.push('\0');
    }
    out
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// Cached verdicts: by a seeded hash of the auth URL and the key's value, until their expiry.
struct Cache {
    seed: RandomState,
    entries: HashMap<u64, (Instant, Verdict)>,
}

const CACHE_LIMIT: usize = 10_000;

fn cache() -> &'static Mutex<Cache> {
    static C: OnceLock<Mutex<Cache>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(Cache { seed: RandomState::new(), entries: HashMap::new() }))
}

pub fn cached(auth: &ExternalAuth, key: &str) -> Option<Verdict> {
    let c = cache().lock().expect("auth cache");
    let k = c.seed.hash_one((auth.url.to_string(), key));
    c.entries.get(&k).filter(|(until, _)| *until > Instant::now()).map(|(_, v)| v.clone())
}

pub fn remember(auth: &ExternalAuth, key: &str, ttl: Duration, v: &Verdict) {
    let mut c = cache().lock().expect("auth cache");
    if c.entries.len() >= CACHE_LIMIT {
        let now = Instant::now();
        c.entries.retain(|_, (until, _)| *until > now);
        if c.entries.len() >= CACHE_LIMIT {
            c.entries.clear();
        }
    }
    let k = c.seed.hash_one((auth.url.to_string(), key));
    c.entries.insert(k, (Instant::now() + ttl, v.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> ExternalAuth {
        ExternalAuth {
            url: "http://auth.example/check".parse().unwrap(),
            method: http::Method::GET,
            signin: None,
            signin_redirect_param: "rd".into(),
            response_headers: Vec::new(),
            request_redirect: None,
            cache: None,
            set_headers: Vec::new(),
            always_set_cookie: false,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_verdict_cache_stays_within_its_bound_under_distinct_keys() {
        let a = auth();
        let ok = Verdict { status: StatusCode::OK, headers: HeaderMap::new() };
        for i in 0..CACHE_LIMIT + 2_000 {
            remember(&a, &format!("client-{i}"), Duration::from_secs(60), &ok);
            assert!(cache().lock().unwrap().entries.len() <= CACHE_LIMIT);
        }
        // Whatever was dropped at the bound, the newest verdict is kept and served.
        let last = format!("client-{}", CACHE_LIMIT + 1_999);
        assert_eq!(cached(&a, &last).map(|v| v.status), Some(StatusCode::OK));
        assert!(cached(&a, "never-seen").is_none());
    }
}

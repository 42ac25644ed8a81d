//! Checks on a request head before it is routed: the authority it names (Host, absolute-form,
//! `:authority`), methods a reverse proxy does not serve (CONNECT), and which upgrades may turn
//! the connection into a tunnel.
//!
//! Routing and forwarding must agree on one authority, or a request could be matched as one
//! host and delivered as another; and a tunnel opened by any upgrade token would carry later
//! requests past every path rule. Both are refused here.

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Version};

static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Why a request head is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400, with the reason for the log.
    BadRequest(&'static str),
    /// 405: CONNECT; Vestibule is not a forward proxy.
    MethodNotAllowed,
}

/// The methods answered with 405 list these in `Allow`.
pub const ALLOW: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/// What a request that passed the checks asks of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    None,
    /// An HTTP/1.1 WebSocket upgrade: the only one tunnelled.
    WebSocket,
}

/// Checks `req` and settles its authority: after this, the `Host` header is the one authority
/// the request is routed and forwarded by. Upgrades other than WebSocket (`h2c` included) are
/// removed, so the request is served as plain HTTP/1.1.
pub fn check<B>(req: &mut Request<B>) -> Result<Upgrade, Refusal> {
    if req.method() == Method::CONNECT {
        return Err(Refusal::MethodNotAllowed);
    }
    settle_authority(req)?;
    Ok(classify_upgrade(req))
}

fn settle_authority<B>(req: &mut Request<B>) -> Result<(), Refusal> {
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if hosts > 1 {
        return Err(Refusal::BadRequest("more than one Host header"));
    }
    let authority = req.uri().authority().map(|a| a.as_str().to_string());
    match authority {
        Some(a) => {
            // Absolute-form (HTTP/1) or :authority (HTTP/2): it replaces Host (RFC 9112 §3.2.2).
            if a.contains('@') {
                return Err(Refusal::BadRequest("user information in the request target"));
            }
            if !valid_host(a.as_bytes()) {
                return Err(Refusal::BadRequest("an invalid authority in the request target"));
            }
            if req.version() >= Version::HTTP_2 {
                // RFC 9113 §8.3.1 (and RFC 9114 §4.3.1): a Host that names another entity than
                // :authority is malformed.
                if let Some(h) = req.headers().get(header::HOST) {
                    if !h.as_bytes().eq_ignore_ascii_case(a.as_bytes()) {
                        return Err(Refusal::BadRequest("a Host header that differs from :authority"));
                    }
                }
            }
            let v = HeaderValue::from_str(&a).map_err(|_| Refusal::BadRequest("an invalid authority in the request target"))?;
            req.headers_mut().insert(header::HOST, v);
        }
        None => match req.headers().get(header::HOST) {
            Some(h) => {
                if !valid_host(h.as_bytes()) {
                    return Err(Refusal::BadRequest("an invalid Host header"));
                }
            }
            None if req.version() == Version::HTTP_11 => return Err(Refusal::BadRequest("an HTTP/1.1 request without Host")),
            None if req.version() == Version::HTTP_3 => return Err(Refusal::BadRequest("an HTTP/3 request without :authority or Host")),
            None => {}
        },
    }
    Ok(())
}

/// `uri-host [ ":" port ]` (RFC 3986): a registered name, an IPv4 address or a bracketed IP
/// literal, and an optional decimal port. An empty value is valid (no authority).
pub fn valid_host(v: &[u8]) -> bool {
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(end) = v.iter().position(|b| *b == b']') else { return false };
        let literal = &v[1..end];
        if literal.is_empty() || !literal.iter().all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'v' | b'V')) {
            return false;
        }
        match &v[end + 1..] {
            [] => (&v[..0], None),
            [b':', port @ ..] => (&v[..0], Some(port)),
            _ => return false,
        }
    } else {
        match v.iter().rposition(|b| *b == b':') {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        }
    };
    let reg_name_ok = host.iter().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(b));
    let port_ok = port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit));
    reg_name_ok && port_ok
}

/// Whether any `name` field of `headers` lists `token` (comma-separated, any case).
pub(crate) fn has_token(headers: &http::HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| value_has_token(v, token))
}

/// Whether one field value lists `token` (comma-separated, any case).
pub(crate) fn value_has_token(v: &http::HeaderValue, token: &str) -> bool {
    v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Keeps a WebSocket upgrade; removes every other (`h2c`, and tokens Vestibule does not speak),
/// with `HTTP2-Settings`, so the request is served as plain HTTP/1.1.
fn classify_upgrade<B>(req: &mut Request<B>) -> Upgrade {
    let headers = req.headers_mut();
    headers.remove(&HTTP2_SETTINGS);
    if !headers.contains_key(header::UPGRADE) {
        return Upgrade::None;
    }
    let websocket = req.version() == Version::HTTP_11 && has_token(req.headers(), &header::CONNECTION, "upgrade") && has_token(req.headers(), &header::UPGRADE, "websocket");
    let headers = req.headers_mut();
    if websocket {
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return Upgrade::WebSocket;
    }
    headers.remove(header::UPGRADE);
    Upgrade::None
}

/// Why an HTTP/1 request's framing is ambiguous, if it is: the ways requests are smuggled.
pub fn framing_problem<B>(req: &Request<B>) -> Option<&'static str> {
    let h = req.headers();
    let cls = h.get_all(header::CONTENT_LENGTH).iter().count();
    if cls > 1 {
        return Some("several Content-Length headers");
    }
    if let Some(cl) = h.get(header::CONTENT_LENGTH) {
        if cl.is_empty() || !cl.as_bytes().iter().all(u8::is_ascii_digit) {
            return Some("an invalid Content-Length");
        }
    }
    let tes: Vec<_> = h.get_all(header::TRANSFER_ENCODING).iter().collect();
    if !tes.is_empty() {
        if cls > 0 {
            return Some("both Content-Length and Transfer-Encoding");
        }
        if tes.len() > 1 || !tes[0].to_str().is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked")) {
            return Some("a Transfer-Encoding other than chunked");
        }
        if req.version() < Version::HTTP_11 {
            return Some("Transfer-Encoding in an HTTP/1.0 request");
        }
    }
    None
}


#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn hosts() {
        for ok in ["a.example", "a.example:8080", "127.0.0.1", "[::1]", "[::1]:443", "", "xn--bcher-kva.example", "a%41.example"] {
            assert!(valid_host(ok.as_bytes()), "{ok:?} is valid");
        }
        for bad in ["a b", "a/b", "a.example:80x", "[::1", "[::1]x", "a@b", "a\\b", "a.example:123456", "[zz]"] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?} is invalid");
        }
    }

    #[test]
    fn authority_rules() {
        let mut r = req(Version::HTTP_11, "/", &[]);
        assert_eq!(check(&mut r), Err(Refusal::BadRequest("an HTTP/1.1 request without Host")));
        let mut r = req(Version::HTTP_10, "/", &[]);
        assert_eq!(check(&mut r), Ok(Upgrade::None));
        let mut r = req(Version::HTTP_11, "/", &[("host", "a"), ("host", "b")]);
        assert_eq!(check(&mut r), Err(Refusal::BadRequest("more than one Host header")));
        let mut r = req(Version::HTTP_11, "/", &[("host", "a b")]);
        assert_eq!(check(&mut r), Err(Refusal::BadRequest("an invalid Host header")));
        let mut r = req(Version::HTTP_11, "http://a.example/x", &[("host", "b.example")]);
        assert_eq!(check(&mut r), Ok(Upgrade::None));
        assert_eq!(r.headers()[header::HOST], "a.example");
        let mut r = req(Version::HTTP_2, "https://a.example/x", &[("host", "b.example")]);
        assert!(matches!(check(&mut r), Err(Refusal::BadRequest(_))));
        let mut r = req(Version::HTTP_11, "http://u@a.example/x", &[("host", "a.example")]);
        assert!(matches!(check(&mut r), Err(Refusal::BadRequest(_))));
        let mut r = Request::builder().method(Method::CONNECT).uri("a.example:443").header("host", "a.example:443").body(()).unwrap();
        assert_eq!(check(&mut r), Err(Refusal::MethodNotAllowed));
    }

    #[test]
    fn only_websocket_upgrades_survive() {
        let mut r = req(Version::HTTP_11, "/", &[("host", "a"), ("connection", "Upgrade, HTTP2-Settings"), ("upgrade", "h2c"), ("http2-settings", "AAMAAABkAAQAAP__")]);
        assert_eq!(check(&mut r), Ok(Upgrade::None));
        assert!(!r.headers().contains_key(header::UPGRADE) && !r.headers().contains_key("http2-settings"));
        let mut r = req(Version::HTTP_11, "/", &[("host", "a"), ("connection", "upgrade"), ("upgrade", "foo/1")]);
        assert_eq!(check(&mut r), Ok(Upgrade::None));
        assert!(!r.headers().contains_key(header::UPGRADE));
        let mut r = req(Version::HTTP_11, "/", &[("host", "a"), ("connection", "keep-alive, Upgrade"), ("upgrade", "WebSocket")]);
        assert_eq!(check(&mut r), Ok(Upgrade::WebSocket));
        assert_eq!(r.headers()[header::UPGRADE], "websocket");
        let mut r = req(Version::HTTP_11, "/", &[("host", "a"), ("upgrade", "websocket")]);
        assert_eq!(check(&mut r), Ok(Upgrade::None), "no Connection: upgrade, no upgrade");
    }
}

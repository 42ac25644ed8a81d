//! `auth-url`: each request is first asked of the auth service (`auth_request.rs`). A 2xx lets
//! it through, with `auth-response-headers` copied onto it; 401 and 403 are answered to the
//! client (401 as a 302 to `auth-signin` when set); anything else, or no answer in time, 500.
//! The auth answer's `Set-Cookie` goes on the client's answer when that succeeds (always with
//! `auth-always-set-cookie`), as nginx's `add_header Set-Cookie $auth_cookie`.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use super::super::context::Ctx;
use super::super::respond::{self, RespBody};
use super::auth_request::{self, Verdict};
use crate::config::auth::ExternalAuth;

/// The auth answers' cookies, for the client's answer.
#[derive(Debug, Default)]
pub struct AuthCookies {
    cookies: Vec<(HeaderValue, bool)>,
}

impl AuthCookies {
    /// Adds the cookies to `resp`: those of `auth-always-set-cookie` to any answer, the others
    /// to the answers nginx's `add_header` applies to.
    pub fn apply(&self, resp: &mut Response<RespBody>) {
        let ok = matches!(resp.status().as_u16(), 200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308);
        for (c, always) in &self.cookies {
            if ok || *always {
                resp.headers_mut().append(header::SET_COOKIE, c.clone());
            }
        }
    }
}

pub async fn on_request<B>(auth: &ExternalAuth, ctx: &Ctx<'_>, host: &str, req: &mut Request<B>, cookies: &mut AuthCookies) -> Option<Response<RespBody>> {
    let key = auth.cache.as_ref().map(|c| auth_request::cache_key(&c.key, ctx, host, req));
    let hit = key.as_deref().and_then(|k| auth_request::cached(auth, k));
    let verdict = match hit {
        Some(v) => Some(v),
        None => {
            let sub = auth_request::head(auth, ctx, host, req);
            let v = auth_request::send(auth, ctx, sub).await;
            if let (Some(v), Some(c), Some(k)) = (&v, &auth.cache, &key)
                && c.codes.contains(&v.status.as_u16())
            {
                auth_request::remember(auth, k, c.ttl, v);
            }
            v
        }
    };
    let Some(v) = verdict else { return Some(ctx.fail(StatusCode::INTERNAL_SERVER_ERROR)) };
    for c in v.headers.get_all(header::SET_COOKIE) {
        cookies.cookies.push((c.clone(), auth.always_set_cookie));
    }
    decide(auth, ctx, host, req, &v)
}

fn decide<B>(auth: &ExternalAuth, ctx: &Ctx<'_>, host: &str, req: &mut Request<B>, v: &Verdict) -> Option<Response<RespBody>> {
    match v.status.as_u16() {
        200..=299 => {
            // As nginx's proxy_set_header: the auth service's value, or none (a client's own
            // header of that name never reaches the backend).
            for name in &auth.response_headers {
                req.headers_mut().remove(name);
                if let Some(val) = v.headers.get(name) {
                    req.headers_mut().insert(name.clone(), val.clone());
                }
            }
            None
        }
        401 => match &auth.signin {
            Some(signin) => Some(respond::redirect(StatusCode::FOUND, &signin_location(signin, &auth.signin_redirect_param, ctx.conn.tls, host, ctx.request_uri()), &ctx.request_id)),
            None => {
                let mut resp = ctx.fail(StatusCode::UNAUTHORIZED);
                if let Some(w) = v.headers.get(header::WWW_AUTHENTICATE) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, w.clone());
                }
                Some(resp)
            }
        },
        403 => Some(ctx.fail(StatusCode::FORBIDDEN)),
        _ => Some(ctx.fail(StatusCode::INTERNAL_SERVER_ERROR)),
    }
}

/// ingress-nginx's sign-in URL: the `auth-signin` URL, with `PARAM=<scheme>://<host><escaped
/// request URI>` added (after `?` or `&`) unless its query already has that parameter.
pub fn signin_location(signin: &str, param: &str, tls: bool, host: &str, request_uri: &str) -> String {
    let scheme = if tls { "https" } else { "http" };
    let query = signin.split_once('?').map(|(_, q)| q).unwrap_or("");
    if query.split('&').any(|kv| kv.split('=').next() == Some(param)) {
        // The variables users write there (`rd=$escaped_request_uri`), replaced by their
        // values as data; nothing else is expanded.
        let mut out = signin.to_string();
        for (var, val) in [("$escaped_request_uri", escape(request_uri)), ("$request_uri", request_uri.to_string()), ("$pass_access_scheme", scheme.into()), ("$scheme", scheme.into()), ("$http_host", host.into()), ("$host", super::super::router::strip_port(host).to_string())] {
            out = out.replace(var, &val);
        }
        return out;
    }
    let sep = if signin.contains('?') { '&' } else { '?' };
    format!("{signin}{sep}{param}={scheme}://{host}{}", escape(request_uri))
}

/// Percent-escapes all but unreserved characters.
fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signin_locations() {
        assert_eq!(signin_location("https://a.b/start", "rd", false, "h:8080", "/p?x=1"), "https://a.b/start?rd=http://h:8080%2Fp%3Fx%3D1");
        assert_eq!(signin_location("https://a.b/start?x=y", "next", true, "h", "/"), "https://a.b/start?x=y&next=https://h%2F");
        assert_eq!(signin_location("https://a.b/?rd=fixed", "rd", true, "h", "/"), "https://a.b/?rd=fixed");
        assert_eq!(signin_location("https://a.b/start?rd=$escaped_request_uri", "rd", true, "h:1", "/a b"), "https://a.b/start?rd=%2Fa%20b");
        assert_eq!(signin_location("https://a.b/start?rd=$scheme://$host$request_uri", "rd", false, "h:1", "/x"), "https://a.b/start?rd=http://h/x");
    }
}

//! Plain-HTTP requests are redirected to HTTPS (ingress-nginx's `ssl-redirect`, on by default
//! for hosts listed in `spec.tls`, and `force-ssl-redirect`).
//!
//! As ingress-nginx: the host without its port, the request target as the client sent it, less
//! one trailing `/` (unless `preserve-trailing-slash`). The port: none, unless
//! `use-port-in-redirects`, except that when the HTTPS port clients reach is not 443 it is
//! always named, so that the redirect still lands on Vestibule.

use http::{Request, Response, StatusCode};

use super::super::context::Ctx;
use super::super::respond::{self, RespBody};

pub fn on_request<B>(status: u16, preserve_trailing_slash: bool, use_port: bool, ctx: &Ctx<'_>, _req: &Request<B>) -> Option<Response<RespBody>> {
    if ctx.conn.tls {
        return None;
    }
    let host = ctx.host().to_string();
    let port = ctx.shared.https_port();
    let authority = if port == 443 && !use_port { host } else { format!("{host}:{port}") };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::PERMANENT_REDIRECT);
    Some(respond::redirect(status, &location(&authority, ctx.request_uri(), preserve_trailing_slash), &ctx.request_id))
}

fn location(authority: &str, request_uri: &str, preserve_trailing_slash: bool) -> String {
    let uri = if preserve_trailing_slash { request_uri } else { request_uri.strip_suffix('/').unwrap_or(request_uri) };
    format!("https://{authority}{uri}")
}

#[cfg(test)]
mod tests {
    use super::location;

    #[test]
    fn location_keeps_path_and_query_less_one_trailing_slash() {
        assert_eq!(location("a.example:8443", "/x?y=1", false), "https://a.example:8443/x?y=1");
        let cases = [("/", "https://h"), ("/a/", "https://h/a"), ("/a//", "https://h/a/"), ("/a/?x=1", "https://h/a/?x=1")];
        for (uri, want) in cases {
            assert_eq!(location("h", uri, false), want, "{uri}");
        }
        assert_eq!(location("h", "/", true), "https://h/");
    }
}

//! Plain-HTTP requests to a host with TLS are redirected to HTTPS (ingress-nginx's
//! `ssl-redirect`, on by default for hosts listed in `spec.tls`).

use http::{Request, Response, StatusCode};

use super::super::context::Ctx;
use super::super::respond::{self, RespBody};
use super::super::router;

pub fn on_request<B>(status: u16, ctx: &Ctx<'_>, req: &Request<B>) -> Option<Response<RespBody>> {
    if ctx.conn.tls {
        return None;
    }
    let host = router::request_host(req);
    let port = ctx.shared.https_port();
    let authority = if port == 443 { host } else { format!("{host}:{port}") };
    let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::PERMANENT_REDIRECT);
    Some(respond::redirect(status, &location(&authority, pq), &ctx.request_id))
}

fn location(authority: &str, path_and_query: &str) -> String {
    format!("https://{authority}{path_and_query}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn location_keeps_path_and_query() {
        assert_eq!(super::location("a.example:8443", "/x?y=1"), "https://a.example:8443/x?y=1");
    }
}

//! The one per-request context that flows through the phases.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::Shared;
use super::handler::ConnInfo;
use super::ids::new_request_id;
use super::respond::{self, RespBody, X_REQUEST_ID};
use crate::config::http::HttpSettings;

pub struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub conn: &'a ConnInfo,
    /// The client's `X-Request-ID` when it sent a usable one, else a new one.
    pub request_id: HeaderValue,
    /// A HEAD request: answers carry no body.
    pub head: bool,
    /// A gRPC request: Vestibule's own errors are answered as gRPC statuses.
    pub grpc: bool,
    /// The target as the client sent it, before any filter rewrote the request.
    pub original_uri: http::Uri,
    /// The client address (nginx's `$remote_addr`): the connection's, or the forwarded-for
    /// header's when the ConfigMap trusts it. X-Real-IP, hashing and the access log use it.
    pub client_ip: IpAddr,
    /// The ConfigMap's forwarded-header, request-ID and Server settings.
    pub http: Arc<HttpSettings>,
    /// Whether `request_id` goes upstream: the client sent it, or `generate-request-id` is on.
    pub send_request_id: bool,
    /// The `limit-connections` slot this request holds, handed to its response body.
    pub conn_slot: std::sync::Mutex<Option<super::limits::ConnGuard>>,
    /// The client's `Origin` header, for the CORS response filter.
    pub origin: Option<HeaderValue>,
    /// Where `host()` is found: worked out once per request, and copied only when the client
    /// sent it in upper case.
    pub(super) host: HostAt,
}

/// The request host's place: in the URI's authority, in the Host header, or (when lowercasing
/// changed it) a copy.
#[derive(Clone)]
pub(super) enum HostAt {
    Uri(std::ops::Range<usize>),
    Header(HeaderValue, std::ops::Range<usize>),
    Owned(Box<str>),
}

impl HostAt {
    fn of<B>(req: &Request<B>) -> HostAt {
        let (raw, header) = match req.uri().authority() {
            Some(a) => (a.as_str(), None),
            None => match req.headers().get(header::HOST).and_then(|v| v.to_str().ok().map(|s| (s, v))) {
                Some((s, v)) => (s, Some(v)),
                None => return HostAt::Uri(0..0),
            },
        };
        // As `router::request_host`: after any userinfo, without port or trailing dot.
        let h = raw.rsplit_once('@').map(|(_, h)| h).unwrap_or(raw);
        let h = super::router::strip_port(h).trim_end_matches('.');
        if h.bytes().any(|b| b.is_ascii_uppercase()) {
            return HostAt::Owned(h.to_ascii_lowercase().into_boxed_str());
        }
        let start = h.as_ptr() as usize - raw.as_ptr() as usize;
        let range = start..start + h.len();
        match header {
            Some(v) => HostAt::Header(v.clone(), range),
            None => HostAt::Uri(range),
        }
    }
}

impl<'a> Ctx<'a> {
    pub fn new<B>(shared: &'a Arc<Shared>, conn: &'a ConnInfo, req: &Request<B>) -> Self {
        let http = shared.live().config.http.clone();
        let (request_id, send_request_id) = match req.headers().get(&X_REQUEST_ID) {
            Some(v) if !v.is_empty() && v.len() <= 200 => (v.clone(), true),
            // Made up anyway: error pages and the access log carry it.
            _ => (new_request_id(), http.generate_request_id),
        };
        let client_ip = super::forwarded::client_addr(conn, req.headers(), &http);
        let (head, grpc, original_uri) = (req.method() == Method::HEAD, respond::is_grpc(req), req.uri().clone());
        let origin = req.headers().get(header::ORIGIN).cloned();
        let host = HostAt::of(req);
        Ctx { shared, conn, request_id, head, grpc, original_uri, client_ip, http, send_request_id, conn_slot: Default::default(), origin, host }
    }

    /// The request's host as `router::request_host` gives it (lowercase, without port or
    /// trailing dot; empty when the client sent none), found once for every phase that needs it.
    /// Head checks make the Host header agree with the target's authority, so it is the same
    /// before and after them.
    pub fn host(&self) -> &str {
        match &self.host {
            HostAt::Uri(r) => self.original_uri.authority().map(|a| &a.as_str()[r.clone()]).unwrap_or(""),
            HostAt::Header(v, r) => v.to_str().map(|s| &s[r.clone()]).unwrap_or(""),
            HostAt::Owned(s) => s,
        }
    }

    /// The path and query as the client sent them (nginx's `$request_uri`).
    pub fn request_uri(&self) -> &str {
        self.original_uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    }

    /// Vestibule's own answer with `status`: an error page, or a gRPC status.
    pub fn fail(&self, status: StatusCode) -> Response<RespBody> {
        if self.grpc { respond::grpc_error(status, &self.request_id) } else { respond::error_page(status, &self.request_id, self.head) }
    }

    /// `fail`, and the client connection is closed after it (its framing cannot be trusted).
    pub fn fail_and_close(&self, status: StatusCode) -> Response<RespBody> {
        let mut resp = self.fail(status);
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }
}

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
        Ctx { shared, conn, request_id, head, grpc, original_uri, client_ip, http, send_request_id, conn_slot: Default::default(), origin }
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

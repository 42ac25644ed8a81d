//! Filters: typed policies applied to the requests of a route, in order. Each variant is
//! handled by one filter of the data plane; nothing in one is code or configuration text.

use super::route::Pattern;

/// A typed policy on a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Plain-HTTP requests are answered with a redirect to HTTPS (ingress-nginx's
    /// `ssl-redirect` / `force-ssl-redirect`), with this status (`http-redirect-code`).
    /// `preserve_trailing_slash` keeps a final `/` of the request target; `use_port` always
    /// names the HTTPS port (`use-port-in-redirects`).
    HttpsRedirect { status: u16, preserve_trailing_slash: bool, use_port: bool },
    /// The request path is replaced by `target` (ingress-nginx's `rewrite-target`), its
    /// `$1`..`$9` taken from `pattern` (the route's path expression) applied to the normalised
    /// path; the query string is kept. `prefix` is sent as `X-Forwarded-Prefix` (its own
    /// `$N` expanded the same way).
    Rewrite { pattern: Pattern, target: String, prefix: Option<String> },
    /// A request for exactly `/` is answered 302 to `root` on the same scheme and Host
    /// (ingress-nginx's `app-root`).
    AppRoot { root: String },
    /// Every request is answered with `status` and this Location, verbatim
    /// (`permanent-redirect`, `temporal-redirect`).
    FixedRedirect { status: u16, location: String },
    /// The extra host of `from-to-www-redirect`: every request is answered with `status` to
    /// the same scheme, `to_host`, the port it arrived on and its target.
    WwwRedirect { to_host: String, status: u16 },
    UpstreamVhost { host: String },
    /// Every request is answered with `status` (a location that cannot be served as configured:
    /// `custom-headers` that were refused).
    LocationDenied { status: u16 },
    /// `custom-headers`: response headers set on every answer, values sent as written.
    ResponseHeaders { headers: Vec<(http::HeaderName, http::HeaderValue)> },
    /// `proxy-redirect-from`/`-to`: a `Location` or `Refresh` URL starting with `from` (ignoring
    /// case) has that prefix replaced by `to`.
    ProxyRedirect { from: String, to: String },
    /// `proxy-cookie-path`/`-domain`: attributes of the backend's `Set-Cookie` rewritten.
    ProxyCookie { path: Option<CookieRewrite>, domain: Option<CookieRewrite> },
    /// The Ingress's `default-backend` serves a rule whose Service has no endpoints: it is told
    /// so with `X-Code: 503` and the rule's context.
    DefaultBackendHeaders(ErrorContext),
    /// `custom-http-errors`; handled by the handler's error-page step.
    ErrorPages(ErrorPages),
    /// `whitelist-source-range` / `denylist-source-range`: 403 for addresses not admitted.
    IpFilter(std::sync::Arc<super::limits::IpFilter>),
    /// `limit-rps`, `limit-rpm`, `limit-connections`, `limit-rate`: per-client limits.
    RateLimit(std::sync::Arc<super::limits::RateLimit>),
    /// `enable-cors`: preflights answered 204 with the CORS headers; the headers on every
    /// other answer to a matching origin.
    Cors(Box<super::cors::CorsPolicy>),
    /// `auth-type: basic`: requests without valid credentials answer 401.
    BasicAuth(super::auth::BasicAuth),
    /// `auth-url` (or the ConfigMap's `global-auth-url`): a sub-request decides.
    ExternalAuth(std::sync::Arc<super::auth::ExternalAuth>),
}

/// What an error backend is told about the request it answers for (ingress-nginx's `X-Namespace`,
/// `X-Ingress-Name`, `X-Service-Name` and `X-Service-Port`): the Ingress rule's, not the error
/// backend's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorContext {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub port: String,
}

/// `custom-http-errors`: answers with one of `codes` are replaced by the answer of the error
/// backend to `GET /` (the original query kept).
#[derive(Debug, Clone)]
pub struct ErrorPages {
    pub codes: Vec<u16>,
    /// Whether the backend's own answers are replaced (`disable-proxy-intercept-errors: "true"`
    /// turns this off; Vestibule's own error answers are still replaced).
    pub intercept: bool,
    /// The error backend: the Ingress's `default-backend` when it has endpoints, else
    /// `--default-backend-service`; `None` answers 404, as ingress-nginx's internal default.
    pub backend: Option<std::sync::Arc<super::Backend>>,
    pub context: ErrorContext,
}

impl PartialEq for ErrorPages {
    fn eq(&self, o: &Self) -> bool {
        self.codes == o.codes && self.intercept == o.intercept && self.context == o.context && self.backend.as_ref().map(|b| b.id) == o.backend.as_ref().map(|b| b.id)
    }
}

impl Eq for ErrorPages {}

/// A `proxy-cookie-path` or `proxy-cookie-domain` rewrite: `from` (compared ignoring case; a
/// path as a prefix, a domain whole, its leading dot ignored) becomes `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieRewrite {
    pub from: String,
    pub to: String,
}

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
    /// `custom-headers` that were refused; a Gateway API filter Vestibule cannot apply, such as
    /// an `ExtensionRef`, answers 500 as the spec says).
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
    /// Gateway API `RequestHeaderModifier`: the request's headers edited before it goes on.
    RequestHeaderEdit(std::sync::Arc<HeaderEdit>),
    /// Gateway API `ResponseHeaderModifier`: every answer's headers edited, the backend's and
    /// Vestibule's own.
    ResponseHeaderEdit(std::sync::Arc<HeaderEdit>),
    /// Gateway API `RequestRedirect`: every request is answered with a redirect built from it.
    Redirect(Box<Redirect>),
    /// Gateway API `URLRewrite`: the Host and path sent upstream.
    UrlRewrite(Box<UrlRewrite>),
    /// Gateway API `RequestMirror`: a copy of the request goes to another backend, its answer
    /// ignored.
    Mirror(std::sync::Arc<Mirror>),
}

/// A header modifier: `set` replaces, `add` appends to the values already there (joined with a
/// comma into one field, as the Gateway API says), `remove` drops. Names are lowercase (header
/// names are case-insensitive); applied in the order set, add, remove.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderEdit {
    pub set: Vec<(http::HeaderName, http::HeaderValue)>,
    pub add: Vec<(http::HeaderName, http::HeaderValue)>,
    pub remove: Vec<http::HeaderName>,
}

/// How a path is replaced (a redirect's or a rewrite's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    /// `ReplaceFullPath`: the whole path (the query is kept).
    Full(String),
    /// `ReplacePrefixMatch`: the part of the path the route's prefix matched (`matched`, without
    /// its trailing slash; "" for `/`) is replaced by `replacement` (without its trailing
    /// slash); an empty result is `/`.
    Prefix { matched: String, replacement: String },
}

impl PathRewrite {
    /// The new path for `path` (normalised, without query).
    pub fn apply(&self, path: &str) -> String {
        match self {
            PathRewrite::Full(p) => p.clone(),
            PathRewrite::Prefix { matched, replacement } => {
                // The route matched `matched` on segment boundaries, so what is left is empty or
                // starts with `/`. A request that somehow does not have the prefix keeps its path.
                let Some(rest) = path.strip_prefix(matched.as_str()) else { return path.to_string() };
                let out = format!("{replacement}{rest}");
                if out.is_empty() { "/".to_string() } else if out.starts_with('/') { out } else { format!("/{out}") }
            }
        }
    }
}

/// A Gateway API `RequestRedirect`. Each part left out comes from the request; the port as the
/// spec says: with a scheme and no port, the scheme's well-known port; with neither, the port
/// the request arrived on. Port 80 for `http` and 443 for `https` are not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathRewrite>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// A Gateway API `URLRewrite`: the Host sent upstream and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlRewrite {
    pub hostname: Option<http::HeaderValue>,
    pub path: Option<PathRewrite>,
}

/// A Gateway API `RequestMirror`: `numerator` of every `denominator` requests are copied to
/// `backend` (fire and forget: bounded in number and body size, never slowing the request).
#[derive(Debug, Clone)]
pub struct Mirror {
    pub backend: std::sync::Arc<super::Backend>,
    pub numerator: u32,
    pub denominator: u32,
}

impl PartialEq for Mirror {
    fn eq(&self, o: &Self) -> bool {
        self.backend.id == o.backend.id && self.numerator == o.numerator && self.denominator == o.denominator
    }
}

impl Eq for Mirror {}

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

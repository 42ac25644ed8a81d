//! Routes as data: what a request must match, the filters applied to it in order, and the
//! weighted backends it goes to.

use std::sync::Arc;
use std::time::Duration;

use super::backend::WeightedBackend;
use crate::store::ObjRef;

/// What identifies a route in metrics: the Ingress rule, not the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteLabels {
    pub host: Arc<str>,
    pub path: Arc<str>,
    pub namespace: Arc<str>,
    pub ingress: Arc<str>,
    pub service: Arc<str>,
}

impl RouteLabels {
    pub fn new(host: &str, path: &str, owner: &ObjRef, service: &str) -> Self {
        RouteLabels {
            host: Arc::from(host),
            path: Arc::from(path),
            namespace: Arc::from(owner.namespace.as_str()),
            ingress: Arc::from(if owner.kind == "Ingress" { owner.name.as_str() } else { "" }),
            service: Arc::from(service),
        }
    }

    pub fn none() -> Self {
        let e: Arc<str> = Arc::from("");
        RouteLabels { host: e.clone(), path: e.clone(), namespace: e.clone(), ingress: e.clone(), service: e }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum PathKind {
    Exact,
    Prefix,
    /// A regular expression matched from the start of the path (ingress-nginx's `use-regex`,
    /// Gateway API's `RegularExpression`).
    Regex,
}

/// A compiled regular expression: linear-time matching, compiled once per configuration with
/// a size limit. Equal when the source is.
#[derive(Debug, Clone)]
pub struct Pattern(pub Arc<regex::Regex>);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Pattern {}

impl Pattern {
    /// The most compiled program size a pattern from an object may take.
    pub const SIZE_LIMIT: usize = 1 << 20;

    /// Compiles `source` as written; matching anchors and case are the caller's to add.
    pub fn new(source: &str) -> Result<Pattern, String> {
        regex::RegexBuilder::new(source).size_limit(Self::SIZE_LIMIT).dfa_size_limit(Self::SIZE_LIMIT).build().map(|r| Pattern(Arc::new(r))).map_err(|e| e.to_string())
    }
}

/// A path condition, on the normalised path without query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathMatch {
    /// The path as matched: for Prefix without its trailing slash ("" for "/"); for Regex the
    /// expression as written.
    pub path: String,
    pub kind: PathKind,
    /// For Regex: the compiled expression, anchored at the start.
    pub regex: Option<Pattern>,
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self.kind {
            PathKind::Regex => self.regex.as_ref().is_some_and(|r| r.0.is_match(path)),
            PathKind::Exact => path == self.path,
            PathKind::Prefix => {
                if self.path.is_empty() {
                    return true;
                }
                match path.strip_prefix(self.path.as_str()) {
                    Some(rest) => rest.is_empty() || rest.starts_with('/'),
                    None => false,
                }
            }
        }
    }
}

/// A header that must be present with this exact value (names lowercase), or, with a
/// `pattern`, with a value the whole expression matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: http::HeaderName,
    pub value: String,
    /// Gateway API `RegularExpression`: compiled from `value`, anchored at both ends.
    pub pattern: Option<Pattern>,
}

impl HeaderMatch {
    pub fn exact(name: http::HeaderName, value: impl Into<String>) -> Self {
        HeaderMatch { name, value: value.into(), pattern: None }
    }

    fn holds(&self, headers: &http::HeaderMap) -> bool {
        let values = headers.get_all(&self.name);
        match &self.pattern {
            None => values.iter().any(|v| v.as_bytes() == self.value.as_bytes()),
            Some(p) => values.iter().any(|v| v.to_str().is_ok_and(|v| p.0.is_match(v))),
        }
    }
}

/// A query parameter that must be present with this exact value, or, with a `pattern`, with
/// a value the whole expression matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMatch {
    pub name: String,
    pub value: String,
    /// Gateway API `RegularExpression`: compiled from `value`, anchored at both ends.
    pub pattern: Option<Pattern>,
}

impl QueryMatch {
    pub fn exact(name: impl Into<String>, value: impl Into<String>) -> Self {
        QueryMatch { name: name.into(), value: value.into(), pattern: None }
    }

    fn holds(&self, query: &str) -> bool {
        query_pairs(query).any(|(k, v)| {
            k == self.name
                && match &self.pattern {
                    None => v == self.value,
                    Some(p) => p.0.is_match(v),
                }
        })
    }
}

/// Compiles a Gateway API `RegularExpression` value so that it must match the whole value.
pub fn full_match(source: &str) -> Result<Pattern, String> {
    Pattern::new(&format!("^(?:{source})$"))
}

/// Everything a request must match to take a route: the path, and any header, query and
/// method conditions (all of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
    pub method: Option<http::Method>,
}

impl RouteMatch {
    pub fn path(path: String, kind: PathKind) -> Self {
        RouteMatch { path: PathMatch { path, kind, regex: None }, headers: Vec::new(), query: Vec::new(), method: None }
    }

    /// Whether a request with this normalised path, method, headers and raw query matches.
    pub fn matches(&self, req: &RequestFacts<'_>) -> bool {
        self.path.matches(req.path)
            && self.method.as_ref().is_none_or(|m| m == req.method)
            && self.headers.iter().all(|h| h.holds(req.headers))
            && self.query.iter().all(|q| q.holds(req.query))
    }

    /// Only the path takes part (the Ingress case): matching needs no more than the path.
    pub fn path_only(&self) -> bool {
        self.headers.is_empty() && self.query.is_empty() && self.method.is_none()
    }
}

/// The parts of a request that routes match on.
pub struct RequestFacts<'a> {
    /// Normalised, without query.
    pub path: &'a str,
    pub method: &'a http::Method,
    pub headers: &'a http::HeaderMap,
    /// The raw query string, without `?`.
    pub query: &'a str,
}

fn query_pairs(q: &str) -> impl Iterator<Item = (&str, &str)> {
    q.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")))
}

pub use super::filter::Filter;

/// Limits and timeouts for the requests of a route: built-in defaults, then flags, then the
/// controller ConfigMap, then annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Connecting to an endpoint.
    pub connect_timeout: Duration,
    /// The longest wait for the next bytes from an endpoint.
    pub read_timeout: Duration,
    /// The longest wait to send the next bytes to an endpoint.
    pub send_timeout: Duration,
    /// The largest request body accepted (413 above); `u64::MAX` for no limit.
    pub body_limit: u64,
    /// Endpoints tried per request when connecting fails.
    pub upstream_tries: usize,
    /// When a failed try moves on to the next endpoint (ingress-nginx's `proxy-next-upstream`).
    pub next_upstream: NextUpstream,
    /// How long retrying may go on, from the first try (`proxy-next-upstream-timeout`; `None`:
    /// no limit).
    pub next_upstream_timeout: Option<Duration>,
    /// Small request bodies are read before connecting, so they can be replayed
    /// (`proxy-request-buffering`; off streams every body).
    pub request_buffering: bool,
    /// `proxy-buffering`: accepted and validated; responses are always streamed.
    pub response_buffering: bool,
    /// `proxy-http-version: 1.0`: requests to HTTP/1 endpoints ask for the connection to close.
    pub http10: bool,
    /// The whole exchange, from the request's arrival to the backend's answer head, retries
    /// included (Gateway API `timeouts.request`): 504 when it passes. `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// Each try on an endpoint, from connecting to the answer head (Gateway API
    /// `timeouts.backendRequest`): a try that takes longer is a timeout (504, or the next
    /// endpoint where `next_upstream` allows). `None`: only `connect_timeout`/`read_timeout`.
    pub try_timeout: Option<Duration>,
}

/// ingress-nginx's `proxy-next-upstream` tokens, as data: which failures try the next endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextUpstream {
    /// `error`: connecting, or sending the request, failed.
    pub error: bool,
    /// `timeout`: the endpoint did not answer in time.
    pub timeout: bool,
    /// `invalid_header`: accepted (an unparseable answer counts as `error` here).
    pub invalid_header: bool,
    /// `http_500` … `http_429`: the endpoint answered one of these statuses.
    pub statuses: Vec<u16>,
    /// `non_idempotent`: POST, PATCH and LOCK may be sent again too.
    pub non_idempotent: bool,
}

impl NextUpstream {
    /// `off`: every failure is final.
    pub fn off() -> Self {
        NextUpstream { error: false, timeout: false, invalid_header: false, statuses: Vec::new(), non_idempotent: false }
    }
}

impl Default for NextUpstream {
    /// nginx's default: `error timeout`.
    fn default() -> Self {
        NextUpstream { error: true, timeout: true, ..NextUpstream::off() }
    }
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            body_limit: 1024 * 1024,
            upstream_tries: 3,
            next_upstream: NextUpstream::default(),
            next_upstream_timeout: None,
            request_buffering: true,
            response_buffering: false,
            http10: false,
            request_timeout: None,
            try_timeout: None,
        }
    }
}

/// One route of one host.
#[derive(Debug, Clone)]
pub struct Route {
    /// Dense index of this route (and host default) within its `Config`
    /// (0..`Config::route_count`), for per-configuration state in the data plane.
    pub id: usize,
    pub matches: RouteMatch,
    pub filters: Arc<[Filter]>,
    /// Where requests go: one, or a weighted split (see `WeightedBackend`).
    pub backends: Arc<[WeightedBackend]>,
    pub proxy: Arc<ProxySettings>,
    /// The path as the Ingress wrote it (used in logs and metrics labels).
    pub rule_path: String,
    /// The pathType as the Ingress wrote it.
    pub path_type: &'static str,
    /// The object this route comes from.
    pub ingress: Arc<ObjRef>,
    pub labels: RouteLabels,
    /// The alternative backend a canary Ingress on the same host, path and pathType adds.
    pub canary: Option<Arc<super::Canary>>,
    /// Cookie session affinity (`affinity: cookie`).
    pub affinity: Option<Arc<super::Affinity>>,
    /// Breaks ties between routes whose matches rank alike (Gateway API precedence).
    pub order: RouteOrder,
}

/// How routes whose matches rank alike are ordered, whatever their kind (Ingress, HTTPRoute,
/// GRPCRoute): the oldest object first (by `creationTimestamp`; none sorts last), then by
/// namespace and name, then by the order of the rule and match within the object.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteOrder {
    /// No `creationTimestamp`: after every object that has one.
    pub undated: bool,
    /// `creationTimestamp`, in seconds since the epoch.
    pub created: i64,
    pub namespace: String,
    pub name: String,
    /// The rule's index, then the match's index within it.
    pub rule: (usize, usize),
}

impl RouteOrder {
    pub fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, rule: (usize, usize)) -> Self {
        let ts = meta.creation_timestamp.as_ref().map(|t| t.0.as_second());
        RouteOrder {
            undated: ts.is_none(),
            created: ts.unwrap_or(0),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            rule,
        }
    }
}

impl Route {
    /// The first backend (an Ingress route's only one; for tools, the first of a split).
    pub fn backend(&self) -> &Arc<super::Backend> {
        &self.backends[0].backend
    }

    pub fn has_filter(&self, f: &Filter) -> bool {
        self.filters.iter().any(|x| x == f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_matching() {
        let p = |path: &str, kind| PathMatch { path: path.into(), kind, regex: None };
        assert!(p("/foo", PathKind::Prefix).matches("/foo/bar"));
        assert!(p("/foo", PathKind::Prefix).matches("/foo/"));
        assert!(!p("/foo", PathKind::Prefix).matches("/foobar"));
        assert!(p("", PathKind::Prefix).matches("/anything"));
        assert!(p("/foo", PathKind::Exact).matches("/foo"));
        assert!(!p("/foo", PathKind::Exact).matches("/foo/"));
        let re = PathMatch { path: "/a(/|$)(.*)".into(), kind: PathKind::Regex, regex: Some(Pattern::new("(?i)^/a(/|$)(.*)").unwrap()) };
        assert!(re.matches("/A/b") && re.matches("/a") && !re.matches("/ab") && !re.matches("/x/a/"));
    }

    #[test]
    fn conditions_all_hold() {
        let mut m = RouteMatch::path(String::new(), PathKind::Prefix);
        m.method = Some(http::Method::POST);
        m.headers.push(HeaderMatch::exact(http::HeaderName::from_static("x-env"), "canary"));
        m.query.push(QueryMatch::exact("v", "2"));
        let mut headers = http::HeaderMap::new();
        headers.insert("x-env", "canary".parse().unwrap());
        let facts = |method, query| RequestFacts { path: "/a", method, headers: &headers, query };
        assert!(m.matches(&facts(&http::Method::POST, "a=1&v=2")));
        assert!(!m.matches(&facts(&http::Method::GET, "v=2")), "method");
        assert!(!m.matches(&facts(&http::Method::POST, "v=3")), "query");
        let empty = http::HeaderMap::new();
        assert!(!m.matches(&RequestFacts { path: "/a", method: &http::Method::POST, headers: &empty, query: "v=2" }), "header");
    }

    #[test]
    fn regular_expression_values_match_whole() {
        let mut m = RouteMatch::path(String::new(), PathKind::Prefix);
        m.headers.push(HeaderMatch { name: http::HeaderName::from_static("x-v"), value: "v[0-9]+".into(), pattern: Some(full_match("v[0-9]+").unwrap()) });
        m.query.push(QueryMatch { name: "q".into(), value: "a|b".into(), pattern: Some(full_match("a|b").unwrap()) });
        let mut headers = http::HeaderMap::new();
        headers.insert("x-v", "v12".parse().unwrap());
        fn facts<'a>(headers: &'a http::HeaderMap, query: &'a str) -> RequestFacts<'a> {
            RequestFacts { path: "/", method: &http::Method::GET, headers, query }
        }
        assert!(m.matches(&facts(&headers, "q=b")));
        assert!(!m.matches(&facts(&headers, "q=ab")), "the alternation is anchored as a whole");
        headers.insert("x-v", "xv12".parse().unwrap());
        assert!(!m.matches(&facts(&headers, "q=a")), "anchored at the start");
    }
}

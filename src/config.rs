//! The configuration the data plane consumes: built whole by `compile`, swapped atomically.
//!
//! Virtual hosts → routes → backends → endpoints, and TLS certificates by SNI name. Nothing in
//! here is ever mutated after it is built, except the round-robin cursors of backends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use rustls::sign::CertifiedKey;

use crate::metrics::{Metrics, RouteLabels, RouteStats};
use crate::store::ObjRef;

/// A route's metric labels, and its statistics once the data plane first needs them.
#[derive(Debug, Clone)]
pub struct Observed {
    pub labels: RouteLabels,
    stats: OnceLock<Arc<RouteStats>>,
}

impl Observed {
    pub fn new(host: &str, path: &str, ingress: &ObjRef, service: &str) -> Self {
        let labels = RouteLabels {
            host: Arc::from(host),
            path: Arc::from(path),
            namespace: Arc::from(ingress.namespace.as_str()),
            ingress: Arc::from(if ingress.kind == "Ingress" { ingress.name.as_str() } else { "" }),
            service: Arc::from(service),
        };
        Observed { labels, stats: OnceLock::new() }
    }

    /// The statistics for this route, shared with every other configuration's same route.
    pub fn stats(&self, metrics: &Metrics) -> &Arc<RouteStats> {
        self.stats.get_or_init(|| metrics.route(&self.labels))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum PathKind {
    Exact,
    Prefix,
}

/// How a backend picks an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    #[default]
    RoundRobin,
    /// Power of two choices on in-flight requests weighted by peak-EWMA latency.
    LeastRequest,
    /// Consistent hashing on a request key.
    Hash(HashKey),
}

/// A request key for consistent hashing, parsed from an nginx-style expression such as
/// `$request_uri` or `$http_x_user$cookie_session`. It is data, never code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HashKey {
    pub parts: Vec<HashPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashPart {
    Literal(String),
    RequestUri,
    Uri,
    Host,
    RemoteAddr,
    /// A request header, lowercase.
    Header(String),
    Cookie(String),
    Arg(String),
}

impl HashKey {
    /// Parses `$var` references and literal text; unknown variables are an error.
    pub fn parse(expr: &str) -> Result<HashKey, String> {
        let mut parts = Vec::new();
        let mut rest = expr;
        while !rest.is_empty() {
            match rest.find('$') {
                Some(0) => {
                    let name_end = rest[1..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map(|i| i + 1).unwrap_or(rest.len());
                    let name = &rest[1..name_end];
                    let part = match name {
                        "request_uri" => HashPart::RequestUri,
                        "uri" | "document_uri" => HashPart::Uri,
                        "host" => HashPart::Host,
                        "remote_addr" | "binary_remote_addr" => HashPart::RemoteAddr,
                        n if n.starts_with("http_") && n.len() > 5 => HashPart::Header(n[5..].replace('_', "-").to_ascii_lowercase()),
                        n if n.starts_with("cookie_") && n.len() > 7 => HashPart::Cookie(n[7..].to_string()),
                        n if n.starts_with("arg_") && n.len() > 4 => HashPart::Arg(n[4..].to_string()),
                        n => return Err(format!("unknown variable ${n}: use $request_uri, $uri, $host, $remote_addr, $http_NAME, $cookie_NAME or $arg_NAME")),
                    };
                    parts.push(part);
                    rest = &rest[name_end..];
                }
                Some(i) => {
                    parts.push(HashPart::Literal(rest[..i].to_string()));
                    rest = &rest[i..];
                }
                None => {
                    parts.push(HashPart::Literal(rest.to_string()));
                    rest = "";
                }
            }
        }
        if !parts.iter().any(|p| !matches!(p, HashPart::Literal(_))) {
            return Err(format!("{expr:?} names no variable, so every request would hash alike"));
        }
        Ok(HashKey { parts })
    }
}

/// The protocol spoken to a backend's endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum BackendProtocol {
    #[default]
    Http,
    Https,
    /// HTTP/2 with prior knowledge, cleartext.
    H2c,
    /// gRPC over h2c.
    Grpc,
    /// gRPC over HTTP/2 with TLS.
    Grpcs,
}

impl BackendProtocol {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "HTTP" => Some(BackendProtocol::Http),
            "HTTPS" => Some(BackendProtocol::Https),
            "H2C" => Some(BackendProtocol::H2c),
            "GRPC" => Some(BackendProtocol::Grpc),
            "GRPCS" => Some(BackendProtocol::Grpcs),
            _ => None,
        }
    }
    pub fn http2(self) -> bool {
        matches!(self, BackendProtocol::H2c | BackendProtocol::Grpc | BackendProtocol::Grpcs)
    }
    pub fn tls(self) -> bool {
        matches!(self, BackendProtocol::Https | BackendProtocol::Grpcs)
    }
    pub fn grpc(self) -> bool {
        matches!(self, BackendProtocol::Grpc | BackendProtocol::Grpcs)
    }
}

/// TLS towards a backend: who we say we are talking to, and how the certificate is checked.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: rustls_pki_types::ServerName<'static>,
    /// Identifies the verification settings (CA, name, client certificate): pooled connections
    /// are only shared between backends whose fingerprints match.
    pub fingerprint: u64,
}

/// Where matched requests go: the endpoints of one Service port.
#[derive(Debug)]
pub struct Backend {
    /// `namespace-service-port`, as ingress-nginx names its upstreams.
    pub name: String,
    pub namespace: String,
    pub service: String,
    /// The Service port as the Ingress named it (number or name).
    pub port: String,
    pub endpoints: Vec<SocketAddr>,
    /// Why this backend has no endpoints, when it has none (answered with 503).
    pub unavailable: Option<String>,
    pub policy: Policy,
    pub protocol: BackendProtocol,
    /// For HTTPS and GRPCS backends.
    pub tls: Option<UpstreamTls>,
    bound: OnceLock<crate::proxy::balance::Bound>,
}

impl Backend {
    pub fn new(namespace: &str, service: &str, port: &str, endpoints: Vec<SocketAddr>, unavailable: Option<String>) -> Self {
        Backend {
            name: format!("{namespace}-{service}-{port}"),
            namespace: namespace.to_string(),
            service: service.to_string(),
            port: port.to_string(),
            endpoints,
            unavailable,
            policy: Policy::RoundRobin,
            protocol: BackendProtocol::Http,
            tls: None,
            bound: OnceLock::new(),
        }
    }

    /// The balancing state of this backend's endpoints, shared with other configurations.
    pub fn bound(&self, registry: &crate::proxy::balance::Registry) -> &crate::proxy::balance::Bound {
        self.bound.get_or_init(|| crate::proxy::balance::Bound::new(self, registry))
    }
}

/// One path of one host.
#[derive(Debug, Clone)]
pub struct Route {
    /// The path as matched: for Prefix without its trailing slash ("" for "/").
    pub path: String,
    /// The path as the Ingress wrote it (used in logs and metrics labels).
    pub rule_path: String,
    /// The pathType as the Ingress wrote it.
    pub path_type: &'static str,
    pub kind: PathKind,
    pub backend: Arc<Backend>,
    pub ingress: Arc<ObjRef>,
    pub ssl_redirect: bool,
    pub observed: Observed,
}

impl Route {
    /// Whether `path` (already normalised, no query) matches this route.
    pub fn matches(&self, path: &str) -> bool {
        match self.kind {
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

/// What a host does with a path no route matched.
#[derive(Debug, Clone)]
pub struct HostDefault {
    pub backend: Arc<Backend>,
    pub ingress: Arc<ObjRef>,
    pub observed: Observed,
}

impl HostDefault {
    pub fn new(backend: Arc<Backend>, ingress: Arc<ObjRef>, host: &str) -> Self {
        let observed = Observed::new(host, "", &ingress, &backend.service);
        HostDefault { backend, ingress, observed }
    }
}

#[derive(Debug, Clone, Default)]
pub struct VirtualHost {
    /// The host as written in the rules: `foo.com`, `*.foo.com`, or `*` for rules without host.
    pub name: String,
    /// Sorted so that the first match is the best: longest path first, Exact before Prefix.
    pub routes: Vec<Route>,
    pub default: Option<HostDefault>,
    /// The host is listed under an Ingress's `spec.tls`.
    pub tls: bool,
    /// Plain HTTP to this host is redirected to HTTPS even where no path matches: it has TLS,
    /// redirects are on, and its oldest Ingress does not turn them off.
    pub ssl_redirect: bool,
}

impl VirtualHost {
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(path))
    }

    pub fn sort_routes(&mut self) {
        self.routes.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then_with(|| (a.kind != PathKind::Exact).cmp(&(b.kind != PathKind::Exact)))
        });
    }
}

/// A certificate and where it came from.
#[derive(Debug, Clone)]
pub struct TlsCert {
    pub key: Arc<CertifiedKey>,
    /// The Secret it was read from; `None` for the generated default.
    pub secret: Option<(String, String)>,
}

/// TLS certificates by SNI name.
#[derive(Debug, Clone)]
pub struct TlsCerts {
    pub exact: HashMap<String, TlsCert>,
    /// Keyed by the parent domain: `*.foo.com` is stored under `foo.com`.
    pub wildcard: HashMap<String, TlsCert>,
    pub default: TlsCert,
}

impl TlsCerts {
    pub fn new(default: TlsCert) -> Self {
        TlsCerts { exact: HashMap::new(), wildcard: HashMap::new(), default }
    }

    /// The certificate for an SNI name (already lowercase): exact, then one-label wildcard,
    /// then the default. Never fails.
    pub fn pick(&self, sni: Option<&str>) -> &TlsCert {
        if let Some(name) = sni {
            if let Some(c) = self.exact.get(name) {
                return c;
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(c) = self.wildcard.get(parent) {
                    return c;
                }
            }
        }
        &self.default
    }

    pub fn resolve(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        self.pick(sni).key.clone()
    }
}

/// Everything the data plane needs to answer a request.
#[derive(Debug, Clone)]
pub struct Config {
    pub exact: HashMap<String, Arc<VirtualHost>>,
    /// Keyed by the parent domain: `*.foo.com` is stored under `foo.com`.
    pub wildcard: HashMap<String, Arc<VirtualHost>>,
    /// Rules without a host: they match every host not matched above.
    pub hostless: Option<Arc<VirtualHost>>,
    /// Where requests no host or path matched go; `None` is the built-in 404.
    pub default_backend: Option<HostDefault>,
    pub tls: TlsCerts,
}

/// What the router decided for one request.
#[derive(Debug)]
pub enum Target<'a> {
    Route { vhost: &'a VirtualHost, route: &'a Route },
    HostDefault { vhost: &'a VirtualHost, default: &'a HostDefault },
    Default(&'a HostDefault),
    /// A known host whose rules do not match, and no default backend: 404 (after the HTTPS
    /// redirect, when the host has TLS).
    HostNotFound { vhost: &'a VirtualHost },
    NotFound,
}

impl<'a> Target<'a> {
    pub fn backend(&self) -> Option<&'a Arc<Backend>> {
        match self {
            Target::Route { route, .. } => Some(&route.backend),
            Target::HostDefault { default, .. } => Some(&default.backend),
            Target::Default(d) => Some(&d.backend),
            Target::HostNotFound { .. } | Target::NotFound => None,
        }
    }

    pub fn ssl_redirect(&self) -> bool {
        match self {
            Target::Route { route, .. } => route.ssl_redirect,
            Target::HostDefault { vhost, .. } | Target::HostNotFound { vhost } => vhost.ssl_redirect,
            _ => false,
        }
    }
}

impl Config {
    pub fn new(default_cert: TlsCert) -> Self {
        Config {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            hostless: None,
            default_backend: None,
            tls: TlsCerts::new(default_cert),
        }
    }

    /// The virtual host for a request host (lowercase, without port): exact, then one-label
    /// wildcard, then the host-less rules.
    pub fn vhost(&self, host: &str) -> Option<&VirtualHost> {
        if let Some(v) = self.exact.get(host) {
            return Some(v);
        }
        if let Some((_, parent)) = host.split_once('.') {
            if let Some(v) = self.wildcard.get(parent) {
                return Some(v);
            }
        }
        self.hostless.as_deref()
    }

    /// Routes a request by host (lowercase, no port) and normalised path.
    pub fn route(&self, host: &str, path: &str) -> Target<'_> {
        if let Some(vhost) = self.vhost(host) {
            if let Some(route) = vhost.find(path) {
                return Target::Route { vhost, route };
            }
            if let Some(default) = &vhost.default {
                return Target::HostDefault { vhost, default };
            }
            // A host whose rules do not match falls to the default backend, still redirected
            // to HTTPS when the host has TLS.
            if vhost.tls {
                return match &self.default_backend {
                    Some(d) => Target::HostDefault { vhost, default: d },
                    None => Target::HostNotFound { vhost },
                };
            }
        }
        match &self.default_backend {
            Some(d) => Target::Default(d),
            None => Target::NotFound,
        }
    }
}

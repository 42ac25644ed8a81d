//! Backends: the endpoints of one Service port, how one is picked, and how it is spoken to.

use std::net::SocketAddr;
use std::sync::Arc;

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
    /// Dense index of this backend within its `Config` (0..`Config::backend_count`): the data
    /// plane keeps per-configuration state (balancing order) in a table indexed by it.
    pub id: usize,
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
    /// A Gateway API backendRef that could not be resolved (no such Service, a kind that is
    /// not a Service, another namespace without a ReferenceGrant): requests given to it are
    /// answered 500, as the spec says. Made by `Backend::unresolved`; it has no endpoints, and
    /// `unavailable` says why.
    pub unresolved: bool,
}

impl Backend {
    pub fn new(id: usize, namespace: &str, service: &str, port: &str, endpoints: Vec<SocketAddr>, unavailable: Option<String>) -> Self {
        Backend {
            id,
            name: format!("{namespace}-{service}-{port}"),
            namespace: namespace.to_string(),
            service: service.to_string(),
            port: port.to_string(),
            endpoints,
            unavailable,
            policy: Policy::RoundRobin,
            protocol: BackendProtocol::Http,
            tls: None,
            unresolved: false,
        }
    }

    /// The share of a route whose backendRef could not be resolved (see `unresolved`): it takes
    /// its weight of the traffic and answers it 500.
    pub fn unresolved(id: usize, namespace: &str, service: &str, port: &str, why: String) -> Self {
        Backend { unresolved: true, ..Backend::new(id, namespace, service, port, Vec::new(), Some(why)) }
    }
}

/// A backend and its share of a route's traffic.
///
/// A route with one backend sends it everything whatever its weight (Ingress routes have one);
/// with several, each request goes to one picked at random in proportion to the weights, and a
/// weight of 0 is never picked. When every weight is 0 the route answers 500. A share whose
/// Gateway API backendRef could not be resolved is a `Backend::unresolved`: it keeps its weight
/// and answers 500; so is the one share of a rule that has no backendRefs at all (a route
/// always has at least one share: `Route::backend` is the first). `filters` (a Gateway API
/// backendRef's own) run after the route's when this backend is picked: request filters after
/// the route's, response filters before the route's.
#[derive(Debug, Clone)]
pub struct WeightedBackend {
    pub backend: Arc<Backend>,
    pub weight: u32,
    pub filters: Arc<[super::Filter]>,
}

impl WeightedBackend {
    /// A backend with its weight and no filters of its own.
    pub fn new(backend: Arc<Backend>, weight: u32) -> Self {
        WeightedBackend { backend, weight, filters: Arc::from(Vec::new()) }
    }
}

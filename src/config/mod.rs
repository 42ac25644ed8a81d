//! The configuration the data plane consumes: pure data, built whole by `compile`, swapped
//! atomically, never mutated after it is built.
//!
//! Virtual hosts → routes (match conditions, filters, weighted backends) → endpoints, TLS
//! certificates by SNI name, and the listeners to have open. Runtime state (balancing cursors,
//! endpoint health, statistics) is not here: the data plane keeps it in registries keyed by
//! stable identity, and per-configuration tables indexed by the dense `id`s of routes and
//! backends.

pub mod affinity;
pub mod auth;
pub mod backend;
pub mod canary;
pub mod cors;
pub mod filter;
pub mod http;
pub mod index;
mod gone;
pub mod l4;
pub mod listener;
pub mod path;
pub mod route;
pub mod table;
pub mod limits;
pub mod tls;
pub mod client_auth;

use std::collections::HashMap;
use std::sync::Arc;

pub use backend::{Backend, BackendProtocol, HashKey, HashPart, Policy, UpstreamTls, WeightedBackend};
pub use l4::{L4Protocol, L4Service, Passthrough};
pub use listener::{ListenerProtocol, ListenerSpec};
pub use route::{Filter, HeaderMatch, NextUpstream, PathKind, PathMatch, ProxySettings, QueryMatch, RequestFacts, Route, RouteLabels, RouteMatch, RouteOrder};
pub use table::RouteTable;
pub use tls::{TlsCert, TlsCerts};
pub use affinity::{Affinity, AffinityMode, SameSite};
pub use canary::{Canary, CanaryRule, HeaderPattern};

use crate::store::ObjRef;

/// What a host (or the whole configuration) does with a request no route matched.
#[derive(Debug, Clone)]
pub struct HostDefault {
    /// Dense index shared with routes (0..`Config::route_count`).
    pub id: usize,
    pub backend: Arc<Backend>,
    pub ingress: Arc<ObjRef>,
    pub proxy: Arc<ProxySettings>,
    pub labels: RouteLabels,
    /// A canary Ingress's alternative backend for the catch-all default.
    pub canary: Option<Arc<Canary>>,
    /// The filters of the Ingress this default comes from (its protections, headers, ...);
    /// `None` for a default that has none of its own (`--default-backend-service`).
    pub filters: Option<Arc<[Filter]>>,
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
    /// Applied where no route matched (the HTTPS redirect of a TLS host).
    pub filters: Arc<[Filter]>,
    /// Gateway API routes are here: routes are in Gateway API precedence (`table::precedence`)
    /// and, as a wildcard, the host matches one or more labels.
    pub gateway: bool,
    /// `routes` by path condition, built by `sort_routes`: call it after changing `routes` (a
    /// host whose number of routes no longer matches its index is scanned instead).
    pub index: Arc<index::RouteIndex>,
}

impl VirtualHost {
    /// The first route whose conditions all hold, through the index.
    pub fn find(&self, req: &RequestFacts<'_>) -> Option<&Route> {
        self.index.first(&self.routes, req.path, |r| r.matches.matches(req))
    }

    /// `find` by scanning every route in order: what the index must agree with.
    #[doc(hidden)]
    pub fn find_linear(&self, req: &RequestFacts<'_>) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches.matches(req))
    }

    /// The first route whose path matches, ignoring other conditions (for tools).
    pub fn find_path(&self, path: &str) -> Option<&Route> {
        self.index.first(&self.routes, path, |r| r.matches.path.matches(path))
    }

    /// Puts the routes in precedence order and builds their index.
    pub fn sort_routes(&mut self) {
        self.order_routes();
        // Kept for as long as the host is: without the slack of the pushes that built it.
        self.routes.shrink_to_fit();
        self.index = Arc::new(index::RouteIndex::build(&self.routes));
    }

    fn order_routes(&mut self) {
        if self.gateway {
            self.routes.sort_by(|a, b| table::precedence(a).cmp(&table::precedence(b)));
            return;
        }
        self.routes.sort_by(|a, b| {
            let (a, b) = (&a.matches.path, &b.matches.path);
            b.path.len().cmp(&a.path.len()).then_with(|| (a.kind != PathKind::Exact).cmp(&(b.kind != PathKind::Exact)))
                // Expressions of one length: by path string, descending, as ingress-nginx orders them.
                .then_with(|| if a.kind == PathKind::Regex && b.kind == PathKind::Regex { b.path.cmp(&a.path) } else { std::cmp::Ordering::Equal })
        });
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
    /// The listeners to have open.
    pub listeners: Vec<ListenerSpec>,
    /// Limits for requests no route matched.
    pub proxy: Arc<ProxySettings>,
    /// How many route ids (routes and host defaults) and backend ids were handed out.
    pub route_count: usize,
    pub backend_count: usize,
    /// Forwarded headers, request ID and `Server` header (ConfigMap).
    pub http: Arc<http::HttpSettings>,
    /// TCP and UDP services, reconciled like `listeners`.
    pub l4: Vec<L4Service>,
    /// SSL passthrough hosts on the HTTPS listener.
    pub passthrough: Arc<Passthrough>,
    /// Client-certificate policies by host (`auth-tls-*`).
    pub client_auth: Arc<client_auth::ClientAuths>,
    /// The tables of the ports that serve Gateway API routes, by port; a connection on any
    /// other port is routed by the Ingress hosts above.
    pub ports: HashMap<u16, Arc<RouteTable>>,
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
            Target::Route { route, .. } => Some(route.backend()),
            Target::HostDefault { default, .. } => Some(&default.backend),
            Target::Default(d) => Some(&d.backend),
            Target::HostNotFound { .. } | Target::NotFound => None,
        }
    }

    /// The filters that apply: the route's, or the host's where no route matched.
    pub fn filters(&self) -> &'a [Filter] {
        match self {
            Target::Route { route, .. } => &route.filters,
            // A host's own defaultBackend carries its Ingress's filters (the host's included);
            // a host falling through to the global default keeps the host's.
            Target::HostDefault { vhost, default } => match (&vhost.default, &default.filters) {
                (Some(own), Some(f)) if std::ptr::eq(own, *default) => f,
                _ => &vhost.filters,
            },
            Target::HostNotFound { vhost } => &vhost.filters,
            Target::Default(d) => d.filters.as_deref().unwrap_or(&[]),
            Target::NotFound => &[],
        }
    }

    /// The id for per-route state and statistics, when the request reached a route.
    pub fn route_id(&self) -> Option<(usize, &'a RouteLabels)> {
        match self {
            Target::Route { route, .. } => Some((route.id, &route.labels)),
            Target::HostDefault { default, .. } | Target::Default(default) => Some((default.id, &default.labels)),
            _ => None,
        }
    }

    pub fn proxy<'c>(&self, config: &'c Config) -> &'c ProxySettings
    where
        'a: 'c,
    {
        match self {
            Target::Route { route, .. } => &route.proxy,
            Target::HostDefault { default, .. } | Target::Default(default) => &default.proxy,
            _ => &config.proxy,
        }
    }

    /// The canary alternative of the matched route or default, if any.
    pub fn canary(&self) -> Option<&'a Arc<Canary>> {
        match self {
            Target::Route { route, .. } => route.canary.as_ref(),
            Target::HostDefault { default, .. } | Target::Default(default) => default.canary.as_ref(),
            _ => None,
        }
    }

    /// The session affinity of the matched route, if any.
    pub fn affinity(&self) -> Option<&'a Arc<Affinity>> {
        match self {
            Target::Route { route, .. } => route.affinity.as_ref(),
            _ => None,
        }
    }

    /// Whether plain HTTP to this target is redirected to HTTPS.
    pub fn ssl_redirect(&self) -> bool {
        self.filters().iter().any(|f| matches!(f, Filter::HttpsRedirect { .. }))
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
            listeners: Vec::new(),
            proxy: Arc::new(ProxySettings::default()),
            route_count: 0,
            backend_count: 0,
            http: Arc::default(),
            l4: Vec::new(),
            passthrough: Arc::new(Passthrough::default()),
            client_auth: Arc::default(),
            ports: HashMap::new(),
        }
    }

    /// The virtual host for a request host (lowercase, without port): exact, then one-label
    /// wildcard, then the host-less rules.
    pub fn vhost(&self, host: &str) -> Option<&VirtualHost> {
        table::lookup(&self.exact, &self.wildcard, self.hostless.as_deref(), false, host)
    }

    /// Every virtual host, once, in no particular order (those of port tables included).
    pub fn vhosts(&self) -> impl Iterator<Item = &Arc<VirtualHost>> {
        let mut seen = std::collections::HashSet::new();
        let own = self.exact.values().chain(self.wildcard.values()).chain(self.hostless.iter());
        own.chain(self.ports.values().flat_map(|t| t.vhosts())).filter(move |v| seen.insert(Arc::as_ptr(v)))
    }

    /// The SSL passthrough hosts of a listener port.
    pub fn passthrough_on(&self, port: u16) -> &Arc<Passthrough> {
        self.ports.get(&port).map(|t| &t.passthrough).unwrap_or(&self.passthrough)
    }

    /// The labels of every route and default, which name their statistics.
    pub fn route_labels(&self) -> std::collections::HashSet<&RouteLabels> {
        let hosts = self.vhosts().flat_map(|v| v.routes.iter().map(|r| &r.labels).chain(v.default.iter().map(|d| &d.labels)));
        hosts.chain(self.default_backend.iter().map(|d| &d.labels)).collect()
    }

    /// Every backend any route or default uses (repeats included).
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.vhosts()
            .flat_map(|v| {
                let routes = v.routes.iter().flat_map(|r| r.backends.iter().map(|w| &w.backend).chain(r.canary.iter().map(|c| &c.backend)));
                routes.chain(v.default.iter().flat_map(|d| std::iter::once(&d.backend).chain(d.canary.iter().map(|c| &c.backend))))
            })
            .chain(self.default_backend.iter().flat_map(|d| std::iter::once(&d.backend).chain(d.canary.iter().map(|c| &c.backend))))
            .chain(self.l4.iter().map(|s| &s.backend))
            .chain(self.passthrough.hosts.values())
            .chain(self.ports.values().flat_map(|t| t.passthrough.hosts.values().chain(t.passthrough.suffixes.iter().map(|(_, b)| b))))
    }

    /// Routes a request by host (lowercase, no port) and its facts.
    pub fn route(&self, host: &str, req: &RequestFacts<'_>) -> Target<'_> {
        self.route_in(self.vhost(host), true, req)
    }

    /// Routes a request that arrived on the listener port `port`: by that port's table when it
    /// has one (Gateway API routes), else by the Ingress hosts.
    pub fn route_on(&self, port: u16, host: &str, req: &RequestFacts<'_>) -> Target<'_> {
        match self.ports.get(&port) {
            None => self.route(host, req),
            Some(t) => self.route_in(t.vhost(host), t.ingress, req),
        }
    }

    /// The target within a virtual host; `defaults`: unmatched requests go to the default
    /// backend (on Ingress ports).
    fn route_in<'c>(&'c self, vhost: Option<&'c VirtualHost>, defaults: bool, req: &RequestFacts<'_>) -> Target<'c> {
        let default_backend = if defaults { self.default_backend.as_ref() } else { None };
        if let Some(vhost) = vhost {
            if let Some(route) = vhost.find(req) {
                return Target::Route { vhost, route };
            }
            if let Some(default) = &vhost.default {
                return Target::HostDefault { vhost, default };
            }
            // A host whose rules do not match falls to the default backend, still redirected
            // to HTTPS when the host has TLS (and through the host's other filters).
            if vhost.tls || !vhost.filters.is_empty() {
                return match default_backend {
                    Some(d) => Target::HostDefault { vhost, default: d },
                    None => Target::HostNotFound { vhost },
                };
            }
        }
        match default_backend {
            Some(d) => Target::Default(d),
            None => Target::NotFound,
        }
    }

    /// Routes by host and path alone (tools that have no request).
    pub fn route_path(&self, host: &str, path: &str) -> Target<'_> {
        let headers = ::http::HeaderMap::new();
        self.route(host, &RequestFacts { path, method: &::http::Method::GET, headers: &headers, query: "" })
    }
}

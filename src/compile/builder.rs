//! The graph every processor writes into: virtual hosts and their routes, which owner claimed
//! which host and path, dense ids for routes and backends, and the diagnostics found on the
//! way. `finish` turns it into the data plane's `Config`.
//!
//! Nothing here knows the Ingress API: the Ingress processor (and, later, a Gateway API
//! processor) decide what to write.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::backend::Resolver;
use super::status::Status;
use super::tls::CertCache;
use super::{Compiled, Diagnostic, Reason, Settings, Severity};
use crate::config::{Backend, Config, Filter, HostDefault, PathKind, ProxySettings, RouteLabels, VirtualHost};
use crate::store::{ObjRef, Store};

pub(super) struct Builder<'a> {
    pub store: &'a Store,
    pub certs: &'a CertCache,
    pub resolver: Resolver<'a>,
    pub proxy: Arc<ProxySettings>,
    /// Per-object results, for status, Events and explain.
    pub status: Status,
    diags: Vec<Diagnostic>,
    /// By host as written: `foo.com`, `*.foo.com`, or `*` for rules without host.
    vhosts: BTreeMap<String, VirtualHost>,
    claimed: HashMap<(String, String, PathKind), Arc<ObjRef>>,
    next_route: usize,
    pub settings: &'a Settings,
    /// `server-alias`: the aliases of each host, from the first Ingress that set them.
    aliases: BTreeMap<String, Vec<String>>,
    /// Hosts in the order their aliases were set (the first claim of an alias wins).
    alias_order: Vec<String>,
}

impl<'a> Builder<'a> {
    pub fn new(store: &'a Store, settings: &'a Settings) -> Self {
        Builder::new_with(store, settings, Resolver::new(store))
    }

    /// A builder for a few hosts of a configuration already built: slices are found through
    /// `slices`, and route and backend ids continue after the ones handed out before.
    pub fn partial(store: &'a Store, settings: &'a Settings, slices: &'a super::backend::SlicesByService, first_route: usize, first_backend: usize) -> Self {
        let mut b = Builder::new_with(store, settings, Resolver::kept(store, slices, first_backend));
        b.next_route = first_route;
        b
    }

    fn new_with(store: &'a Store, settings: &'a Settings, resolver: Resolver<'a>) -> Self {
        Builder {
            store,
            certs: &settings.cert_cache,
            resolver,
            proxy: Arc::new(settings.proxy.clone()),
            status: Status::default(),
            diags: Vec::new(),
            vhosts: BTreeMap::new(),
            claimed: HashMap::new(),
            next_route: 0,
            settings,
            aliases: BTreeMap::new(),
            alias_order: Vec::new(),
        }
    }

    /// The next dense route id (host defaults count as routes).
    pub fn next_id(&mut self) -> usize {
        self.next_route += 1;
        self.next_route - 1
    }

    pub fn host_default(&mut self, backend: Arc<Backend>, owner: Arc<ObjRef>, host: &str) -> HostDefault {
        let labels = RouteLabels::new(host, "", &owner, &backend.service);
        HostDefault { id: self.next_id(), backend, ingress: owner, proxy: self.proxy.clone(), labels, canary: None, filters: None }
    }

    /// Records a diagnostic found outside the builder (the ConfigMap's).
    pub fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    pub fn diag(&mut self, sev: Severity, obj: &ObjRef, field: impl Into<String>, reason: Reason, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(sev, obj, field, reason, msg));
    }

    /// The virtual host of `host`; the first writer decides its TLS and filters.
    pub fn vhost(&mut self, host: &str, tls: bool, filters: &Arc<[Filter]>) -> &mut VirtualHost {
        self.vhosts.entry(host.to_string()).or_insert_with(|| VirtualHost { name: host.to_string(), tls, filters: filters.clone(), ..Default::default() })
    }

    /// Whether some rule already made a virtual host for `host`.
    pub fn has_vhost(&self, host: &str) -> bool {
        self.vhosts.contains_key(host)
    }

    /// Who claimed a host, path and kind, if anyone: the first claim wins.
    pub fn claimant(&self, host: &str, path: &str, kind: PathKind) -> Option<&Arc<ObjRef>> {
        self.claimed.get(&(host.to_string(), path.to_string(), kind))
    }

    /// Claims a host, path and kind for `owner`, unless someone already has.
    pub fn claim(&mut self, host: &str, path: &str, kind: PathKind, owner: &Arc<ObjRef>) {
        self.claimed.entry((host.to_string(), path.to_string(), kind)).or_insert_with(|| owner.clone());
    }

    /// The route of `host` whose path and pathType are written as given (canaries join it).
    pub fn route_mut(&mut self, host: &str, rule_path: &str, path_type: &str) -> Option<&mut crate::config::Route> {
        self.vhosts.get_mut(host)?.routes.iter_mut().find(|r| r.rule_path == rule_path && r.path_type == path_type)
    }

    /// Records `aliases` for `host` unless an older Ingress already set the host's aliases.
    pub fn set_aliases(&mut self, host: &str, aliases: &[String]) {
        if aliases.is_empty() || self.aliases.contains_key(host) {
            return;
        }
        self.aliases.insert(host.to_string(), aliases.to_vec());
        self.alias_order.push(host.to_string());
    }

    /// Places the virtual hosts into `config` (routes sorted; exact, wildcard or hostless),
    /// fills in the counts, and returns it with the diagnostics (sorted, without repeats) and
    /// the per-object status.
    pub fn finish(mut self, mut config: Config) -> Compiled {
        for (name, mut vhost) in std::mem::take(&mut self.vhosts) {
            vhost.sort_routes();
            let vhost = Arc::new(vhost);
            if name == "*" {
                config.hostless = Some(vhost);
            } else if let Some(parent) = name.strip_prefix("*.") {
                config.wildcard.insert(parent.to_string(), vhost);
            } else {
                config.exact.insert(name, vhost);
            }
        }
        self.place_aliases(&mut config);
        config.proxy = self.proxy.clone();
        config.route_count = self.next_route;
        config.backend_count = self.resolver.backend_count();
        let mut diags = self.diags;
        diags.sort();
        diags.dedup();
        Compiled { config, diagnostics: diags, status: self.status }
    }

    /// Serves each alias with its host's virtual host; an alias that is a host already (or was
    /// claimed by an older Ingress's host) is dropped.
    fn place_aliases(&mut self, config: &mut Config) {
        for host in std::mem::take(&mut self.alias_order) {
            let vhost = match host.strip_prefix("*.") {
                Some(parent) => config.wildcard.get(parent),
                None => config.exact.get(&host),
            };
            let Some(vhost) = vhost.cloned() else { continue };
            for alias in self.aliases.get(&host).into_iter().flatten() {
                let map = match alias.strip_prefix("*.") {
                    Some(parent) => config.wildcard.entry(parent.to_string()),
                    None => config.exact.entry(alias.clone()),
                };
                if let std::collections::hash_map::Entry::Vacant(e) = map {
                    e.insert(vhost.clone());
                }
            }
        }
    }
}

//! Compile of a few hosts: when a change touches only some Ingresses, Services or
//! EndpointSlices, only the hosts those reach are compiled again, and every other virtual host,
//! certificate, diagnostic and status of the previous configuration is kept (the virtual hosts
//! as the same `Arc`s). The result serves exactly as a full compile of the same store would;
//! only the dense ids differ (new routes and backends take ids after the previous ones, so a
//! full compile runs again once too many are left unused).
//!
//! Whatever reaches past its own hosts falls back to a full compile: any other kind of object
//! (the controller ConfigMap, IngressClasses, Secrets, ...), Gateway API objects in the store,
//! a Service that is the default backend or TCP/UDP services are configured, and Ingresses
//! without rules or with annotations that act across hosts (canary, `server-alias`,
//! `from-to-www-redirect`, `ssl-passthrough`, `auth-tls-*`).

use std::collections::{BTreeSet, HashMap, HashSet};

use k8s_openapi::api::networking::v1::Ingress;

use super::backend::{self, SlicesByService};
use super::few::Few;
use super::builder::Builder;
use super::{Compiled, Diagnostic, Settings, Status, configmap, ingress, tls};
use crate::config::Config;
use crate::store::{Key, ObjRef, Store};

/// More Ingresses than this in one change: a full compile is as quick.
const MAX_INGRESSES: usize = 512;

/// Which hosts each Ingress names and which names (Services, and anything else an annotation
/// mentions) each Ingress refers to; which slices each Service has. Kept current by
/// `recompile`, built whole after a full compile.
#[derive(Debug, Default)]
pub struct Index {
    pub(super) hosts_of: HashMap<Key, Vec<String>>,
    pub(super) ingresses_of: HashMap<String, Few<Key>>,
    pub(super) names_of: HashMap<Key, Vec<Key>>,
    pub(super) named_by: HashMap<Key, Few<Key>>,
    /// Ingresses whose effect reaches past their own hosts.
    pub(super) global: HashSet<Key>,
    pub(super) slices: SlicesByService,
    pub(super) slice_service: HashMap<Key, String>,
    /// Route ids a full compile handed out: once twice as many are in use, compile in full.
    full_routes: usize,
}

/// The hosts an Ingress names: its rules' (`*` without a host) and its `spec.tls` hosts.
fn hosts_of(ing: &Ingress) -> Vec<String> {
    let Some(spec) = &ing.spec else { return Vec::new() };
    let rules = spec.rules.iter().flatten().map(|r| r.host.as_deref().map(|h| h.to_ascii_lowercase()).unwrap_or_else(|| "*".to_string()));
    let tls = spec.tls.iter().flatten().flat_map(|t| t.hosts.iter().flatten()).map(|h| h.to_ascii_lowercase());
    let mut out: Vec<String> = rules.chain(tls).collect();
    out.sort();
    out.dedup();
    out
}

/// Every name the Ingress may refer to in its namespace: backend Services, and each annotation
/// value (as `name` and as `namespace/name`), which over-approximates what annotations name.
fn names_of(ing: &Ingress, ns: &str) -> Vec<Key> {
    let mut out = Vec::new();
    if let Some(spec) = &ing.spec {
        let paths = spec.rules.iter().flatten().flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter().map(|p| &p.backend)));
        for b in paths.chain(spec.default_backend.iter()) {
            if let Some(s) = &b.service {
                out.push((ns.to_string(), s.name.clone()));
            }
        }
    }
    for v in ing.metadata.annotations.iter().flat_map(|a| a.values()) {
        let v = v.trim();
        out.push((ns.to_string(), v.to_string()));
        if let Some((n, name)) = v.split_once('/') {
            out.push((n.to_string(), name.to_string()));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether the Ingress acts past its own hosts (or is a catch-all candidate).
fn is_global(ing: &Ingress) -> bool {
    let no_rules = ing.spec.as_ref().and_then(|s| s.rules.as_ref()).is_none_or(|r| r.is_empty());
    let cross = ing.metadata.annotations.iter().flat_map(|a| a.keys()).any(|k| {
        let k = k.rsplit('/').next().unwrap_or(k);
        k.starts_with("canary") || k.starts_with("auth-tls") || matches!(k, "server-alias" | "from-to-www-redirect" | "ssl-passthrough")
    });
    no_rules || cross
}

pub(super) fn slice_service(slice: &crate::store::Slice) -> Option<String> {
    slice.service.clone()
}

impl Index {
    /// The index of `store`, after a full compile that handed out `route_count` route ids.
    pub fn new(store: &Store, route_count: usize) -> Index {
        let mut index = Index { full_routes: route_count, ..Default::default() };
        for (key, ing) in &store.ingresses {
            index.add_ingress(key, ing);
        }
        for (key, slice) in &store.endpoint_slices {
            index.add_slice(key, slice);
        }
        index
    }

    fn add_ingress(&mut self, key: &Key, ing: &Ingress) {
        let hosts = hosts_of(ing);
        for h in &hosts {
            self.ingresses_of.entry(h.clone()).or_default().insert(key.clone());
        }
        self.hosts_of.insert(key.clone(), hosts);
        let names = names_of(ing, &key.0);
        for n in &names {
            self.named_by.entry(n.clone()).or_default().insert(key.clone());
        }
        self.names_of.insert(key.clone(), names);
        if is_global(ing) {
            self.global.insert(key.clone());
        }
    }

    fn remove_ingress(&mut self, key: &Key) {
        for h in self.hosts_of.remove(key).into_iter().flatten() {
            if let Some(set) = self.ingresses_of.get_mut(&h) {
                set.remove(key);
                if set.is_empty() {
                    self.ingresses_of.remove(&h);
                }
            }
        }
        for n in self.names_of.remove(key).into_iter().flatten() {
            if let Some(set) = self.named_by.get_mut(&n) {
                set.remove(key);
                if set.is_empty() {
                    self.named_by.remove(&n);
                }
            }
        }
        self.global.remove(key);
    }

    pub(super) fn add_slice(&mut self, key: &Key, slice: &crate::store::Slice) {
        if let Some(svc) = slice_service(slice) {
            self.slices.entry((key.0.clone(), svc.clone())).or_default().insert(key.1.clone());
            self.slice_service.insert(key.clone(), svc);
        }
    }

    pub(super) fn remove_slice(&mut self, key: &Key) {
        let Some(svc) = self.slice_service.remove(key) else { return };
        let skey = (key.0.clone(), svc);
        if let Some(set) = self.slices.get_mut(&skey) {
            set.remove(&key.1);
            if set.is_empty() {
                self.slices.remove(&skey);
            }
        }
    }
}

/// What the previous compile produced.
pub struct Previous<'a> {
    pub config: &'a Config,
    pub diagnostics: &'a [Diagnostic],
    pub status: &'a Status,
}

/// Compiles the hosts that `changed` (objects added, replaced or removed since `index` and
/// `prev` were current) reaches and keeps the rest of `prev`; `None` when only a full compile
/// can say what the change means (then `index` is stale: build it again after compiling).
pub fn recompile(index: &mut Index, prev: Previous<'_>, store: &Store, changed: &[ObjRef], flags: &Settings) -> Option<Compiled> {
    let gateway_api = !(store.gateway_classes.is_empty() && store.gateways.is_empty() && store.http_routes.is_empty() && store.grpc_routes.is_empty() && store.tls_routes.is_empty());
    if gateway_api || changed.is_empty() || changed.len() > MAX_INGRESSES {
        return None;
    }
    let (settings, _) = configmap::effective(store, flags);
    let mut touched: BTreeSet<Key> = BTreeSet::new();
    let mut hosts: BTreeSet<String> = BTreeSet::new();
    let mut slices_changed: Vec<Key> = Vec::new();
    for r in changed {
        let key = (r.namespace.clone(), r.name.clone());
        match r.kind {
            "Ingress" => {
                if index.global.contains(&key) {
                    return None;
                }
                hosts.extend(index.hosts_of.get(&key).into_iter().flatten().cloned());
                index.remove_ingress(&key);
                if let Some(ing) = store.ingresses.get(&key) {
                    index.add_ingress(&key, ing);
                    if index.global.contains(&key) {
                        return None;
                    }
                }
                touched.insert(key);
            }
            "Service" | "EndpointSlice" => {
                // Services are also reached through TCP/UDP services and the default backend.
                if settings.tcp_services.is_some() || settings.udp_services.is_some() {
                    return None;
                }
                let mut services = Vec::new();
                if r.kind == "Service" {
                    services.push(key.clone());
                } else {
                    services.extend(index.slice_service.get(&key).map(|s| (key.0.clone(), s.clone())));
                    index.remove_slice(&key);
                    if let Some(slice) = store.endpoint_slices.get(&key) {
                        index.add_slice(&key, slice);
                        services.extend(slice_service(slice).map(|s| (key.0.clone(), s)));
                    }
                    slices_changed.push(key);
                }
                for svc in services {
                    if settings.default_backend_service.as_ref() == Some(&svc) {
                        return None;
                    }
                    touched.extend(index.named_by.get(&svc).into_iter().flatten().cloned());
                }
            }
            _ => return None,
        }
    }
    for t in &touched {
        hosts.extend(index.hosts_of.get(t).into_iter().flatten().cloned());
    }
    // Every Ingress of every host reached, and every host of those, until nothing is added.
    let mut ingresses: BTreeSet<Key> = BTreeSet::new();
    loop {
        let before = hosts.len();
        for h in &hosts {
            ingresses.extend(index.ingresses_of.get(h).into_iter().flatten().cloned());
        }
        if ingresses.len() > MAX_INGRESSES || ingresses.iter().any(|k| index.global.contains(k)) {
            return None;
        }
        for k in &ingresses {
            hosts.extend(index.hosts_of.get(k).into_iter().flatten().cloned());
        }
        if hosts.len() == before {
            break;
        }
    }
    let recompiled: BTreeSet<Key> = ingresses.iter().chain(touched.iter()).cloned().collect();

    let part = compile_hosts(index, store, &settings, &ingresses, prev.config)?;
    if part.diagnostics.iter().any(|d| d.object.kind != "Ingress" || !recompiled.contains(&(d.object.namespace.clone(), d.object.name.clone()))) {
        return None;
    }
    let mut config = prev.config.clone();
    for h in &hosts {
        remove_host(&mut config, h);
    }
    let mut part_config = part.config;
    for (name, v) in part_config.exact.drain() {
        config.exact.insert(name, v);
    }
    for (name, v) in part_config.wildcard.drain() {
        config.wildcard.insert(name, v);
    }
    if let Some(v) = part_config.hostless.take() {
        config.hostless = Some(v);
    }
    config.tls.exact.extend(part_config.tls.exact.drain());
    config.tls.wildcard.extend(part_config.tls.wildcard.drain());
    config.route_count = part_config.route_count;
    config.backend_count = part_config.backend_count;
    if config.route_count > 2 * index.full_routes + 1024 {
        return None;
    }

    let slice_set: HashSet<&Key> = slices_changed.iter().collect();
    let mut diagnostics: Vec<Diagnostic> = prev
        .diagnostics
        .iter()
        .filter(|d| {
            let key = (d.object.namespace.clone(), d.object.name.clone());
            match d.object.kind {
                "Ingress" => !recompiled.contains(&key),
                "EndpointSlice" => !slice_set.contains(&key),
                _ => true,
            }
        })
        .cloned()
        .collect();
    for key in &slices_changed {
        if let Some(slice) = store.endpoint_slices.get(key) {
            diagnostics.extend(backend::diagnostics_of_slice(&key.0, &key.1, slice));
        }
    }
    diagnostics.extend(part.diagnostics);
    diagnostics.sort();
    diagnostics.dedup();

    let mut status = prev.status.clone();
    for k in &recompiled {
        status.ingresses.remove(k);
    }
    status.ingresses.extend(part.status.ingresses);
    Some(Compiled { config, diagnostics, status })
}

/// The Ingress processor and the certificates of `ingresses` alone, with ids after `prev`'s.
fn compile_hosts(index: &Index, store: &Store, settings: &Settings, ingresses: &BTreeSet<Key>, prev: &Config) -> Option<Compiled> {
    let mut b = Builder::partial(store, settings, &index.slices, prev.route_count, prev.backend_count);
    let list = ingresses.iter().filter_map(|k| store.ingresses.get(k)).map(|i| &**i);
    let owned = ingress::owned_of(&mut b, list, store, settings);
    if ingress::process(&mut b, &owned, settings).is_some() {
        return None;
    }
    let mut config = Config::new(prev.tls.default.clone());
    tls::ingress_certs(&mut b, &owned, &mut config.tls);
    Some(b.finish(config))
}

/// Takes `host` (as written: `a.com`, `*.a.com`, `*`) and its certificate out of `config`.
fn remove_host(config: &mut Config, host: &str) {
    if host == "*" {
        config.hostless = None;
    } else if let Some(parent) = host.strip_prefix("*.") {
        config.wildcard.remove(parent);
        config.tls.wildcard.remove(parent);
    } else {
        config.exact.remove(host);
        config.tls.exact.remove(host);
    }
}

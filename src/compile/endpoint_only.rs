//! EndpointSlice changes that only move the ready addresses of backends that already serve:
//! the previous configuration with those backends' endpoint sets replaced, and nothing
//! compiled. The endpoints are chosen by `backend::endpoints`, exactly as a compile chooses
//! them (ready and not terminating, the slice port of the Service port's name, addresses that
//! can be dialled), and every other field of each backend (its id, protocol from
//! `backend-protocol`, policy, TLS) is kept, so the result serves what a full
//! compile of the same store serves.
//!
//! `None` (the caller then compiles the hosts, or everything) whenever more than the
//! endpoints could change: a change that is not only EndpointSlices, a slice moving to another
//! Service, Gateway API objects or TCP/UDP services in the store, the default backend's
//! Service, a Service some Ingress names in an annotation or used by an Ingress with a
//! `default-backend` (whose use depends on whether the rule's Service has endpoints) or by an
//! Ingress acting across hosts (canary, ...), a backend that had no endpoints or would have none (its 503 and
//! the diagnostic that says why come from a compile), and a backend whose one endpoint is the
//! Service's ClusterIP (`service-upstream`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use super::backend::{self, PortRef};
use super::few::Few;
use super::incremental::{Index, Previous, slice_service};
use super::{Compiled, Diagnostic, configmap, Settings};
use crate::config::{Backend, Config, VirtualHost, WeightedBackend};
use crate::store::{Key, ObjRef, Store};

/// The previous configuration with the endpoints `changed` (only EndpointSlices) move
/// replaced; `index` is brought up to date only when this returns `Some`.
pub fn patch(index: &mut Index, prev: Previous<'_>, store: &Store, changed: &[ObjRef], flags: &Settings) -> Option<Compiled> {
    let gateway_api = !(store.gateway_classes.is_empty() && store.gateways.is_empty() && store.http_routes.is_empty() && store.grpc_routes.is_empty() && store.tls_routes.is_empty());
    if gateway_api || changed.is_empty() || changed.iter().any(|r| r.kind != "EndpointSlice") {
        return None;
    }
    let (settings, _) = configmap::effective(store, flags);
    if settings.tcp_services.is_some() || settings.udp_services.is_some() {
        return None;
    }
    // The Services whose slices changed, and the slices each has now.
    let keys: Vec<Key> = changed.iter().map(|r| (r.namespace.clone(), r.name.clone())).collect();
    let mut services: HashMap<Key, Few<String>> = HashMap::new();
    for key in &keys {
        let before = index.slice_service.get(key).cloned();
        let now = store.endpoint_slices.get(key).and_then(|s| slice_service(s));
        let svc = match (&before, &now) {
            (Some(a), Some(b)) if a != b => return None,
            (a, b) => match a.as_ref().or(b.as_ref()) {
                Some(s) => (key.0.clone(), s.clone()),
                None => continue,
            },
        };
        let names = services.entry(svc.clone()).or_insert_with(|| index.slices.get(&svc).cloned().unwrap_or_default());
        // A slice that lost its Service label no longer belongs to it.
        if now.is_some() {
            names.insert(key.1.clone());
        } else {
            names.remove(&key.1);
        }
    }
    // The hosts of the Ingresses that use those Services, when only as backends.
    let mut hosts: BTreeSet<&str> = BTreeSet::new();
    for svc in services.keys() {
        if settings.default_backend_service.as_ref() == Some(svc) {
            return None;
        }
        for ing_key in index.named_by.get(svc).into_iter().flatten() {
            if index.global.contains(ing_key) {
                return None;
            }
            let ing = store.ingresses.get(ing_key)?;
            let qualified = format!("{}/{}", svc.0, svc.1);
            let annotations = ing.metadata.annotations.iter().flatten();
            // A rule whose Service has no endpoints goes to the `default-backend`: only a
            // compile moves it back.
            if annotations.into_iter().any(|(k, v)| v.trim() == svc.1 || v.trim() == qualified || k.rsplit('/').next() == Some("default-backend")) {
                return None;
            }
            hosts.extend(index.hosts_of.get(ing_key).into_iter().flatten().map(String::as_str));
        }
    }
    // The new endpoints of every backend of those Services on those hosts.
    let mut replaced: HashMap<*const Backend, Arc<Backend>> = HashMap::new();
    let mut touched_hosts: Vec<(&str, Arc<VirtualHost>)> = Vec::new();
    for host in hosts {
        let Some(vhost) = vhost_of(prev.config, host) else { continue };
        let mut uses = false;
        for b in backends_of(vhost) {
            if !services.contains_key(&(b.namespace.clone(), b.service.clone())) {
                continue;
            }
            uses = true;
            if replaced.contains_key(&Arc::as_ptr(b)) {
                continue;
            }
            let names = &services[&(b.namespace.clone(), b.service.clone())];
            let endpoints = new_endpoints(store, names, b)?;
            let new = if endpoints == b.endpoints { b.clone() } else { Arc::new(with_endpoints(b, endpoints)) };
            replaced.insert(Arc::as_ptr(b), new);
        }
        if uses {
            touched_hosts.push((host, vhost.clone()));
        }
    }

    let mut config = prev.config.clone();
    for (host, vhost) in touched_hosts {
        if let Some(v) = patched(&vhost, &replaced) {
            set_vhost(&mut config, host, Arc::new(v));
        }
    }
    let slice_set: HashSet<&Key> = keys.iter().collect();
    let mut diagnostics: Vec<Diagnostic> =
        prev.diagnostics.iter().filter(|d| !(d.object.kind == "EndpointSlice" && slice_set.contains(&(d.object.namespace.clone(), d.object.name.clone())))).cloned().collect();
    for key in &keys {
        index.remove_slice(key);
        if let Some(slice) = store.endpoint_slices.get(key) {
            index.add_slice(key, slice);
            diagnostics.extend(backend::diagnostics_of_slice(&key.0, &key.1, slice));
        }
    }
    diagnostics.sort();
    diagnostics.dedup();
    Some(Compiled { config, diagnostics, status: prev.status.clone() })
}

/// The endpoints `b` has with the slices named `names` of its Service in `store`; `None` when
/// a compile must decide (see the module's doc).
fn new_endpoints(store: &Store, names: &Few<String>, b: &Backend) -> Option<Vec<SocketAddr>> {
    if b.endpoints.is_empty() || b.unavailable.is_some() || b.unresolved {
        return None;
    }
    let svc = store.services.get(&(b.namespace.clone(), b.service.clone()))?;
    let port = match b.port.parse::<i32>() {
        Ok(n) => PortRef::Number(n),
        Err(_) => PortRef::Name(b.port.clone()),
    };
    let sp = backend::service_port(svc, &port)?;
    if let Some(cluster) = backend::cluster_endpoint(svc, sp) {
        if b.endpoints == [cluster] {
            return None;
        }
    }
    let slices: Vec<_> = names.iter().filter_map(|n| store.endpoint_slices.get(&(b.namespace.clone(), n.clone())).map(|s| &**s)).collect();
    let endpoints = backend::endpoints(&slices, sp);
    (!endpoints.is_empty()).then_some(endpoints)
}

fn with_endpoints(b: &Backend, endpoints: Vec<SocketAddr>) -> Backend {
    Backend {
        id: b.id,
        name: b.name.clone(),
        namespace: b.namespace.clone(),
        service: b.service.clone(),
        port: b.port.clone(),
        endpoints,
        unavailable: None,
        policy: b.policy.clone(),
        protocol: b.protocol,
        tls: b.tls.clone(),
        unresolved: false,
    }
}

/// Every backend a virtual host's routes and default use.
fn backends_of(v: &VirtualHost) -> impl Iterator<Item = &Arc<Backend>> {
    let routes = v.routes.iter().flat_map(|r| r.backends.iter().map(|w| &w.backend).chain(r.canary.iter().map(|c| &c.backend)));
    routes.chain(v.default.iter().flat_map(|d| std::iter::once(&d.backend).chain(d.canary.iter().map(|c| &c.backend))))
}

/// A copy of `v` using the `replaced` backends, when it uses any that changed.
fn patched(v: &VirtualHost, replaced: &HashMap<*const Backend, Arc<Backend>>) -> Option<VirtualHost> {
    let swap = |b: &Arc<Backend>| replaced.get(&Arc::as_ptr(b)).filter(|n| !Arc::ptr_eq(n, b)).cloned();
    if !backends_of(v).any(|b| swap(b).is_some()) {
        return None;
    }
    let mut out = v.clone();
    for r in &mut out.routes {
        if r.backends.iter().any(|w| swap(&w.backend).is_some()) {
            let list: Vec<WeightedBackend> = r.backends.iter().map(|w| WeightedBackend { backend: swap(&w.backend).unwrap_or_else(|| w.backend.clone()), ..w.clone() }).collect();
            r.backends = Arc::from(list);
        }
        if let Some(c) = &r.canary {
            if let Some(b) = swap(&c.backend) {
                r.canary = Some(Arc::new(crate::config::Canary { backend: b, ..(**c).clone() }));
            }
        }
    }
    if let Some(d) = &mut out.default {
        if let Some(b) = swap(&d.backend) {
            d.backend = b;
        }
        if let Some(c) = &d.canary {
            if let Some(b) = swap(&c.backend) {
                d.canary = Some(Arc::new(crate::config::Canary { backend: b, ..(**c).clone() }));
            }
        }
    }
    Some(out)
}

/// The virtual host of `host` as an Ingress writes it (`a.com`, `*.a.com`, `*`).
fn vhost_of<'c>(config: &'c Config, host: &str) -> Option<&'c Arc<VirtualHost>> {
    if host == "*" {
        config.hostless.as_ref()
    } else if let Some(parent) = host.strip_prefix("*.") {
        config.wildcard.get(parent)
    } else {
        config.exact.get(host)
    }
}

fn set_vhost(config: &mut Config, host: &str, v: Arc<VirtualHost>) {
    if host == "*" {
        config.hostless = Some(v);
    } else if let Some(parent) = host.strip_prefix("*.") {
        config.wildcard.insert(parent.to_string(), v);
    } else {
        config.exact.insert(host.to_string(), v);
    }
}

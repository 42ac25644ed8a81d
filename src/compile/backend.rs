//! Service backends: Ingress backend → Service port → EndpointSlice port → ready endpoints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::IngressServiceBackend;

use super::annotations::ProxySsl;
use super::diag::{Diagnostic, Reason, Severity};
use super::validate;
use crate::config::{Backend, BackendProtocol, Policy, UpstreamTls};
use crate::store::{Key, ObjRef, Slice, Store, Svc, SvcPort};

pub use crate::store::SERVICE_NAME_LABEL;

/// The names of the EndpointSlices of each Service (namespace, Service name), kept by a caller
/// that follows changes, so that a compile of a few hosts need not index every slice.
pub type SlicesByService = HashMap<Key, super::few::Few<String>>;

/// EndpointSlices by the namespace and name of the Service they belong to.
pub struct SliceIndex<'a> {
    by_service: HashMap<&'a str, HashMap<&'a str, Vec<&'a Slice>>>,
    kept: Option<(&'a Store, &'a SlicesByService)>,
}

impl<'a> SliceIndex<'a> {
    pub fn new(store: &'a Store) -> Self {
        let mut by_service: HashMap<&str, HashMap<&str, Vec<&Slice>>> = HashMap::new();
        for ((ns, _), slice) in &store.endpoint_slices {
            if let Some(svc) = &slice.service {
                by_service.entry(ns.as_str()).or_default().entry(svc.as_str()).or_default().push(slice);
            }
        }
        SliceIndex { by_service, kept: None }
    }

    /// Looks slices up through `kept` (which must match `store`) instead of indexing them all.
    pub fn kept(store: &'a Store, kept: &'a SlicesByService) -> Self {
        SliceIndex { by_service: HashMap::new(), kept: Some((store, kept)) }
    }

    /// The slices of `ns/svc`, in the order of their names.
    pub fn slices(&self, ns: &str, svc: &str) -> Vec<&'a Slice> {
        if let Some((store, kept)) = self.kept {
            let names = kept.get(&(ns.to_string(), svc.to_string())).into_iter().flatten();
            return names.filter_map(|n| store.endpoint_slices.get(&(ns.to_string(), n.clone())).map(|s| &**s)).collect();
        }
        self.by_service.get(ns).and_then(|m| m.get(svc)).cloned().unwrap_or_default()
    }
}

/// The Service port an Ingress backend names, by number or by name.
pub(super) fn service_port<'s>(svc: &'s Svc, port: &PortRef) -> Option<&'s SvcPort> {
    match port {
        PortRef::Number(n) => svc.port_numbered(*n),
        PortRef::Name(name) => svc.port_named(name),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortRef {
    Number(i32),
    Name(String),
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(s) => f.write_str(s),
        }
    }
}

impl PortRef {
    pub fn of(b: &IngressServiceBackend) -> Option<PortRef> {
        let p = b.port.as_ref()?;
        match (&p.name, p.number) {
            (_, Some(n)) => Some(PortRef::Number(n)),
            (Some(name), None) => Some(PortRef::Name(name.clone())),
            (None, None) => None,
        }
    }
}

/// The Service's ClusterIP and port (`service-upstream`), when it has a usable ClusterIP.
pub(super) fn cluster_endpoint(svc: &Svc, port: &SvcPort) -> Option<SocketAddr> {
    let ip = svc.cluster_ip.as_deref()?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let port = validate::endpoint_port(port.port).ok()?;
    (!ip.is_unspecified() && !ip.is_multicast()).then_some(SocketAddr::new(ip, port))
}

/// Ready, non-terminating endpoint addresses for one Service port. Ports and addresses that
/// cannot be dialled are left out (`slice_diagnostics` reports them).
pub fn endpoints(slices: &[&Slice], port: &SvcPort) -> Vec<SocketAddr> {
    let want = port.name.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for slice in slices {
        if slice.address_type == "FQDN" {
            continue;
        }
        let Some(slice_port) = slice
            .ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == want)
            .and_then(|p| validate::endpoint_port(p.port?).ok())
        else {
            continue;
        };
        for ep in slice.endpoints.iter() {
            let ready = ep.ready.unwrap_or(true);
            let terminating = ep.terminating.unwrap_or(false);
            if !ready || terminating {
                continue;
            }
            for addr in slice.addresses(ep) {
                if let Ok(ip) = validate::endpoint_ip(&slice.address_type, addr) {
                    out.push(SocketAddr::new(ip, slice_port));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out.shrink_to_fit();
    out
}

/// What is wrong with the EndpointSlices in `store` (files are checked as they are read; these
/// come from the API server): each port or address named is not used.
pub fn slice_diagnostics(store: &Store) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for ((ns, name), slice) in &store.endpoint_slices {
        out.extend(diagnostics_of_slice(ns, name, slice));
    }
    out
}

/// What `slice_diagnostics` reports about one slice.
pub fn diagnostics_of_slice(ns: &str, name: &str, slice: &Slice) -> Vec<Diagnostic> {
    let oref = ObjRef::new("EndpointSlice", ns, name);
    let mut out = Vec::new();
    for e in validate::endpoint_slice(slice) {
        let what = if e.field.starts_with("ports") { "this port" } else if e.field.starts_with("endpoints") { "this endpoint address" } else { "this slice" };
        out.push(Diagnostic::new(Severity::Error, &oref, e.field, Reason::InvalidEndpoint, format!("{}; {what} is not used", e.message)));
    }
    out
}

/// Resolves backends once per compile, so that every route to one Service port shares one
/// `Backend` (and one round-robin cursor).
/// How a backend is reached, beyond its Service port: from the Ingress's annotations.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    pub protocol: BackendProtocol,
    pub policy: Policy,
    pub tls: Option<UpstreamTls>,
    /// What distinguishes two `Reach`es for caching (the TLS settings they came from).
    pub tls_key: Option<ProxySsl>,
    /// `service-upstream`: the Service's ClusterIP and port as the one endpoint.
    pub service_upstream: bool,
}

type CacheKey = (String, String, PortRef, BackendProtocol, Policy, Option<ProxySsl>, bool);

pub struct Resolver<'a> {
    store: &'a Store,
    slices: SliceIndex<'a>,
    cache: HashMap<CacheKey, (Arc<Backend>, Option<(Reason, String)>)>,
    next_id: usize,
}

impl<'a> Resolver<'a> {
    pub fn new(store: &'a Store) -> Self {
        Resolver { store, slices: SliceIndex::new(store), cache: HashMap::new(), next_id: 0 }
    }

    /// A resolver whose slices come from `slices`, handing out backend ids from `first_id`.
    pub fn kept(store: &'a Store, slices: &'a SlicesByService, first_id: usize) -> Self {
        Resolver { store, slices: SliceIndex::kept(store, slices), cache: HashMap::new(), next_id: first_id }
    }

    /// How many backends were made: their ids are 0..this.
    pub fn backend_count(&self) -> usize {
        self.next_id
    }

    /// The backend for `ns/service:port`, and what is wrong with it if requests will get 503.
    pub fn resolve(&mut self, ns: &str, service: &str, port: &PortRef, reach: &Reach) -> (Arc<Backend>, Option<(Reason, String)>) {
        let key = (ns.to_string(), service.to_string(), port.clone(), reach.protocol, reach.policy.clone(), reach.tls_key.clone(), reach.service_upstream);
        if let Some(hit) = self.cache.get(&key) {
            return hit.clone();
        }
        let port_label = port.to_string();
        let (endpoints, problem) = match self.store.services.get(&(ns.to_string(), service.to_string())) {
            None => (Vec::new(), Some((Reason::ServiceNotFound, format!("Service {ns}/{service} not found; requests answer 503")))),
            Some(svc) => {
                if svc.external_name {
                    (Vec::new(), Some((Reason::Unsupported, format!("Service {ns}/{service} is of type ExternalName, not supported yet; requests answer 503"))))
                } else {
                    match service_port(svc, port) {
                        None => (
                            Vec::new(),
                            Some((Reason::ServicePortNotFound, format!("Service {ns}/{service} has no port {port_label}; requests answer 503"))),
                        ),
                        Some(sp) => {
                            let eps = match cluster_endpoint(svc, sp).filter(|_| reach.service_upstream) {
                                Some(ep) => vec![ep],
                                // Headless or without ClusterIP: the endpoints, as ingress-nginx.
                                None => endpoints(&self.slices.slices(ns, service), sp),
                            };
                            if eps.is_empty() {
                                (Vec::new(), Some((Reason::NoReadyEndpoints, format!("Service {ns}/{service} port {port_label} has no ready endpoints; requests answer 503"))))
                            } else {
                                (eps, None)
                            }
                        }
                    }
                }
            }
        };
        self.next_id += 1;
        let mut backend = Backend::new(self.next_id - 1, ns, service, &port_label, endpoints, problem.as_ref().map(|p| p.1.clone()));
        backend.protocol = reach.protocol;
        backend.policy = reach.policy.clone();
        backend.tls = reach.tls.clone();
        let backend = Arc::new(backend);
        let out = (backend, problem);
        self.cache.insert(key, out.clone());
        out
    }

    /// A backend that stands for a reference that could not be resolved (a Gateway API
    /// backendRef to no Service, another kind, or another namespace without a grant): it has
    /// no endpoints, and `why` says why.
    pub fn unresolved(&mut self, ns: &str, service: &str, port: &str, why: String) -> Arc<Backend> {
        self.next_id += 1;
        Arc::new(Backend::unresolved(self.next_id - 1, ns, service, port, why))
    }

    /// The backend for `--default-backend-service`: the Service's first port.
    pub fn resolve_first_port(&mut self, ns: &str, service: &str) -> (Arc<Backend>, Option<(Reason, String)>) {
        let port = self
            .store
            .services
            .get(&(ns.to_string(), service.to_string()))
            .and_then(|s| s.ports.first().map(|p| p.port))
            .unwrap_or(80);
        self.resolve(ns, service, &PortRef::Number(port), &Reach::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Object;
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    /// Slices from the API server are not checked as they arrive: what cannot be dialled is left
    /// out of the endpoints and reported on the slice, naming the field.
    #[test]
    fn undialable_ports_and_addresses_are_reported_and_not_used() {
        let slice = |name: &str, port: i32, addrs: &[&str]| -> EndpointSlice {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": port}],
                "endpoints": [{"addresses": addrs}],
            }))
            .unwrap()
        };
        let mut store = Store::default();
        store.insert(Object::EndpointSlice(slice("web-zero", 0, &["10.0.0.1"])));
        store.insert(Object::EndpointSlice(slice("web-bad", 8080, &["0.0.0.0", "::1", "224.0.0.1", "not-an-ip", "10.0.0.2"])));
        let port = SvcPort { name: Some("http".into()), port: 80, app_protocol: None };
        let index = SliceIndex::new(&store);
        assert_eq!(endpoints(&index.slices("default", "web"), &port), vec!["10.0.0.2:8080".parse().unwrap()]);

        let shown: Vec<String> = slice_diagnostics(&store).iter().map(|d| d.to_string()).collect();
        assert_eq!(shown.len(), 5, "{shown:#?}");
        assert!(shown.contains(&"EndpointSlice default/web-zero: ports[0].port: 0: must be 1-65535; this port is not used (InvalidEndpoint)".to_string()), "{shown:#?}");
        for (i, addr) in ["0.0.0.0", "::1", "224.0.0.1", "not-an-ip"].iter().enumerate() {
            let prefix = format!("EndpointSlice default/web-bad: endpoints[0].addresses[{i}]: \"{addr}\": ");
            assert!(shown.iter().any(|s| s.starts_with(&prefix) && s.ends_with("this endpoint address is not used (InvalidEndpoint)")), "{prefix} in {shown:#?}");
        }
    }
}

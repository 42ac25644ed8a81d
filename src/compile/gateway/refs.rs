//! References across objects: ReferenceGrants, and route backendRefs → backends.

use std::sync::Arc;

use crate::compile::backend::{PortRef, Reach};
use crate::compile::builder::Builder;
use crate::config::{Backend, BackendProtocol, WeightedBackend};
use crate::gateway_api as gw;
use crate::store::Store;

/// Whether a ReferenceGrant in `to_ns` lets objects of `from_kind` (of the Gateway API group)
/// in `from_ns` refer to the object `to_group`/`to_kind` `to_name` there.
pub fn granted(store: &Store, from_kind: &str, from_ns: &str, to_group: &str, to_kind: &str, to_ns: &str, to_name: &str) -> bool {
    store.reference_grants.iter().filter(|((ns, _), _)| ns == to_ns).any(|(_, g)| {
        g.spec.from.iter().any(|f| f.group == gw::GROUP && f.kind == from_kind && f.namespace == from_ns)
            && g.spec.to.iter().any(|t| t.group == to_group && t.kind == to_kind && t.name.as_deref().is_none_or(|n| n.is_empty() || n == to_name))
    })
}

/// Why a backendRef cannot be used: the route's `ResolvedRefs` reason and a message.
#[derive(Debug, Clone)]
pub struct RefProblem {
    pub reason: &'static str,
    pub message: String,
}

/// The backend a route's backendRef names. `kind` is the route's kind (for grants);
/// `protocol` how its backends are spoken to (gRPC for GRPCRoute, unless the Service port's
/// `appProtocol` says otherwise).
pub fn backend(b: &mut Builder, kind: &str, route_ns: &str, r: &gw::BackendRef, protocol: BackendProtocol) -> Result<Arc<Backend>, RefProblem> {
    let ns = r.namespace.clone().unwrap_or_else(|| route_ns.to_string());
    let fail = |reason, message: String| Err(RefProblem { reason, message });
    if r.group_or_default() != "" || r.kind_or_default() != "Service" {
        return fail("InvalidKind", format!("{}/{} is not a kind of backend Vestibule serves (core Service)", r.group_or_default(), r.kind_or_default()));
    }
    if ns != route_ns && !granted(b.store, kind, route_ns, "", "Service", &ns, &r.name) {
        return fail("RefNotPermitted", format!("Service {ns}/{} is in another namespace and no ReferenceGrant there allows it", r.name));
    }
    let Some(port) = r.port else {
        return fail("BackendNotFound", format!("backendRef to Service {ns}/{} has no port", r.name));
    };
    let Some(svc) = b.store.services.get(&(ns.clone(), r.name.clone())) else {
        return fail("BackendNotFound", format!("Service {ns}/{} not found", r.name));
    };
    let Some(sp) = svc.port_numbered(port) else {
        return fail("BackendNotFound", format!("Service {ns}/{} has no port {port}", r.name));
    };
    let protocol = match sp.app_protocol.as_deref() {
        Some("kubernetes.io/h2c") if !protocol.grpc() => BackendProtocol::H2c,
        Some("https") | Some("kubernetes.io/https") => {
            if protocol.grpc() {
                BackendProtocol::Grpcs
            } else {
                BackendProtocol::Https
            }
        }
        _ => protocol,
    };
    let reach = Reach { protocol, ..Reach::default() };
    let (backend, _problem) = b.resolver.resolve(&ns, &r.name, &PortRef::Number(port), &reach);
    Ok(backend)
}

/// The backends of a rule, weighted; each reference that cannot be used stays as a share that
/// answers 500, and the first problem is returned for the route's `ResolvedRefs`. A rule with
/// no backendRefs gets one such share of weight 0 (every request answers 500).
pub fn backends(b: &mut Builder, kind: &str, route_ns: &str, refs: &[&gw::BackendRef], protocol: BackendProtocol) -> (Vec<WeightedBackend>, Option<RefProblem>) {
    let mut out = Vec::new();
    let mut first = None;
    for r in refs {
        let weight = u32::try_from(r.weight_or_default()).unwrap_or(0);
        let backend = match backend(b, kind, route_ns, r, protocol) {
            Ok(backend) => backend,
            Err(p) => {
                let ns = r.namespace.as_deref().unwrap_or(route_ns);
                let port = r.port.map(|p| p.to_string()).unwrap_or_default();
                let backend = b.resolver.unresolved(ns, &r.name, &port, format!("{}; requests answer 500", p.message));
                first.get_or_insert(p);
                backend
            }
        };
        out.push(weighted(backend, weight));
    }
    if out.is_empty() {
        let backend = b.resolver.unresolved(route_ns, "", "", "the rule has no backendRefs; requests answer 500".into());
        out.push(weighted(backend, 0));
    }
    (out, first)
}

fn weighted(backend: Arc<Backend>, weight: u32) -> WeightedBackend {
    WeightedBackend::new(backend, weight)
}

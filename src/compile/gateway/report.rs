//! The Gateway API status compile decided, as lines for people: `check` prints every object's
//! conditions, `explain` those of the route a URL reaches.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::compile::status::GatewayApiStatus;
use crate::gateway_api as gw;
use crate::store::Key;

fn conds(list: &[Condition]) -> String {
    list.iter()
        .map(|c| {
            let msg = if c.message.is_empty() || c.status == "True" && c.type_ != "Conflicted" { String::new() } else { format!(": {}", c.message) };
            format!("{}={} ({}){msg}", c.type_, c.status, c.reason)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn parent(p: &gw::ParentReference, route_ns: &str) -> String {
    let mut s = format!("{} {}/{}", p.kind_or_default(), p.namespace.as_deref().unwrap_or(route_ns), p.name);
    if let Some(section) = &p.section_name {
        s.push_str(&format!(" listener {section}"));
    }
    if let Some(port) = p.port {
        s.push_str(&format!(" port {port}"));
    }
    s
}

/// The parent entries of one route: `KIND ns/name -> Gateway ns/gw: Accepted=True (...), ...`.
pub fn route_lines(kind: &str, key: &Key, parents: &[gw::RouteParentStatus]) -> Vec<String> {
    parents.iter().map(|p| format!("{kind} {}/{} -> {}: {}", key.0, key.1, parent(&p.parent_ref, &key.0), conds(&p.conditions))).collect()
}

/// Every GatewayClass, Gateway (with its listeners) and route of ours, with its conditions.
pub fn lines(s: &GatewayApiStatus) -> Vec<String> {
    let mut out = Vec::new();
    for (name, c) in &s.gateway_classes {
        out.push(format!("GatewayClass {name}: {}", conds(&c.conditions)));
    }
    for ((ns, name), g) in &s.gateways {
        out.push(format!("Gateway {ns}/{name}: {}", conds(&g.conditions)));
        for l in &g.listeners {
            let kinds: Vec<&str> = l.supported_kinds.iter().map(|k| k.kind.as_str()).collect();
            out.push(format!("  listener {}: {} route(s) attached, kinds [{}]; {}", l.name, l.attached_routes, kinds.join(", "), conds(&l.conditions)));
        }
    }
    for (kind, routes) in [("HTTPRoute", &s.http_routes), ("GRPCRoute", &s.grpc_routes), ("TLSRoute", &s.tls_routes)] {
        for (key, parents) in routes {
            out.extend(route_lines(kind, key, parents));
        }
    }
    out
}

//! Attachment: which listeners a route's `parentRefs` reach (`sectionName`, `port`), whether
//! the listeners allow it (`allowedRoutes` namespaces and kinds), and under which hostnames,
//! with the route's `Accepted` condition for each parent that is ours.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta};

use super::conditions::cond;
use super::hostnames;
use super::listeners::GwListener;
use crate::compile::builder::Builder;
use crate::gateway_api as gw;
use crate::store::Store;

/// The parts of a route that attachment reads.
pub struct RouteInfo<'a> {
    pub kind: &'static str,
    pub meta: &'a ObjectMeta,
    pub parent_refs: &'a [gw::ParentReference],
    pub hostnames: &'a [String],
}

/// What one parentRef that names a Gateway of ours came to.
#[derive(Debug)]
pub struct Parent {
    pub parent_ref: gw::ParentReference,
    /// The listeners (indexes into the listener list) it attached to, with the hostnames the
    /// route is served under on each.
    pub attached: Vec<(usize, Vec<String>)>,
    pub accepted: Condition,
}

/// Attaches `route` to the listeners of `all` its parentRefs name, counting it in their
/// `attachedRoutes`. Parents that are not Gateways of ours are left out.
pub fn attach(b: &Builder, all: &mut [GwListener], route: &RouteInfo) -> Vec<Parent> {
    let route_ns = route.meta.namespace.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for p in route.parent_refs {
        if p.group_or_default() != gw::GROUP || p.kind_or_default() != "Gateway" {
            continue;
        }
        let gw_ns = p.namespace.as_deref().unwrap_or(route_ns);
        let key = (gw_ns.to_string(), p.name.clone());
        if !b.status.gateway.gateways.contains_key(&key) {
            continue;
        }
        let named: Vec<usize> = (0..all.len())
            .filter(|&i| {
                let l = &all[i];
                l.key() == key && p.section_name.as_ref().is_none_or(|s| *s == l.name) && p.port.is_none_or(|port| port == i32::from(l.port))
            })
            .collect();
        let refuse = |reason: &str, msg: String| cond("Accepted", false, reason, msg, route.meta);
        let accepted = if named.is_empty() {
            refuse("NoMatchingParent", format!("Gateway {gw_ns}/{} has no listener matching the sectionName and port", p.name))
        } else {
            let allowed: Vec<usize> = named.iter().copied().filter(|&i| allows(b.store, &all[i], route.kind, route_ns)).collect();
            let with_hosts: Vec<(usize, Vec<String>)> = allowed.iter().filter_map(|&i| hostnames::intersect(all[i].hostname.as_deref(), route.hostnames).map(|h| (i, h))).collect();
            let ready: Vec<(usize, Vec<String>)> = with_hosts.iter().filter(|(i, _)| all[*i].ready).cloned().collect();
            if allowed.is_empty() {
                refuse("NotAllowedByListeners", format!("no listener of Gateway {gw_ns}/{} allows {} from namespace {route_ns}", p.name, route.kind))
            } else if with_hosts.is_empty() {
                refuse("NoMatchingListenerHostname", format!("no listener of Gateway {gw_ns}/{} has a hostname in common with the route", p.name))
            } else if ready.is_empty() {
                refuse("NotAllowedByListeners", format!("the listeners of Gateway {gw_ns}/{} this route matches are not served (see the Gateway's status)", p.name))
            } else {
                for (i, _) in &ready {
                    all[*i].attached += 1;
                }
                out.push(Parent { parent_ref: p.clone(), attached: ready, accepted: cond("Accepted", true, "Accepted", "", route.meta) });
                continue;
            }
        };
        out.push(Parent { parent_ref: p.clone(), attached: Vec::new(), accepted });
    }
    out
}

/// Whether the listener takes routes of `kind` from `ns` (`allowedRoutes`).
fn allows(store: &Store, l: &GwListener, kind: &str, ns: &str) -> bool {
    if !l.kinds.iter().any(|k| k.kind == kind) {
        return false;
    }
    let from = l.allowed.namespaces.as_ref();
    match from.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Selector" => {
            let Some(sel) = from.and_then(|n| n.selector.as_ref()) else { return false };
            let labels = store.namespaces.get(ns).and_then(|n| n.metadata.labels.clone()).unwrap_or_default();
            selects(sel, &labels)
        }
        _ => l.gw_ref.namespace == ns,
    }
}

/// Whether a label selector selects `labels` (`matchLabels` and `matchExpressions`, all of
/// them; an operator it does not know selects nothing).
pub fn selects(sel: &LabelSelector, labels: &std::collections::BTreeMap<String, String>) -> bool {
    let by_labels = sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let by_exprs = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or(&[]);
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    by_labels && by_exprs
}

//! What HTTPRoutes and GRPCRoutes share once their rules are compiled: placing the routes on
//! the hosts of each listener port they attached to, and their parents' status.

use std::collections::HashSet;
use std::sync::Arc;

use super::GwTables;
use super::attach::{Parent, RouteInfo};
use super::conditions::{cond, set};
use super::listeners::GwListener;
use super::refs::RefProblem;
use crate::compile::builder::Builder;
use crate::compile::{Reason, Severity};
use crate::config::{Route, RouteLabels};
use crate::gateway_api as gw;
use crate::store::ObjRef;

/// Every route of one kind, oldest first: attached to the listeners its parentRefs name, its
/// rules compiled by `rules`, placed on the tables, and its parents' status returned by key
/// (routes attached to nothing of ours are left out).
pub fn process_kind<R>(
    b: &mut Builder,
    all: &mut [GwListener],
    t: &mut GwTables,
    list: impl Iterator<Item = Arc<R>>,
    info: fn(&R) -> RouteInfo<'_>,
    rules: fn(&mut Builder, &R, &Arc<ObjRef>, &mut Problems) -> Vec<Route>,
) -> Vec<(crate::store::Key, Vec<gw::RouteParentStatus>)> {
    let mut list: Vec<Arc<R>> = list.collect();
    list.sort_by_key(|r| super::listeners::age_key(info(r).meta));
    let mut out = Vec::new();
    for r in list {
        let route = info(&r);
        let parents = super::attach::attach(b, all, &route);
        if parents.is_empty() {
            continue;
        }
        let ns = route.meta.namespace.clone().unwrap_or_default();
        let oref = Arc::new(ObjRef::new(route.kind, &ns, route.meta.name.as_deref().unwrap_or("")));
        let mut problems = Problems::default();
        let compiled = rules(b, &r, &oref, &mut problems);
        let status = serve(b, t, all, &route, &oref, parents, &compiled, &problems);
        out.push(((oref.namespace.clone(), oref.name.clone()), status));
    }
    out
}

/// A rule's filters and backend shares as compiled, or, when a filter cannot be applied, the
/// filter that answers 500 with the shares unchanged, and the problem recorded on the route.
pub fn filters_or_unusable(
    b: &mut Builder,
    oref: &ObjRef,
    problems: &mut Problems,
    compiled: Result<(Vec<crate::config::Filter>, Vec<crate::config::WeightedBackend>), super::filters::FilterProblem>,
    backends: &Arc<[crate::config::WeightedBackend]>,
) -> (Arc<[crate::config::Filter]>, Arc<[crate::config::WeightedBackend]>) {
    match compiled {
        Ok((f, shares)) => (Arc::from(f), Arc::from(shares)),
        Err(p) => {
            problems.filter(b, oref, p);
            (Arc::from(super::filters::unusable()), backends.clone())
        }
    }
}

/// What is wrong with a route as a whole: `accepted` (UnsupportedValue: the route is not
/// served) and `refs` (its `ResolvedRefs` reason: the shares concerned answer 500).
#[derive(Debug, Default)]
pub struct Problems {
    pub accepted: Option<(String, String)>,
    /// A filter (or timeout) Vestibule cannot apply: `Accepted: False` (UnsupportedValue), and
    /// the rule answers 500 (never served as though the filter were absent).
    pub filter: Option<(String, String)>,
    pub refs: Option<RefProblem>,
}

impl Problems {
    /// Records a reference problem (the first one is the one the status shows) and says so.
    pub fn refs(&mut self, b: &mut Builder, oref: &ObjRef, field: String, p: RefProblem) {
        let why = match p.reason {
            "BackendNotFound" => Reason::ServiceNotFound,
            "InvalidKind" => Reason::Unsupported,
            _ => Reason::InvalidField,
        };
        b.diag(Severity::Warning, oref, field, why, format!("{}; requests for it answer 500", p.message));
        self.refs.get_or_insert(p);
    }

    /// Records a filter problem: an unsupported value, or a reference (a mirror's) that cannot
    /// be used; the rule concerned answers 500.
    pub fn filter(&mut self, b: &mut Builder, oref: &ObjRef, p: super::filters::FilterProblem) {
        if p.reason == super::filters::UNSUPPORTED {
            b.diag(Severity::Error, oref, p.field.clone(), Reason::InvalidField, format!("{}; requests for this rule answer 500", p.message));
            self.filter.get_or_insert((p.field, p.message));
        } else {
            self.refs(b, oref, p.field, RefProblem { reason: p.reason, message: p.message });
        }
    }

    /// Records a value Vestibule does not support; the route is not served.
    pub fn unsupported(&mut self, b: &mut Builder, oref: &ObjRef, field: String, msg: String) {
        b.diag(Severity::Error, oref, field.clone(), Reason::InvalidField, format!("{msg}; the route is not served"));
        self.accepted.get_or_insert((field, msg));
    }
}

/// Adds `rules` (routes without id or labels yet) to the hosts of every listener the route
/// attached to, once per port and host, and returns the parents' status entries.
pub fn serve(b: &mut Builder, t: &mut GwTables, all: &mut [GwListener], route: &RouteInfo, oref: &Arc<ObjRef>, parents: Vec<Parent>, rules: &[Route], problems: &Problems) -> Vec<gw::RouteParentStatus> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for mut parent in parents {
        let index = route.parent_refs.iter().position(|p| *p == parent.parent_ref).unwrap_or(0);
        if let Some((field, msg)) = &problems.accepted
            && parent.accepted.status == "True"
        {
            for (i, _) in &parent.attached {
                all[*i].attached -= 1;
            }
            parent.attached.clear();
            parent.accepted = cond("Accepted", false, "UnsupportedValue", format!("{field}: {msg}"), route.meta);
        }
        if let Some((field, msg)) = &problems.filter
            && parent.accepted.status == "True"
        {
            parent.accepted = cond("Accepted", false, "UnsupportedValue", format!("{field}: {msg}; requests for the rule answer 500"), route.meta);
        }
        if parent.accepted.status != "True" && parent.attached.is_empty() {
            let msg = format!("not attached to Gateway {}: {} ({})", parent_name(&parent.parent_ref, oref), parent.accepted.message, parent.accepted.reason);
            b.diag(Severity::Warning, oref, format!("spec.parentRefs[{index}]"), Reason::InvalidField, msg);
        }
        for (li, hosts) in &parent.attached {
            let port = all[*li].port;
            for host in hosts {
                if !seen.insert((port, host.clone())) {
                    continue;
                }
                for r in rules {
                    let mut r = r.clone();
                    r.id = b.next_id();
                    r.labels = RouteLabels::new(host, &r.rule_path, oref, &r.backend().service);
                    t.vhost(port, host).routes.push(r);
                }
            }
        }
        let mut conditions = vec![parent.accepted];
        let resolved = match &problems.refs {
            None => cond("ResolvedRefs", true, "ResolvedRefs", "", route.meta),
            Some(p) => cond("ResolvedRefs", false, p.reason, p.message.clone(), route.meta),
        };
        set(&mut conditions, resolved);
        out.push(gw::RouteParentStatus { parent_ref: parent.parent_ref, controller_name: b.settings.gateway_controller_name.clone(), conditions });
    }
    out
}

fn parent_name(p: &gw::ParentReference, route: &ObjRef) -> String {
    let ns = p.namespace.as_deref().unwrap_or(&route.namespace);
    let mut s = format!("{ns}/{}", p.name);
    if let Some(section) = &p.section_name {
        s.push_str(&format!(" listener {section}"));
    }
    if let Some(port) = p.port {
        s.push_str(&format!(" port {port}"));
    }
    s
}

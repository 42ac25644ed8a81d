//! TLSRoute: SNI hostnames on TLS Passthrough listeners, spliced to the route's backend
//! without terminating TLS (the SSL passthrough of the data plane, per port).

use std::sync::Arc;

use super::GwTables;
use super::attach::{self, RouteInfo};
use super::conditions::{cond, set};
use super::listeners::{GwListener, age_key};
use super::refs;
use crate::compile::builder::Builder;
use crate::compile::{Reason, Severity};
use crate::config::BackendProtocol;
use crate::gateway_api as gw;
use crate::store::ObjRef;

pub fn process(b: &mut Builder, all: &mut [GwListener], t: &mut GwTables) {
    let mut list: Vec<Arc<gw::TLSRoute>> = b.store.tls_routes.values().cloned().collect();
    list.sort_by_key(|r| age_key(&r.metadata));
    for r in list {
        let info = RouteInfo { kind: "TLSRoute", meta: &r.metadata, parent_refs: &r.spec.parent_refs, hostnames: &r.spec.hostnames };
        let parents = attach::attach(b, all, &info);
        if parents.is_empty() {
            continue;
        }
        let ns = r.metadata.namespace.clone().unwrap_or_default();
        let oref = ObjRef::new("TLSRoute", &ns, r.metadata.name.as_deref().unwrap_or(""));
        // Spliced connections go to one backend: the first backendRef with weight.
        let first = r.spec.rules.iter().flat_map(|rule| rule.backend_refs.iter()).find(|br| br.weight_or_default() > 0);
        let resolved = match first {
            None => Err(refs::RefProblem { reason: "BackendNotFound", message: "the route has no backendRef with weight".into() }),
            Some(br) => refs::backend(b, "TLSRoute", &ns, br, BackendProtocol::Http),
        };
        if let Err(p) = &resolved {
            b.diag(Severity::Warning, &oref, "spec.rules[0].backendRefs", Reason::ServiceNotFound, format!("{}; connections for its hostnames are closed", p.message));
        }
        let mut out = Vec::new();
        for parent in parents {
            if let Ok(backend) = &resolved {
                for (li, hosts) in &parent.attached {
                    let p = t.passthrough.entry(all[*li].port).or_default();
                    p.connect_timeout = b.settings.proxy.connect_timeout;
                    p.idle_timeout = b.settings.stream_timeout;
                    for host in hosts {
                        match host.strip_prefix('*') {
                            Some(suffix) => {
                                if !p.suffixes.iter().any(|(s, _)| s == suffix) {
                                    p.suffixes.push((suffix.to_string(), backend.clone()));
                                }
                            }
                            None => {
                                p.hosts.entry(host.clone()).or_insert_with(|| backend.clone());
                            }
                        }
                    }
                }
            }
            let mut conditions = vec![parent.accepted];
            let c = match &resolved {
                Ok(_) => cond("ResolvedRefs", true, "ResolvedRefs", "", &r.metadata),
                Err(p) => cond("ResolvedRefs", false, p.reason, p.message.clone(), &r.metadata),
            };
            set(&mut conditions, c);
            out.push(gw::RouteParentStatus { parent_ref: parent.parent_ref, controller_name: b.settings.gateway_controller_name.clone(), conditions });
        }
        b.status.gateway.tls_routes.insert((oref.namespace.clone(), oref.name.clone()), out);
    }
}

//! GRPCRoute: rules and their matches (service and method, headers) → routes on the path
//! `/service/method`, to backends spoken to over HTTP/2 (h2c, or TLS when the Service port's
//! `appProtocol` says so).

use std::sync::Arc;

use super::attach::RouteInfo;
use super::filters::{self, FilterProblem};
use super::listeners::GwListener;
use super::refs;
use super::routes::{self, Problems};
use super::GwTables;
use crate::compile::builder::Builder;
use crate::config::route::full_match;
use crate::config::{BackendProtocol, PathKind, PathMatch, Route, RouteLabels, RouteMatch, RouteOrder, WeightedBackend};
use crate::gateway_api as gw;
use crate::store::ObjRef;

pub fn process(b: &mut Builder, all: &mut [GwListener], t: &mut GwTables) {
    let routes = b.store.grpc_routes.values().cloned().collect::<Vec<_>>();
    for (key, status) in routes::process_kind(b, all, t, routes.into_iter(), info, rules) {
        b.status.gateway.grpc_routes.insert(key, status);
    }
}

fn info(r: &gw::GRPCRoute) -> RouteInfo<'_> {
    RouteInfo { kind: "GRPCRoute", meta: &r.metadata, parent_refs: &r.spec.parent_refs, hostnames: &r.spec.hostnames }
}

fn rules(b: &mut Builder, r: &gw::GRPCRoute, oref: &Arc<ObjRef>, problems: &mut Problems) -> Vec<Route> {
    let ns = oref.namespace.clone();
    let mut out = Vec::new();
    for (i, rule) in r.spec.rules.iter().enumerate() {
        let refs_list: Vec<&gw::BackendRef> = rule.backend_refs.iter().map(|r| &r.backend).collect();
        let (backends, problem) = refs::backends(b, "GRPCRoute", &ns, &refs_list, BackendProtocol::Grpc);
        if let Some(p) = problem {
            problems.refs(b, oref, format!("spec.rules[{i}].backendRefs"), p);
        }
        let backends: Arc<[WeightedBackend]> = Arc::from(backends);
        let matches = if rule.matches.is_empty() { vec![gw::GRPCRouteMatch::default()] } else { rule.matches.clone() };
        for (j, m) in matches.iter().enumerate() {
            let field = format!("spec.rules[{i}].matches[{j}]");
            let matches = match route_match(m, &field) {
                Ok(m) => m,
                Err((f, msg)) => {
                    problems.unsupported(b, oref, f, msg);
                    continue;
                }
            };
            let mut resolve = |br: &gw::BackendRef, f: &str| -> Result<Arc<crate::config::Backend>, FilterProblem> {
                refs::backend(b, "GRPCRoute", &ns, br, BackendProtocol::Grpc).map_err(|p| FilterProblem { field: f.to_string(), message: p.message, reason: p.reason })
            };
            let compiled = (|| {
                let route_filters = filters::grpc_filters(&rule.filters, &format!("spec.rules[{i}].filters"), &mut resolve)?;
                let mut shares: Vec<WeightedBackend> = backends.to_vec();
                for (k, br) in rule.backend_refs.iter().enumerate() {
                    if !br.filters.is_empty() && k < shares.len() {
                        shares[k].filters = Arc::from(filters::grpc_filters(&br.filters, &format!("spec.rules[{i}].backendRefs[{k}].filters"), &mut resolve)?);
                    }
                }
                Ok::<_, FilterProblem>((route_filters, shares))
            })();
            let (filters, backends) = routes::filters_or_unusable(b, oref, problems, compiled, &backends);
            let rule_path = matches.path.path.clone();
            let path_type = match matches.path.kind {
                PathKind::Exact => "Exact",
                PathKind::Prefix => "PathPrefix",
                PathKind::Regex => "RegularExpression",
            };
            out.push(Route {
                id: 0,
                matches,
                filters,
                backends,
                proxy: b.proxy.clone(),
                rule_path: if rule_path.is_empty() { "/".into() } else { rule_path },
                path_type,
                ingress: oref.clone(),
                labels: RouteLabels::none(),
                canary: None,
                affinity: None,
                order: RouteOrder::of(&r.metadata, (i, j)),
            });
        }
    }
    out
}

/// A GRPCRoute match as conditions on the request path `/service/method` and headers.
pub fn route_match(m: &gw::GRPCRouteMatch, field: &str) -> Result<RouteMatch, (String, String)> {
    let path = match &m.method {
        None => PathMatch { path: String::new(), kind: PathKind::Prefix, regex: None },
        Some(mm) => method_path(mm, &format!("{field}.method"))?,
    };
    // Header matches as an HTTPRoute has them.
    let http = gw::HTTPRouteMatch { path: None, headers: m.headers.clone(), query_params: Vec::new(), method: None };
    let mut rm = super::http::route_match(&http, field)?;
    rm.path = path;
    Ok(rm)
}

fn method_path(m: &gw::GRPCMethodMatch, field: &str) -> Result<PathMatch, (String, String)> {
    let (service, method) = (m.service.as_deref().filter(|s| !s.is_empty()), m.method.as_deref().filter(|s| !s.is_empty()));
    let regex = |source: String| full_match(&source).map_err(|e| (field.to_string(), format!("{source:?}: {e}")));
    match m.type_.as_deref().unwrap_or("Exact") {
        "Exact" => {
            let bad = |s: &str| s.contains('/');
            if service.is_some_and(bad) || method.is_some_and(bad) {
                return Err((field.to_string(), "service and method must not contain /".into()));
            }
            Ok(match (service, method) {
                (Some(s), Some(me)) => PathMatch { path: format!("/{s}/{me}"), kind: PathKind::Exact, regex: None },
                (Some(s), None) => PathMatch { path: format!("/{s}"), kind: PathKind::Prefix, regex: None },
                (None, Some(me)) => {
                    let source = format!("/[^/]+/{}", regex_escape(me));
                    PathMatch { regex: Some(regex(source.clone())?), path: source, kind: PathKind::Regex }
                }
                (None, None) => PathMatch { path: String::new(), kind: PathKind::Prefix, regex: None },
            })
        }
        "RegularExpression" => {
            let source = format!("/(?:{})/(?:{})", service.unwrap_or("[^/]+"), method.unwrap_or("[^/]+"));
            Ok(PathMatch { regex: Some(regex(source.clone())?), path: source, kind: PathKind::Regex })
        }
        other => Err((format!("{field}.type"), format!("method match type {other:?} is not supported"))),
    }
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == '_' { vec![c] } else { vec!['\\', c] }).collect()
}

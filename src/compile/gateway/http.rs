//! HTTPRoute: rules and their matches (path, headers, query parameters, method) → routes,
//! with their filters and weighted backends.

use std::sync::Arc;

use super::attach::RouteInfo;
use super::filters::{self, FilterProblem};
use super::listeners::GwListener;
use super::refs;
use super::routes::{self, Problems};
use super::GwTables;
use crate::compile::builder::Builder;
use crate::config::route::{Pattern, full_match};
use crate::config::{BackendProtocol, HeaderMatch, PathKind, PathMatch, QueryMatch, Route, RouteLabels, RouteMatch, RouteOrder, WeightedBackend};
use crate::gateway_api as gw;
use crate::store::ObjRef;

pub fn process(b: &mut Builder, all: &mut [GwListener], t: &mut GwTables) {
    let routes = b.store.http_routes.values().cloned().collect::<Vec<_>>();
    for (key, status) in routes::process_kind(b, all, t, routes.into_iter(), info, rules) {
        b.status.gateway.http_routes.insert(key, status);
    }
}

fn info(r: &gw::HTTPRoute) -> RouteInfo<'_> {
    RouteInfo { kind: "HTTPRoute", meta: &r.metadata, parent_refs: &r.spec.parent_refs, hostnames: &r.spec.hostnames }
}

/// The routes of every rule and match, without ids or labels (`routes::serve` gives them).
fn rules(b: &mut Builder, r: &gw::HTTPRoute, oref: &Arc<ObjRef>, problems: &mut Problems) -> Vec<Route> {
    let ns = oref.namespace.clone();
    let mut out = Vec::new();
    for (i, rule) in r.spec.rules_or_default().iter().enumerate() {
        let refs_list: Vec<&gw::BackendRef> = rule.backend_refs.iter().map(|r| &r.backend).collect();
        let (backends, problem) = refs::backends(b, "HTTPRoute", &ns, &refs_list, BackendProtocol::Http);
        if let Some(p) = problem {
            problems.refs(b, oref, format!("spec.rules[{i}].backendRefs"), p);
        }
        let backends: Arc<[WeightedBackend]> = Arc::from(backends);
        for (j, m) in rule.matches_or_default().iter().enumerate() {
            let field = format!("spec.rules[{i}].matches[{j}]");
            let matches = match route_match(m, &field) {
                Ok(matches) => matches,
                Err((f, msg)) => {
                    problems.unsupported(b, oref, f, msg);
                    continue;
                }
            };
            let mut proxy = (*b.proxy).clone();
            let mut resolve = |br: &gw::BackendRef, f: &str| -> Result<Arc<crate::config::Backend>, FilterProblem> {
                refs::backend(b, "HTTPRoute", &ns, br, BackendProtocol::Http).map_err(|p| FilterProblem { field: f.to_string(), message: p.message, reason: p.reason })
            };
            let compiled = (|| {
                if let Some(t) = &rule.timeouts {
                    filters::apply_timeouts(t, &format!("spec.rules[{i}].timeouts"), &mut proxy)?;
                }
                let route_filters = filters::http_filters(&rule.filters, &format!("spec.rules[{i}].filters"), &matches.path, &mut resolve)?;
                // A backendRef's own filters, for this match (ReplacePrefixMatch needs its path).
                let mut shares: Vec<WeightedBackend> = backends.to_vec();
                for (k, br) in rule.backend_refs.iter().enumerate() {
                    if !br.filters.is_empty() && k < shares.len() {
                        shares[k].filters = Arc::from(filters::http_filters(&br.filters, &format!("spec.rules[{i}].backendRefs[{k}].filters"), &matches.path, &mut resolve)?);
                    }
                }
                Ok::<_, FilterProblem>((route_filters, shares))
            })();
            let (filters, backends) = routes::filters_or_unusable(b, oref, problems, compiled, &backends);
            let proxy = Arc::new(proxy);
            let (rule_path, path_type) = match &m.path {
                None => ("/".to_string(), "PathPrefix"),
                Some(p) => (p.value_or_default().to_string(), path_type(p.type_or_default())),
            };
            out.push(Route {
                id: 0,
                matches,
                filters,
                backends,
                proxy,
                rule_path,
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

fn path_type(t: &str) -> &'static str {
    match t {
        "Exact" => "Exact",
        "RegularExpression" => "RegularExpression",
        _ => "PathPrefix",
    }
}

type MatchError = (String, String);

/// One HTTPRoute match as route conditions. Of repeated header (or query parameter) names
/// only the first counts, as the spec says.
pub fn route_match(m: &gw::HTTPRouteMatch, field: &str) -> Result<RouteMatch, MatchError> {
    let path = match &m.path {
        None => PathMatch { path: String::new(), kind: PathKind::Prefix, regex: None },
        Some(p) => path_match(p.type_or_default(), p.value_or_default(), &format!("{field}.path"))?,
    };
    let mut rm = RouteMatch { path, headers: Vec::new(), query: Vec::new(), method: None };
    for (k, h) in m.headers.iter().enumerate() {
        let f = format!("{field}.headers[{k}]");
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| (format!("{f}.name"), format!("{:?} is not a header name", h.name)))?;
        if rm.headers.iter().any(|x| x.name == name) {
            continue;
        }
        rm.headers.push(HeaderMatch { name, value: h.value.clone(), pattern: value_pattern(h, &f)? });
    }
    for (k, q) in m.query_params.iter().enumerate() {
        let f = format!("{field}.queryParams[{k}]");
        if rm.query.iter().any(|x| x.name == q.name) {
            continue;
        }
        rm.query.push(QueryMatch { name: q.name.clone(), value: q.value.clone(), pattern: value_pattern(q, &f)? });
    }
    if let Some(method) = &m.method {
        rm.method = Some(http::Method::from_bytes(method.as_bytes()).map_err(|_| (format!("{field}.method"), format!("{method:?} is not a method")))?);
    }
    Ok(rm)
}

/// A path condition: `Exact`, `PathPrefix` (on whole segments) or `RegularExpression` (the
/// whole path must match).
pub fn path_match(type_: &str, value: &str, field: &str) -> Result<PathMatch, MatchError> {
    match type_ {
        "Exact" | "PathPrefix" => {
            if !value.starts_with('/') {
                return Err((format!("{field}.value"), format!("{value:?} must start with /")));
            }
            let (path, kind) = crate::compile::route_path(Some(value), if type_ == "Exact" { "Exact" } else { "Prefix" });
            Ok(PathMatch { path, kind, regex: None })
        }
        "RegularExpression" => {
            let pattern = full_match(value).map_err(|e| (format!("{field}.value"), format!("{value:?} is not a regular expression Vestibule accepts: {e}")))?;
            Ok(PathMatch { path: value.to_string(), kind: PathKind::Regex, regex: Some(pattern) })
        }
        other => Err((format!("{field}.type"), format!("path match type {other:?} is not supported"))),
    }
}

fn value_pattern(v: &gw::ValueMatch, field: &str) -> Result<Option<Pattern>, MatchError> {
    match v.type_or_default() {
        "Exact" => Ok(None),
        "RegularExpression" => full_match(&v.value).map(Some).map_err(|e| (format!("{field}.value"), format!("{:?} is not a regular expression Vestibule accepts: {e}", v.value))),
        other => Err((format!("{field}.type"), format!("match type {other:?} is not supported"))),
    }
}

//! What annotations do across a whole host, and the filters of each path.
//!
//! ingress-nginx renders the locations of one server together, so some annotations reach past
//! the Ingress that carries them:
//! - `use-regex`, or a `rewrite-target` that differs from its path, on any Ingress of a host
//!   turns every path of that host (from every Ingress, Exact ones too) into a
//!   case-insensitive expression anchored at the start, `(?i)^PATH`, tried longest path string
//!   first, the first match winning;
//! - `app-root` answers `/` for the whole host;
//! - `from-to-www-redirect` adds a host for the other name (`www.` added or removed).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

use super::annotations::Annotations;
use super::builder::Builder;
use super::route_path;
use crate::config::route::Pattern;
use crate::config::{Filter, PathKind, PathMatch, RouteMatch};

/// ingress-nginx never redirects these locations to HTTPS (`no-tls-redirect-locations`'s
/// default), so that ACME HTTP-01 challenges can be answered.
const NO_TLS_REDIRECT: &str = "/.well-known/acme-challenge";

/// The host-wide decisions, made from every Ingress before any route is added.
#[derive(Debug, Default)]
pub(super) struct HostPlan {
    /// Hosts whose paths are all expressions.
    pub regex: HashSet<String>,
    /// Each host's app root: the oldest Ingress's that names one.
    pub app_root: HashMap<String, String>,
    /// Hosts that asked for `from-to-www-redirect`, in Ingress order.
    pub www: Vec<String>,
}

fn hosts(ing: &Ingress) -> impl Iterator<Item = (String, Vec<String>)> + '_ {
    let rules = ing.spec.as_ref().and_then(|s| s.rules.as_deref()).unwrap_or(&[]);
    rules.iter().map(|r| {
        let host = r.host.as_deref().map(|h| h.to_ascii_lowercase()).unwrap_or_else(|| "*".to_string());
        let paths = r.http.iter().flat_map(|h| h.paths.iter()).map(|p| rule_path_of(p.path.as_deref())).collect();
        (host, paths)
    })
}

/// The path as the Ingress wrote it; `/` when empty.
pub(super) fn rule_path_of(path: Option<&str>) -> String {
    match path {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => "/".to_string(),
    }
}

/// `owned` and their annotations, oldest first.
pub(super) fn plan(owned: &[&Ingress], anns: &[Annotations]) -> HostPlan {
    let mut plan = HostPlan::default();
    for (ing, ann) in owned.iter().zip(anns) {
        for (host, paths) in hosts(ing) {
            if ann.rewrite.use_regex || paths.iter().any(|p| ann.rewrite.rewrites(p)) {
                plan.regex.insert(host.clone());
            }
            if let Some(root) = &ann.rewrite.app_root {
                plan.app_root.entry(host.clone()).or_insert_with(|| root.clone());
            }
            if ann.redirect.from_to_www && !host.starts_with('*') && !plan.www.contains(&host) {
                plan.www.push(host);
            }
        }
    }
    plan
}

/// How a path is matched on its host: as the Ingress says, or, on a regex host, as
/// `(?i)^PATH`. Paths of an Ingress with `use-regex` or a rewrite are used as written; the
/// others as the path they match (`/foo/` and `/foo` alike, as ingress-nginx's split locations
/// do). An expression that does not compile is the error.
pub(super) fn path_match(plan: &HostPlan, host: &str, ann: &Annotations, written: Option<&str>, path_type: &str) -> Result<RouteMatch, String> {
    let (path, kind) = route_path(written, path_type);
    if !plan.regex.contains(host) {
        return Ok(RouteMatch::path(path, kind));
    }
    let rule_path = rule_path_of(written);
    let source = if ann.rewrite.use_regex || ann.rewrite.rewrites(&rule_path) {
        rule_path
    } else if path.is_empty() {
        "/".to_string()
    } else {
        path
    };
    let regex = Pattern::new(&format!("(?i)^{source}")).map_err(|e| format!("{source:?} is not a valid regular expression: {e}; this path is not used"))?;
    let mut m = RouteMatch::path(String::new(), PathKind::Regex);
    m.path = PathMatch { path: source, kind: PathKind::Regex, regex: Some(regex) };
    Ok(m)
}

/// The HTTPS redirect an Ingress's path gets, if any: on hosts with TLS (unless
/// `ssl-redirect: "false"`), or everywhere with `force-ssl-redirect`.
fn https_redirect(ann: &Annotations, tls: bool, code: u16, rule_path: &str) -> Option<Filter> {
    let on = (tls && ann.ssl_redirect) || ann.redirect.force_ssl_redirect;
    (on && !rule_path.starts_with(NO_TLS_REDIRECT)).then(|| Filter::HttpsRedirect {
        status: code,
        preserve_trailing_slash: ann.rewrite.preserve_trailing_slash,
        use_port: ann.redirect.use_port_in_redirects,
    })
}

/// The filters of one path, in the order ingress-nginx applies them: app root (server
/// level), the fixed redirect, the HTTPS redirect, then the rewrite.
pub(super) fn route_filters(plan: &HostPlan, host: &str, ann: &Annotations, tls: bool, code: u16, rule_path: &str, m: &RouteMatch) -> Arc<[Filter]> {
    let mut f = Vec::new();
    if let Some(root) = plan.app_root.get(host) {
        f.push(Filter::AppRoot { root: root.clone() });
    }
    if let Some((status, location)) = &ann.redirect.fixed {
        f.push(Filter::FixedRedirect { status: *status, location: location.clone() });
    }
    f.extend(https_redirect(ann, tls, code, rule_path));
    if let (true, Some(pattern)) = (ann.rewrite.rewrites(rule_path), &m.path.regex) {
        let target = ann.rewrite.target.clone().expect("rewrites");
        f.push(Filter::Rewrite { pattern: pattern.clone(), target, prefix: ann.rewrite.x_forwarded_prefix.clone() });
    }
    f.into()
}

/// The filters where no path of the host matched: app root, and the HTTPS redirect of a TLS
/// host.
pub(super) fn host_filters(plan: &HostPlan, host: &str, ann: &Annotations, tls: bool, code: u16) -> Arc<[Filter]> {
    let mut f = Vec::new();
    if let Some(root) = plan.app_root.get(host) {
        f.push(Filter::AppRoot { root: root.clone() });
    }
    if tls && ann.ssl_redirect {
        f.push(Filter::HttpsRedirect { status: code, preserve_trailing_slash: ann.rewrite.preserve_trailing_slash, use_port: ann.redirect.use_port_in_redirects });
    }
    f.into()
}

/// The other name of a `from-to-www-redirect` host.
pub(super) fn other_name(host: &str) -> String {
    match host.strip_prefix("www.") {
        Some(bare) => bare.to_string(),
        None => format!("www.{host}"),
    }
}

/// Adds the extra host of each `from-to-www-redirect` host, unless that name is already served.
pub(super) fn add_www(b: &mut Builder, plan: &HostPlan, code: u16) {
    for host in &plan.www {
        let from = other_name(host);
        if b.has_vhost(&from) {
            continue;
        }
        let filters: Arc<[Filter]> = Arc::new([Filter::WwwRedirect { to_host: host.clone(), status: code }]);
        b.vhost(&from, false, &filters);
    }
}

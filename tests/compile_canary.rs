//! Canary and session-affinity annotations straight through `compile` (no sockets): which
//! route a canary joins, what it takes from its own Ingress and what from the mainline, the
//! diagnostics, and the affinity data a route carries. tests/ann_canary.rs and
//! tests/ann_affinity.rs check the behaviour through real sockets.

mod common;

use std::net::SocketAddr;

use common::*;
use vestibule::compile::{self, Reason, Severity};
use vestibule::config::{AffinityMode, BackendProtocol, Config, HeaderPattern, Policy, Target};

const A: &str = "nginx.ingress.kubernetes.io/";

fn compiled(docs: Vec<String>) -> compile::Compiled {
    compile::compile(&store_of(&manifest(docs)), &compile_settings())
}

fn backends(svcs: &[&str]) -> Vec<String> {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    svcs.iter().map(|s| backend_yaml("default", s, &[addr])).collect()
}

fn ing(name: &str, created: &str, ann: &[(&str, &str)]) -> Ingress {
    let full: Vec<(String, String)> = ann.iter().map(|(k, v)| (format!("{A}{k}"), v.to_string())).collect();
    let refs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Ingress::new("default", name).created(created).annotations(&refs)
}

/// `mainline-service [+ canary-service]` for what host + path routes to.
fn decide(config: &Config, host: &str, path: &str) -> String {
    let (main, canary) = match config.route_path(host, path) {
        t @ (Target::Route { .. } | Target::HostDefault { .. } | Target::Default(_)) => (t.backend().unwrap().service.clone(), t.canary().map(|c| c.backend.service.clone())),
        _ => return "404".into(),
    };
    match canary {
        Some(c) => format!("{main} + {c}"),
        None => main,
    }
}

const OLD: &str = "2020-01-01T00:00:00Z";
const NEW: &str = "2021-01-01T00:00:00Z";

#[test]
fn canaries_join_the_mainline_with_the_same_host_path_and_type() {
    let mut docs = backends(&["main", "canary", "other", "c2", "c3", "c4", "def", "cdef", "plain"]);
    let canary = |name: &str, created: &str| ing(name, created, &[("canary", "true"), ("canary-weight", "10")]);
    docs.push(ing("main", NEW, &[]).host_path("a.com", "/", "Prefix", "main", 80).host_path("a.com", "/x", "Exact", "other", 80).to_yaml());
    // Older than its mainline: the age order does not matter for canaries.
    docs.push(canary("canary", OLD).host_path("a.com", "/", "Prefix", "canary", 80).to_yaml());
    // A second canary for the same rule: one canary per rule.
    docs.push(canary("c2", NEW).host_path("a.com", "/", "Prefix", "c2", 80).to_yaml());
    // Same path, other pathType; and a host nobody else serves.
    docs.push(canary("c3", NEW).host_path("a.com", "/x", "Prefix", "c3", 80).host_path("only-canary.com", "/", "Prefix", "c4", 80).to_yaml());
    // The catch-all default and its canary.
    docs.push(ing("def", OLD, &[]).default_backend("def", 80).to_yaml());
    docs.push(canary("cdef", NEW).default_backend("cdef", 80).to_yaml());
    // canary-* without canary: a normal Ingress, so a plain path conflict.
    docs.push(ing("plain", NEW, &[("canary-weight", "100")]).host_path("a.com", "/", "Prefix", "plain", 80).to_yaml());
    let c = compiled(docs);
    let rows = [("a.com", "/", "main + canary"), ("a.com", "/x", "other"), ("a.com", "/x/y", "main + canary"), ("only-canary.com", "/", "def + cdef"), ("b.com", "/", "def + cdef")];
    for (host, path, want) in rows {
        assert_eq!(decide(&c.config, host, path), want, "{host}{path}");
    }
    let rows: Vec<(Severity, String, String, Reason)> = c.diagnostics.iter().filter(|d| d.reason != Reason::AnnotationNotSupported).map(|d| (d.severity, d.object.name.clone(), d.field.clone(), d.reason)).collect();
    let w = Severity::Warning;
    assert_eq!(
        rows,
        vec![
            (w, "c2".into(), "spec.rules[0].http.paths[0]".into(), Reason::CanaryWithoutMainline),
            (w, "c3".into(), "spec.rules[0].http.paths[0]".into(), Reason::CanaryWithoutMainline),
            (w, "c3".into(), "spec.rules[1].http.paths[0]".into(), Reason::CanaryWithoutMainline),
            (w, "plain".into(), format!("metadata.annotations[{A}canary-weight]"), Reason::InvalidField),
            (w, "plain".into(), "spec.rules[0].http.paths[0]".into(), Reason::PathConflict),
        ],
        "{:#?}",
        c.diagnostics
    );
    assert!(c.config.backends().any(|b| b.service == "cdef"), "canary backends are part of the configuration");
}

#[test]
fn a_canary_takes_only_its_traffic_policy_and_upstream_settings() {
    let mut docs = backends(&["main", "canary"]);
    docs.push(ing("main", OLD, &[("affinity", "cookie"), ("session-cookie-name", "aff")]).host_path("a.com", "/app", "Prefix", "main", 80).to_yaml());
    let canary = ing(
        "canary",
        OLD,
        &[
            ("canary", "true"),
            ("canary-by-header", "CanaryByHeader"),
            ("canary-by-header-pattern", "[][**da?$&*"),
            ("canary-weight", "100"),
            ("canary-weight-total", "200"),
            ("load-balance", "ewma"),
            ("backend-protocol", "GRPC"),
            ("affinity", "cookie"),
            ("session-cookie-name", "own"),
        ],
    );
    docs.push(canary.host_path("a.com", "/app", "Prefix", "canary", 80).to_yaml());
    let c = compiled(docs);
    let Target::Route { route, .. } = c.config.route_path("a.com", "/app") else { panic!("no route") };
    let cn = route.canary.as_ref().expect("a canary");
    assert_eq!((cn.rule.weight, cn.rule.total()), (100, 200));
    assert_eq!(cn.rule.header.as_ref().unwrap().as_str(), "canarybyheader");
    assert_eq!(cn.rule.header_pattern, Some(HeaderPattern::Invalid));
    assert_eq!(cn.backend.policy, Policy::LeastRequest, "load-balance is upstream-level: the canary's");
    assert_eq!(cn.backend.protocol, BackendProtocol::Http, "backend-protocol is location-level: the mainline's");
    let aff = cn.affinity.as_ref().expect("sticky: the mainline's affinity");
    assert_eq!((aff.cookie_name.as_str(), aff.path.as_str()), ("aff", "/app"));
    assert!(c.diagnostics.iter().any(|d| d.object.name == "canary" && d.field.ends_with("canary-by-header-pattern]") && d.severity == Severity::Warning), "{:#?}", c.diagnostics);

    // legacy: no affinity for the canary.
    let mut docs = backends(&["main", "canary"]);
    docs.push(ing("main", OLD, &[("affinity", "cookie")]).host_path("a.com", "/", "Prefix", "main", 80).to_yaml());
    docs.push(ing("canary", OLD, &[("canary", "true"), ("affinity-canary-behavior", "legacy")]).host_path("a.com", "/", "Prefix", "canary", 80).to_yaml());
    let c = compiled(docs);
    let Target::Route { route, .. } = c.config.route_path("a.com", "/") else { panic!("no route") };
    assert!(route.affinity.is_some() && route.canary.as_ref().unwrap().affinity.is_none());
}

#[test]
fn affinity_data_per_route() {
    let mut docs = backends(&["web"]);
    docs.push(ing("aff", OLD, &[("affinity", "cookie"), ("affinity-mode", "persistent")]).host_path("a.com", "/something", "Prefix", "web", 80).host_path("a.com", "/", "Prefix", "web", 80).to_yaml());
    docs.push(ing("path", OLD, &[("affinity", "cookie"), ("session-cookie-path", "/p")]).host_path("b.com", "/x", "Prefix", "web", 80).to_yaml());
    docs.push(ing("none", OLD, &[]).host_path("a.com", "/foo", "Prefix", "web", 80).to_yaml());
    let c = compiled(docs);
    let aff = |host: &str, path: &str| match c.config.route_path(host, path) {
        Target::Route { route, .. } => route.affinity.as_ref().map(|a| (a.cookie_name.clone(), a.path.clone(), a.mode)),
        _ => panic!("no route for {host}{path}"),
    };
    assert_eq!(aff("a.com", "/something/1"), Some(("INGRESSCOOKIE".into(), "/something".into(), AffinityMode::Persistent)));
    assert_eq!(aff("a.com", "/"), Some(("INGRESSCOOKIE".into(), "/".into(), AffinityMode::Persistent)));
    assert_eq!(aff("b.com", "/x"), Some(("INGRESSCOOKIE".into(), "/p".into(), AffinityMode::Balanced)));
    assert_eq!(aff("a.com", "/foo"), None, "an Ingress without affinity sets no cookie");
    assert!(c.diagnostics.iter().all(|d| d.reason != Reason::AnnotationNotSupported), "{:#?}", c.diagnostics);
}

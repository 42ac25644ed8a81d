//! The cost of Gateway API routing beside Ingress routing, in process: 1,000 HTTPRoute rules
//! on one host, each with a path prefix and 10 header and query matches, against 1,000 Ingress
//! paths on one host (and 1,000 on a `use-regex` host), each looked up through
//! `Config::route_on` as the proxy does (through the host's route index), and by scanning the
//! host's routes in order (what the index replaces). It checks that the lookups answer right and alike, and prints the cost of each;
//! a second test prints the scan beside the index on small hosts (`index::SCAN_BELOW`):
//!
//! ```sh
//! VESTIBULE_BENCH_ITERS=200000 cargo test --release --test gateway_bench -- --nocapture --test-threads 1
//! ```

mod common;

use std::time::Instant;

use common::gateway::*;
use common::*;
use serde_json::json;
use vestibule::config::index::RouteIndex;
use vestibule::config::{Config, RequestFacts, Route, Target, VirtualHost};

const ROUTES: usize = 1000;

/// The three hosts the first test times.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// HTTPRoute rules with 10 header and query matches each, on their listener's port.
    Gateway,
    /// Ingress Prefix paths, on any other port.
    Ingress,
    /// Ingress paths on a `use-regex` host: every path an expression.
    Regex,
}

#[test]
fn httproute_matches_cost_beside_ingress_paths() {
    let iters: usize = std::env::var("VESTIBULE_BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let mut docs = vec![gateway_class("vestibule", CONTROLLER), gateway("default", "gw", "vestibule", vec![listener("http", 9100, "HTTP", json!({}))])];
    let rules: Vec<serde_json::Value> = (0..ROUTES)
        .map(|i| {
            let headers: Vec<_> = (0..5).map(|k| json!({"name": format!("x-h{k}"), "value": format!("v{k}")})).collect();
            let query: Vec<_> = (0..5).map(|k| json!({"name": format!("q{k}"), "value": format!("{k}")})).collect();
            json!({"matches": [{"path": {"value": format!("/svc-{i}")}, "headers": headers, "queryParams": query}], "backendRefs": [backend_ref("web", 1)]})
        })
        .collect();
    // HTTPRoutes hold at most 16 rules: 63 routes of 16 rules.
    for (n, chunk) in rules.chunks(16).enumerate() {
        docs.push(route("HTTPRoute", "default", &format!("r{n}"), "2024-01-01T00:00:00Z", json!({"parentRefs": [{"name": "gw"}], "hostnames": ["gw.test"], "rules": chunk})));
    }
    let mut ing = Ingress::new("default", "paths").created("2024-01-01T00:00:00Z");
    let mut re = Ingress::new("default", "regex").created("2024-01-01T00:00:00Z").annotation("nginx.ingress.kubernetes.io/use-regex", "true");
    for i in 0..ROUTES {
        ing = ing.host_path("ing.test", &format!("/svc-{i}"), "Prefix", "web", 80);
        re = re.host_path("re.test", &format!("/svc-{i}(/|$)"), "ImplementationSpecific", "web", 80);
    }
    docs.push(ing.to_yaml());
    docs.push(re.to_yaml());
    docs.push(backend_yaml("default", "web", &["127.0.0.1:9".parse().unwrap()]));
    let c = vestibule::compile::compile(&store_of(&manifest(docs)), &compile_settings());

    let mut headers = http::HeaderMap::new();
    for k in 0..5 {
        headers.insert(http::HeaderName::from_bytes(format!("x-h{k}").as_bytes()).unwrap(), format!("v{k}").parse().unwrap());
    }
    let query = "q0=0&q1=1&q2=2&q3=3&q4=4";
    let empty = http::HeaderMap::new();
    // Paths spread over the table (a request for the last path walks past every other route).
    let paths: Vec<String> = (0..ROUTES).step_by(97).map(|i| format!("/svc-{i}/item")).collect();
    let facts_of = |kind: Kind, path| facts(kind, path, &headers, query, &empty);
    let vhost = |kind: Kind| -> &VirtualHost {
        let (port, host, _) = facts_of(kind, "/");
        host_of(&c.config, port, host).expect("the host")
    };
    let expected = |kind: Kind, path: &str| match kind {
        Kind::Regex => format!("{}(/|$)", path.trim_end_matches("/item")),
        _ => path.trim_end_matches("/item").to_string(),
    };
    let kinds = [Kind::Gateway, Kind::Ingress, Kind::Regex];
    for kind in kinds {
        assert!(vhost(kind).index.indexes(&vhost(kind).routes), "the host is indexed");
        for path in &paths {
            let (port, host, facts) = facts_of(kind, path);
            let indexed = match c.config.route_on(port, host, &facts) {
                Target::Route { route, .. } => Some(route.id),
                _ => None,
            };
            assert_eq!(indexed, vhost(kind).find_linear(&facts).map(|r| r.id), "{path}: the index answers as the scan");
        }
    }
    // `scan`: the host's routes in order, as the route phase did before the index.
    let time = |kind: Kind, scan: bool| {
        let started = Instant::now();
        let mut hits = 0usize;
        for n in 0..iters {
            let path = &paths[n % paths.len()];
            let (port, host, facts) = facts_of(kind, path);
            let route = match (kind, scan) {
                (Kind::Gateway, false) => gateway_by_index(&c.config, port, host, &facts),
                (Kind::Ingress, false) => ingress_by_index(&c.config, port, host, &facts),
                (Kind::Regex, false) => regex_by_index(&c.config, port, host, &facts),
                (Kind::Gateway, true) => gateway_by_scan(&c.config, port, host, &facts),
                (Kind::Ingress, true) => ingress_by_scan(&c.config, port, host, &facts),
                (Kind::Regex, true) => regex_by_scan(&c.config, port, host, &facts),
            };
            hits += usize::from(route.is_some_and(|r| r.rule_path == expected(kind, path)));
        }
        assert_eq!(hits, iters, "every lookup reaches its own route");
        started.elapsed().as_nanos() as f64 / iters as f64
    };
    let [gw, ing, re] = kinds.map(|k| (time(k, false), time(k, true)));
    println!(
        "{ROUTES} routes, {iters} lookups: HTTPRoute (10 header and query matches each) {:.0} ns/lookup, Ingress paths {:.0} ns/lookup, ratio {:.2}",
        gw.0,
        ing.0,
        gw.0 / ing.0
    );
    println!("  use-regex Ingress paths {:.0} ns/lookup", re.0);
    println!(
        "  scanning the routes instead of the index: HTTPRoute {:.0} ns/lookup ({:.1}x the index), Ingress paths {:.0} ns/lookup ({:.1}x), use-regex {:.0} ns/lookup ({:.1}x)",
        gw.1,
        gw.1 / gw.0,
        ing.1,
        ing.1 / ing.0,
        re.1,
        re.1 / re.0
    );
}

/// The host of `port`'s table, or the Ingress host.
fn host_of<'c>(config: &'c Config, port: u16, host: &str) -> Option<&'c VirtualHost> {
    match config.ports.get(&port) {
        Some(t) => t.vhost(host),
        None => config.vhost(host),
    }
}

// One function per kind and way, never inlined, so that a profile tells them apart:
// `valgrind --tool=callgrind --toggle-collect='*by_index*' --toggle-collect='*by_scan*'`.

macro_rules! lookups {
    ($($index:ident, $scan:ident;)*) => {$(
        /// The route as the proxy finds it (`Config::route_on`, through the host's index).
        #[inline(never)]
        fn $index<'c>(config: &'c Config, port: u16, host: &str, facts: &RequestFacts<'_>) -> Option<&'c Route> {
            match config.route_on(port, host, facts) {
                Target::Route { route, .. } => Some(route),
                _ => None,
            }
        }

        /// The route as the proxy found it before the index: the host, then its routes in order.
        #[inline(never)]
        fn $scan<'c>(config: &'c Config, port: u16, host: &str, facts: &RequestFacts<'_>) -> Option<&'c Route> {
            host_of(config, port, host)?.find_linear(facts)
        }
    )*};
}

lookups! {
    gateway_by_index, gateway_by_scan;
    ingress_by_index, ingress_by_scan;
    regex_by_index, regex_by_scan;
}

/// Port, host and facts of a request: Gateway routes on their listener's port, Ingress paths
/// on any other port (which ignore the headers and query).
fn facts<'a>(kind: Kind, path: &'a str, headers: &'a http::HeaderMap, query: &'a str, empty: &'a http::HeaderMap) -> (u16, &'static str, RequestFacts<'a>) {
    match kind {
        Kind::Gateway => (9100, "gw.test", RequestFacts { path, method: &http::Method::GET, headers, query }),
        Kind::Ingress => (8080, "ing.test", RequestFacts { path, method: &http::Method::GET, headers: empty, query: "" }),
        Kind::Regex => (8080, "re.test", RequestFacts { path, method: &http::Method::GET, headers: empty, query: "" }),
    }
}

/// Where the index starts to pay: hosts of `n` Prefix routes (`/svc-i`), each request for one
/// of them, found by the scan and by the index.
#[test]
fn small_hosts_scan_beside_index() {
    let iters: usize = std::env::var("VESTIBULE_BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let empty = http::HeaderMap::new();
    for n in [1usize, 2, 4, 8, 16, 32] {
        let mut ing = Ingress::new("default", "paths").created("2024-01-01T00:00:00Z");
        for i in 0..n {
            ing = ing.host_path("small.test", &format!("/svc-{i}"), "Prefix", "web", 80);
        }
        let docs = vec![ing.to_yaml(), backend_yaml("default", "web", &["127.0.0.1:9".parse().unwrap()])];
        let c = vestibule::compile::compile(&store_of(&manifest(docs)), &compile_settings());
        let v = c.config.vhost("small.test").expect("the host");
        let index = RouteIndex::build_scanning_below(&v.routes, 0);
        let paths: Vec<String> = (0..n).map(|i| format!("/svc-{i}/item")).collect();
        let time = |scan: bool| {
            let started = Instant::now();
            let mut hits = 0usize;
            for k in 0..iters {
                let path = &paths[k % n];
                let facts = RequestFacts { path, method: &http::Method::GET, headers: &empty, query: "" };
                let r = if scan { v.find_linear(&facts) } else { index.first(&v.routes, path, |r| r.matches.matches(&facts)) };
                hits += usize::from(r.is_some_and(|r| r.rule_path == path.trim_end_matches("/item")));
            }
            assert_eq!(hits, iters, "{n} routes: every lookup reaches its own route");
            started.elapsed().as_nanos() as f64 / iters as f64
        };
        let (scan, indexed) = (time(true), time(false));
        println!("{n:>2} routes: scan {scan:.0} ns/lookup, index {indexed:.0} ns/lookup");
    }
}

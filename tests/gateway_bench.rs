//! The cost of Gateway API routing beside Ingress routing, in process: 1,000 HTTPRoute rules
//! on one host, each with a path prefix and 10 header and query matches, against 1,000 Ingress
//! paths on one host, both looked up through `Config::route_on` as the proxy does (through the
//! host's route index), and each also by scanning the host's routes in order (what the index
//! replaces). It checks that the lookups answer right and alike, and prints the cost of each;
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
use vestibule::config::{RequestFacts, Target, VirtualHost};

const ROUTES: usize = 1000;

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
    for i in 0..ROUTES {
        ing = ing.host_path("ing.test", &format!("/svc-{i}"), "Prefix", "web", 80);
    }
    docs.push(ing.to_yaml());
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
    let facts_of = |gateway: bool, path| facts(gateway, path, &headers, query, &empty);
    let vhost = |gateway: bool| -> &VirtualHost {
        let (port, host, _) = facts_of(gateway, "/");
        c.config.ports.get(&port).and_then(|t| t.vhost(host)).or_else(|| c.config.vhost(host)).expect("the host")
    };
    for gateway in [true, false] {
        assert!(vhost(gateway).index.indexes(&vhost(gateway).routes), "the host is indexed");
    }
    // `scan`: the host's routes in order, as the route phase did before the index.
    let time = |gateway: bool, scan: bool| {
        let v = vhost(gateway);
        let started = Instant::now();
        let mut hits = 0usize;
        for n in 0..iters {
            let path = &paths[n % paths.len()];
            let (port, host, facts) = facts_of(gateway, path);
            let route = if scan {
                v.find_linear(&facts)
            } else {
                match c.config.route_on(port, host, &facts) {
                    Target::Route { route, .. } => Some(route),
                    _ => None,
                }
            };
            if let Some(route) = route {
                hits += usize::from(route.rule_path == path.trim_end_matches("/item"));
            }
        }
        (started.elapsed(), hits)
    };
    for gateway in [true, false] {
        for path in &paths {
            let (port, host, facts) = facts_of(gateway, path);
            let indexed = match c.config.route_on(port, host, &facts) {
                Target::Route { route, .. } => Some(route.id),
                _ => None,
            };
            assert_eq!(indexed, vhost(gateway).find_linear(&facts).map(|r| r.id), "{path}: the index answers as the scan");
        }
    }
    let (gw_time, gw_hits) = time(true, false);
    let (ing_time, ing_hits) = time(false, false);
    let (gw_scan, gw_scan_hits) = time(true, true);
    let (ing_scan, ing_scan_hits) = time(false, true);
    assert_eq!((gw_hits, ing_hits, gw_scan_hits, ing_scan_hits), (iters, iters, iters, iters), "every lookup reaches its own route");
    let per = |d: std::time::Duration| d.as_nanos() as f64 / iters as f64;
    println!(
        "{ROUTES} routes, {iters} lookups: HTTPRoute (10 header and query matches each) {:.0} ns/lookup, Ingress paths {:.0} ns/lookup, ratio {:.2}",
        per(gw_time),
        per(ing_time),
        per(gw_time) / per(ing_time)
    );
    println!(
        "  scanning the routes instead of the index: HTTPRoute {:.0} ns/lookup ({:.1}x the index), Ingress paths {:.0} ns/lookup ({:.1}x)",
        per(gw_scan),
        per(gw_scan) / per(gw_time),
        per(ing_scan),
        per(ing_scan) / per(ing_time)
    );
}

/// Port, host and facts of a request: Gateway routes on their listener's port, Ingress paths
/// on any other port (which ignore the headers and query).
fn facts<'a>(gateway: bool, path: &'a str, headers: &'a http::HeaderMap, query: &'a str, empty: &'a http::HeaderMap) -> (u16, &'static str, RequestFacts<'a>) {
    if gateway {
        (9100, "gw.test", RequestFacts { path, method: &http::Method::GET, headers, query })
    } else {
        (8080, "ing.test", RequestFacts { path, method: &http::Method::GET, headers: empty, query: "" })
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

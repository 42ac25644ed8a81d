//! The cost of Gateway API routing beside Ingress routing, in process: 1,000 HTTPRoute rules
//! on one host, each with a path prefix and 10 header and query matches, against 1,000 Ingress
//! paths on one host, both looked up through `Config::route_on` as the proxy does. It checks
//! that the lookups answer right, and prints the cost of each and their ratio:
//!
//! ```sh
//! VESTIBULE_BENCH_ITERS=200000 cargo test --release --test gateway_bench -- --nocapture
//! ```

mod common;

use std::time::Instant;

use common::gateway::*;
use common::*;
use serde_json::json;
use vestibule::config::{RequestFacts, Target};

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
    let time = |gateway: bool| {
        let started = Instant::now();
        let mut hits = 0usize;
        for n in 0..iters {
            let path = &paths[n % paths.len()];
            // Gateway routes on their listener's port; Ingress paths on any other port.
            let (port, host, facts) = if gateway {
                (9100, "gw.test", RequestFacts { path, method: &http::Method::GET, headers: &headers, query })
            } else {
                (8080, "ing.test", RequestFacts { path, method: &http::Method::GET, headers: &empty, query: "" })
            };
            if let Target::Route { route, .. } = c.config.route_on(port, host, &facts) {
                hits += usize::from(route.rule_path == path.trim_end_matches("/item"));
            }
        }
        (started.elapsed(), hits)
    };
    let (gw_time, gw_hits) = time(true);
    let (ing_time, ing_hits) = time(false);
    assert_eq!((gw_hits, ing_hits), (iters, iters), "every lookup reaches its own route");
    let per = |d: std::time::Duration| d.as_nanos() as f64 / iters as f64;
    println!(
        "{ROUTES} routes, {iters} lookups: HTTPRoute (10 header and query matches each) {:.0} ns/lookup, Ingress paths {:.0} ns/lookup, ratio {:.2}",
        per(gw_time),
        per(ing_time),
        per(gw_time) / per(ing_time)
    );
}

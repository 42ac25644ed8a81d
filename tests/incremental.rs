//! Compile of the hosts a change touches: after each of many random single-object changes,
//! the incremental result serves exactly what a full compile of the same store serves (hosts,
//! routes, filters, backends and endpoints, certificates, diagnostics, per-object status);
//! only the dense ids may differ.

#[allow(unused_imports)]
mod common;

use common::served;
use serde_json::{Value, json};
use vestibule::compile::incremental::{self, Index, Previous};
use vestibule::compile::compile;
use vestibule::config::Config;
use vestibule::store::{ObjRef, Object, Store};

use std::collections::BTreeSet;

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const NAMESPACES: &[&str] = &["a", "b"];
const HOSTS: &[&str] = &["one.example.com", "two.example.com", "three.example.com", "*.wild.example.com", "four.example.com", "five.example.com", "six.example.com", "seven.example.com"];
const PATHS: &[&str] = &["/", "/api", "/api/v1", "/static", "/x"];
const SERVICES: &[&str] = &["web", "api", "static", "missing"];

fn ingress(rng: &mut Rng, ns: &str, name: &str) -> Value {
    let mut rules = Vec::new();
    for _ in 0..1 + rng.below(2) {
        let host = rng.pick(HOSTS);
        let paths: Vec<Value> = (0..1 + rng.below(3))
            .map(|_| {
                let port = if rng.below(5) == 0 { json!({"name": "http"}) } else { json!({"number": 80}) };
                json!({"path": rng.pick(PATHS), "pathType": rng.pick(&["Prefix", "Exact", "ImplementationSpecific"]),
                       "backend": {"service": {"name": rng.pick(SERVICES), "port": port}}})
            })
            .collect();
        if rng.below(8) == 0 {
            rules.push(json!({"http": {"paths": paths}}));
        } else {
            rules.push(json!({"host": host, "http": {"paths": paths}}));
        }
    }
    let mut spec = json!({"rules": rules});
    if rng.below(4) == 0 {
        spec["tls"] = json!([{"hosts": [rng.pick(HOSTS)], "secretName": rng.pick(&["cert", "absent"])}]);
    }
    if rng.below(10) == 0 {
        spec["defaultBackend"] = json!({"service": {"name": rng.pick(SERVICES), "port": {"number": 80}}});
    }
    if rng.below(10) == 0 {
        spec["ingressClassName"] = json!("other");
    }
    let mut annotations = serde_json::Map::new();
    for (k, v) in [
        ("nginx.ingress.kubernetes.io/use-regex", "true"),
        ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
        ("nginx.ingress.kubernetes.io/proxy-body-size", "not-a-size"),
        ("nginx.ingress.kubernetes.io/app-root", "/app"),
        ("nginx.ingress.kubernetes.io/load-balance", "ewma"),
    ] {
        if rng.below(9) == 0 {
            annotations.insert(k.into(), json!(v));
        }
    }
    // Annotations that act across hosts, which take the full compile: rarely, or nothing
    // else would be tested.
    for (k, v) in [("nginx.ingress.kubernetes.io/canary", "true"), ("nginx.ingress.kubernetes.io/server-alias", "alias.example.com")] {
        if rng.below(80) == 0 {
            annotations.insert(k.into(), json!(v));
        }
    }
    let day = 1 + rng.below(5);
    json!({"metadata": {"namespace": ns, "name": name, "creationTimestamp": format!("2024-01-0{day}T00:00:00Z"), "annotations": annotations}, "spec": spec})
}

fn service(rng: &mut Rng, ns: &str, name: &str) -> Value {
    let port = if rng.below(2) == 0 { 80 } else { 8080 };
    json!({"metadata": {"namespace": ns, "name": name}, "spec": {"ports": [{"name": "http", "port": port, "targetPort": 8080}]}})
}

fn slice(rng: &mut Rng, ns: &str, name: &str) -> Value {
    let svc = rng.pick(SERVICES);
    let eps: Vec<Value> = (0..rng.below(4))
        .map(|i| json!({"addresses": [if rng.below(10) == 0 { "0.0.0.0".to_string() } else { format!("10.0.{}.{}", rng.below(3), i + 1) }],
                        "conditions": {"ready": rng.below(5) != 0}}))
        .collect();
    json!({"metadata": {"namespace": ns, "name": name, "labels": {"kubernetes.io/service-name": svc}},
           "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}], "endpoints": eps})
}

fn secret(ns: &str, crt: &str, key: &str) -> Object {
    Object::Secret(serde_json::from_value(json!({"metadata": {"namespace": ns, "name": "cert"}, "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": crt, "tls.key": key}})).unwrap())
}

/// One random change: an Ingress, Service or EndpointSlice written or deleted.
fn change(rng: &mut Rng, store: &mut Store) -> ObjRef {
    let ns = rng.pick(NAMESPACES);
    let delete = rng.below(6) == 0;
    let (kind, name) = match rng.below(10) {
        0..=5 => ("Ingress", format!("ing-{}", rng.below(8))),
        6 | 7 => ("Service", rng.pick(SERVICES).to_string()),
        _ => ("EndpointSlice", format!("slice-{}", rng.below(5))),
    };
    let r = ObjRef::new(kind, ns, &name);
    if delete {
        store.remove(&r);
        return r;
    }
    let obj = match kind {
        "Ingress" => Object::Ingress(serde_json::from_value(ingress(rng, ns, &name)).unwrap()),
        "Service" => Object::Service(serde_json::from_value(service(rng, ns, &name)).unwrap()),
        _ => Object::EndpointSlice(serde_json::from_value(slice(rng, ns, &name)).unwrap()),
    };
    store.insert(obj);
    r
}


/// The labels `prev` had and `now` has not, as `route_labels_gone` finds them.
fn gone(now: &Config, prev: &Config) -> BTreeSet<String> {
    now.route_labels_gone(prev).iter().map(|l| format!("{l:?}")).collect()
}

/// The same, from every label of both.
fn gone_by_every_label(now: &Config, prev: &Config) -> BTreeSet<String> {
    let live = now.route_labels();
    prev.route_labels().into_iter().filter(|l| !live.contains(l)).map(|l| format!("{l:?}")).collect()
}

#[test]
fn an_incremental_compile_serves_what_a_full_compile_serves() {
    let settings = common::compile_settings();
    // A certificate of its own per namespace: equal content would be one shared certificate.
    let certs: Vec<(String, String)> = NAMESPACES.iter().map(|_| { let (_, c, k) = vestibule::tls::self_signed(&["one.example.com"]).unwrap(); (c, k) }).collect();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut store = Store::default();
    for (ns, (crt, key)) in NAMESPACES.iter().zip(&certs) {
        store.insert(secret(ns, crt, key));
        for i in 0..6 {
            let name = format!("ing-{i}");
            store.insert(Object::Ingress(serde_json::from_value(ingress(&mut rng, ns, &name)).unwrap()));
        }
        for s in SERVICES.iter().take(3) {
            store.insert(Object::Service(serde_json::from_value(service(&mut rng, ns, s)).unwrap()));
        }
    }
    let mut prev = compile(&store, &settings);
    let mut index = Index::new(&store, prev.config.route_count);
    let (mut partial, mut full_only) = (0, 0);
    for step in 0..300 {
        let r = change(&mut rng, &mut store);
        let full = compile(&store, &settings);
        let before = Previous { config: &prev.config, diagnostics: &prev.diagnostics, status: &prev.status };
        match incremental::recompile(&mut index, before, &store, std::slice::from_ref(&r), &settings) {
            Some(inc) => {
                partial += 1;
                let (a, b) = (served(&inc), served(&full));
                let first = a.lines().zip(b.lines()).position(|(x, y)| x != y);
                assert!(a == b, "step {step}: after changing {r}, line {first:?} differs:\n{:?}\n{:?}", first.and_then(|i| a.lines().nth(i)), first.and_then(|i| b.lines().nth(i)));
                assert_eq!(inc.status, full.status, "step {step}: status after changing {r}");
                assert!(inc.config.route_count >= full.config.route_count, "ids continue after the previous ones");
                assert_eq!(gone(&inc.config, &prev.config), gone_by_every_label(&inc.config, &prev.config), "step {step}: route labels gone after changing {r}");
                prev = inc;
            }
            None => {
                full_only += 1;
                assert_eq!(gone(&full.config, &prev.config), gone_by_every_label(&full.config, &prev.config), "step {step}: route labels gone after changing {r}");
                index = Index::new(&store, full.config.route_count);
                prev = full;
            }
        }
    }
    // Most single changes must take the incremental path, or this test proves nothing.
    eprintln!("{partial} incremental, {full_only} full");
    assert!(partial > 150, "{partial} incremental, {full_only} full");
}

#[test]
fn a_change_to_one_host_keeps_every_other_virtual_host_shared() {
    let settings = common::compile_settings();
    let mut store = Store::default();
    let mut rng = Rng(7);
    for i in 0..20 {
        let v = json!({"metadata": {"namespace": "a", "name": format!("ing-{i}")}, "spec": {"rules": [{"host": format!("h{i}.example.com"),
            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
        store.insert(Object::Ingress(serde_json::from_value(v).unwrap()));
    }
    store.insert(Object::Service(serde_json::from_value(service(&mut rng, "a", "web")).unwrap()));
    let prev = compile(&store, &settings);
    let mut index = Index::new(&store, prev.config.route_count);
    let v = json!({"metadata": {"namespace": "a", "name": "ing-3"}, "spec": {"rules": [{"host": "h3.example.com",
        "http": {"paths": [{"path": "/new", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
    store.insert(Object::Ingress(serde_json::from_value(v).unwrap()));
    let before = Previous { config: &prev.config, diagnostics: &prev.diagnostics, status: &prev.status };
    let inc = incremental::recompile(&mut index, before, &store, &[ObjRef::new("Ingress", "a", "ing-3")], &settings).expect("an Ingress-only change");
    for (host, v) in &inc.config.exact {
        let old = &prev.config.exact[host];
        assert_eq!(std::sync::Arc::ptr_eq(v, old), host != "h3.example.com", "{host}");
    }
    assert_eq!(inc.config.exact["h3.example.com"].routes[0].rule_path, "/new");
    assert_eq!(served(&inc), served(&compile(&store, &settings)));
}

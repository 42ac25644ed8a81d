//! Changes as the Kubernetes source names them (store in, changed objects in, Config out): an
//! EndpointSlice change that only moves the ready addresses of backends that serve replaces
//! their endpoint sets without a compile; anything else takes the compile of the hosts it
//! reaches, or a full compile. Whichever path is taken, the result serves exactly what a full
//! compile of the same store serves.

#[allow(unused_imports)]
mod common;

use common::{Endpoint, EndpointSlice, Ingress, Service, served};
use vestibule::compile::incremental::{self, Index, Previous};
use vestibule::compile::{compile, endpoint_only};
use vestibule::config::{Config, VirtualHost};
use vestibule::store::{ObjRef, Object, Store};


/// The objects of `yaml` into the store. The API server does not check slices as the file
/// source does: a slice it rejects goes in as the API server would hand it over.
fn insert_yaml(store: &mut Store, yaml: &str) {
    let parsed = vestibule::source::parse::parse_text(std::path::Path::new("objects.yaml"), yaml);
    if !parsed.errors.is_empty() && yaml.contains("kind: EndpointSlice") {
        let json: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        store.insert(Object::EndpointSlice(serde_json::from_value(json).unwrap()));
        return;
    }
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    for obj in parsed.objects {
        store.insert(obj);
    }
}

fn web_slice(name: &str, ips: &[&str]) -> String {
    ips.iter().fold(EndpointSlice::new("a", name, "web").port("http", 8080), |s, ip| s.ready(ip)).to_yaml()
}

/// Hosts over five Services: `web` (two slices) on several hosts, by port number and by name,
/// in a wildcard, a host-less rule and a `spec.defaultBackend`; `api` with a named gRPC port;
/// `solo` behind an Ingress with a `default-backend` annotation naming `alt`; `up` with a
/// ClusterIP behind `service-upstream`.
fn base() -> Vec<String> {
    vec![
        Service::new("a", "web").port("http", 80).to_yaml(),
        Service::new("a", "api").port("http", 80).port("grpc", 9000).to_yaml(),
        Service::new("a", "solo").port("http", 80).to_yaml(),
        Service::new("a", "alt").port("http", 80).to_yaml(),
        "apiVersion: v1\nkind: Service\nmetadata:\n  namespace: a\n  name: up\nspec:\n  clusterIP: 10.96.0.5\n  ports:\n  - name: http\n    port: 80\n".to_string(),
        web_slice("web-abc", &["10.0.0.1", "10.0.0.2"]),
        web_slice("web-def", &["10.0.0.7"]),
        EndpointSlice::new("a", "api-abc", "api").port("http", 8080).port("grpc", 9090).ready("10.0.1.1").to_yaml(),
        EndpointSlice::new("a", "solo-abc", "solo").port("http", 8080).ready("10.0.2.1").to_yaml(),
        EndpointSlice::new("a", "alt-abc", "alt").port("http", 8080).ready("10.0.3.1").to_yaml(),
        EndpointSlice::new("a", "up-abc", "up").port("http", 8080).ready("10.0.4.1").to_yaml(),
        Ingress::new("a", "one").host_path("one.example.com", "/", "Prefix", "web", 80).host_path("one.example.com", "/api", "Prefix", "api", 80).to_yaml(),
        Ingress::new("a", "two").host_path("two.example.com", "/", "Prefix", "web", "http").to_yaml(),
        Ingress::new("a", "three").annotation("nginx.ingress.kubernetes.io/backend-protocol", "GRPC").host_path("three.example.com", "/grpc", "Prefix", "api", "grpc").to_yaml(),
        Ingress::new("a", "four").annotation("nginx.ingress.kubernetes.io/default-backend", "alt").host_path("four.example.com", "/", "Prefix", "solo", 80).to_yaml(),
        Ingress::new("a", "five").annotation("nginx.ingress.kubernetes.io/service-upstream", "true").host_path("five.example.com", "/", "Prefix", "up", 80).to_yaml(),
        Ingress::new("a", "wild").host_path("*.wild.example.com", "/", "Prefix", "web", 80).to_yaml(),
        Ingress::new("a", "any").path("/anyhost", "Prefix", "web", 80).to_yaml(),
        Ingress::new("a", "seven").default_backend("web", 80).host_path("seven.example.com", "/x", "Prefix", "api", 80).to_yaml(),
    ]
}

struct Case {
    name: &'static str,
    /// Objects in the store before, besides `base()`.
    extra: Vec<String>,
    /// Objects written by the change, and objects it deletes.
    write: Vec<String>,
    delete: Vec<ObjRef>,
    /// Every object the change names (as the source reports them).
    changed: Vec<ObjRef>,
    /// `endpoints`, `incremental` or `full`.
    mode: &'static str,
    /// A route (host, rule path) and the endpoints it must have after the change.
    expect: Option<(&'static str, &'static str, Vec<&'static str>)>,
}

fn slice_ref(name: &str) -> ObjRef {
    ObjRef::new("EndpointSlice", "a", name)
}

fn cases() -> Vec<Case> {
    let case = |name, write: Vec<String>, changed: Vec<ObjRef>, mode, expect| Case { name, extra: vec![], write, delete: vec![], changed, mode, expect };
    vec![
        case("web's addresses move", vec![web_slice("web-abc", &["10.0.0.3", "10.0.0.4"])], vec![slice_ref("web-abc")], "endpoints",
            Some(("one.example.com", "/", vec!["10.0.0.3:8080", "10.0.0.4:8080", "10.0.0.7:8080"]))),
        case("only ready, non-terminating endpoints serve",
            vec![EndpointSlice::new("a", "web-abc", "web").port("http", 8080).ready("10.0.0.1").endpoint(Endpoint::at("10.0.0.2").ready(false))
                .endpoint(Endpoint::at("10.0.0.5").ready(true).terminating(true)).endpoint(Endpoint::at("10.0.0.6")).to_yaml()],
            vec![slice_ref("web-abc")], "endpoints", Some(("two.example.com", "/", vec!["10.0.0.1:8080", "10.0.0.6:8080", "10.0.0.7:8080"]))),
        case("the slice port of the Service port's name", vec![EndpointSlice::new("a", "api-abc", "api").port("http", 8081).port("grpc", 9091).ready("10.0.1.2").to_yaml()],
            vec![slice_ref("api-abc")], "endpoints", Some(("three.example.com", "/grpc", vec!["10.0.1.2:9091"]))),
        case("an undialable address is left out and reported", vec![web_slice("web-abc", &["10.0.0.1", "0.0.0.0"])], vec![slice_ref("web-abc")], "endpoints",
            Some(("*", "/anyhost", vec!["10.0.0.1:8080", "10.0.0.7:8080"]))),
        case("a new slice of a Service that serves", vec![web_slice("web-ghi", &["10.0.0.9"])], vec![slice_ref("web-ghi")], "endpoints",
            Some(("*.wild.example.com", "/", vec!["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.7:8080", "10.0.0.9:8080"]))),
        Case { name: "one of two slices deleted", extra: vec![], write: vec![], delete: vec![slice_ref("web-def")], changed: vec![slice_ref("web-def")], mode: "endpoints",
            expect: Some(("one.example.com", "/", vec!["10.0.0.1:8080", "10.0.0.2:8080"])) },
        case("a slice that loses its Service label",
            vec!["apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  namespace: a\n  name: web-def\naddressType: IPv4\nports:\n- name: http\n  port: 8080\nendpoints:\n- addresses: [\"10.0.0.7\"]\n".to_string()],
            vec![slice_ref("web-def")], "endpoints", Some(("one.example.com", "/", vec!["10.0.0.1:8080", "10.0.0.2:8080"]))),
        case("a slice of a Service nobody uses", vec![EndpointSlice::new("a", "idle-abc", "idle").port("http", 80).ready("10.0.9.1").to_yaml()], vec![slice_ref("idle-abc")], "endpoints", None),
        case("no endpoint left: a compile, for the 503 and its diagnostic",
            vec![EndpointSlice::new("a", "web-abc", "web").port("http", 8080).endpoint(Endpoint::at("10.0.0.1").ready(false)).to_yaml(), web_slice("web-def", &[])],
            vec![slice_ref("web-abc"), slice_ref("web-def")], "incremental", Some(("one.example.com", "/", vec![]))),
        case("a rule with a default-backend annotation", vec![EndpointSlice::new("a", "solo-abc", "solo").port("http", 8080).ready("10.0.2.2").to_yaml()],
            vec![slice_ref("solo-abc")], "incremental", Some(("four.example.com", "/", vec!["10.0.2.2:8080"]))),
        case("a Service an annotation names", vec![EndpointSlice::new("a", "alt-abc", "alt").port("http", 8080).ready("10.0.3.2").to_yaml()], vec![slice_ref("alt-abc")], "incremental", None),
        case("service-upstream: the ClusterIP stays", vec![EndpointSlice::new("a", "up-abc", "up").port("http", 8080).ready("10.0.4.2").to_yaml()],
            vec![slice_ref("up-abc")], "incremental", Some(("five.example.com", "/", vec!["10.96.0.5:80"]))),
        case("a slice moving to another Service", vec![EndpointSlice::new("a", "web-def", "api").port("http", 8080).ready("10.0.0.7").to_yaml()],
            vec![slice_ref("web-def")], "incremental", Some(("seven.example.com", "/x", vec!["10.0.0.7:8080", "10.0.1.1:8080"]))),
        case("a slice and an Ingress together",
            vec![web_slice("web-abc", &["10.0.0.3"]), Ingress::new("a", "two").host_path("two.example.com", "/new", "Prefix", "web", "http").to_yaml()],
            vec![slice_ref("web-abc"), ObjRef::new("Ingress", "a", "two")], "incremental", Some(("two.example.com", "/new", vec!["10.0.0.3:8080", "10.0.0.7:8080"]))),
        Case {
            name: "a canary on a host of the Service",
            extra: vec![Ingress::new("a", "one-canary").annotation("nginx.ingress.kubernetes.io/canary", "true").annotation("nginx.ingress.kubernetes.io/canary-weight", "0")
                .host_path("one.example.com", "/", "Prefix", "web", 80).to_yaml()],
            write: vec![web_slice("web-abc", &["10.0.0.3"])],
            delete: vec![],
            changed: vec![slice_ref("web-abc")],
            mode: "full",
            expect: Some(("one.example.com", "/", vec!["10.0.0.3:8080", "10.0.0.7:8080"])),
        },
    ]
}

fn vhost<'c>(config: &'c Config, host: &str) -> &'c std::sync::Arc<VirtualHost> {
    match host.strip_prefix("*.") {
        _ if host == "*" => config.hostless.as_ref().unwrap(),
        Some(parent) => &config.wildcard[parent],
        None => &config.exact[host],
    }
}

#[test]
fn each_change_takes_its_path_and_serves_what_a_full_compile_serves() {
    let settings = common::compile_settings();
    for case in cases() {
        let mut store = Store::default();
        for y in base().iter().chain(&case.extra) {
            insert_yaml(&mut store, y);
        }
        let prev = compile(&store, &settings);
        let mut index = Index::new(&store, prev.config.route_count);
        for y in &case.write {
            insert_yaml(&mut store, y);
        }
        for r in &case.delete {
            store.remove(r);
        }
        let full = compile(&store, &settings);
        let before = || Previous { config: &prev.config, diagnostics: &prev.diagnostics, status: &prev.status };
        let (mode, got) = match endpoint_only::patch(&mut index, before(), &store, &case.changed, &settings) {
            Some(c) => ("endpoints", c),
            None => match incremental::recompile(&mut index, before(), &store, &case.changed, &settings) {
                Some(c) => ("incremental", c),
                None => ("full", compile(&store, &settings)),
            },
        };
        assert_eq!(mode, case.mode, "{}", case.name);
        let (a, b) = (served(&got), served(&full));
        let first = a.lines().zip(b.lines()).position(|(x, y)| x != y);
        assert!(a == b, "{}: line {first:?} differs:\n{:?}\n{:?}", case.name, first.and_then(|i| a.lines().nth(i)), first.and_then(|i| b.lines().nth(i)));
        assert_eq!(got.status, full.status, "{}", case.name);
        if let Some((host, path, eps)) = &case.expect {
            let v = vhost(&got.config, host);
            let route = v.routes.iter().find(|r| r.rule_path == *path).unwrap_or_else(|| panic!("{}: no route {host}{path}", case.name));
            let have: Vec<String> = route.backend().endpoints.iter().map(|e| e.to_string()).collect();
            assert_eq!(have, *eps, "{}: endpoints of {host}{path}", case.name);
            assert_eq!(route.backend().unavailable.is_some(), eps.is_empty(), "{}: no endpoints answer 503", case.name);
        }
        if mode == "endpoints" {
            // Nothing compiled: hosts without the Service are the same objects, and so is every
            // route's filter list.
            assert!(std::sync::Arc::ptr_eq(vhost(&got.config, "five.example.com"), vhost(&prev.config, "five.example.com")), "{}", case.name);
            assert_eq!(got.config.route_count, prev.config.route_count, "{}", case.name);
        }
    }
}

/// The backend keeps what the Ingress made of it: the protocol (`backend-protocol: GRPC`),
/// the policy, the port as the rule named it, and its id.
#[test]
fn a_replaced_backend_keeps_protocol_policy_port_and_id() {
    let settings = common::compile_settings();
    let mut store = Store::default();
    for y in base() {
        insert_yaml(&mut store, &y);
    }
    let prev = compile(&store, &settings);
    let mut index = Index::new(&store, prev.config.route_count);
    insert_yaml(&mut store, &EndpointSlice::new("a", "api-abc", "api").port("http", 8080).port("grpc", 9092).ready("10.0.1.3").to_yaml());
    let before = Previous { config: &prev.config, diagnostics: &prev.diagnostics, status: &prev.status };
    let got = endpoint_only::patch(&mut index, before, &store, &[slice_ref("api-abc")], &settings).expect("an endpoint-only change");
    let old = vhost(&prev.config, "three.example.com").routes[0].backend().clone();
    let new = vhost(&got.config, "three.example.com").routes[0].backend().clone();
    assert_eq!(new.endpoints, vec!["10.0.1.3:9092".parse().unwrap()]);
    assert_eq!((new.id, &new.name, &new.port, new.protocol, &new.policy), (old.id, &old.name, &old.port, old.protocol, &old.policy));
    assert!(new.protocol.grpc());
    // One backend per Service port: both routes to api:80 see the same new one.
    let one = vhost(&got.config, "one.example.com").routes.iter().find(|r| r.rule_path == "/api").unwrap().backend().clone();
    let seven = vhost(&got.config, "seven.example.com").routes[0].backend().clone();
    assert!(std::sync::Arc::ptr_eq(&one, &seven));
    assert_eq!(one.endpoints, vec!["10.0.1.3:8080".parse().unwrap()]);
    // The index follows: a second change against it is right too.
    insert_yaml(&mut store, &EndpointSlice::new("a", "api-abc", "api").port("http", 8080).port("grpc", 9092).ready("10.0.1.4").to_yaml());
    let before = Previous { config: &got.config, diagnostics: &got.diagnostics, status: &got.status };
    let again = endpoint_only::patch(&mut index, before, &store, &[slice_ref("api-abc")], &settings).expect("a second endpoint-only change");
    assert_eq!(served(&again), served(&compile(&store, &settings)));
}

/// Many random slice changes in a row (addresses, readiness, terminating, ports, emptied,
/// deleted, new slices, slices moving between Services), each taken as the engine takes it:
/// endpoints only, else the hosts it reaches, else everything. After each, the result serves
/// what a full compile serves.
#[test]
fn random_slice_changes_in_a_row_serve_what_a_full_compile_serves() {
    let settings = common::compile_settings();
    let mut store = Store::default();
    for y in base() {
        insert_yaml(&mut store, &y);
    }
    let mut prev = compile(&store, &settings);
    let mut index = Index::new(&store, prev.config.route_count);
    let mut seed: u64 = 0x2545f4914f6cdd1d;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let services = ["web", "api", "solo", "alt", "up", "idle"];
    let mut counts = std::collections::BTreeMap::new();
    for step in 0..200 {
        let name = ["web-abc", "web-def", "api-abc", "solo-abc", "up-abc", "extra-1", "extra-2"][next(7) as usize];
        let r = slice_ref(name);
        if next(8) == 0 {
            store.remove(&r);
        } else {
            let svc = if next(6) == 0 || name.starts_with("extra") { services[next(6) as usize] } else { name.split('-').next().unwrap() };
            let mut s = EndpointSlice::new("a", name, svc).port("http", 8080 + next(2) as u16);
            if next(3) == 0 {
                s = s.port("grpc", 9090);
            }
            for i in 0..next(4) {
                let e = Endpoint::at(format!("10.1.{}.{}", next(3), i + 1));
                s = s.endpoint(match next(4) {
                    0 => e.ready(false),
                    1 => e.ready(true).terminating(true),
                    _ => e,
                });
            }
            insert_yaml(&mut store, &s.to_yaml());
        }
        let changed = [r];
        let before = || Previous { config: &prev.config, diagnostics: &prev.diagnostics, status: &prev.status };
        let (mode, got) = match endpoint_only::patch(&mut index, before(), &store, &changed, &settings) {
            Some(c) => ("endpoints", c),
            None => match incremental::recompile(&mut index, before(), &store, &changed, &settings) {
                Some(c) => ("incremental", c),
                None => {
                    let c = compile(&store, &settings);
                    index = Index::new(&store, c.config.route_count);
                    ("full", c)
                }
            },
        };
        *counts.entry(mode).or_insert(0) += 1;
        let full = compile(&store, &settings);
        let (a, b) = (served(&got), served(&full));
        let first = a.lines().zip(b.lines()).position(|(x, y)| x != y);
        assert!(a == b, "step {step} ({mode}, {}): line {first:?} differs:\n{:?}\n{:?}", changed[0], first.and_then(|i| a.lines().nth(i)), first.and_then(|i| b.lines().nth(i)));
        assert_eq!(got.status, full.status, "step {step}");
        prev = got;
    }
    eprintln!("{counts:?}");
    assert!(counts.get("endpoints").copied().unwrap_or(0) > 30, "too few endpoint-only changes to prove anything: {counts:?}");
    assert!(counts.get("incremental").copied().unwrap_or(0) > 20, "{counts:?}");
}

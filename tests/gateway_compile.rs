//! The Gateway API processor as tables of "store in, Config and status out", straight through
//! `compile`: ownership, listener merging and conflicts, hostname intersection, allowedRoutes,
//! parentRefs, precedence, references and grants, and the conditions each case gives.

mod common;

use std::net::SocketAddr;

use common::gateway::*;
use common::*;
use serde_json::{Value, json};
use vestibule::compile::{self, Compiled, Settings};
use vestibule::config::{ListenerProtocol, ListenerSpec, RequestFacts, Target};
use vestibule::gateway_api as gw;

const OLD: &str = "2020-01-01T00:00:00Z";
const NEW: &str = "2021-01-01T00:00:00Z";

fn compile_docs(docs: &[String], settings: &Settings) -> Compiled {
    compile::compile(&store_of(&manifest(docs)), settings)
}

fn backend(svc: &str) -> String {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    backend_yaml("default", svc, &[addr])
}

fn class() -> String {
    gateway_class("vestibule", CONTROLLER)
}

fn gw1(listeners: Vec<Value>) -> String {
    gateway("default", "gw", "vestibule", listeners)
}

fn http_route(ns: &str, name: &str, created: &str, spec: Value) -> String {
    route("HTTPRoute", ns, name, created, spec)
}

/// Who answers on `port` for host + path (+ headers): `KIND ns/name PATH -> service`, or the
/// status the data plane answers with.
fn routed(c: &Compiled, port: u16, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut h = http::HeaderMap::new();
    for (k, v) in headers {
        h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let facts = RequestFacts { path, method: &http::Method::GET, headers: &h, query };
    match c.config.route_on(port, host, &facts) {
        Target::Route { route, .. } => {
            let b = route.backend();
            let svc = if b.unavailable.is_some() && b.endpoints.is_empty() && b.service.is_empty() { "(none)".to_string() } else { b.service.clone() };
            format!("{} {} {} -> {svc}", route.ingress.kind, route.ingress.name, route.rule_path)
        }
        Target::NotFound | Target::HostNotFound { .. } => "404".into(),
        other => format!("{other:?}"),
    }
}

/// `(status, reason)` of condition `type_`.
fn cond(list: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition], type_: &str) -> (String, String) {
    let c = list.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_} in {list:?}"));
    (c.status.clone(), c.reason.clone())
}

fn t(reason: &str) -> (String, String) {
    ("True".into(), reason.into())
}

fn f(reason: &str) -> (String, String) {
    ("False".into(), reason.into())
}

fn gateway_status<'c>(c: &'c Compiled, name: &str) -> &'c gw::GatewayStatus {
    c.status.gateway.gateways.get(&("default".to_string(), name.to_string())).unwrap_or_else(|| panic!("no status for Gateway {name}"))
}

fn listener_status<'c>(c: &'c Compiled, gw: &str, listener: &str) -> &'c gw::ListenerStatus {
    gateway_status(c, gw).listeners.iter().find(|l| l.name == listener).unwrap()
}

/// The conditions of the first parent entry of HTTPRoute `ns/name`.
fn route_parent<'c>(c: &'c Compiled, ns: &str, name: &str) -> &'c gw::RouteParentStatus {
    &c.status.gateway.http_routes.get(&(ns.to_string(), name.to_string())).unwrap_or_else(|| panic!("no status for HTTPRoute {name}"))[0]
}

fn simple(name: &str, created: &str, hostnames: &[&str], path: &str, svc: &str) -> String {
    http_route("default", name, created, json!({
        "parentRefs": [{"name": "gw"}], "hostnames": hostnames,
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}], "backendRefs": [backend_ref(svc, 1)]}],
    }))
}

#[test]
fn only_classes_with_our_controller_name_and_their_gateways_are_served() {
    let s = compile_settings();
    let c = compile_docs(
        &[
            class(),
            gateway_class("other", "example.com/other"),
            gw1(vec![listener("http", 8001, "HTTP", json!({}))]),
            gateway("default", "theirs", "other", vec![listener("http", 8002, "HTTP", json!({}))]),
            simple("mine", OLD, &[], "/", "web"),
            http_route("default", "for-them", OLD, json!({"parentRefs": [{"name": "theirs"}], "rules": [{"backendRefs": [backend_ref("web", 1)]}]})),
            backend("web"),
        ],
        &s,
    );
    let classes = &c.status.gateway.gateway_classes;
    assert_eq!(classes.keys().collect::<Vec<_>>(), ["vestibule"]);
    assert_eq!(cond(&classes["vestibule"].conditions, "Accepted"), t("Accepted"));
    assert_eq!(cond(&classes["vestibule"].conditions, "SupportedVersion"), t("SupportedVersion"));
    assert_eq!(c.status.gateway.gateways.len(), 1, "only our Gateway has status");
    assert_eq!(cond(&gateway_status(&c, "gw").conditions, "Programmed"), t("Programmed"));
    assert!(c.config.listeners.iter().any(|l| l.addr.port() == 8001) && !c.config.listeners.iter().any(|l| l.addr.port() == 8002));
    assert_eq!(routed(&c, 8001, "any", "/x", &[]), "HTTPRoute mine / -> web");
    assert_eq!(routed(&c, 8002, "any", "/x", &[]), "404");
    assert!(!c.status.gateway.http_routes.contains_key(&("default".into(), "for-them".into())), "a route of another controller's Gateway gets no status from us");
    assert_eq!(listener_status(&c, "gw", "http").attached_routes, 1);
    assert_eq!(gateway_status(&c, "gw").conditions[0].observed_generation, Some(1));
}

#[test]
fn listeners_on_one_port_merge_by_hostname_and_conflict_otherwise() {
    let s = compile_settings();
    let l = |name: &str, proto: &str, host: &str| listener(name, 8100, proto, json!({"hostname": host}));
    let c = compile_docs(
        &[
            class(),
            gateway("default", "a", "vestibule", vec![l("a", "HTTP", "a.com")]),
            gateway("default", "b", "vestibule", vec![l("b", "HTTP", "b.com"), l("b-dup", "HTTP", "a.com")]),
            gateway("default", "c", "vestibule", vec![listener("tls", 8100, "HTTPS", json!({"hostname": "c.com", "tls": {"certificateRefs": [{"name": "x"}]}}))]),
            route("HTTPRoute", "default", "ra", OLD, json!({"parentRefs": [{"name": "a"}], "rules": [{"backendRefs": [backend_ref("web", 1)]}]})),
            route("HTTPRoute", "default", "rb", OLD, json!({"parentRefs": [{"name": "b"}], "rules": [{"backendRefs": [backend_ref("api", 1)]}]})),
            backend("web"),
            backend("api"),
        ],
        &s,
    );
    assert_eq!(cond(&listener_status(&c, "a", "a").conditions, "Conflicted"), f("NoConflicts"));
    assert_eq!(cond(&listener_status(&c, "b", "b").conditions, "Conflicted"), f("NoConflicts"));
    assert_eq!(cond(&listener_status(&c, "b", "b-dup").conditions, "Conflicted"), t("HostnameConflict"));
    assert_eq!(cond(&listener_status(&c, "b", "b-dup").conditions, "Programmed"), f("Invalid"));
    assert_eq!(cond(&listener_status(&c, "c", "tls").conditions, "Conflicted"), t("ProtocolConflict"));
    assert_eq!(routed(&c, 8100, "a.com", "/", &[]), "HTTPRoute ra / -> web");
    assert_eq!(routed(&c, 8100, "b.com", "/", &[]), "HTTPRoute rb / -> api", "two Gateways share the port");
    assert_eq!(listener_status(&c, "b", "b-dup").attached_routes, 0);
    assert_eq!(cond(&gateway_status(&c, "b").conditions, "Accepted"), t("ListenersNotValid"));
}

#[test]
fn hostnames_intersect_and_gateway_wildcards_match_several_labels() {
    let s = compile_settings();
    let c = compile_docs(
        &[
            class(),
            gw1(vec![listener("wild", 8200, "HTTP", json!({"hostname": "*.example.com"}))]),
            simple("both", OLD, &["foo.example.com", "other.org"], "/", "web"),
            simple("deep", OLD, &["*.b.example.com"], "/", "api"),
            simple("none", OLD, &["other.org"], "/", "web"),
            simple("all", NEW, &[], "/all", "web"),
            backend("web"),
            backend("api"),
        ],
        &s,
    );
    assert_eq!(routed(&c, 8200, "foo.example.com", "/", &[]), "HTTPRoute both / -> web");
    assert_eq!(routed(&c, 8200, "other.org", "/", &[]), "404", "the listener does not take other.org");
    assert_eq!(routed(&c, 8200, "x.y.b.example.com", "/", &[]), "HTTPRoute deep / -> api", "the longer wildcard first, over several labels");
    assert_eq!(routed(&c, 8200, "x.y.example.com", "/all", &[]), "HTTPRoute all /all -> web", "a route without hostnames takes the listener's");
    assert_eq!(routed(&c, 8200, "example.com", "/all", &[]), "404");
    assert_eq!(cond(&route_parent(&c, "default", "none").conditions, "Accepted"), f("NoMatchingListenerHostname"));
    assert_eq!(cond(&route_parent(&c, "default", "both").conditions, "Accepted"), t("Accepted"));
    assert_eq!(listener_status(&c, "gw", "wild").attached_routes, 3);
}

#[test]
fn allowed_routes_namespaces_kinds_and_parent_refs_decide_attachment() {
    let s = compile_settings();
    let ns = |name: &str, team: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"team": team}}}).to_string();
    let in_ns = |ns: &str, name: &str, section: Option<&str>, port: Option<u16>| {
        let mut parent = json!({"name": "gw", "namespace": "default"});
        if let Some(s) = section {
            parent["sectionName"] = json!(s);
        }
        if let Some(p) = port {
            parent["port"] = json!(p);
        }
        http_route(ns, name, OLD, json!({"parentRefs": [parent], "rules": [{"backendRefs": [{"name": "web", "namespace": "default", "port": 80}]}]}))
    };
    let c = compile_docs(
        &[
            class(),
            ns("blue", "a"),
            ns("green", "b"),
            gw1(vec![
                listener("same", 8300, "HTTP", json!({"hostname": "same.com"})),
                listener("all", 8300, "HTTP", json!({"hostname": "all.com", "allowedRoutes": {"namespaces": {"from": "All"}}})),
                listener("team-a", 8300, "HTTP", json!({"hostname": "a.com", "allowedRoutes": {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}}}})),
                listener("grpc-only", 8301, "HTTP", json!({"allowedRoutes": {"kinds": [{"kind": "GRPCRoute"}]}})),
                listener("bad-kinds", 8302, "HTTP", json!({"allowedRoutes": {"kinds": [{"kind": "TLSRoute"}, {"kind": "HTTPRoute"}]}})),
            ]),
            in_ns("blue", "blue-same", Some("same"), None),
            in_ns("blue", "blue-team", Some("team-a"), None),
            in_ns("green", "green-team", Some("team-a"), None),
            in_ns("green", "green-all", None, Some(8300)),
            in_ns("default", "kinds", Some("grpc-only"), None),
            in_ns("default", "nowhere", Some("missing"), None),
            reference_grant("default", "routes", "HTTPRoute", "blue", "Service"),
            reference_grant("default", "routes-green", "HTTPRoute", "green", "Service"),
            backend("web"),
        ],
        &s,
    );
    let accepted = |ns: &str, name: &str| cond(&route_parent(&c, ns, name).conditions, "Accepted");
    assert_eq!(accepted("blue", "blue-same"), f("NotAllowedByListeners"), "Same: only the Gateway's namespace");
    assert_eq!(accepted("blue", "blue-team"), t("Accepted"));
    assert_eq!(accepted("green", "green-team"), f("NotAllowedByListeners"), "the selector does not select green");
    assert_eq!(accepted("green", "green-all"), t("Accepted"), "port 8300: the All listener takes it");
    assert_eq!(accepted("default", "kinds"), f("NotAllowedByListeners"));
    assert_eq!(accepted("default", "nowhere"), f("NoMatchingParent"));
    assert_eq!(routed(&c, 8300, "a.com", "/", &[]), "HTTPRoute blue-team / -> web");
    assert_eq!(routed(&c, 8300, "all.com", "/", &[]), "HTTPRoute green-all / -> web");
    assert_eq!(routed(&c, 8300, "same.com", "/", &[]), "404");
    let bad = listener_status(&c, "gw", "bad-kinds");
    assert_eq!(cond(&bad.conditions, "ResolvedRefs"), f("InvalidRouteKinds"));
    assert_eq!(bad.supported_kinds.iter().map(|k| k.kind.as_str()).collect::<Vec<_>>(), ["HTTPRoute"]);
    assert_eq!(listener_status(&c, "gw", "grpc-only").supported_kinds.iter().map(|k| k.kind.as_str()).collect::<Vec<_>>(), ["GRPCRoute"]);
}

#[test]
fn precedence_orders_across_routes_with_ties_to_the_oldest() {
    let s = compile_settings();
    let rule = |m: Value, svc: &str| json!({"matches": [m], "backendRefs": [backend_ref(svc, 1)]});
    let c = compile_docs(
        &[
            class(),
            gw1(vec![listener("http", 8400, "HTTP", json!({}))]),
            http_route("default", "young", NEW, json!({"parentRefs": [{"name": "gw"}], "rules": [
                rule(json!({"path": {"value": "/a"}}), "young"),
                rule(json!({"path": {"value": "/a"}, "headers": [{"name": "x-a", "value": "1"}, {"name": "x-b", "value": "1"}]}), "two-headers"),
            ]})),
            http_route("default", "old", OLD, json!({"parentRefs": [{"name": "gw"}], "rules": [
                rule(json!({"path": {"value": "/a"}}), "old"),
                rule(json!({"path": {"value": "/a"}, "headers": [{"name": "x-a", "value": "1"}]}), "one-header"),
                rule(json!({"path": {"type": "Exact", "value": "/a/b"}}), "exact"),
                rule(json!({"path": {"value": "/a/b"}}), "longer"),
            ]})),
            backend("young"), backend("old"), backend("two-headers"), backend("one-header"), backend("exact"), backend("longer"),
        ],
        &s,
    );
    assert_eq!(routed(&c, 8400, "h", "/a", &[]), "HTTPRoute old /a -> old", "a full tie goes to the oldest route");
    assert_eq!(routed(&c, 8400, "h", "/a", &[("x-a", "1")]), "HTTPRoute old /a -> one-header");
    assert_eq!(routed(&c, 8400, "h", "/a", &[("x-a", "1"), ("x-b", "1")]), "HTTPRoute young /a -> two-headers", "more header matches first, whatever the age");
    assert_eq!(routed(&c, 8400, "h", "/a/b", &[("x-a", "1"), ("x-b", "1")]), "HTTPRoute old /a/b -> exact", "an exact path first");
    assert_eq!(routed(&c, 8400, "h", "/a/b/c", &[]), "HTTPRoute old /a/b -> longer", "the longest prefix");
}

#[test]
fn backend_refs_resolve_with_grants_and_unusable_ones_are_reported() {
    let s = compile_settings();
    let r = |name: &str, backend: Value| http_route("default", name, OLD, json!({"parentRefs": [{"name": "gw"}], "hostnames": [format!("{name}.com")], "rules": [{"backendRefs": [backend]}]}));
    let c = compile_docs(
        &[
            class(),
            gw1(vec![listener("http", 8500, "HTTP", json!({}))]),
            r("missing", json!({"name": "nope", "port": 80})),
            r("elsewhere", json!({"name": "web", "namespace": "other", "port": 80})),
            r("granted", json!({"name": "web", "namespace": "shared", "port": 80})),
            r("kind", json!({"group": "example.com", "kind": "Bucket", "name": "web"})),
            r("fine", json!({"name": "web", "port": 80})),
            backend("web"),
            backend_yaml("other", "web", &["127.0.0.1:9".parse().unwrap()]),
            backend_yaml("shared", "web", &["127.0.0.1:9".parse().unwrap()]),
            reference_grant("shared", "g", "HTTPRoute", "default", "Service"),
        ],
        &s,
    );
    let refs = |name: &str| cond(&route_parent(&c, "default", name).conditions, "ResolvedRefs");
    assert_eq!(refs("missing"), f("BackendNotFound"));
    assert_eq!(refs("elsewhere"), f("RefNotPermitted"));
    assert_eq!(refs("granted"), t("ResolvedRefs"));
    assert_eq!(refs("kind"), f("InvalidKind"));
    assert_eq!(refs("fine"), t("ResolvedRefs"));
    assert_eq!(cond(&route_parent(&c, "default", "elsewhere").conditions, "Accepted"), t("Accepted"), "an unusable backend does not stop attachment");
    let backend_of = |host: &str| match c.config.route_on(8500, host, &RequestFacts { path: "/", method: &http::Method::GET, headers: &http::HeaderMap::new(), query: "" }) {
        Target::Route { route, .. } => route.backend().clone(),
        other => panic!("{other:?}"),
    };
    assert!(backend_of("elsewhere.com").endpoints.is_empty(), "no grant: the Service in the other namespace is not used");
    assert!(!backend_of("granted.com").endpoints.is_empty());
    let shown: Vec<String> = c.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(shown.iter().any(|d| d.starts_with("HTTPRoute default/elsewhere: spec.rules[0].backendRefs: ") && d.contains("ReferenceGrant")), "{shown:#?}");
}

#[test]
fn ingress_and_httproute_on_one_host_and_port_merge_with_ties_to_the_oldest() {
    let mut s = compile_settings();
    let http = |port: u16, name: &str, protocol| ListenerSpec { name: name.into(), addr: SocketAddr::from(([0, 0, 0, 0], port)), protocol, proxy_protocol: false };
    s.listeners = vec![http(80, "http", ListenerProtocol::Http), http(443, "https", ListenerProtocol::Https)];
    let c = compile_docs(
        &[
            class(),
            gw1(vec![listener("http", 80, "HTTP", json!({}))]),
            simple("older-route", "2019-01-01T00:00:00Z", &["shop.com"], "/cart", "route-svc"),
            simple("newer-route", NEW, &["shop.com"], "/api", "route-svc"),
            Ingress::new("default", "shop").created(OLD).host_path("shop.com", "/cart", "Prefix", "ing-svc", 80).host_path("shop.com", "/api", "Prefix", "ing-svc", 80).host_path("shop.com", "/", "Prefix", "ing-svc", 80).to_yaml(),
            backend("route-svc"),
            backend("ing-svc"),
        ],
        &s,
    );
    assert_eq!(routed(&c, 80, "shop.com", "/cart", &[]), "HTTPRoute older-route /cart -> route-svc", "the HTTPRoute is older");
    assert_eq!(routed(&c, 80, "shop.com", "/api", &[]), "Ingress shop /api -> ing-svc", "the Ingress is older");
    assert_eq!(routed(&c, 80, "shop.com", "/other", &[]), "Ingress shop / -> ing-svc");
    assert_eq!(routed(&c, 443, "shop.com", "/cart", &[]), "Ingress shop /cart -> ing-svc", "the Gateway listener is on port 80 only");
    assert!(!c.config.listeners.iter().any(|l| l.name.starts_with("gateway-")), "port 80 is the Ingress listener's");
}

#[test]
fn https_listeners_need_usable_certificate_refs() {
    let s = compile_settings();
    let (_, cert, key) = vestibule::tls::self_signed(&["secure.com"]).unwrap();
    let https = |name: &str, host: &str, cref: Value| listener(name, 8600, "HTTPS", json!({"hostname": host, "tls": {"mode": "Terminate", "certificateRefs": [cref]}}));
    let c = compile_docs(
        &[
            class(),
            gw1(vec![
                https("ok", "secure.com", json!({"name": "cert"})),
                https("missing", "m.com", json!({"name": "nope"})),
                https("cross", "x.com", json!({"name": "cert", "namespace": "certs"})),
                https("kind", "k.com", json!({"name": "cert", "kind": "ConfigMap"})),
            ]),
            Secret::tls("default", "cert", &cert, &key).to_yaml(),
            Secret::tls("certs", "cert", &cert, &key).to_yaml(),
        ],
        &s,
    );
    let refs = |l: &str| cond(&listener_status(&c, "gw", l).conditions, "ResolvedRefs");
    assert_eq!(refs("ok"), t("ResolvedRefs"));
    assert_eq!(refs("missing"), f("InvalidCertificateRef"));
    assert_eq!(refs("cross"), f("RefNotPermitted"));
    assert_eq!(refs("kind"), f("InvalidCertificateRef"));
    assert_eq!(cond(&listener_status(&c, "gw", "missing").conditions, "Programmed"), f("Invalid"));
    assert_eq!(c.config.tls.pick(Some("secure.com")).secret, Some(("default".into(), "cert".into())));
    assert!(c.config.tls.pick(Some("x.com")).secret.is_none(), "no grant, no certificate");
}

#[test]
fn grpc_and_tls_routes_attach_by_kind_and_get_their_own_status() {
    let s = compile_settings();
    let c = compile_docs(
        &[
            class(),
            gw1(vec![
                listener("http", 8700, "HTTP", json!({})),
                listener("pass", 8701, "TLS", json!({"hostname": "*.db.test", "tls": {"mode": "Passthrough"}})),
            ]),
            route("GRPCRoute", "default", "rpc", OLD, json!({"parentRefs": [{"name": "gw"}], "rules": [{"matches": [{"method": {"service": "shop.Orders", "method": "Get"}}], "backendRefs": [backend_ref("web", 1)]}]})),
            route("GRPCRoute", "default", "rpc-on-tls", OLD, json!({"parentRefs": [{"name": "gw", "sectionName": "pass"}], "rules": [{"backendRefs": [backend_ref("web", 1)]}]})),
            route("TLSRoute", "default", "db", OLD, json!({"parentRefs": [{"name": "gw"}], "hostnames": ["pg.db.test"], "rules": [{"backendRefs": [backend_ref("web", 1)]}]})),
            route("TLSRoute", "default", "gone", OLD, json!({"parentRefs": [{"name": "gw"}], "hostnames": ["x.db.test"], "rules": [{"backendRefs": [backend_ref("nope", 1)]}]})),
            backend("web"),
        ],
        &s,
    );
    let g = &c.status.gateway;
    let key = |n: &str| ("default".to_string(), n.to_string());
    assert_eq!(cond(&g.grpc_routes[&key("rpc")][0].conditions, "Accepted"), t("Accepted"));
    assert_eq!(cond(&g.grpc_routes[&key("rpc-on-tls")][0].conditions, "Accepted"), f("NotAllowedByListeners"), "a Passthrough listener takes TLSRoutes only");
    assert_eq!(cond(&g.tls_routes[&key("db")][0].conditions, "Accepted"), t("Accepted"));
    assert_eq!(cond(&g.tls_routes[&key("gone")][0].conditions, "ResolvedRefs"), f("BackendNotFound"));
    assert_eq!(routed(&c, 8700, "h", "/shop.Orders/Get", &[]), "GRPCRoute rpc /shop.Orders/Get -> web");
    assert_eq!(routed(&c, 8700, "h", "/shop.Orders/Put", &[]), "404");
    let pass = c.config.passthrough_on(8701);
    assert_eq!(pass.backend("pg.db.test").map(|b| b.service.as_str()), Some("web"));
    assert!(pass.backend("x.db.test").is_none(), "an unusable backendRef splices nothing");
    assert!(c.config.passthrough_on(8700).backend("pg.db.test").is_none(), "only on the TLS listener's port");
    assert_eq!(listener_status(&c, "gw", "pass").attached_routes, 2);
    let grpc = c.config.ports[&8700].vhost("h").unwrap().routes[0].backend().protocol;
    assert_eq!(grpc, vestibule::config::BackendProtocol::Grpc, "GRPCRoute backends are spoken to over h2c");
}

#[test]
fn a_listener_without_hostname_serves_its_certificate_for_the_names_in_it() {
    let s = compile_settings();
    let (_, cert, key) = vestibule::tls::self_signed(&["one.test", "two.test"]).unwrap();
    let c = compile_docs(
        &[class(), gw1(vec![listener("https", 8800, "HTTPS", json!({"tls": {"certificateRefs": [{"name": "cert"}]}}))]), Secret::tls("default", "cert", &cert, &key).to_yaml()],
        &s,
    );
    for name in ["one.test", "two.test"] {
        assert_eq!(c.config.tls.pick(Some(name)).secret, Some(("default".into(), "cert".into())), "{name}");
    }
    assert!(c.config.listeners.iter().any(|l| l.addr.port() == 8800 && l.protocol == ListenerProtocol::Https));
}

#[test]
fn a_rule_whose_filter_cannot_be_applied_answers_500_and_the_route_says_why() {
    let s = compile_settings();
    let c = compile_docs(
        &[
            class(),
            gw1(vec![listener("http", 8900, "HTTP", json!({}))]),
            http_route("default", "r", OLD, json!({"parentRefs": [{"name": "gw"}], "rules": [
                {"matches": [{"path": {"value": "/ext"}}], "filters": [{"type": "ExtensionRef", "extensionRef": {"group": "example.com", "kind": "Thing", "name": "t"}}], "backendRefs": [backend_ref("web", 1)]},
                {"backendRefs": [backend_ref("web", 1)]},
            ]})),
            backend("web"),
        ],
        &s,
    );
    let headers = http::HeaderMap::new();
    let filters_of = |path: &'static str| match c.config.route_on(8900, "h", &RequestFacts { path, method: &http::Method::GET, headers: &headers, query: "" }) {
        Target::Route { route, .. } => route.filters.to_vec(),
        other => panic!("{other:?}"),
    };
    assert_eq!(filters_of("/ext"), vec![vestibule::config::Filter::LocationDenied { status: 500 }], "never served as though the filter were absent");
    assert!(filters_of("/other").is_empty(), "the other rule is served");
    assert_eq!(cond(&route_parent(&c, "default", "r").conditions, "Accepted"), f("UnsupportedValue"));
    let shown: Vec<String> = c.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(shown.iter().any(|d| d.starts_with("HTTPRoute default/r: spec.rules[0].filters[0].extensionRef: ")), "{shown:#?}");
}

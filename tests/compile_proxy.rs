//! The proxy, hosts, headers and errors annotation families as tables of "store in, routes and
//! diagnostics out", straight through `compile` (no sockets): per-Ingress proxy settings over
//! the ConfigMap's, server aliases, service-upstream, custom-headers and error pages.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use vestibule::compile::{self, Compiled, Reason, Settings, Severity};
use vestibule::config::{Filter, Route, Target};

const CREATED: &str = "2020-01-01T00:00:00Z";
const N: &str = "nginx.ingress.kubernetes.io/";


fn settings() -> Settings {
    let mut s = compile_settings();
    s.configmap = Some(("ingress".into(), "vestibule".into()));
    s
}

fn backend(svc: &str) -> String {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    backend_yaml("default", svc, &[addr])
}

fn ing(name: &str, host: &str, ann: &[(&str, &str)]) -> String {
    let mut i = Ingress::new("default", name).created(CREATED);
    for (k, v) in ann {
        i = i.annotation(&format!("{N}{k}"), v);
    }
    i.host_path(host, "/", "Prefix", "web", 80).to_yaml()
}

fn compiled(docs: &[String]) -> Compiled {
    compile::compile(&store_of(&manifest(docs)), &settings())
}

fn route<'c>(c: &'c Compiled, host: &str) -> &'c Route {
    match c.config.route_path(host, "/") {
        Target::Route { route, .. } => route,
        other => panic!("{host}: no route: {other:?}"),
    }
}

fn diags(c: &Compiled) -> Vec<(Severity, String, String)> {
    c.diagnostics.iter().filter(|d| d.object.kind == "Ingress").map(|d| (d.severity, d.object.name.clone(), d.field.clone())).collect()
}

#[test]
fn proxy_settings_per_ingress_over_the_configmap() {
    let cm = ConfigMap::new("ingress", "vestibule").data("proxy-body-size", "2m").data("proxy-read-timeout", "30").data("retry-non-idempotent", "true").to_yaml();
    let tuned: &[(&str, &str)] = &[
        ("proxy-body-size", "8m"),
        ("proxy-connect-timeout", "50"),
        ("proxy-read-timeout", "20"),
        ("proxy-send-timeout", "20"),
        ("proxy-next-upstream", "error timeout http_502"),
        ("proxy-next-upstream-tries", "0"),
        ("proxy-next-upstream-timeout", "999999"),
        ("proxy-request-buffering", "off"),
        ("proxy-buffering", "on"),
        ("proxy-http-version", "1.0"),
    ];
    let invalid: &[(&str, &str)] = &[("proxy-body-size", "15r"), ("proxy-read-timeout", "50k"), ("proxy-send-timeout", "5s"), ("proxy-next-upstream", "sometimes"), ("proxy-request-buffering", "Off")];
    let c = compiled(&[backend("web"), cm, ing("tuned", "tuned.test", tuned), ing("plain", "plain.test", &[]), ing("invalid", "invalid.test", invalid)]);
    let (t, p, i) = (&route(&c, "tuned.test").proxy, &route(&c, "plain.test").proxy, &route(&c, "invalid.test").proxy);
    assert_eq!((t.body_limit, t.connect_timeout, t.read_timeout, t.send_timeout), (8 << 20, Duration::from_secs(50), Duration::from_secs(20), Duration::from_secs(20)));
    assert!(t.next_upstream.error && t.next_upstream.timeout && t.next_upstream.statuses == [502]);
    assert!(t.next_upstream.non_idempotent, "retry-non-idempotent in the ConfigMap appends non_idempotent");
    assert_eq!((t.upstream_tries, t.next_upstream_timeout), (usize::MAX, Some(Duration::from_secs(999999))));
    assert!(!t.request_buffering && t.response_buffering && t.http10);
    assert_eq!((p.body_limit, p.read_timeout, p.upstream_tries), (2 << 20, Duration::from_secs(30), 3), "no annotation: the ConfigMap's");
    assert!(p.request_buffering && !p.http10);
    assert_eq!(i, p, "invalid values: the global ones");
    let with_default = Ingress::new("default", "dflt").created(CREATED).annotation(&format!("{N}proxy-read-timeout"), "7").default_backend("web", 80).host_path("d.test", "/x", "Prefix", "web", 80).to_yaml();
    let c2 = compiled(&[backend("web"), with_default]);
    match c2.config.route_path("d.test", "/other") {
        Target::HostDefault { default, .. } => assert_eq!(default.proxy.read_timeout, Duration::from_secs(7), "the Ingress's defaultBackend gets its settings too"),
        other => panic!("{other:?}"),
    }
    let got = diags(&c);
    assert_eq!(got.len(), invalid.len(), "{got:?}");
    assert!(got.iter().all(|(s, name, f)| *s == Severity::Warning && name == "invalid" && f.starts_with("metadata.annotations[nginx.ingress.kubernetes.io/proxy-")), "{got:?}");
}

#[test]
fn server_aliases() {
    let c = compiled(&[
        backend("web"),
        ing("first", "foo.test", &[("server-alias", "bar.test, other.test")]),
        Ingress::new("default", "second").created(CREATED).annotation(&format!("{N}server-alias"), "baz.test").host_path("foo.test", "/b", "Prefix", "web", 80).to_yaml(),
        ing("other", "other.test", &[]),
        ing("bad", "bad.test", &[("server-alias", "x.test, a b")]),
    ]);
    assert_eq!(route(&c, "bar.test").ingress.name, "first", "the alias serves foo.test's routes");
    assert_eq!(route(&c, "other.test").ingress.name, "other", "an alias that is a host is dropped");
    assert!(matches!(c.config.route_path("baz.test", "/"), Target::NotFound), "only the first Ingress per host sets aliases");
    assert!(matches!(c.config.route_path("x.test", "/"), Target::NotFound));
    let got = diags(&c);
    assert_eq!(got, [(Severity::Error, "bad".to_string(), "metadata.annotations[nginx.ingress.kubernetes.io/server-alias]".to_string())]);
}

#[test]
fn service_upstream_dials_the_cluster_ip() {
    let svc = |name: &str, ip: &str| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  clusterIP: {ip}\n  ports:\n  - name: http\n    port: 80\n");
    let slice = |svc: &str| backend_slice("default", svc, &["127.0.0.1:9".parse().unwrap()]).to_yaml();
    let ingress = |name: &str, host: &str, svc: &str, on: &str| Ingress::new("default", name).created(CREATED).annotation(&format!("{N}service-upstream"), on).host_path(host, "/", "Prefix", svc, 80).to_yaml();
    let c = compiled(&[
        svc("web", "127.0.0.7"),
        slice("web"),
        svc("headless", "None"),
        slice("headless"),
        ingress("a", "a.test", "web", "true"),
        ingress("b", "b.test", "web", "false"),
        ingress("c", "c.test", "headless", "true"),
    ]);
    let eps = |h: &str| route(&c, h).backend().endpoints.clone();
    assert_eq!(eps("a.test"), ["127.0.0.7:80".parse::<SocketAddr>().unwrap()]);
    assert_eq!(eps("b.test"), ["127.0.0.1:9".parse::<SocketAddr>().unwrap()]);
    assert_eq!(eps("c.test"), ["127.0.0.1:9".parse::<SocketAddr>().unwrap()], "headless: the endpoints");
}

#[test]
fn custom_headers_allowed_or_denied() {
    let cm = ConfigMap::new("ingress", "vestibule").data("global-allowed-response-headers", "X-One, X-Two").to_yaml();
    let headers = ConfigMap::new("default", "hdrs").data("X-One", "1").data("X-Two", "$remote_addr").to_yaml();
    let refused = ConfigMap::new("default", "refused").data("X-One", "1").data("X-Three", "3").to_yaml();
    let c = compiled(&[
        backend("web"),
        cm,
        headers,
        refused,
        ing("ok", "ok.test", &[("custom-headers", "default/hdrs")]),
        ing("no", "no.test", &[("custom-headers", "default/refused")]),
        ing("gone", "gone.test", &[("custom-headers", "default/missing")]),
    ]);
    let ok = &route(&c, "ok.test").filters;
    assert!(matches!(&ok[..], [Filter::ResponseHeaders { headers }] if headers.len() == 2 && headers[1].1 == "$remote_addr"), "{ok:?}");
    for h in ["no.test", "gone.test"] {
        assert_eq!(&route(&c, h).filters[..], [Filter::LocationDenied { status: 503 }], "{h}");
    }
    let no = c.diagnostics.iter().find(|d| d.object.name == "no").expect("a diagnostic");
    assert_eq!((no.severity, no.reason, no.field.as_str()), (Severity::Error, Reason::InvalidField, "metadata.annotations[nginx.ingress.kubernetes.io/custom-headers]"));
    assert!(no.message.contains("\"X-Three\"") && no.message.contains("503"), "{no}");
}

#[test]
fn error_pages_and_default_backend() {
    let cm = ConfigMap::new("ingress", "vestibule").data("custom-http-errors", "503").to_yaml();
    let with_default = Ingress::new("default", "fallback").created(CREATED).annotation(&format!("{N}default-backend"), "errors").host_path("f.test", "/", "Prefix", "missing", 80).to_yaml();
    let c = compiled(&[
        backend("web"),
        backend("errors"),
        cm,
        with_default,
        ing("codes", "codes.test", &[("custom-http-errors", "404, 500"), ("default-backend", "errors"), ("disable-proxy-intercept-errors", "true")]),
        ing("global", "global.test", &[]),
        ing("bad", "bad.test", &[("custom-http-errors", "302"), ("default-backend", "Not_A_Name")]),
    ]);
    let f = route(&c, "f.test");
    assert_eq!(f.backend().service, "errors", "a rule Service that is missing goes to default-backend");
    assert!(f.filters.iter().any(|x| matches!(x, Filter::DefaultBackendHeaders(ctx) if ctx.service == "missing" && ctx.ingress == "fallback" && ctx.port == "80")), "{:?}", f.filters);
    let pages = |h: &str| route(&c, h).filters.iter().find_map(|x| if let Filter::ErrorPages(p) = x { Some(p.clone()) } else { None });
    let p = pages("codes.test").expect("error pages");
    assert_eq!((p.codes, p.intercept, p.backend.map(|b| b.service.clone())), (vec![404, 500], false, Some("errors".into())));
    let g = pages("global.test").expect("the ConfigMap's codes");
    assert_eq!((g.codes, g.backend.is_none()), (vec![503], true), "no default backend: none (404)");
    assert_eq!(pages("bad.test").map(|p| p.codes), Some(vec![503]), "an invalid list keeps the global one");
    let bad: Vec<_> = diags(&c).into_iter().filter(|d| d.1 == "bad").collect();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad.iter().all(|d| d.0 == Severity::Error));
}

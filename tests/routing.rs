//! Routing exactly per the Kubernetes Ingress spec, as a table of cases through real sockets.

mod common;

use common::*;

fn ingress(name: &str, created: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n  creationTimestamp: \"{created}\"\nspec:\n{spec}\n---\n"
    )
}

fn path(p: &str, ty: &str, svc: &str) -> String {
    format!("      - path: {p}\n        pathType: {ty}\n        backend:\n          service:\n            name: {svc}\n            port:\n              number: 80\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_table() {
    init_tracing();
    let names = [
        "prefix-foo", "exact-foobar", "root", "aaabbb", "exact", "same-exact", "same-prefix", "impl", "wild", "hostless",
        "bar-default", "bar-api", "catchall", "svc-a", "svc-b", "svc-old", "svc-new", "named",
    ];
    let mut echoes = Vec::new();
    let mut m = String::new();
    for n in names {
        let e = echo(n).await;
        m.push_str(&backend_yaml("default", n, &[e.addr]));
        m.push_str("\n---\n");
        echoes.push(e);
    }
    // A Service whose only endpoint is not ready, and one with a port named "web".
    m.push_str(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: empty\nspec:\n  ports:\n  - name: http\n    port: 80\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: empty-1\n  labels:\n    kubernetes.io/service-name: empty\naddressType: IPv4\nports:\n- name: http\n  port: 1\nendpoints:\n- addresses: [\"127.0.0.1\"]\n  conditions:\n    ready: false\n---\n",
    );
    let web = echo("web-named").await;
    m.push_str(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: webby\nspec:\n  ports:\n  - name: metrics\n    port: 9090\n  - name: web\n    port: 8000\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: webby-1\n  labels:\n    kubernetes.io/service-name: webby\naddressType: IPv4\nports:\n- name: metrics\n  port: 1\n- name: web\n  port: {}\nendpoints:\n- addresses: [\"127.0.0.1\"]\n---\n",
        web.addr.port()
    ));

    let foo_paths = [
        path("/foo", "Prefix", "prefix-foo"),
        path("/foo/bar", "Exact", "exact-foobar"),
        path("/", "Prefix", "root"),
        path("/aaa/bbb/", "Prefix", "aaabbb"),
        path("/exact", "Exact", "exact"),
        path("/same", "Exact", "same-exact"),
        path("/same", "Prefix", "same-prefix"),
        path("/impl", "ImplementationSpecific", "impl"),
    ]
    .concat();
    m.push_str(&ingress("foo", "2020-01-01T00:00:00Z", &format!("  rules:\n  - host: foo.com\n    http:\n      paths:\n{foo_paths}")));
    m.push_str(&ingress("wild", "2020-01-01T00:00:00Z", &format!("  rules:\n  - host: \"*.foo.com\"\n    http:\n      paths:\n{}", path("/", "Prefix", "wild"))));
    m.push_str(&ingress("hostless", "2020-01-01T00:00:00Z", &format!("  rules:\n  - http:\n      paths:\n{}", path("/hostless", "Prefix", "hostless"))));
    m.push_str(&ingress(
        "bar",
        "2020-01-01T00:00:00Z",
        &format!(
            "  defaultBackend:\n    service:\n      name: bar-default\n      port:\n        number: 80\n  rules:\n  - host: bar.com\n    http:\n      paths:\n{}",
            path("/api", "Prefix", "bar-api")
        ),
    ));
    m.push_str(&ingress("catchall", "2020-01-01T00:00:00Z", "  defaultBackend:\n    service:\n      name: catchall\n      port:\n        number: 80"));
    // Merging: the newer Ingress sorts first by name, yet the older one wins the shared path.
    m.push_str(&ingress(
        "a-newer",
        "2021-06-01T00:00:00Z",
        &format!("  rules:\n  - host: merge.com\n    http:\n      paths:\n{}{}", path("/b", "Prefix", "svc-b"), path("/dup", "Prefix", "svc-new")),
    ));
    m.push_str(&ingress(
        "z-older",
        "2020-06-01T00:00:00Z",
        &format!("  rules:\n  - host: merge.com\n    http:\n      paths:\n{}{}", path("/a", "Prefix", "svc-a"), path("/dup", "Prefix", "svc-old")),
    ));
    m.push_str(&ingress("missing", "2020-01-01T00:00:00Z", &format!("  rules:\n  - host: missing.com\n    http:\n      paths:\n{}", path("/", "Prefix", "does-not-exist"))));
    m.push_str(&ingress("empty", "2020-01-01T00:00:00Z", &format!("  rules:\n  - host: empty.com\n    http:\n      paths:\n{}", path("/", "Prefix", "empty"))));
    m.push_str(&ingress(
        "named",
        "2020-01-01T00:00:00Z",
        "  rules:\n  - host: named.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: webby\n            port:\n              name: web\n",
    ));
    m.push_str(&ingress(
        "bynumber",
        "2020-01-01T00:00:00Z",
        "  rules:\n  - host: number.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: webby\n            port:\n              number: 8000\n",
    ));
    m.push_str(&ingress(
        "badport",
        "2020-01-01T00:00:00Z",
        "  rules:\n  - host: badport.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: webby\n            port:\n              number: 1234\n",
    ));

    let h = start(&m).await;
    let cases: &[(&str, &str, u16, Option<&str>)] = &[
        ("foo.com", "/foo", 200, Some("prefix-foo")),
        ("FOO.com:8080", "/foo", 200, Some("prefix-foo")),
        ("foo.com.", "/foo", 200, Some("prefix-foo")),
        ("foo.com", "/foo/", 200, Some("prefix-foo")),
        ("foo.com", "/foo/baz", 200, Some("prefix-foo")),
        ("foo.com", "/foobar", 200, Some("root")),
        ("foo.com", "/Foo", 200, Some("root")),
        ("foo.com", "/foo/bar", 200, Some("exact-foobar")),
        ("foo.com", "/foo/bar/", 200, Some("prefix-foo")),
        ("foo.com", "/foo/bar/baz", 200, Some("prefix-foo")),
        ("foo.com", "/aaa/bbb", 200, Some("aaabbb")),
        ("foo.com", "/aaa/bbb/", 200, Some("aaabbb")),
        ("foo.com", "/aaa/bbb/ccc", 200, Some("aaabbb")),
        ("foo.com", "/aaa/bbbxyz", 200, Some("root")),
        ("foo.com", "/exact", 200, Some("exact")),
        ("foo.com", "/exact?x=/y", 200, Some("exact")),
        ("foo.com", "/exact/", 200, Some("root")),
        ("foo.com", "/same", 200, Some("same-exact")),
        ("foo.com", "/same/x", 200, Some("same-prefix")),
        ("foo.com", "/impl/x", 200, Some("impl")),
        ("foo.com", "/", 200, Some("root")),
        ("foo.com", "/x/../foo", 200, Some("prefix-foo")),
        ("foo.com", "//foo", 200, Some("prefix-foo")),
        ("foo.com", "/%66oo", 200, Some("prefix-foo")),
        ("bar.foo.com", "/anything", 200, Some("wild")),
        ("BAR.FOO.COM", "/", 200, Some("wild")),
        ("baz.bar.foo.com", "/", 200, Some("catchall")),
        ("baz.bar.foo.com", "/hostless", 200, Some("hostless")),
        ("other.com", "/hostless/x", 200, Some("hostless")),
        ("other.com", "/nope", 200, Some("catchall")),
        ("", "/hostless", 200, Some("hostless")),
        ("bar.com", "/api", 200, Some("bar-api")),
        ("bar.com", "/other", 200, Some("bar-default")),
        ("merge.com", "/a", 200, Some("svc-a")),
        ("merge.com", "/b", 200, Some("svc-b")),
        ("merge.com", "/dup", 200, Some("svc-old")),
        ("missing.com", "/", 503, None),
        ("empty.com", "/", 503, None),
        ("named.com", "/", 200, Some("web-named")),
        ("number.com", "/", 200, Some("web-named")),
        ("badport.com", "/", 503, None),
    ];
    let mut failures = Vec::new();
    for (host, p, status, svc) in cases {
        let got = h.route(host, p).await;
        if got.0 != *status || got.1.as_deref() != *svc {
            failures.push(format!("{host}{p}: expected ({status}, {svc:?}), got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "routing mismatches:\n{}", failures.join("\n"));
    drop(echoes);
    drop(web);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_matched_is_404_or_the_default_backend_service() {
    init_tracing();
    let a = echo("a").await;
    let fallback = echo("fallback").await;
    let mut m = backend_yaml("default", "a", &[a.addr]);
    m.push_str("\n---\n");
    m.push_str(&backend_yaml("infra", "fallback", &[fallback.addr]));
    m.push_str("\n---\n");
    m.push_str(&ingress("only", "2020-01-01T00:00:00Z", &format!("  rules:\n  - host: a.com\n    http:\n      paths:\n{}", path("/a", "Exact", "a"))));

    let h = start(&m).await;
    assert_eq!(h.route("a.com", "/a").await, (200, Some("a".into())));
    assert_eq!(h.route("a.com", "/b").await.0, 404);
    assert_eq!(h.route("b.com", "/a").await.0, 404);

    let h2 = start_with(&m, |o| o.default_backend_service = Some(("infra".into(), "fallback".into()))).await;
    assert_eq!(h2.route("a.com", "/a").await, (200, Some("a".into())));
    assert_eq!(h2.route("a.com", "/b").await, (200, Some("fallback".into())));
    assert_eq!(h2.route("b.com", "/").await, (200, Some("fallback".into())));
}

fn slice(name: &str, svc: &str, port: u16, ready: bool, terminating: bool) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/service-name: {svc}\naddressType: IPv4\nports:\n- name: http\n  port: {port}\nendpoints:\n- addresses: [\"127.0.0.1\"]\n  conditions:\n    ready: {ready}\n    terminating: {terminating}\n---\n"
    )
}

async fn pod_echo(pod: &str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let identity = vestibule::echo::Identity { service: "rr".into(), namespace: "default".into(), pod: pod.into() };
    (addr, vestibule::echo::spawn(l, vestibule::echo::EchoOptions { identity, tls: false }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_over_ready_endpoints_with_retry_on_connect_failure() {
    init_tracing();
    let (a1, _t1) = pod_echo("ready-1").await;
    let (a2, _t2) = pod_echo("ready-2").await;
    let (a3, _t3) = pod_echo("not-ready").await;
    let (a4, _t4) = pod_echo("terminating").await;
    // A port nobody listens on: a "ready" endpoint whose connects are refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut m = String::from("apiVersion: v1\nkind: Service\nmetadata:\n  name: rr\nspec:\n  ports:\n  - name: http\n    port: 80\n---\n");
    m.push_str(&slice("rr-1", "rr", a1.port(), true, false));
    m.push_str(&slice("rr-2", "rr", a2.port(), true, false));
    m.push_str(&slice("rr-3", "rr", a3.port(), false, false));
    m.push_str(&slice("rr-4", "rr", a4.port(), true, true));
    m.push_str(&slice("rr-5", "rr", dead.port(), true, false));
    m.push_str(&ingress("rr", "2020-01-01T00:00:00Z", &format!("  rules:\n  - host: rr.com\n    http:\n      paths:\n{}", path("/", "Prefix", "rr"))));
    let h = start(&m).await;
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..30 {
        let resp = h.get("rr.com", "/").await;
        assert_eq!(resp.status(), 200, "a refused endpoint is skipped by trying the next one");
        let v: serde_json::Value = resp.json().await.unwrap();
        *counts.entry(v["pod"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), vec!["ready-1".to_string(), "ready-2".to_string()], "{counts:?}");
    let (c1, c2) = (counts["ready-1"], counts["ready-2"]);
    assert!(c1.abs_diff(c2) <= 10, "round-robin spreads requests: {counts:?}");

    // Every endpoint refusing: 502 after the tries, with a request ID.
    let mut m2 = String::from("apiVersion: v1\nkind: Service\nmetadata:\n  name: dead\nspec:\n  ports:\n  - name: http\n    port: 80\n---\n");
    m2.push_str(&slice("dead-1", "dead", dead.port(), true, false));
    m2.push_str(&ingress("dead", "2020-01-01T00:00:00Z", &format!("  rules:\n  - host: dead.com\n    http:\n      paths:\n{}", path("/", "Prefix", "dead"))));
    let h2 = start(&m2).await;
    let resp = h2.get("dead.com", "/").await;
    assert_eq!(resp.status(), 502);
    let id = resp.headers().get("x-request-id").unwrap().to_str().unwrap().to_string();
    let body = resp.text().await.unwrap();
    assert!(body.contains("502") && body.contains(&id), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_hosts_redirect_every_plain_request_unless_redirects_are_off() {
    init_tracing();
    let a = echo("a").await;
    let fallback = echo("fallback").await;
    let mut m = backend_yaml("default", "a", &[a.addr]);
    m.push_str("\n---\n");
    m.push_str(&backend_yaml("default", "fallback", &[fallback.addr]));
    m.push_str("\n---\n");
    m.push_str(&ingress(
        "secure",
        "2020-01-01T00:00:00Z",
        &format!("  tls:\n  - hosts: [secure.com]\n    secretName: missing\n  rules:\n  - host: secure.com\n    http:\n      paths:\n{}", path("/a", "Exact", "a")),
    ));

    // A path no rule matches on a TLS host is redirected too, as ingress-nginx does.
    let h = start(&m).await;
    let resp = h.get("secure.com", "/nothing-here?x=1").await;
    assert_eq!(resp.status(), 308);
    assert_eq!(resp.headers()["location"], format!("https://secure.com:{}/nothing-here?x=1", h.running.https.port()));

    // Redirects off: the unmatched path is a plain 404, and the default backend answers
    // without a redirect.
    let off = start_with(&m, |o| o.ssl_redirect = false).await;
    assert_eq!(off.route("secure.com", "/nothing-here").await.0, 404);
    assert_eq!(off.route("secure.com", "/a").await, (200, Some("a".into())));
    let off_default = start_with(&m, |o| {
        o.ssl_redirect = false;
        o.default_backend_service = Some(("default".into(), "fallback".into()));
    })
    .await;
    assert_eq!(off_default.route("secure.com", "/nothing-here").await, (200, Some("fallback".into())));
}

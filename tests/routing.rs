//! Routing exactly per the Kubernetes Ingress spec, as a table of cases through real sockets.

mod common;

use common::*;

const CREATED: &str = "2020-01-01T00:00:00Z";

/// An Ingress in `default` created at `CREATED`.
fn ingress(name: &str) -> Ingress {
    Ingress::new("default", name).created(CREATED)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_table() {
    init_tracing();
    let names = [
        "prefix-foo", "exact-foobar", "root", "aaabbb", "exact", "same-exact", "same-prefix", "impl", "wild", "hostless",
        "bar-default", "bar-api", "catchall", "svc-a", "svc-b", "svc-old", "svc-new", "named",
    ];
    let mut echoes = Vec::new();
    let mut docs = Vec::new();
    for n in names {
        let e = echo(n).await;
        docs.push(backend_yaml("default", n, &[e.addr]));
        echoes.push(e);
    }
    // A Service whose only endpoint is not ready, and one with a port named "web".
    docs.push(Service::new("", "empty").port("http", 80).to_yaml());
    docs.push(EndpointSlice::new("", "empty-1", "empty").port("http", 1).endpoint(Endpoint::at("127.0.0.1").ready(false)).to_yaml());
    let web = echo("web-named").await;
    docs.push(Service::new("", "webby").port("metrics", 9090).port("web", 8000).to_yaml());
    docs.push(EndpointSlice::new("", "webby-1", "webby").port("metrics", 1).port("web", web.addr.port()).endpoint(Endpoint::at("127.0.0.1")).to_yaml());

    let foo_paths = [
        ("/foo", "Prefix", "prefix-foo"),
        ("/foo/bar", "Exact", "exact-foobar"),
        ("/", "Prefix", "root"),
        ("/aaa/bbb/", "Prefix", "aaabbb"),
        ("/exact", "Exact", "exact"),
        ("/same", "Exact", "same-exact"),
        ("/same", "Prefix", "same-prefix"),
        ("/impl", "ImplementationSpecific", "impl"),
    ];
    let mut foo = ingress("foo");
    for (path, path_type, svc) in foo_paths {
        foo = foo.host_path("foo.com", path, path_type, svc, 80);
    }
    docs.push(foo.to_yaml());
    docs.push(ingress("wild").host_path("*.foo.com", "/", "Prefix", "wild", 80).to_yaml());
    docs.push(ingress("hostless").path("/hostless", "Prefix", "hostless", 80).to_yaml());
    docs.push(ingress("bar").default_backend("bar-default", 80).host_path("bar.com", "/api", "Prefix", "bar-api", 80).to_yaml());
    docs.push(ingress("catchall").default_backend("catchall", 80).to_yaml());
    // Merging: the newer Ingress sorts first by name, yet the older one wins the shared path.
    docs.push(
        Ingress::new("default", "a-newer")
            .created("2021-06-01T00:00:00Z")
            .host_path("merge.com", "/b", "Prefix", "svc-b", 80)
            .host_path("merge.com", "/dup", "Prefix", "svc-new", 80)
            .to_yaml(),
    );
    docs.push(
        Ingress::new("default", "z-older")
            .created("2020-06-01T00:00:00Z")
            .host_path("merge.com", "/a", "Prefix", "svc-a", 80)
            .host_path("merge.com", "/dup", "Prefix", "svc-old", 80)
            .to_yaml(),
    );
    docs.push(ingress("missing").host_path("missing.com", "/", "Prefix", "does-not-exist", 80).to_yaml());
    docs.push(ingress("empty").host_path("empty.com", "/", "Prefix", "empty", 80).to_yaml());
    docs.push(ingress("named").host_path("named.com", "/", "Prefix", "webby", "web").to_yaml());
    docs.push(ingress("bynumber").host_path("number.com", "/", "Prefix", "webby", 8000).to_yaml());
    docs.push(ingress("badport").host_path("badport.com", "/", "Prefix", "webby", 1234).to_yaml());
    let m = manifest(docs);

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
    let m = manifest([
        backend_yaml("default", "a", &[a.addr]),
        backend_yaml("infra", "fallback", &[fallback.addr]),
        ingress("only").host_path("a.com", "/a", "Exact", "a", 80).to_yaml(),
    ]);

    let h = start(&m).await;
    assert_eq!(h.route("a.com", "/a").await, (200, Some("a".into())));
    assert_eq!(h.route("a.com", "/b").await.0, 404);
    assert_eq!(h.route("b.com", "/a").await.0, 404);

    let h2 = start_with(&m, |o| o.default_backend_service = Some(("infra".into(), "fallback".into()))).await;
    assert_eq!(h2.route("a.com", "/a").await, (200, Some("a".into())));
    assert_eq!(h2.route("a.com", "/b").await, (200, Some("fallback".into())));
    assert_eq!(h2.route("b.com", "/").await, (200, Some("fallback".into())));
}

/// An EndpointSlice of `svc` with one endpoint, 127.0.0.1:`port`, with these conditions.
fn slice(name: &str, svc: &str, port: u16, ready: bool, terminating: bool) -> String {
    EndpointSlice::new("", name, svc).port("http", port).endpoint(Endpoint::at("127.0.0.1").ready(ready).terminating(terminating)).to_yaml()
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
    let dead = dead_addr();
    let m = manifest([
        Service::new("", "rr").port("http", 80).to_yaml(),
        slice("rr-1", "rr", a1.port(), true, false),
        slice("rr-2", "rr", a2.port(), true, false),
        slice("rr-3", "rr", a3.port(), false, false),
        slice("rr-4", "rr", a4.port(), true, true),
        slice("rr-5", "rr", dead.port(), true, false),
        ingress("rr").host_path("rr.com", "/", "Prefix", "rr", 80).to_yaml(),
    ]);
    let h = start(&m).await;
    let pods = |n: usize| {
        let h = &h;
        async move {
            let mut seq = Vec::new();
            for _ in 0..n {
                let resp = h.get("rr.com", "/").await;
                assert_eq!(resp.status(), 200, "a refused endpoint is skipped by trying the next one");
                let v: serde_json::Value = resp.json().await.unwrap();
                seq.push(v["pod"].as_str().unwrap().to_string());
            }
            seq
        }
    };
    let count = |seq: &[String]| {
        let mut counts = std::collections::BTreeMap::<String, u32>::new();
        for p in seq {
            *counts.entry(p.clone()).or_default() += 1;
        }
        counts
    };
    // The refusing endpoint is in the rotation until it has refused EJECT_AFTER connects (each
    // retried once, on the next endpoint); then it is ejected.
    let warm = count(&pods(30).await);
    assert_eq!(warm.keys().cloned().collect::<Vec<_>>(), vec!["ready-1".to_string(), "ready-2".to_string()], "{warm:?}");
    assert_eq!(h.running.shared.metrics.retries.get(), u64::from(vestibule::proxy::balance::EJECT_AFTER), "refused connects retried before the ejection");
    // From then on round-robin alternates strictly over the two ready endpoints: 30 requests,
    // exactly 15 each.
    let seq = pods(30).await;
    let counts = count(&seq);
    assert_eq!(counts, [("ready-1".to_string(), 15), ("ready-2".to_string(), 15)].into(), "round-robin over two endpoints: {seq:?}");
    assert!(seq.windows(2).all(|w| w[0] != w[1]), "a strict rotation: {seq:?}");
    assert_eq!(h.running.shared.metrics.retries.get(), u64::from(vestibule::proxy::balance::EJECT_AFTER), "the ejected endpoint is not tried");

    // Every endpoint refusing: 502 after the tries, with a request ID.
    let m2 = manifest([
        Service::new("", "dead").port("http", 80).to_yaml(),
        slice("dead-1", "dead", dead.port(), true, false),
        ingress("dead").host_path("dead.com", "/", "Prefix", "dead", 80).to_yaml(),
    ]);
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
    let m = manifest([
        backend_yaml("default", "a", &[a.addr]),
        backend_yaml("default", "fallback", &[fallback.addr]),
        ingress("secure").tls(&["secure.com"], "missing").host_path("secure.com", "/a", "Exact", "a", 80).to_yaml(),
    ]);

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

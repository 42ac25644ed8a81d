//! Route precedence on hosts large enough to be looked up through the route index, as tables
//! of "store in, Config out" (Ingress: Exact before Prefix, longest prefix, whole segments,
//! trailing slashes, ImplementationSpecific, regex hosts, canaries, host defaults; Gateway
//! API: Exact, expressions, longest prefix, method, headers, query, oldest), and once through
//! real sockets.

mod common;

use std::net::SocketAddr;

use common::gateway::*;
use common::*;
use serde_json::json;
use vestibule::compile::Compiled;
use vestibule::config::{Config, RequestFacts, Target};

const OLD: &str = "2020-01-01T00:00:00Z";
const NEW: &str = "2021-01-01T00:00:00Z";

fn backend(svc: &str) -> String {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    backend_yaml("default", svc, &[addr])
}

fn compiled(docs: Vec<String>) -> Compiled {
    vestibule::compile::compile(&store_of(&manifest(docs)), &compile_settings())
}

/// Asserts that `host`'s routes are looked up through the index (not the small-host scan).
fn assert_indexed(config: &Config, host: &str) {
    let v = config.vhosts().find(|v| v.name == host).unwrap_or_else(|| panic!("{host} has a virtual host"));
    assert!(v.index.indexes(&v.routes), "{host} ({} routes) is indexed", v.routes.len());
}

/// `service` of the route (or host default) that answers, `404`, or `host-not-found`.
fn answer(t: Target<'_>) -> String {
    match t {
        Target::Route { route, .. } => route.backend().service.clone(),
        Target::HostDefault { default, .. } => format!("default:{}", default.backend.service),
        Target::Default(d) => format!("global:{}", d.backend.service),
        Target::HostNotFound { .. } => "host-not-found".into(),
        Target::NotFound => "404".into(),
    }
}

fn check(rows: &[(&str, &str)], got: impl Fn(&str) -> String) {
    let failures: Vec<String> = rows.iter().filter_map(|(req, want)| (got(req) != *want).then(|| format!("{req}: want {want}, got {}", got(req)))).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const INGRESS_PATHS: &[(&str, &str, &str)] = &[
    ("/foo", "Prefix", "prefix-foo"),
    ("/foo", "Exact", "exact-foo"),
    ("/foo/bar", "Prefix", "foo-bar"),
    ("/foo/bar/baz", "Exact", "exact-baz"),
    ("/", "Prefix", "root"),
    ("/aaa/bbb/", "Prefix", "aaabbb"),
    ("/impl", "ImplementationSpecific", "impl"),
    ("/x", "Prefix", "x"),
    ("/x/y", "Prefix", "xy"),
    ("/x/y/z", "Prefix", "xyz"),
    ("/exact/", "Exact", "exact-slash"),
];

fn ingress_docs() -> Vec<String> {
    let mut docs: Vec<String> = INGRESS_PATHS.iter().map(|(_, _, s)| backend(s)).collect();
    let mut paths = Ingress::new("default", "paths").created(OLD);
    for (path, t, svc) in INGRESS_PATHS {
        paths = paths.host_path("idx.test", path, t, svc, 80);
    }
    docs.push(paths.to_yaml());
    // A canary joins its mainline: it adds no route, and the mainline keeps its place.
    docs.push(backend("canary"));
    docs.push(Ingress::new("default", "canary").created(NEW).annotations(&[("nginx.ingress.kubernetes.io/canary", "true"), ("nginx.ingress.kubernetes.io/canary-weight", "100")]).host_path("idx.test", "/foo/bar", "Prefix", "canary", 80).to_yaml());
    // A host with its own default backend and no `/`.
    docs.push(backend("fallback"));
    let mut dflt = Ingress::new("default", "dflt").created(OLD).default_backend("fallback", 80);
    for i in 0..10 {
        docs.push(backend(&format!("d{i}")));
        dflt = dflt.host_path("dflt.test", &format!("/d/{i}"), "Prefix", &format!("d{i}"), 80);
    }
    docs.push(dflt.to_yaml());
    // A regex host: every path an expression, `(?i)^PATH`, longest path string first.
    let re_paths = [("/api/v[0-9]+", "re-version"), ("/api", "re-api"), ("/static/.*\\.css", "re-css"), ("/", "re-root"), ("/a", "re-a"), ("/ab", "re-ab"), ("/abc", "re-abc"), ("/docs/(.*)", "re-docs"), ("/api/v1/users", "re-users")];
    let mut re = Ingress::new("default", "re").created(OLD).annotation("nginx.ingress.kubernetes.io/use-regex", "true");
    for (p, s) in re_paths {
        docs.push(backend(s));
        re = re.host_path("re.test", p, "ImplementationSpecific", s, 80);
    }
    docs.push(re.to_yaml());
    docs
}

#[test]
fn ingress_precedence_through_the_index() {
    let c = compiled(ingress_docs());
    assert!(c.diagnostics.iter().all(|d| d.severity != vestibule::compile::Severity::Error), "{:?}", c.diagnostics);
    for host in ["idx.test", "dflt.test", "re.test"] {
        assert_indexed(&c.config, host);
    }
    let config = &c.config;
    let route = |host: &'static str| move |path: &str| answer(config.route_path(host, path));
    check(
        &[
            ("/foo", "exact-foo"),
            ("/foo/", "prefix-foo"),
            ("/foobar", "root"),
            ("/foo/bar", "foo-bar"),
            ("/foo/bar/", "foo-bar"),
            ("/foo/barx", "prefix-foo"),
            ("/foo/bar/baz", "exact-baz"),
            ("/foo/bar/baz/", "foo-bar"),
            ("/aaa/bbb", "aaabbb"),
            ("/aaa/bbb/c", "aaabbb"),
            ("/aaa/bbbc", "root"),
            ("/impl", "impl"),
            ("/impl/x", "impl"),
            ("/implx", "root"),
            ("/x/y/z/w", "xyz"),
            ("/x/y/zz", "xy"),
            ("/x/yy", "x"),
            ("/exact/", "exact-slash"),
            ("/exact", "root"),
            ("/", "root"),
        ],
        route("idx.test"),
    );
    check(&[("/d/3", "d3"), ("/d/3/x", "d3"), ("/d/33", "default:fallback"), ("/d", "default:fallback"), ("/", "default:fallback")], route("dflt.test"));
    check(
        &[
            ("/api/v2/x", "re-version"),
            ("/API/V2", "re-version"),
            ("/api/v1/users/7", "re-users"),
            ("/api/vx", "re-api"),
            ("/apix", "re-api"),
            ("/static/a/b.css", "re-css"),
            ("/abcd", "re-abc"),
            ("/abd", "re-ab"),
            ("/ax", "re-a"),
            ("/docs/x", "re-docs"),
            ("/elsewhere", "re-root"),
        ],
        route("re.test"),
    );
    match c.config.route_path("idx.test", "/foo/bar/q") {
        Target::Route { route, .. } => assert_eq!(route.canary.as_ref().map(|k| k.backend.service.as_str()), Some("canary"), "the canary joined /foo/bar"),
        other => panic!("/foo/bar/q: {other:?}"),
    }
}

const PORT: u16 = 9100;

fn rule(path_type: &str, path: &str, extra: serde_json::Value, svc: &str) -> serde_json::Value {
    let mut m = json!({"path": {"type": path_type, "value": path}});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    json!({"matches": [m], "backendRefs": [backend_ref(svc, 1)]})
}

#[test]
fn gateway_precedence_through_the_index() {
    let svcs = ["old-a", "new-a", "exact-ab", "ab", "ab-post", "ab-h1", "ab-h2", "ab-q", "re", "root", "re-long"];
    let mut docs: Vec<String> = svcs.iter().map(|s| backend(s)).collect();
    docs.push(gateway_class("vestibule", CONTROLLER));
    docs.push(gateway("default", "gw", "vestibule", vec![listener("http", PORT, "HTTP", json!({}))]));
    let h = |pairs: &[(&str, &str)]| json!(pairs.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>());
    let old_rules = vec![
        rule("PathPrefix", "/a", json!({}), "old-a"),
        rule("Exact", "/a/b", json!({}), "exact-ab"),
        rule("PathPrefix", "/a/b", json!({}), "ab"),
        rule("PathPrefix", "/a/b", json!({"method": "POST"}), "ab-post"),
        rule("PathPrefix", "/a/b", json!({"headers": h(&[("x-v", "1")])}), "ab-h1"),
        rule("PathPrefix", "/a/b", json!({"headers": h(&[("x-v", "1"), ("x-w", "1")])}), "ab-h2"),
        rule("PathPrefix", "/a/b", json!({"queryParams": h(&[("q", "1")])}), "ab-q"),
        rule("RegularExpression", "/a/[0-9]+", json!({}), "re"),
        rule("RegularExpression", "/a/[0-9]+/[0-9]+", json!({}), "re-long"),
        rule("PathPrefix", "/", json!({}), "root"),
    ];
    docs.push(route("HTTPRoute", "default", "z-old", OLD, json!({"parentRefs": [{"name": "gw"}], "hostnames": ["gw.test"], "rules": old_rules})));
    // Newer, and first by name: the older route still wins the tie on `/a`.
    docs.push(route("HTTPRoute", "default", "a-new", NEW, json!({"parentRefs": [{"name": "gw"}], "hostnames": ["gw.test"], "rules": [rule("PathPrefix", "/a", json!({}), "new-a")]})));
    let c = compiled(docs);
    assert_indexed(&c.config, "gw.test");
    let got = |req: &str| {
        let (method, rest) = req.split_once(' ').unwrap();
        let (rest, hdrs) = rest.split_once(' ').unwrap_or((rest, ""));
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut headers = http::HeaderMap::new();
        for kv in hdrs.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once(':').unwrap();
            headers.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let method: http::Method = method.parse().unwrap();
        answer(c.config.route_on(PORT, "gw.test", &RequestFacts { path, method: &method, headers: &headers, query }))
    };
    check(
        &[
            ("GET /a/b", "exact-ab"),
            ("POST /a/b x-v:1", "exact-ab"),
            ("GET /a/b/", "ab"),
            ("POST /a/b/c x-v:1,x-w:1", "ab-post"),
            ("GET /a/b/c x-v:1,x-w:1", "ab-h2"),
            ("GET /a/b/c?q=1 x-v:1", "ab-h1"),
            ("GET /a/b/c?q=1", "ab-q"),
            ("GET /a/bc", "old-a"),
            ("GET /a/12", "re"),
            ("GET /a/12/34", "re-long"),
            ("GET /a/12/x", "old-a"),
            ("GET /a", "old-a"),
            ("GET /ab", "root"),
            ("GET /", "root"),
        ],
        got,
    );
}

/// The same Ingress host through the running proxy: real clients, real backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_host_through_the_proxy() {
    init_tracing();
    let mut echoes = Vec::new();
    let mut docs = Vec::new();
    for (_, _, svc) in INGRESS_PATHS {
        let e = echo(svc).await;
        docs.push(backend_yaml("default", svc, &[e.addr]));
        echoes.push(e);
    }
    let mut paths = Ingress::new("default", "paths").created(OLD);
    for (path, t, svc) in INGRESS_PATHS {
        paths = paths.host_path("idx.test", path, t, svc, 80);
    }
    docs.push(paths.to_yaml());
    let h = start(&manifest(docs)).await;
    let rows = [("/foo", "exact-foo"), ("/foo/", "prefix-foo"), ("/foobar", "root"), ("/foo/bar/baz", "exact-baz"), ("/foo//bar/./baz/", "foo-bar"), ("/aaa/bbb", "aaabbb"), ("/x/y/z/w?q=1", "xyz"), ("/%78/y", "xy")];
    for (path, want) in rows {
        assert_eq!(h.route("idx.test", path).await, (200, Some(want.to_string())), "{path}");
    }
    drop(echoes);
}

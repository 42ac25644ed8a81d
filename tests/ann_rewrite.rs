//! `rewrite-target`, `use-regex`, `x-forwarded-prefix` and `app-root` end to end: the path and
//! headers the backend sees, which Ingress answers on a regex host, the app-root redirect, and
//! a rewrite change going live without a failed request. The cases are ingress-nginx's e2e
//! assertions (test/e2e/annotations/{rewrite,approot,xforwardedprefix}.go, docs example).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const A: &str = "nginx.ingress.kubernetes.io/";

fn key(k: &str) -> String {
    format!("{A}{k}")
}

fn backend(svc: &str, e: &Echo) -> String {
    backend_yaml("default", svc, &[e.addr])
}

/// GET over HTTP: status and the echo's answer (path, query, headers, service).
async fn echoed(h: &Harness, host: &str, path: &str) -> (u16, Value) {
    let resp = h.get(host, path).await;
    let status = resp.status().as_u16();
    (status, resp.json::<Value>().await.unwrap_or(Value::Null))
}

/// What the backend was sent: (service, path, query).
async fn sent(h: &Harness, host: &str, path: &str) -> (String, String, Option<String>) {
    let (status, v) = echoed(h, host, path).await;
    assert_eq!(status, 200, "{host}{path}: {v}");
    (v["service"].as_str().unwrap().to_string(), v["path"].as_str().unwrap().to_string(), v["query"].as_str().map(str::to_string))
}

fn s(svc: &str, path: &str, query: Option<&str>) -> (String, String, Option<String>) {
    (svc.to_string(), path.to_string(), query.map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_target_substitutes_captures_and_keeps_the_query() {
    let web = echo("web").await;
    let docs = [
        backend("web", &web),
        Ingress::new("default", "docs")
            .annotations(&[(&key("use-regex"), "true"), (&key("rewrite-target"), "/$2")])
            .host_path("rewrite.bar.com", "/something(/|$)(.*)", "ImplementationSpecific", "web", 80)
            .to_yaml(),
        Ingress::new("default", "params").annotations(&[(&key("rewrite-target"), "/new/backend/$1")]).host_path("params.bar.com", "/foo/bar/(.+)", "ImplementationSpecific", "web", 80).to_yaml(),
    ];
    let h = start(&manifest(docs)).await;
    assert_eq!(sent(&h, "rewrite.bar.com", "/something").await, s("web", "/", None));
    assert_eq!(sent(&h, "rewrite.bar.com", "/something/").await, s("web", "/", None));
    assert_eq!(sent(&h, "rewrite.bar.com", "/something/new").await, s("web", "/new", None));
    assert_eq!(sent(&h, "rewrite.bar.com", "/something/new?a=1&b=x%20y").await, s("web", "/new", Some("a=1&b=x%20y")), "the query string is kept");
    assert_eq!(sent(&h, "rewrite.bar.com", "/SOMETHING/Case").await, s("web", "/Case", None), "case-insensitive");
    assert_eq!(sent(&h, "rewrite.bar.com", "/something/a%20b").await, s("web", "/a%20b", None), "captures are re-escaped");
    assert_eq!(h.get("rewrite.bar.com", "/other").await.status().as_u16(), 404, "anchored at the start");
    assert_eq!(sent(&h, "params.bar.com", "/foo/bar/bar").await, s("web", "/new/backend/bar", None));
    let (_, v) = echoed(&h, "params.bar.com", "/foo/bar/bar").await;
    assert!(v["headers"].get("x-forwarded-prefix").is_none(), "no prefix header unless configured: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_host_tries_the_longest_path_string_first() {
    let (plain, re) = (echo("plain").await, echo("re").await);
    let rewrite = [(key("use-regex"), "true"), (key("rewrite-target"), "/new/backend")];
    let rewrite: Vec<(&str, &str)> = rewrite.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let docs = [
        backend("plain", &plain),
        backend("re", &re),
        // "should use ~* location modifier if regex annotation is present"
        Ingress::new("default", "foo").host_path("tilde.bar.com", "/foo", "Prefix", "plain", 80).to_yaml(),
        Ingress::new("default", "foo-regex").annotations(&rewrite).host_path("tilde.bar.com", "/foo.+", "ImplementationSpecific", "re", 80).to_yaml(),
        // "should fail to use longest match for documented warning"
        Ingress::new("default", "bar").host_path("longest.bar.com", "/foo/bar/bar", "Prefix", "plain", 80).to_yaml(),
        Ingress::new("default", "bar-regex").annotations(&rewrite).host_path("longest.bar.com", "/foo/bar/[a-z]{3}", "ImplementationSpecific", "re", 80).to_yaml(),
        // "should use correct longest path match"
        Ingress::new("default", "acme").host_path("acme.bar.com", "/.well-known/acme/challenge", "Prefix", "plain", 80).to_yaml(),
        Ingress::new("default", "root").annotation(&key("rewrite-target"), "/new/backend").host_path("acme.bar.com", "/", "Prefix", "re", 80).to_yaml(),
    ];
    let h = start(&manifest(docs)).await;
    assert_eq!(sent(&h, "tilde.bar.com", "/foo").await, s("plain", "/foo", None));
    assert_eq!(sent(&h, "tilde.bar.com", "/foo/bar").await, s("re", "/new/backend", None));
    assert_eq!(sent(&h, "longest.bar.com", "/foo/bar/bar").await, s("re", "/new/backend", None), "the longer expression wins over the plain path it also matches");
    assert_eq!(sent(&h, "acme.bar.com", "/.well-known/acme/challenge").await, s("plain", "/.well-known/acme/challenge", None));
    assert_eq!(sent(&h, "acme.bar.com", "/anything?x=1").await, s("re", "/new/backend", Some("x=1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_prefix_only_with_a_rewrite() {
    let web = echo("web").await;
    let docs = [
        backend("web", &web),
        Ingress::new("default", "prefix").annotations(&[(&key("x-forwarded-prefix"), "/test/value"), (&key("rewrite-target"), "/foo")]).host_path("xfp.bar.com", "/", "Prefix", "web", 80).to_yaml(),
        Ingress::new("default", "empty").annotations(&[(&key("x-forwarded-prefix"), ""), (&key("rewrite-target"), "/foo")]).host_path("empty.bar.com", "/", "Prefix", "web", 80).to_yaml(),
        Ingress::new("default", "norewrite").annotations(&[(&key("x-forwarded-prefix"), "/test/value")]).host_path("norewrite.bar.com", "/", "Prefix", "web", 80).to_yaml(),
    ];
    let h = start(&manifest(docs)).await;
    let (_, v) = echoed(&h, "xfp.bar.com", "/").await;
    assert_eq!((v["path"].as_str(), v["headers"]["x-forwarded-prefix"].as_str()), (Some("/foo"), Some("/test/value")), "{v}");
    let (_, v) = echoed(&h, "empty.bar.com", "/").await;
    assert!(v["headers"].get("x-forwarded-prefix").is_none(), "{v}");
    let (_, v) = echoed(&h, "norewrite.bar.com", "/x").await;
    assert_eq!(v["path"].as_str(), Some("/x"));
    assert!(v["headers"].get("x-forwarded-prefix").is_none(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_root_redirects_only_the_root() {
    let web = echo("web").await;
    let docs = [backend("web", &web), Ingress::new("default", "approot").annotation(&key("app-root"), "/foo").host_path("approot.bar.com", "/", "Prefix", "web", 80).to_yaml()];
    let h = start(&manifest(docs)).await;
    let location = |r: &reqwest::Response| r.headers().get("location").map(|v| v.to_str().unwrap().to_string());
    let r = h.get("approot.bar.com", "/").await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, Some("http://approot.bar.com/foo".into())));
    let r = h.get("approot.bar.com:8080", "/?q=1").await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, Some("http://approot.bar.com:8080/foo".into())), "the Host as sent; the query is dropped");
    assert_eq!(sent(&h, "approot.bar.com", "/foo").await, s("web", "/foo", None));
    assert_eq!(sent(&h, "approot.bar.com", "/x/").await, s("web", "/x/", None));
}

fn live_doc(svc: &Echo, target: &str) -> String {
    manifest([
        backend("web", svc),
        Ingress::new("default", "live").annotations(&[(&key("rewrite-target"), target)]).host_path("live.bar.com", "/app(/|$)(.*)", "ImplementationSpecific", "web", 80).to_yaml(),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_change_is_live_within_a_second_without_failing_a_request() {
    let web = echo("web").await;
    let h = start(&live_doc(&web, "/v1/$2")).await;
    assert_eq!(sent(&h, "live.bar.com", "/app/x").await, s("web", "/v1/x", None));
    let started = Instant::now();
    h.write("manifests.yaml", &live_doc(&web, "/v2/$2"));
    let mut seen = None;
    let mut requests = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let (status, v) = echoed(&h, "live.bar.com", "/app/x").await;
        requests += 1;
        assert_eq!(status, 200, "request {requests} failed during the change: {v}");
        let path = v["path"].as_str().unwrap().to_string();
        assert!(path == "/v1/x" || path == "/v2/x", "{path}");
        if path == "/v2/x" && seen.is_none() {
            seen = Some(started.elapsed());
        }
        if seen.is_some() {
            assert_eq!(path, "/v2/x", "once live, the new target stays");
        }
    }
    let seen = seen.expect("the new target went live");
    assert!(seen < Duration::from_secs(1), "live after {seen:?}");
    assert!(requests > 20, "only {requests} requests during the change");
}

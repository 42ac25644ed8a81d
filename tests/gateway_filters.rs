//! HTTPRoute filters and weighted backendRefs end to end in file mode: a Gateway listener on its
//! own port, HTTPRoute manifests, real echo backends that report what they received.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::gateway::*;
use common::recorder::{recorder, wait_seen};
use common::*;
use serde_json::{Value, json};

/// Serves `rules` of one HTTPRoute for `gw.example.com` on a fresh Gateway listener port, with
/// the echo backends named in `backends`.
async fn serve(rules: Value, backends: &[(&str, &Echo)]) -> (Harness, u16) {
    let port = free_port();
    let mut docs = vec![
        gateway_class("vestibule", CONTROLLER),
        gateway("default", "gw", "vestibule", vec![listener("http", port, "HTTP", json!({}))]),
        route("HTTPRoute", "default", "r", "2024-01-01T00:00:00Z", json!({"parentRefs": [{"name": "gw"}], "hostnames": ["gw.example.com"], "rules": rules})),
    ];
    docs.extend(backends.iter().map(|(name, e)| backend_yaml("default", name, &[e.addr])));
    (start(&manifest(docs)).await, port)
}

fn req(h: &Harness, port: u16, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    h.client.request(method, format!("http://127.0.0.1:{port}{path}")).header("host", "gw.example.com")
}

async fn json_of(resp: reqwest::Response) -> Value {
    serde_json::from_str(&resp.text().await.unwrap()).unwrap()
}

#[tokio::test]
async fn header_modifiers_through_an_httproute() {
    let a = echo("a").await;
    let rules = json!([{
        "filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "set": [{"name": "X-Header-Set", "value": "set-overwrites-values"}],
                "add": [{"name": "X-Header-Add", "value": "add-appends-values"}],
                "remove": ["X-Header-Remove"]}},
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                "set": [{"name": "X-Header-Set", "value": "set-overwrites-values"}],
                "add": [{"name": "X-Header-Add", "value": "add-appends-values"}]}},
        ],
        "backendRefs": [backend_ref("a", 1)],
    }]);
    let (h, port) = serve(rules, &[("a", &a)]).await;
    let resp = req(&h, port, reqwest::Method::GET, "/").header("x-header-set", "some-other-value").header("x-header-add", "add-val").header("x-header-remove", "r").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-header-set"], "set-overwrites-values");
    assert_eq!(resp.headers()["x-header-add"], "add-appends-values");
    let v = json_of(resp).await;
    assert_eq!(v["headers"]["x-header-set"], "set-overwrites-values");
    assert_eq!(v["headers"]["x-header-add"], "add-val,add-appends-values");
    assert!(v["headers"].get("x-header-remove").is_none(), "{v}");
}

#[tokio::test]
async fn redirects_and_rewrites_through_an_httproute() {
    let a = echo("a").await;
    let rules = json!([
        {"matches": [{"path": {"type": "PathPrefix", "value": "/scheme"}}],
         "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/original-prefix"}}],
         "filters": [{"type": "RequestRedirect", "requestRedirect": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/replacement-prefix"}}}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/host-port"}}],
         "filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "example.org", "port": 8443, "statusCode": 308}}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/prefix/one"}}],
         "filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "one.example.org", "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/one"}}}],
         "backendRefs": [backend_ref("a", 1)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/strip-prefix"}}],
         "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
         "backendRefs": [backend_ref("a", 1)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/full"}}],
         "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/one"}}}],
         "backendRefs": [backend_ref("a", 1)]},
    ]);
    let (h, port) = serve(rules, &[("a", &a)]).await;
    let redirects = [
        ("/scheme/x?q=1", 301, "https://gw.example.com/scheme/x?q=1".to_string()),
        ("/original-prefix/lemon", 302, format!("http://gw.example.com:{port}/replacement-prefix/lemon")),
        ("/original-prefix", 302, format!("http://gw.example.com:{port}/replacement-prefix")),
        ("/host-port", 308, "http://example.org:8443/host-port".to_string()),
    ];
    for (path, status, location) in redirects {
        let resp = req(&h, port, reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        assert_eq!(resp.headers()["location"], location.as_str(), "{path}");
    }
    let rewrites = [("/prefix/one/two", "/one/two", "one.example.org"), ("/prefix/one", "/one", "one.example.org"), ("/strip-prefix/three", "/three", "gw.example.com"), ("/strip-prefix", "/", "gw.example.com"), ("/full/path/original", "/one", "gw.example.com")];
    for (path, want, host) in rewrites {
        let v = json_of(req(&h, port, reqwest::Method::GET, path).send().await.unwrap()).await;
        assert_eq!((v["path"].as_str(), v["host"].as_str()), (Some(want), Some(host)), "{path}");
    }
}

#[tokio::test]
async fn weighted_backend_refs_split_the_traffic() {
    let (a, b, z) = (echo("a").await, echo("b").await, echo("z").await);
    let rules = json!([{"backendRefs": [backend_ref("a", 70), backend_ref("b", 30), backend_ref("z", 0)]}]);
    let (h, port) = serve(rules, &[("a", &a), ("b", &b), ("z", &z)]).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..1000 {
        let v = json_of(req(&h, port, reqwest::Method::GET, "/").send().await.unwrap()).await;
        *counts.entry(v["service"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    // 700 expected with a standard deviation of about 14.5: ±100 cannot flake.
    assert!((600..=800).contains(&counts["a"]), "{counts:?}");
    assert_eq!(counts["a"] + counts["b"], 1000, "weight 0 gets nothing: {counts:?}");
}

#[tokio::test]
async fn a_missing_backend_ref_keeps_its_share_and_answers_500() {
    let a = echo("a").await;
    let rules = json!([{"backendRefs": [backend_ref("a", 1), backend_ref("missing", 1)]}]);
    let (h, port) = serve(rules, &[("a", &a)]).await;
    let mut counts: HashMap<u16, usize> = HashMap::new();
    for _ in 0..200 {
        *counts.entry(req(&h, port, reqwest::Method::GET, "/").send().await.unwrap().status().as_u16()).or_insert(0) += 1;
    }
    assert_eq!(counts.get(&200).copied().unwrap_or(0) + counts.get(&500).copied().unwrap_or(0), 200, "{counts:?}");
    assert!(counts[&200] > 50 && counts[&500] > 50, "{counts:?}");
}

#[tokio::test]
async fn a_mirror_backend_gets_a_copy() {
    let a = echo("a").await;
    // A mirror that answers only after 2 s: the client must not wait for it.
    let (m_addr, seen, _task) = recorder(Duration::from_secs(2)).await;
    let port = free_port();
    let rules = json!([{
        "matches": [{"path": {"type": "PathPrefix", "value": "/m"}}],
        "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 80}}}],
        "backendRefs": [backend_ref("a", 1)],
    }]);
    let docs = vec![
        gateway_class("vestibule", CONTROLLER),
        gateway("default", "gw", "vestibule", vec![listener("http", port, "HTTP", json!({}))]),
        route("HTTPRoute", "default", "r", "2024-01-01T00:00:00Z", json!({"parentRefs": [{"name": "gw"}], "hostnames": ["gw.example.com"], "rules": rules})),
        backend_yaml("default", "a", &[a.addr]),
        backend_yaml("default", "mirror", &[m_addr]),
    ];
    let h = start(&manifest(docs)).await;
    let t = Instant::now();
    let v = json_of(req(&h, port, reqwest::Method::POST, "/m/post").body("copy me").send().await.unwrap()).await;
    assert_eq!((v["service"].as_str(), v["body_bytes"].as_u64()), (Some("a"), Some(7)), "the client gets the main backend's answer");
    assert!(t.elapsed() < Duration::from_millis(1500), "the mirror slowed the request: {:?}", t.elapsed());
    let got = wait_seen(&seen, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!((r.method.as_str(), r.path.as_str(), r.host.as_str(), r.body.as_slice()), ("POST", "/m/post", "gw.example.com", b"copy me".as_slice()));
}

#[tokio::test]
async fn cors_filter_through_an_httproute() {
    let a = echo("a").await;
    let rules = json!([{
        "filters": [{"type": "CORS", "cors": {
            "allowOrigins": ["https://www.foo.com", "https://*.bar.com"],
            "allowMethods": ["GET", "OPTIONS"], "allowHeaders": ["x-header-1", "x-header-2"],
            "exposeHeaders": ["x-header-3", "x-header-4"], "allowCredentials": true, "maxAge": 3600}}],
        "backendRefs": [backend_ref("a", 1)],
    }]);
    let (h, port) = serve(rules, &[("a", &a)]).await;
    let resp = req(&h, port, reqwest::Method::OPTIONS, "/cors").header("origin", "https://www.bar.com").header("access-control-request-method", "GET").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let hd = resp.headers();
    assert_eq!(hd["access-control-allow-origin"], "https://www.bar.com");
    assert_eq!(hd["access-control-allow-methods"], "GET, OPTIONS");
    assert_eq!(hd["access-control-allow-headers"], "x-header-1, x-header-2");
    assert_eq!(hd["access-control-expose-headers"], "x-header-3, x-header-4");
    assert_eq!(hd["access-control-max-age"], "3600");
    assert_eq!(hd["access-control-allow-credentials"], "true");
    let resp = req(&h, port, reqwest::Method::GET, "/cors").header("origin", "https://foobar.com").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

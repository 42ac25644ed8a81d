//! HTTPRoute filters and weighted backendRefs end to end in file mode: a Gateway listener on its
//! own port, HTTPRoute manifests, real echo backends that report what they received.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::gateway::*;
use common::recorder::{recorder, recorder_h2, wait_seen};
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

#[tokio::test]
async fn rule_timeouts_answer_504() {
    let a = echo("a").await;
    let rules = json!([
        {"matches": [{"path": {"type": "PathPrefix", "value": "/request"}}], "timeouts": {"request": "500ms"}, "backendRefs": [backend_ref("a", 1)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/backend"}}], "timeouts": {"request": "10s", "backendRequest": "300ms"}, "backendRefs": [backend_ref("a", 1)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/none"}}], "timeouts": {"request": "0s"}, "backendRefs": [backend_ref("a", 1)]},
    ]);
    let (h, port) = serve(rules, &[("a", &a)]).await;
    for path in ["/request?delay_ms=3000", "/backend?delay_ms=3000"] {
        let t = Instant::now();
        assert_eq!(req(&h, port, reqwest::Method::GET, path).send().await.unwrap().status(), 504, "{path}");
        assert!(t.elapsed() < Duration::from_millis(2500), "{path}: {:?}", t.elapsed());
    }
    assert_eq!(req(&h, port, reqwest::Method::GET, "/request?delay_ms=20").send().await.unwrap().status(), 200);
    assert_eq!(req(&h, port, reqwest::Method::GET, "/none?delay_ms=700").send().await.unwrap().status(), 200, "0s is no timeout");
}

#[tokio::test]
async fn backend_ref_filters_apply_to_their_share() {
    let (a, b) = (echo("a").await, echo("b").await);
    let tagged = |name: &str| json!({"name": name, "port": 80, "filters": [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-share", "value": name}]}},
        {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "x-share", "value": name}]}},
    ]});
    let (h, port) = serve(json!([{"backendRefs": [tagged("a"), tagged("b")]}]), &[("a", &a), ("b", &b)]).await;
    let mut seen = HashMap::new();
    for _ in 0..40 {
        let resp = req(&h, port, reqwest::Method::GET, "/").send().await.unwrap();
        let share = resp.headers()["x-share"].to_str().unwrap().to_string();
        let v = json_of(resp).await;
        assert_eq!((v["service"].as_str(), v["headers"]["x-share"].as_str()), (Some(share.as_str()), Some(share.as_str())));
        *seen.entry(share).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn an_extension_ref_is_not_skipped() {
    let a = echo("a").await;
    let rules = json!([
        {"matches": [{"path": {"type": "PathPrefix", "value": "/ext"}}],
         "filters": [{"type": "ExtensionRef", "extensionRef": {"group": "example.com", "kind": "Magic", "name": "m"}}],
         "backendRefs": [backend_ref("a", 1)]},
        {"backendRefs": [backend_ref("a", 1)]},
    ]);
    let (h, port) = serve(rules, &[("a", &a)]).await;
    assert_eq!(req(&h, port, reqwest::Method::GET, "/ext/x").send().await.unwrap().status(), 500);
    assert_eq!(req(&h, port, reqwest::Method::GET, "/other").send().await.unwrap().status(), 200, "the other rule is served");
}

#[tokio::test]
async fn grpcroute_header_modifiers_and_mirror() {
    let (main_addr, main_seen, _t1) = recorder_h2(Duration::ZERO).await;
    let (mirror_addr, mirror_seen, _t2) = recorder_h2(Duration::ZERO).await;
    let port = free_port();
    let spec = json!({"parentRefs": [{"name": "gw"}], "hostnames": ["grpc.example.com"], "rules": [{
        "matches": [{"method": {"service": "echo.Echo", "method": "Say"}}],
        "filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-set", "value": "1"}], "add": [{"name": "x-add", "value": "b"}], "remove": ["x-drop"]}},
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "x-answered", "value": "yes"}]}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 80}}},
        ],
        "backendRefs": [{"name": "svc", "port": 80}],
    }]});
    let docs = vec![
        gateway_class("vestibule", CONTROLLER),
        gateway("default", "gw", "vestibule", vec![listener("http", port, "HTTP", json!({}))]),
        route("GRPCRoute", "default", "g", "2024-01-01T00:00:00Z", spec),
        backend_yaml("default", "svc", &[main_addr]),
        backend_yaml("default", "mirror", &[mirror_addr]),
    ];
    let _h = start(&manifest(docs)).await;
    let client = reqwest::Client::builder().http2_prior_knowledge().resolve("grpc.example.com", ([127, 0, 0, 1], port).into()).build().unwrap();
    // A unary call's framing: uncompressed, 5 bytes.
    let frame = b"\0\0\0\0\x05hello".to_vec();
    let resp = client.post(format!("http://grpc.example.com:{port}/echo.Echo/Say")).header("content-type", "application/grpc").header("te", "trailers")
        .header("x-add", "a").header("x-drop", "1").body(frame.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-answered"], "yes");
    let main = wait_seen(&main_seen, 1).await;
    assert_eq!(main.len(), 1);
    assert_eq!((main[0].path.as_str(), main[0].headers["x-set"].to_str().unwrap(), main[0].headers["x-add"].to_str().unwrap()), ("/echo.Echo/Say", "1", "a,b"));
    assert!(main[0].headers.get("x-drop").is_none());
    let copy = wait_seen(&mirror_seen, 1).await;
    assert_eq!(copy.len(), 1, "the mirror got the call");
    assert_eq!((copy[0].path.as_str(), copy[0].body.as_slice()), ("/echo.Echo/Say", frame.as_slice()));
}

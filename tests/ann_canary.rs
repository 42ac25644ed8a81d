//! Canary annotations through real sockets, reproducing ingress-nginx's e2e assertions: header
//! (always/never/other, exact value, pattern, value over pattern, invalid pattern), cookie,
//! weight (0, 100, = total, 50, 100 of 200), a canary without mainline, and a canary change
//! going live within a second without a failed request.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

const A: &str = "nginx.ingress.kubernetes.io/";

fn ing(name: &str, ann: &[(&str, &str)]) -> Ingress {
    let full: Vec<(String, String)> = ann.iter().map(|(k, v)| (format!("{A}{k}"), v.to_string())).collect();
    let refs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Ingress::new("default", name).created("2020-01-01T00:00:00Z").annotations(&refs)
}

/// A mainline (service `main`) and a canary (service `canary`) Ingress for `host` `/`.
fn pair(host: &str, canary: &[(&str, &str)]) -> Vec<String> {
    let mut c = vec![("canary", "true")];
    c.extend_from_slice(canary);
    let tag = host.split('.').next().unwrap();
    vec![ing(&format!("{tag}-main"), &[]).host_path(host, "/", "Prefix", "main", 80).to_yaml(), ing(&format!("{tag}-canary"), &c).host_path(host, "/", "Prefix", "canary", 80).to_yaml()]
}

struct Setup {
    h: Harness,
    _echoes: (Echo, Echo),
}

async fn setup(docs: Vec<Vec<String>>) -> Setup {
    let (main, canary) = (echo("main").await, echo("canary").await);
    let mut all = vec![backend_yaml("default", "main", &[main.addr]), backend_yaml("default", "canary", &[canary.addr])];
    all.extend(docs.into_iter().flatten());
    Setup { h: start(&manifest(all)).await, _echoes: (main, canary) }
}

/// The service that answered `host` `/` with these request headers ("404" etc. otherwise).
async fn served(h: &Harness, host: &str, headers: &[(&str, &str)]) -> String {
    let mut req = h.client.get(h.http("/")).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request succeeds");
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    match body["service"].as_str() {
        Some(s) if status == 200 => s.to_string(),
        _ => status.to_string(),
    }
}

async fn check(h: &Harness, rows: &[(&str, &[(&str, &str)], &str)]) {
    let mut failures = Vec::new();
    for (host, headers, want) in rows {
        let got = served(h, host, headers).await;
        if got != *want {
            failures.push(format!("{host} {headers:?}: want {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const H: &str = "CanaryByHeader";

#[tokio::test]
async fn header_value_pattern_and_cookie_rules() {
    let pattern = "^Do[A-Z][a-z]+y$";
    let s = setup(vec![
        pair("header.com", &[("canary-by-header", H)]),
        pair("value.com", &[("canary-by-header", H), ("canary-by-header-value", "DoCanary")]),
        pair("pattern.com", &[("canary-by-header", H), ("canary-by-header-pattern", pattern)]),
        pair("both.com", &[("canary-by-header", H), ("canary-by-header-value", "DoCanary"), ("canary-by-header-pattern", pattern)]),
        pair("invalid.com", &[("canary-by-header", H), ("canary-by-header-pattern", "[][**da?$&*"), ("canary-by-cookie", "Canary-By-Cookie")]),
        pair("valuecookie.com", &[("canary-by-header", H), ("canary-by-header-value", "DoCanary"), ("canary-by-cookie", "Canary-By-Cookie")]),
        pair("cookie.com", &[("canary-by-cookie", "Canary-By-Cookie")]),
    ])
    .await;
    let always_cookie = ("cookie", "Canary-By-Cookie=always");
    check(
        &s.h,
        &[
            ("header.com", &[(H, "always")], "canary"),
            ("header.com", &[("canarybyheader", "always")], "canary"),
            ("header.com", &[(H, "never")], "main"),
            ("header.com", &[(H, "badheadervalue")], "main"),
            ("header.com", &[], "main"),
            ("value.com", &[(H, "DoCanary")], "canary"),
            ("value.com", &[(H, "always")], "main"),
            ("value.com", &[(H, "never")], "main"),
            ("value.com", &[(H, "otherheadervalue")], "main"),
            ("pattern.com", &[(H, "DoCanary")], "canary"),
            ("pattern.com", &[(H, "Docanary")], "main"),
            ("both.com", &[(H, "DoCananry")], "main"),
            ("both.com", &[(H, "DoCanary")], "canary"),
            ("invalid.com", &[(H, "DoCanary"), always_cookie], "main"),
            ("valuecookie.com", &[(H, "otherheadervalue"), always_cookie], "canary"),
            ("cookie.com", &[always_cookie], "canary"),
            ("cookie.com", &[("cookie", "a=b; Canary-By-Cookie=always")], "canary"),
            ("cookie.com", &[("cookie", "Canary-By-Cookie=never")], "main"),
            ("cookie.com", &[("cookie", "Canary-By-Cookie=badcookievalue")], "main"),
        ],
    )
    .await;
}

/// The services seen over `n` requests.
async fn seen(h: &Harness, host: &str, n: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for _ in 0..n {
        out.insert(served(h, host, &[]).await);
    }
    out
}

#[tokio::test]
async fn weights() {
    let s = setup(vec![
        pair("w0.com", &[("canary-weight", "0")]),
        pair("w100.com", &[("canary-weight", "100")]),
        pair("wtotal.com", &[("canary-weight", "1000"), ("canary-weight-total", "1000")]),
        pair("w50.com", &[("canary-weight", "50")]),
        pair("w100of200.com", &[("canary-weight", "100"), ("canary-weight-total", "200")]),
        // A total below 100 is ignored: 50 of 100, not 50 of 50.
        pair("small.com", &[("canary-weight", "50"), ("canary-weight-total", "50")]),
    ])
    .await;
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(seen(&s.h, "w0.com", 50).await, set(&["main"]));
    assert_eq!(seen(&s.h, "w100.com", 50).await, set(&["canary"]));
    assert_eq!(seen(&s.h, "wtotal.com", 50).await, set(&["canary"]));
    assert_eq!(seen(&s.h, "w50.com", 200).await, set(&["canary", "main"]));
    assert_eq!(seen(&s.h, "w100of200.com", 200).await, set(&["canary", "main"]));
    assert_eq!(seen(&s.h, "small.com", 200).await, set(&["canary", "main"]));
}

#[tokio::test]
async fn a_canary_without_mainline_serves_nothing() {
    let canary = ing("lonely", &[("canary", "true"), ("canary-by-header", H)]).host_path("lonely.com", "/", "Prefix", "canary", 80).to_yaml();
    let s = setup(vec![vec![canary], pair("other.com", &[("canary-by-header", H)])]).await;
    check(&s.h, &[("lonely.com", &[(H, "always")], "404"), ("other.com", &[(H, "always")], "canary")]).await;
    // Another pathType is another rule: no mainline either.
    let exact = ing("exact", &[("canary", "true"), ("canary-by-header", H)]).host_path("other.com", "/", "Exact", "canary", 80).to_yaml();
    let mut docs = vec![backend_yaml("default", "main", &[s._echoes.0.addr]), backend_yaml("default", "canary", &[s._echoes.1.addr]), exact];
    docs.extend(pair("other.com", &[("canary-weight", "0")]).into_iter().take(1));
    s.h.write("manifests.yaml", &manifest(docs));
    let start = Instant::now();
    while served(&s.h, "other.com", &[(H, "always")]).await != "main" {
        assert!(start.elapsed() < Duration::from_secs(5), "the Exact canary still serves other.com /");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check(&s.h, &[("other.com", &[(H, "always")], "main"), ("other.com", &[], "main")]).await;
}

#[tokio::test]
async fn a_canary_change_is_live_within_a_second_without_failed_requests() {
    let (main, canary) = (echo("main").await, echo("canary").await);
    let base = vec![backend_yaml("default", "main", &[main.addr]), backend_yaml("default", "canary", &[canary.addr])];
    let with = |weight: &str| {
        let mut d = base.clone();
        d.extend(pair("live.com", &[("canary-weight", weight)]));
        manifest(d)
    };
    let h = Arc::new(start(&with("0")).await);
    assert_eq!(served(&h, "live.com", &[]).await, "main");
    let (stop, failed, total) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (h, stop, failed, total) = (h.clone(), stop.clone(), failed.clone(), total.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let s = served(&h, "live.com", &[]).await;
                total.fetch_add(1, Ordering::Relaxed);
                if s != "main" && s != "canary" {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let changed = Instant::now();
    h.write("manifests.yaml", &with("100"));
    let took = h.wait_route("live.com", "/", (200, Some("canary")), Duration::from_secs(5)).await;
    assert!(changed.elapsed() < Duration::from_secs(1), "the canary took {took:?} to go live");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(total.load(Ordering::Relaxed) > 5, "the load ran");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed during the change");
    assert_eq!(seen(&h, "live.com", 20).await, ["canary".to_string()].into_iter().collect());
}

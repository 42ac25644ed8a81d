//! `enable-cors` and `cors-*` through real sockets on 127.0.0.1: preflights answered by
//! Vestibule with ingress-nginx's exact headers, origin lists and one-label wildcards echoed,
//! other origins left alone, and the headers on error answers too.

mod common;

use common::*;

const N: &str = "nginx.ingress.kubernetes.io/";
const CREATED: &str = "2020-01-01T00:00:00Z";
const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";

fn ing(name: &str, host: &str, svc: &str, ann: &[(&str, &str)]) -> String {
    let mut i = Ingress::new("default", name).created(CREATED).annotation(&format!("{N}enable-cors"), "true");
    for (k, v) in ann {
        i = i.annotation(&format!("{N}{k}"), v);
    }
    i.host_path(host, "/", "Prefix", svc, 80).to_yaml()
}

async fn setup() -> (Echo, Harness) {
    let web = echo("web").await;
    let h = start(&manifest([
        backend_yaml("default", "web", &[web.addr]),
        backend_yaml("default", "dead", &["127.0.0.1:1".parse().unwrap()]),
        ing("any", "any.test", "web", &[]),
        ing("list", "list.test", "web", &[("cors-allow-origin", "https://a.example.com, https://*.wild.test:8443")]),
        ing(
            "custom",
            "custom.test",
            "web",
            &[("cors-allow-methods", "GET, POST"), ("cors-allow-headers", "X-One,X-Two"), ("cors-expose-headers", "X-Exposed, *"), ("cors-allow-credentials", "false"), ("cors-max-age", "600")],
        ),
        ing("dead", "dead.test", "dead", &[]),
    ]))
    .await;
    (web, h)
}

async fn send(h: &Harness, method: &str, host: &str, path: &str, origin: Option<&str>) -> reqwest::Response {
    let mut req = h.client.request(method.parse().unwrap(), h.http(path)).header("host", host);
    if let Some(o) = origin {
        req = req.header("origin", o).header("access-control-request-method", "PUT");
    }
    req.send().await.unwrap()
}

fn hdr<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The CORS headers of an answer, in a fixed order.
fn cors_of(r: &reqwest::Response) -> Vec<Option<&str>> {
    ["access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-methods", "access-control-allow-headers", "access-control-expose-headers", "access-control-max-age"]
        .iter()
        .map(|n| hdr(r, n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_is_answered_204_with_the_default_headers() {
    let (_web, h) = setup().await;
    let r = send(&h, "OPTIONS", "any.test", "/x", Some("https://anywhere.test")).await;
    assert_eq!(r.status(), 204);
    assert_eq!(cors_of(&r), [Some("*"), Some("true"), Some("GET, PUT, POST, DELETE, PATCH, OPTIONS"), Some(DEFAULT_HEADERS), None, Some("1728000")]);
    assert_eq!(hdr(&r, "content-type"), Some("text/plain charset=UTF-8"));
    // ingress-nginx also sets `Content-Length: 0`; HTTP forbids Content-Length on a 204 and
    // hyper never sends one, so the answer has none.
    assert_eq!(hdr(&r, "content-length"), None);
    assert_eq!(r.text().await.unwrap(), "");
    // An echo backend would have answered 200 with JSON: the preflight never reached it.
    // A normal request goes upstream and gets the same headers.
    let r = send(&h, "GET", "any.test", "/x", Some("https://anywhere.test")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(cors_of(&r)[0], Some("*"));
    assert_eq!(cors_of(&r)[5], Some("1728000"));
    assert!(hdr(&r, "content-type").unwrap().starts_with("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_and_wildcard_origins_are_echoed_others_get_nothing() {
    let (_web, h) = setup().await;
    for origin in ["https://a.example.com", "https://A.Example.com", "https://app.wild.test:8443"] {
        let r = send(&h, "GET", "list.test", "/", Some(origin)).await;
        assert_eq!(hdr(&r, "access-control-allow-origin"), Some(origin), "{origin}");
        let r = send(&h, "OPTIONS", "list.test", "/", Some(origin)).await;
        assert_eq!((r.status().as_u16(), hdr(&r, "access-control-allow-origin")), (204, Some(origin)), "{origin}");
    }
    for origin in ["https://b.example.com", "http://a.example.com", "https://x.y.wild.test:8443", "https://app.wild.test", "https://a.example.com.evil.test"] {
        let r = send(&h, "GET", "list.test", "/", Some(origin)).await;
        assert_eq!(r.status(), 200);
        assert!(cors_of(&r).iter().all(Option::is_none), "{origin}: {:?}", cors_of(&r));
        // A preflight from an origin not allowed is not answered by Vestibule: it goes upstream.
        let r = send(&h, "OPTIONS", "list.test", "/", Some(origin)).await;
        assert_eq!(r.status(), 200, "{origin}");
        assert!(cors_of(&r).iter().all(Option::is_none), "{origin}");
    }
    let r = send(&h, "GET", "list.test", "/", None).await;
    assert!(cors_of(&r).iter().all(Option::is_none), "no Origin, no headers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_max_age_expose_methods_and_headers_as_set() {
    let (_web, h) = setup().await;
    let r = send(&h, "OPTIONS", "custom.test", "/", Some("https://o.test")).await;
    assert_eq!(r.status(), 204);
    assert_eq!(cors_of(&r), [Some("*"), None, Some("GET, POST"), Some("X-One,X-Two"), Some("X-Exposed, *"), Some("600")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_carry_the_headers() {
    let (_web, h) = setup().await;
    // The backend's own 404.
    let r = send(&h, "GET", "list.test", "/?status=404", Some("https://a.example.com")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(hdr(&r, "access-control-allow-origin"), Some("https://a.example.com"));
    assert_eq!(hdr(&r, "access-control-max-age"), Some("1728000"));
    // Vestibule's own 502: the endpoint refuses connections.
    let r = send(&h, "GET", "dead.test", "/", Some("https://o.test")).await;
    assert_eq!(r.status(), 502);
    assert_eq!(hdr(&r, "access-control-allow-origin"), Some("*"));
    assert_eq!(hdr(&r, "access-control-allow-methods"), Some("GET, PUT, POST, DELETE, PATCH, OPTIONS"));
}

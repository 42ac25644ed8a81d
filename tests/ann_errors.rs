//! `custom-http-errors`, `default-backend` and `disable-proxy-intercept-errors` through real
//! sockets on 127.0.0.1: which answers the error backend replaces, and exactly what it is told.

mod common;

use common::*;

const N: &str = "nginx.ingress.kubernetes.io/";
const CREATED: &str = "2020-01-01T00:00:00Z";

fn ing(name: &str, host: &str, svc: &str, ann: &[(&str, &str)]) -> String {
    let mut i = Ingress::new("default", name).created(CREATED);
    for (k, v) in ann {
        i = i.annotation(&format!("{N}{k}"), v);
    }
    i.host_path(host, "/", "Prefix", svc, 80).to_yaml()
}

async fn echoed(h: &Harness, host: &str, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut req = h.client.get(h.http(path)).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_http_errors_go_to_the_default_backend() {
    let (web, errors) = (echo("web").await, echo("errors").await);
    let h = start(&manifest([
        backend_yaml("default", "web", &[web.addr]),
        backend_yaml("default", "errors", &[errors.addr]),
        ing("codes", "codes.test", "web", &[("custom-http-errors", "404,500"), ("default-backend", "errors")]),
        ing("pass", "pass.test", "web", &[("custom-http-errors", "404"), ("default-backend", "errors"), ("disable-proxy-intercept-errors", "true")]),
        backend_yaml("default", "dead", &["127.0.0.1:1".parse().unwrap()]),
        ing("own", "own.test", "dead", &[("custom-http-errors", "502"), ("default-backend", "errors"), ("disable-proxy-intercept-errors", "true")]),
    ]))
    .await;
    let (status, v) = echoed(&h, "codes.test", "/a/b?status=404&k=v", &[("x-request-id", "req-1"), ("accept", "text/html"), ("x-custom", "dropped")]).await;
    assert_eq!(v["service"], "errors", "{v}");
    assert_eq!(status, 404, "the error backend's answer (the echo honours the kept ?status=404)");
    assert_eq!((v["path"].as_str(), v["query"].as_str()), (Some("/"), Some("status=404&k=v")), "GET / with the original query");
    assert_eq!(v["method"], "GET");
    let hd = &v["headers"];
    for (k, want) in [
        ("x-code", "404"),
        ("x-format", "text/html"),
        ("x-original-uri", "/a/b?status=404&k=v"),
        ("x-namespace", "default"),
        ("x-ingress-name", "codes"),
        ("x-service-name", "web"),
        ("x-service-port", "80"),
        ("x-request-id", "req-1"),
        ("x-forwarded-for", "127.0.0.1"),
        ("host", "codes.test"),
    ] {
        assert_eq!(hd[k], want, "{k} in {hd}");
    }
    assert!(hd.get("x-custom").is_none(), "the client's other headers are not sent: {hd}");

    let (status, v) = echoed(&h, "codes.test", "/?status=403", &[]).await;
    assert_eq!((status, v["service"].as_str()), (403, Some("web")), "codes not listed pass");
    let (status, v) = echoed(&h, "pass.test", "/?status=404", &[]).await;
    assert_eq!((status, v["service"].as_str()), (404, Some("web")), "disable-proxy-intercept-errors passes the backend's 404");
    let (status, v) = echoed(&h, "own.test", "/", &[]).await;
    assert_eq!((status, v["service"].as_str(), v["headers"]["x-code"].as_str()), (200, Some("errors"), Some("502")), "Vestibule's own 502 still goes to the error backend: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_backend_serves_a_missing_service() {
    let errors = echo("errors").await;
    let h = start(&manifest([backend_yaml("default", "errors", &[errors.addr]), ing("gone", "gone.test", "invalid", &[("default-backend", "errors")]), ing("plain", "plain.test", "invalid", &[])])).await;
    let (status, v) = echoed(&h, "gone.test", "/alma/armud", &[("x-request-id", "something-unique")]).await;
    assert_eq!((status, v["service"].as_str()), (200, Some("errors")), "{v}");
    assert_eq!(v["path"], "/alma/armud", "the path is unchanged");
    let hd = &v["headers"];
    for (k, want) in [("x-code", "503"), ("x-ingress-name", "gone"), ("x-service-name", "invalid"), ("x-request-id", "something-unique"), ("x-namespace", "default")] {
        assert_eq!(hd[k], want, "{k} in {hd}");
    }
    assert!(hd.get("x-original-uri").is_none());
    assert_eq!(h.get("plain.test", "/").await.status(), 503, "without default-backend: 503");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_custom_http_errors_and_the_default_backend_service() {
    let (web, fallback) = (echo("web").await, echo("fallback").await);
    let cm = ConfigMap::new("ingress", "vestibule").data("custom-http-errors", "503").to_yaml();
    let h = start_with(
        &manifest([
            backend_yaml("default", "web", &[web.addr]),
            backend_yaml("default", "fallback", &[fallback.addr]),
            cm,
            ing("global", "global.test", "web", &[]),
            ing("own", "own.test", "web", &[("custom-http-errors", "502")]),
        ]),
        |o| {
            o.configmap = Some(("ingress".into(), "vestibule".into()));
            o.default_backend_service = Some(("default".into(), "fallback".into()));
        },
    )
    .await;
    let (_, v) = echoed(&h, "global.test", "/?status=503", &[]).await;
    assert_eq!((v["service"].as_str(), v["headers"]["x-code"].as_str()), (Some("fallback"), Some("503")), "{v}");
    let (status, v) = echoed(&h, "own.test", "/?status=503", &[]).await;
    assert_eq!((status, v["service"].as_str()), (503, Some("web")), "an Ingress's list replaces the global one");
}

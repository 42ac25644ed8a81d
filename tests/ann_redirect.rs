//! Redirect annotations end to end: fixed redirects and their codes, `from-to-www-redirect`,
//! `force-ssl-redirect`, the HTTPS redirect's trailing-slash rule and `http-redirect-code`, and
//! the order in which they apply. The cases are ingress-nginx's e2e assertions
//! (test/e2e/annotations/{redirect,fromtowwwredirect,forcesslredirect,preservetrailingslash}.go,
//! test/e2e/settings/tls.go). Vestibule listens on ephemeral ports here, so the HTTPS redirect
//! names the port (ingress-nginx omits it on 443).

mod common;

use common::*;

const A: &str = "nginx.ingress.kubernetes.io/";

fn key(k: &str) -> String {
    format!("{A}{k}")
}

fn ing(name: &str, host: &str, path: &str, pairs: &[(&str, &str)]) -> Ingress {
    let full: Vec<(String, &str)> = pairs.iter().map(|(k, v)| (key(k), *v)).collect();
    let refs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    Ingress::new("default", name).annotations(&refs).host_path(host, path, "Prefix", "web", 80)
}

/// Status and Location of a plain-HTTP GET.
async fn redirect(h: &Harness, host: &str, path: &str) -> (u16, Option<String>) {
    let r = h.get(host, path).await;
    (r.status().as_u16(), r.headers().get("location").map(|v| v.to_str().unwrap().to_string()))
}

fn r(status: u16, location: &str) -> (u16, Option<String>) {
    (status, Some(location.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_redirects_send_the_location_verbatim() {
    let web = echo("web").await;
    let docs = [
        backend_yaml("default", "web", &[web.addr]),
        ing("perm", "redirect.bar.com", "/something", &[("permanent-redirect", "http://redirect.example.com")]).to_yaml(),
        ing("perm-code", "code.bar.com", "/something", &[("permanent-redirect", "http://redirect.example.com"), ("permanent-redirect-code", "302")]).to_yaml(),
        ing("temporal", "temporal.bar.com", "/", &[("temporal-redirect", "https://t.example.com/a?b=1"), ("permanent-redirect", "http://p.example.com")]).to_yaml(),
        ing("temporal-code", "temporal-code.bar.com", "/", &[("temporal-redirect", "https://t.example.com"), ("temporal-redirect-code", "307")]).to_yaml(),
        // app-root answers `/` first; a fixed redirect comes before the HTTPS redirect.
        ing("order", "order.bar.com", "/", &[("app-root", "/app"), ("permanent-redirect", "http://p.example.com")]).tls(&["order.bar.com"], "missing").to_yaml(),
    ];
    let h = start(&manifest(docs)).await;
    assert_eq!(redirect(&h, "redirect.bar.com", "/something").await, r(301, "http://redirect.example.com"));
    assert_eq!(redirect(&h, "redirect.bar.com", "/something/else?q=1").await, r(301, "http://redirect.example.com"), "path and query are not appended");
    assert_eq!(redirect(&h, "code.bar.com", "/something").await, r(302, "http://redirect.example.com"));
    assert_eq!(redirect(&h, "temporal.bar.com", "/x").await, r(302, "https://t.example.com/a?b=1"), "temporal wins");
    assert_eq!(redirect(&h, "temporal-code.bar.com", "/x").await, r(307, "https://t.example.com"));
    assert_eq!(redirect(&h, "order.bar.com", "/").await, r(302, "http://order.bar.com/app"));
    assert_eq!(redirect(&h, "order.bar.com", "/x").await, r(301, "http://p.example.com"));
    assert_eq!(h.route("redirect.bar.com", "/other").await.0, 404, "only the Ingress's paths redirect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_to_www_answers_the_other_name_with_308_and_the_port() {
    let web = echo("web").await;
    let docs = [
        backend_yaml("default", "web", &[web.addr]),
        ing("www", "fromtowwwredirect.bar.com", "/", &[("from-to-www-redirect", "true")]).to_yaml(),
        ing("to-www", "www.other.bar.com", "/", &[("from-to-www-redirect", "true")]).to_yaml(),
    ];
    let h = start(&manifest(docs)).await;
    let port = h.running.http.port();
    assert_eq!(redirect(&h, "www.fromtowwwredirect.bar.com", "/foo").await, r(308, &format!("http://fromtowwwredirect.bar.com:{port}/foo")));
    assert_eq!(redirect(&h, "www.fromtowwwredirect.bar.com", "/").await, r(308, &format!("http://fromtowwwredirect.bar.com:{port}")), "one trailing slash dropped");
    assert_eq!(redirect(&h, "www.fromtowwwredirect.bar.com", "/a/?x=1").await, r(308, &format!("http://fromtowwwredirect.bar.com:{port}/a/?x=1")));
    assert_eq!(redirect(&h, "other.bar.com", "/p").await, r(308, &format!("http://www.other.bar.com:{port}/p")));
    assert_eq!(h.route("fromtowwwredirect.bar.com", "/foo").await, (200, Some("web".into())), "the real host is served");

    // Over HTTPS: the scheme and port of the request (the default certificate is served).
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .resolve("www.fromtowwwredirect.bar.com", h.running.https)
        .build()
        .unwrap();
    let resp = client.get(h.https("www.fromtowwwredirect.bar.com", "/")).send().await.unwrap();
    let https_port = h.running.https.port();
    assert_eq!(resp.status().as_u16(), 308);
    assert_eq!(resp.headers()["location"].to_str().unwrap(), format!("https://fromtowwwredirect.bar.com:{https_port}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_redirect_follows_ingress_nginx() {
    let web = echo("web").await;
    let docs = [
        backend_yaml("default", "web", &[web.addr]),
        ing("force", "forcesslredirect.bar.com", "/", &[("force-ssl-redirect", "true")]).to_yaml(),
        ing("tls", "redirect.com", "/", &[]).tls(&["redirect.com"], "missing-secret").to_yaml(),
        ing("keep", "keep.bar.com", "/", &[("preserve-trailing-slash", "true")]).tls(&["keep.bar.com"], "missing").to_yaml(),
        ing("acme", "redirect.com", "/.well-known/acme-challenge", &[]).to_yaml(),
    ];
    let h = start(&manifest(docs)).await;
    let p = h.running.https.port();
    assert_eq!(redirect(&h, "forcesslredirect.bar.com", "/").await, r(308, &format!("https://forcesslredirect.bar.com:{p}")), "force-ssl-redirect without TLS");
    assert_eq!(redirect(&h, "redirect.com", "/").await, r(308, &format!("https://redirect.com:{p}")), "a TLS host whose Secret is missing still redirects");
    assert_eq!(redirect(&h, "redirect.com:8080", "/a/").await, r(308, &format!("https://redirect.com:{p}/a")), "the Host's port is dropped; one trailing slash too");
    assert_eq!(redirect(&h, "redirect.com", "/a//").await, r(308, &format!("https://redirect.com:{p}/a/")));
    assert_eq!(redirect(&h, "redirect.com", "/a/?x=1").await, r(308, &format!("https://redirect.com:{p}/a/?x=1")));
    assert_eq!(redirect(&h, "keep.bar.com", "/").await, r(308, &format!("https://keep.bar.com:{p}/")), "preserve-trailing-slash");
    assert_eq!(h.route("redirect.com", "/.well-known/acme-challenge/token").await, (200, Some("web".into())), "ACME challenges are never redirected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_redirect_code_sets_the_status() {
    let web = echo("web").await;
    let cm = ConfigMap::new("ingress", "vestibule").data("http-redirect-code", "301");
    let docs = [
        backend_yaml("default", "web", &[web.addr]),
        cm.to_yaml(),
        ing("tls", "code.bar.com", "/", &[]).tls(&["code.bar.com"], "missing").to_yaml(),
        ing("www", "wcode.bar.com", "/", &[("from-to-www-redirect", "true")]).to_yaml(),
    ];
    let h = start_with(&manifest(docs), |o| o.configmap = Some(("ingress".into(), "vestibule".into()))).await;
    let p = h.running.https.port();
    assert_eq!(redirect(&h, "code.bar.com", "/x").await, r(301, &format!("https://code.bar.com:{p}/x")));
    let hp = h.running.http.port();
    assert_eq!(redirect(&h, "www.wcode.bar.com", "/x").await, r(301, &format!("http://wcode.bar.com:{hp}/x")), "the www redirect uses it too");
}

//! External authentication (`auth-url` and its companions) through real sockets on 127.0.0.1,
//! against a real auth server that records what it was sent and counts calls and connections.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::{Request, Response};

const N: &str = "nginx.ingress.kubernetes.io/";
const CREATED: &str = "2020-01-01T00:00:00Z";

#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    conns: AtomicUsize,
    last: Mutex<Option<(String, String, http::HeaderMap)>>,
}

/// An auth server answering by path: /ok 200 (with X-Auth-User and a cookie), /deny 401,
/// /forbid 403, /boom 500, /teapot 418, /hang never.
async fn auth_server() -> (SocketAddr, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            s.conns.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        s.calls.fetch_add(1, Ordering::SeqCst);
                        let path = req.uri().path().to_string();
                        *s.last.lock().unwrap() = Some((req.method().to_string(), req.uri().to_string(), req.headers().clone()));
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"auth says")));
                        let code = match path.as_str() {
                            "/ok" => {
                                resp.headers_mut().insert("x-auth-user", "alice".parse().unwrap());
                                resp.headers_mut().insert("set-cookie", "sess=1".parse().unwrap());
                                200
                            }
                            "/deny" => {
                                resp.headers_mut().insert("www-authenticate", "Bearer realm=\"x\"".parse().unwrap());
                                resp.headers_mut().insert("set-cookie", "tried=1".parse().unwrap());
                                401
                            }
                            "/forbid" => 403,
                            "/boom" => 500,
                            "/teapot" => 418,
                            _ => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                200
                            }
                        };
                        *resp.status_mut() = http::StatusCode::from_u16(code).unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tcp), svc).await;
            });
        }
    });
    (addr, seen)
}

fn ing(name: &str, host: &str, ann: &[(&str, String)]) -> String {
    let mut i = Ingress::new("default", name).created(CREATED);
    for (k, v) in ann {
        i = i.annotation(&format!("{N}{k}"), v);
    }
    i.host_path(host, "/", "Prefix", "web", 80).to_yaml()
}

async fn get(h: &Harness, host: &str, path: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut req = h.client.get(h.http(path)).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let (status, hd) = (r.status().as_u16(), r.headers().clone());
    let text = r.text().await.unwrap();
    (status, hd, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_headers_and_pooled_connections() {
    let web = echo("web").await;
    let (auth, seen) = auth_server().await;
    let url = |p: &str| format!("http://{auth}{p}");
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: auth-headers\n  namespace: default\ndata:\n  X-Extra: sent-to-auth\n".to_string();
    let h = start(&manifest([
        backend_yaml("default", "web", &[web.addr]),
        cm,
        ing("ok", "ok.test", &[("auth-url", url("/ok?check=1")), ("auth-response-headers", "X-Auth-User, X-Missing".into()), ("auth-proxy-set-headers", "auth-headers".into())]),
        ing("deny", "deny.test", &[("auth-url", url("/deny"))]),
        ing("forbid", "forbid.test", &[("auth-url", url("/forbid"))]),
        ing("boom", "boom.test", &[("auth-url", url("/boom"))]),
        ing("teapot", "teapot.test", &[("auth-url", url("/teapot"))]),
        ing("always", "always.test", &[("auth-url", url("/deny")), ("auth-always-set-cookie", "true".into())]),
        ing("post", "post.test", &[("auth-url", url("/ok")), ("auth-method", "POST".into()), ("auth-request-redirect", "https://back.test/here".into())]),
        ing("badurl", "badurl.test", &[("auth-url", "ftp://nope/".into())]),
        ing("nocm", "nocm.test", &[("auth-url", url("/ok")), ("auth-proxy-set-headers", "absent".into())]),
    ]))
    .await;

    let (status, hd, v) = get(&h, "ok.test", "/p/q?a=1", &[("cookie", "c=1"), ("x-missing", "forged"), ("x-auth-user", "mallory")]).await;
    assert_eq!(status, 200);
    assert_eq!(v["headers"]["x-auth-user"], "alice", "copied from the auth answer over the client's");
    assert!(v["headers"].get("x-missing").is_none(), "a listed header the auth service did not send never passes: {v}");
    assert_eq!(hd.get("set-cookie").unwrap(), "sess=1", "the auth cookie on a successful answer");
    let (method, uri, sh) = seen.last.lock().unwrap().clone().unwrap();
    assert_eq!((method.as_str(), uri.as_str()), ("GET", "/ok?check=1"));
    for (k, want) in [
        ("x-original-url", "http://ok.test/p/q?a=1"),
        ("x-original-method", "GET"),
        ("x-auth-request-redirect", "/p/q?a=1"),
        ("x-sent-from", "nginx-ingress-controller"),
        ("x-real-ip", "127.0.0.1"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-extra", "sent-to-auth"),
        ("cookie", "c=1"),
        ("host", &auth.to_string()),
    ] {
        assert_eq!(sh.get(k).map(|v| v.to_str().unwrap()), Some(want), "{k} in {sh:?}");
    }
    assert!(sh.get("content-length").is_none() && sh.get("x-forwarded-proto").is_none(), "{sh:?}");
    assert!(sh.get("x-request-id").is_some());

    // One pooled connection serves the next sub-requests.
    let conns = seen.conns.load(Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(get(&h, "ok.test", "/", &[]).await.0, 200);
    }
    assert_eq!(seen.conns.load(Ordering::SeqCst), conns, "the auth connection is reused");

    let (status, hd, v) = get(&h, "deny.test", "/", &[]).await;
    assert_eq!((status, hd.get("www-authenticate").map(|v| v.to_str().unwrap())), (401, Some("Bearer realm=\"x\"")));
    assert!(v.is_null() && hd.get("set-cookie").is_none(), "no backend, no cookie without auth-always-set-cookie");
    assert_eq!(get(&h, "always.test", "/", &[]).await.1.get("set-cookie").unwrap(), "tried=1");
    assert_eq!(get(&h, "forbid.test", "/", &[]).await.0, 403);
    assert_eq!(get(&h, "boom.test", "/", &[]).await.0, 500);
    assert_eq!(get(&h, "teapot.test", "/", &[]).await.0, 500);

    assert_eq!(get(&h, "post.test", "/z", &[]).await.0, 200);
    let (method, _, sh) = seen.last.lock().unwrap().clone().unwrap();
    assert_eq!(method, "POST");
    assert_eq!(sh.get("x-auth-request-redirect").unwrap(), "https://back.test/here");
    assert_eq!(sh.get("x-original-uri").unwrap(), "/z");

    // Fails closed.
    let calls = seen.calls.load(Ordering::SeqCst);
    assert_eq!(get(&h, "badurl.test", "/", &[]).await.0, 503);
    assert_eq!(get(&h, "nocm.test", "/", &[]).await.0, 503);
    assert_eq!(seen.calls.load(Ordering::SeqCst), calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signin_redirects_hung_servers_and_the_cache() {
    let web = echo("web").await;
    let (auth, seen) = auth_server().await;
    let url = |p: &str| format!("http://{auth}{p}");
    let h = start(&manifest([
        backend_yaml("default", "web", &[web.addr]),
        ing("signin", "signin.test", &[("auth-url", url("/deny")), ("auth-signin", "https://login.test/start".into())]),
        ing("param", "param.test", &[("auth-url", url("/deny")), ("auth-signin", "https://login.test/start?x=1".into()), ("auth-signin-redirect-param", "next".into())]),
        ing("hang", "hang.test", &[("auth-url", url("/hang")), ("proxy-read-timeout", "1".into())]),
        ing("cached", "cached.test", &[("auth-url", url("/ok")), ("auth-cache-key", "$http_authorization".into()), ("auth-cache-duration", "200 1m".into())]),
        ing("dead", "dead.test", &[("auth-url", "http://127.0.0.1:1/".into())]),
    ]))
    .await;
    let (status, hd, _) = get(&h, "signin.test", "/p?a=1", &[]).await;
    assert_eq!((status, hd.get("location").map(|v| v.to_str().unwrap())), (302, Some("https://login.test/start?rd=http://signin.test%2Fp%3Fa%3D1")));
    let (status, hd, _) = get(&h, "param.test", "/", &[]).await;
    assert_eq!((status, hd.get("location").map(|v| v.to_str().unwrap())), (302, Some("https://login.test/start?x=1&next=http://param.test%2F")));

    let t = Instant::now();
    assert_eq!(get(&h, "hang.test", "/", &[]).await.0, 500, "a hung auth server");
    assert!(t.elapsed() < Duration::from_secs(5), "within the read timeout: {:?}", t.elapsed());
    assert_eq!(get(&h, "dead.test", "/", &[]).await.0, 500, "an auth server that refuses connections");

    let before = seen.calls.load(Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(get(&h, "cached.test", "/", &[("authorization", "Bearer one")]).await.0, 200);
    }
    assert_eq!(seen.calls.load(Ordering::SeqCst), before + 1, "cached by the key's value");
    assert_eq!(get(&h, "cached.test", "/", &[("authorization", "Bearer two")]).await.0, 200);
    assert_eq!(seen.calls.load(Ordering::SeqCst), before + 2, "another key asks again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_auth_url_from_the_configmap_unless_disabled() {
    let web = echo("web").await;
    let (auth, seen) = auth_server().await;
    let cm = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: vestibule\n  namespace: ingress\ndata:\n  global-auth-url: http://{auth}/forbid\n  global-auth-method: GET\n"
    );
    let h = start_with(
        &manifest([
            backend_yaml("default", "web", &[web.addr]),
            cm,
            ing("global", "global.test", &[]),
            ing("off", "off.test", &[("enable-global-auth", "false".into())]),
            ing("own", "own.test", &[("auth-url", format!("http://{auth}/ok"))]),
        ]),
        |o| o.configmap = Some(("ingress".into(), "vestibule".into())),
    )
    .await;
    assert_eq!(get(&h, "global.test", "/", &[]).await.0, 403, "the global auth service decides");
    let calls = seen.calls.load(Ordering::SeqCst);
    assert_eq!(get(&h, "off.test", "/", &[]).await.0, 200, "enable-global-auth: false");
    assert_eq!(seen.calls.load(Ordering::SeqCst), calls);
    assert_eq!(get(&h, "own.test", "/", &[]).await.0, 200, "an Ingress's own auth-url wins");
}

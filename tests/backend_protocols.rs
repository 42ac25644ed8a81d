//! How Vestibule speaks to backends, per `backend-protocol` and the `proxy-ssl-*` annotations:
//! HTTP/1.1, HTTP/2 cleartext (H2C), HTTPS with and without certificate verification; and
//! HTTP/2 with prior knowledge from clients on the plain HTTP port.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::Value;
use vestibule::compile::{self, Reason};
use vestibule::store::ObjRef;

fn backend(svc: &str, addr: SocketAddr) -> String {
    format!("{}\n---\n", backend_yaml("default", svc, &[addr]))
}

/// An Ingress for `host` → `svc`:80 with the given annotations (`key: value` pairs, keys
/// without prefix get `nginx.ingress.kubernetes.io/`).
fn ingress(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    let mut ing = Ingress::new("default", name).host_path(host, "/", "Prefix", svc, 80);
    for (k, v) in annotations {
        let key = if k.contains('/') { k.to_string() } else { format!("nginx.ingress.kubernetes.io/{k}") };
        ing = ing.annotation(&key, v);
    }
    format!("{}---\n", ing.to_yaml())
}

/// An Opaque Secret holding a CA bundle as `ca.crt`.
fn ca_secret(name: &str, ca_pem: &str) -> String {
    format!("{}---\n", Secret::new("default", name).type_("Opaque").string_data("ca.crt", ca_pem).to_yaml())
}

async fn json(resp: reqwest::Response) -> Value {
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// GET through Vestibule; the status and, on 200, the backend's JSON answer.
async fn get(h: &Harness, host: &str) -> (u16, Value) {
    let resp = tokio::time::timeout(Duration::from_secs(10), h.get(host, "/probe")).await.expect("an answer within 10 s");
    let status = resp.status().as_u16();
    if status == 200 { (status, json(resp).await) } else { (status, Value::Null) }
}


/// An HTTPS backend with the certificate `issued` (for `backend.internal`), answering JSON
/// that says how it was reached. Counts completed TLS handshakes.
struct TlsBackend {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_backend(issued: &vestibule::tls::IssuedCert) -> TlsBackend {
    vestibule::tls::install_provider();
    let ck = vestibule::tls::certified_key_from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(vestibule::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(vestibule::tls::Single(Arc::new(ck))));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = handshakes.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else { continue };
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let sni = tls.get_ref().1.server_name().map(str::to_string);
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let body = serde_json::json!({
                        "service": "tls-backend",
                        "sni": sni,
                        "proto": format!("{:?}", req.version()),
                        "host": req.headers().get("host").and_then(|v| v.to_str().ok()),
                    });
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body.to_string())))) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), svc).await;
            });
        }
    });
    TlsBackend { addr, handshakes, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_backend_protocol_speaks_http2_to_the_backend() {
    init_tracing();
    let e = echo("web").await;
    let m = [
        backend("web", e.addr),
        ingress("h2c", "h2c.example", "web", &[("backend-protocol", "H2C")]),
        ingress("h2c-own-prefix", "own.example", "web", &[("vestibule.dev/backend-protocol", "h2c")]),
        ingress("plain", "plain.example", "web", &[]),
        ingress("explicit-http", "http.example", "web", &[("backend-protocol", "HTTP")]),
    ]
    .concat();
    let h = start(&m).await;
    for host in ["h2c.example", "own.example"] {
        for _ in 0..3 {
            let (status, j) = get(&h, host).await;
            assert_eq!(status, 200, "{host}");
            assert_eq!(j["proto"], "HTTP/2.0", "{host}: {j}");
            // Over HTTP/2 the Host travels as the :authority, unchanged.
            assert_eq!(j["host"], host, "{j}");
            assert_eq!(j["headers"]["x-forwarded-host"], host, "{j}");
            assert_eq!(j["path"], "/probe");
        }
    }
    for host in ["plain.example", "http.example"] {
        let (status, j) = get(&h, host).await;
        assert_eq!(status, 200, "{host}");
        assert_eq!(j["proto"], "HTTP/1.1", "{host}: {j}");
        assert_eq!(j["host"], host, "{j}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backend_without_verification_accepts_a_self_signed_certificate() {
    init_tracing();
    let (tls_echo, tls_echo_sni, tls_echo_plain) = (echo_opts("secure", true).await, echo_opts("secure-sni", true).await, echo_opts("secure-plain", true).await);
    let m = [
        backend("secure", tls_echo.addr),
        backend("secure-sni", tls_echo_sni.addr),
        backend("secure-plain", tls_echo_plain.addr),
        ingress("https", "https.example", "secure", &[("backend-protocol", "HTTPS")]),
        ingress("sni", "sni.example", "secure-sni", &[("backend-protocol", "HTTPS"), ("proxy-ssl-server-name", "on"), ("proxy-ssl-name", "backend.internal")]),
        ingress("plain-to-tls", "plain.example", "secure-plain", &[]),
    ]
    .concat();
    let h = start(&m).await;

    for _ in 0..3 {
        let (status, j) = get(&h, "https.example").await;
        assert_eq!(status, 200);
        assert_eq!(j["service"], "secure");
        assert_eq!(j["proto"], "HTTP/1.1", "{j}");
        assert!(j["tls"].is_object(), "the backend saw TLS: {j}");
        assert!(j["tls"]["version"].as_str().is_some_and(|v| v.starts_with("TLSv1_")), "{j}");
        assert_eq!(j["tls"]["alpn"], "http/1.1", "{j}");
        // As ingress-nginx (proxy_ssl_server_name off): no SNI unless asked for.
        assert!(j["tls"]["sni"].is_null(), "{j}");
        assert_eq!(j["headers"]["x-forwarded-proto"], "http");
        assert_eq!(j["host"], "https.example");
    }

    // proxy-ssl-server-name + proxy-ssl-name: that name is sent as SNI.
    let (status, j) = get(&h, "sni.example").await;
    assert_eq!(status, 200);
    assert_eq!(j["tls"]["sni"], "backend.internal", "{j}");

    // The same kind of TLS-only backend without the annotation is spoken to in cleartext,
    // which it does not understand.
    let (status, _) = get(&h, "plain.example").await;
    assert_eq!(status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_ssl_verify_checks_the_backend_certificate() {
    init_tracing();
    let issued = vestibule::tls::issue_with_ca(&["backend.internal"]).unwrap();
    let other = vestibule::tls::issue_with_ca(&["backend.internal"]).unwrap();
    // One backend process per case (all with the same certificate): no case can reuse a
    // connection another case opened.
    let (good, wrong_ca, wrong_name, default_name, no_verify) =
        (tls_backend(&issued).await, tls_backend(&issued).await, tls_backend(&issued).await, tls_backend(&issued).await, tls_backend(&issued).await);
    let verify = |secret: &'static str, name: Option<&'static str>| {
        let mut a = vec![("backend-protocol", "HTTPS"), ("proxy-ssl-verify", "on"), ("proxy-ssl-secret", secret)];
        if let Some(n) = name {
            a.push(("proxy-ssl-name", n));
        }
        a
    };
    let m = [
        ca_secret("backend-ca", &issued.ca_pem),
        ca_secret("other-ca", &other.ca_pem),
        backend("good", good.addr),
        backend("wrong-ca", wrong_ca.addr),
        backend("wrong-name", wrong_name.addr),
        backend("default-name", default_name.addr),
        backend("no-verify", no_verify.addr),
        ingress("good", "good.example", "good", &verify("default/backend-ca", Some("backend.internal"))),
        ingress("wrong-ca", "wrong-ca.example", "wrong-ca", &verify("default/other-ca", Some("backend.internal"))),
        ingress("wrong-name", "wrong-name.example", "wrong-name", &verify("default/backend-ca", Some("other.internal"))),
        // Without proxy-ssl-name the expected name is derived from the Service, which the
        // certificate does not carry.
        ingress("default-name", "default-name.example", "default-name", &verify("default/backend-ca", None)),
        ingress("no-verify", "no-verify.example", "no-verify", &[("backend-protocol", "HTTPS"), ("proxy-ssl-secret", "default/other-ca")]),
    ]
    .concat();
    let h = start(&m).await;

    for _ in 0..3 {
        let (status, j) = get(&h, "good.example").await;
        assert_eq!(status, 200, "a certificate signed by the given CA, for the given name, is accepted");
        assert_eq!(j["service"], "tls-backend");
        assert_eq!(j["host"], "good.example");
    }
    assert!(good.handshakes.load(Ordering::SeqCst) >= 1);

    let (status, _) = get(&h, "wrong-ca.example").await;
    assert_eq!(status, 502, "a certificate from another CA fails the handshake");
    let (status, _) = get(&h, "wrong-name.example").await;
    assert_eq!(status, 502, "a certificate for another name fails the handshake");
    let (status, _) = get(&h, "default-name.example").await;
    assert_eq!(status, 502, "the default expected name is not the certificate's");
    for b in [&wrong_ca, &wrong_name, &default_name] {
        assert_eq!(b.handshakes.load(Ordering::SeqCst), 0, "no handshake completed with an unverifiable backend");
    }

    // A CA Secret without proxy-ssl-verify does not turn verification on.
    let (status, j) = get(&h, "no-verify.example").await;
    assert_eq!(status, 200);
    assert_eq!(j["service"], "tls-backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_is_not_bypassed_by_a_pooled_connection() {
    init_tracing();
    let issued = vestibule::tls::issue_with_ca(&["backend.internal"]).unwrap();
    let other = vestibule::tls::issue_with_ca(&["backend.internal"]).unwrap();
    // One Service, reached by two Ingresses: one does not verify, one verifies against a CA
    // that did not sign the backend's certificate.
    let b = tls_backend(&issued).await;
    let m = [
        ca_secret("other-ca", &other.ca_pem),
        backend("shared", b.addr),
        ingress("lax", "lax.example", "shared", &[("backend-protocol", "HTTPS")]),
        ingress(
            "strict",
            "strict.example",
            "shared",
            &[("backend-protocol", "HTTPS"), ("proxy-ssl-verify", "on"), ("proxy-ssl-secret", "default/other-ca"), ("proxy-ssl-name", "backend.internal")],
        ),
    ]
    .concat();
    let h = start(&m).await;
    // Before anything is pooled, the strict route refuses the backend.
    let (status, _) = get(&h, "strict.example").await;
    assert_eq!(status, 502);
    // The lax route opens (and pools) connections to the same endpoint.
    for _ in 0..3 {
        let (status, _) = get(&h, "lax.example").await;
        assert_eq!(status, 200);
    }
    // The strict route must still refuse: a connection whose certificate was never checked
    // against its CA is not one it may use.
    for i in 0..3 {
        let (status, j) = get(&h, "strict.example").await;
        assert_eq!(status, 502, "attempt {i}: the strict route was answered over an unverified connection: {j}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_on_the_plain_http_port() {
    init_tracing();
    let e = echo("web").await;
    let h = start(&format!("{}{}", backend("web", e.addr), ingress("h2", "h2.example", "web", &[]))).await;
    let client = reqwest::Client::builder().http2_prior_knowledge().resolve("h2.example", h.running.http).build().unwrap();
    let url = format!("http://h2.example:{}/prior?x=1", h.running.http.port());
    for _ in 0..3 {
        let resp = tokio::time::timeout(Duration::from_secs(10), client.get(&url).send()).await.expect("answer within 10 s").expect("h2c request succeeds");
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status().as_u16(), 200);
        assert!(resp.headers().get("server").is_none(), "no Server header by default (server-tokens: false)");
        let j = json(resp).await;
        assert_eq!(j["service"], "web");
        assert_eq!(j["path"], "/prior");
        assert_eq!(j["query"], "x=1");
        assert_eq!(j["headers"]["x-forwarded-proto"], "http");
        assert_eq!(j["headers"]["x-forwarded-host"], format!("h2.example:{}", h.running.http.port()));
        // The backend is spoken to as configured (HTTP/1.1), whatever the client used.
        assert_eq!(j["proto"], "HTTP/1.1");
        assert_eq!(j["host"], format!("h2.example:{}", h.running.http.port()));
    }
    // A host with no rule is a 404 over h2c as well.
    let resp = client.get(format!("http://{}/", h.running.http)).send().await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_backend_protocol_is_reported_and_http_is_used() {
    init_tracing();
    let e = echo("web").await;
    let m = format!("{}{}", backend("web", e.addr), ingress("ftp", "ftp.example", "web", &[("backend-protocol", "FTP")]));
    let h = start(&m).await;
    let (status, j) = get(&h, "ftp.example").await;
    assert_eq!(status, 200, "the route still works");
    assert_eq!(j["proto"], "HTTP/1.1", "over HTTP: {j}");
    assert!(j["tls"].is_null());

    let field = "metadata.annotations[nginx.ingress.kubernetes.io/backend-protocol]";
    let settings = compile_settings();
    let diags = compile::compile(&store_of(&m), &settings).diagnostics;
    let d = diags.iter().find(|d| d.field == field).unwrap_or_else(|| panic!("no diagnostic for {field}: {diags:#?}"));
    assert_eq!(d.reason, Reason::InvalidField);
    assert_eq!(d.object, ObjRef::new("Ingress", "default", "ftp"));
    assert!(d.message.contains("FTP"), "{d}");
    // The running instance reports the same finding.
    let snap = h.running.snapshot.load();
    assert!(snap.diagnostics.iter().any(|d| d.field == field && d.reason == Reason::InvalidField), "{:#?}", snap.diagnostics);
}

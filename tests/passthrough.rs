//! SSL passthrough (`--enable-ssl-passthrough` and the `ssl-passthrough` annotation) beside a
//! host whose TLS Vestibule terminates, on one HTTPS port.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rustls::version::TLS13;

const PASS: &str = "nginx.ingress.kubernetes.io/ssl-passthrough";

struct Setup {
    h: Harness,
    term_pem: String,
    _secure: Echo,
    _web: Echo,
}

async fn setup(enable: bool) -> Setup {
    vestibule::tls::install_provider();
    let secure = echo_opts("secure", true).await;
    let web = echo("web").await;
    let (_, term_pem, term_key) = vestibule::tls::self_signed(&["term.test"]).unwrap();
    let m = manifest([
        backend_yaml("default", "secure", &[secure.addr]),
        backend_yaml("default", "web", &[web.addr]),
        secret_yaml("default", "term-cert", &term_pem, &term_key),
        Ingress::new("default", "pass").annotation(PASS, "true").host_path("pass.test", "/", "Prefix", "secure", 80).to_yaml(),
        Ingress::new("default", "term").tls(&["term.test"], "term-cert").host_path("term.test", "/", "Prefix", "web", 80).to_yaml(),
    ]);
    let h = start_with(&m, |o| o.ssl_passthrough = enable).await;
    Setup { h, term_pem, _secure: secure, _web: web }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_beside_a_terminated_host_on_one_port() {
    init_tracing();
    let s = setup(true).await;
    let https = s.h.running.https;
    let (backend_cert, _, _) = handshake(s._secure.addr, Some("pass.test"), &[&TLS13], &[]).await;
    let (through, _, _) = handshake(https, Some("pass.test"), &[&TLS13], &[]).await;
    assert_eq!(through, backend_cert, "the passthrough SNI sees the backend's own certificate");
    let (term, _, _) = handshake(https, Some("term.test"), &[&TLS13], &[]).await;
    assert_eq!(term, der_of(&s.term_pem), "the other host sees Vestibule's certificate for it");
    assert_ne!(through, term);

    // Whole requests: the passthrough one is answered by the TLS backend itself.
    let client = reqwest::Client::builder().danger_accept_invalid_certs(true).resolve("pass.test", https).build().unwrap();
    let body: serde_json::Value = client.get(format!("https://pass.test:{}/x", https.port())).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["service"], "secure", "{body}");
    let c = s.h.https_client(&["term.test"], &s.term_pem);
    let body: serde_json::Value = c.get(s.h.https("term.test", "/y")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["service"], "web", "{body}");

    let text = s.h.running.shared.metrics.encode(0);
    assert!(text.contains(&format!("vestibule_l4_connections_total{{service=\"default/secure\",port=\"{}\",protocol=\"passthrough\"}}", https.port())), "{text}");
    let debug = vestibule::debug::config_json(&s.h.running.shared.config(), &s.h.running.snapshot.load());
    assert_eq!(debug["sslPassthrough"][0]["host"], "pass.test", "{debug}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_client_hello_closes_the_connection() {
    init_tracing();
    let s = setup(true).await;
    let https = s.h.running.https;
    let mut bad_sni = vec![0x16, 3, 1, 0, 0x30, 1, 0, 0, 0x2c, 3, 3];
    bad_sni.extend_from_slice(&[0; 32]);
    bad_sni.extend_from_slice(&[0, 0, 2, 0x13, 1, 1, 0, 0, 0, 0xff]); // extensions length 0, then junk
    for input in [b"GET / HTTP/1.1\r\nHost: pass.test\r\n\r\n".to_vec(), vec![0x16, 3, 1, 0, 0], bad_sni] {
        let started = Instant::now();
        let out = raw(https, &input, Duration::from_secs(8)).await;
        assert!(out.is_empty(), "nothing is answered: {out:?}");
        assert!(started.elapsed() < Duration::from_secs(4), "closed at once, not timed out: {:?}", started.elapsed());
    }
    // The port still serves both kinds afterwards.
    let (term, _, _) = handshake(https, Some("term.test"), &[&TLS13], &[]).await;
    assert_eq!(term, der_of(&s.term_pem));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_the_annotation_is_reported_and_tls_is_terminated() {
    init_tracing();
    let s = setup(false).await;
    let (through, _, _) = handshake(s.h.running.https, Some("pass.test"), &[&TLS13], &[]).await;
    let (backend_cert, _, _) = handshake(s._secure.addr, Some("pass.test"), &[&TLS13], &[]).await;
    assert_ne!(through, backend_cert, "Vestibule terminates TLS");
    let diags = &s.h.running.snapshot.load().diagnostics;
    assert!(diags.iter().any(|d| d.object.to_string() == "Ingress default/pass" && d.message.contains("--enable-ssl-passthrough")), "{diags:#?}");
}

//! Gateway TLS end to end: an HTTPS listener terminating with its certificateRefs, and a TLS
//! Passthrough listener on the same port splicing a TLSRoute's hostname to a TLS backend.

mod common;

use common::gateway::*;
use common::*;
use rustls::version::TLS13;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_termination_and_tlsroute_passthrough_share_a_port() {
    init_tracing();
    vestibule::tls::install_provider();
    let (secure, web) = (echo_opts("secure", true).await, echo("web").await);
    let (_, term_pem, term_key) = vestibule::tls::self_signed(&["term.test"]).unwrap();
    let port = free_port();
    let manifests = manifest([
        gateway_class("vestibule", CONTROLLER),
        gateway("default", "gw", "vestibule", vec![
            listener("https", port, "HTTPS", json!({"hostname": "term.test", "tls": {"certificateRefs": [{"name": "term-cert"}]}})),
            listener("pass", port, "TLS", json!({"hostname": "*.pass.test", "tls": {"mode": "Passthrough"}})),
        ]),
        route("HTTPRoute", "default", "web", "2024-01-01T00:00:00Z", json!({"parentRefs": [{"name": "gw", "sectionName": "https"}], "rules": [{"backendRefs": [backend_ref("web", 1)]}]})),
        route("TLSRoute", "default", "pass", "2024-01-01T00:00:00Z", json!({"parentRefs": [{"name": "gw", "sectionName": "pass"}], "hostnames": ["db.pass.test"], "rules": [{"backendRefs": [backend_ref("secure", 1)]}]})),
        secret_yaml("default", "term-cert", &term_pem, &term_key),
        backend_yaml("default", "secure", &[secure.addr]),
        backend_yaml("default", "web", &[web.addr]),
    ]);
    let h = start(&manifests).await;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();

    let (backend_cert, _, _) = handshake(secure.addr, Some("db.pass.test"), &[&TLS13], &[]).await;
    let (through, _, _) = handshake(addr, Some("db.pass.test"), &[&TLS13], &[]).await;
    assert_eq!(through, backend_cert, "the TLSRoute hostname reaches the backend's own certificate");
    let (term, _, _) = handshake(addr, Some("term.test"), &[&TLS13], &[]).await;
    assert_eq!(term, der_of(&term_pem), "the HTTPS listener serves its certificateRef");

    let c = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(term_pem.as_bytes()).unwrap()]).resolve("term.test", addr).build().unwrap();
    let body: serde_json::Value = c.get(format!("https://term.test:{port}/y")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["service"], "web", "{body}");
    let pass = reqwest::Client::builder().danger_accept_invalid_certs(true).resolve("db.pass.test", addr).build().unwrap();
    let body: serde_json::Value = pass.get(format!("https://db.pass.test:{port}/x")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["service"], "secure", "answered by the TLS backend itself: {body}");
    // The Ingress HTTPS listener serves none of it.
    let (ingress_cert, _, _) = handshake(h.running.https, Some("term.test"), &[&TLS13], &[]).await;
    assert_ne!(ingress_cert, backend_cert);
}

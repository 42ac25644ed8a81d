//! The HTTPS listener picks the cipher suite by its own order, not the client's (ingress-nginx's
//! default `ssl-prefer-server-ciphers: "true"`).

mod common;

use std::sync::Arc;

use common::*;
use rustls::CipherSuite;

/// The suite negotiated with a client that offers `offered`, in that order, over `version`.
async fn negotiated(addr: std::net::SocketAddr, version: &'static rustls::SupportedProtocolVersion, offered: &[CipherSuite]) -> CipherSuite {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let all = std::mem::take(&mut provider.cipher_suites);
    provider.cipher_suites = offered.iter().map(|s| *all.iter().find(|c| c.suite() == *s).expect("suite known")).collect();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder(std::sync::Mutex::new(None))))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("order.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.expect("handshake succeeds");
    tls.get_ref().1.negotiated_cipher_suite().unwrap().suite()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_order_of_cipher_suites_wins() {
    init_tracing();
    vestibule::tls::install_provider();
    let e = echo("echo").await;
    let h = start(&manifest([backend_yaml("default", "echo", &[e.addr]), catch_all("echo").to_yaml()])).await;
    // ChaCha20 comes last in the server's order for both versions; a client listing it first
    // still gets AES-256-GCM.
    let tls12 = [CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384];
    let got = negotiated(h.running.https, &rustls::version::TLS12, &tls12).await;
    assert!(matches!(got, CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384), "TLS 1.2: {got:?}");
    let tls13 = [CipherSuite::TLS13_CHACHA20_POLY1305_SHA256, CipherSuite::TLS13_AES_256_GCM_SHA384];
    let got = negotiated(h.running.https, &rustls::version::TLS13, &tls13).await;
    assert_eq!(got, CipherSuite::TLS13_AES_256_GCM_SHA384, "TLS 1.3");
}

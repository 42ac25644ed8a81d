//! HTTP/3 through real sockets: a real h3 client over QUIC (quinn) against the UDP twin of the
//! HTTPS port. Certificates by SNI, routing, request bodies, the access log's protocol and the
//! metrics are those of the TCP listeners; HTTPS answers over TCP advertise it in `Alt-Svc`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use common::*;
use vestibule::tls::{IssuedCert, issue_with_ca};

fn manifests(tea: SocketAddr, cert: &IssuedCert) -> String {
    manifest([
        Ingress::new("default", "cafe").tls(&["cafe.example.com"], "cafe-tls").host_path("cafe.example.com", "/tea", "Prefix", "tea", 80).to_yaml(),
        backend_yaml("default", "tea", &[tea]),
        secret_yaml("default", "cafe-tls", &cert.cert_pem, &cert.key_pem),
    ])
}

/// An HTTP/3 client connection to `addr` for `sni`, trusting `ca_pem` only.
struct Client {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

async fn connect(addr: SocketAddr, sni: &str, ca_pem: &str) -> Client {
    connect_idle(addr, sni, ca_pem, None).await
}

/// As `connect`, with the client's own QUIC idle timeout (`None`: quinn's default).
async fn connect_idle(addr: SocketAddr, sni: &str, ca_pem: &str, idle: Option<Duration>) -> Client {
    vestibule::tls::install_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from(der_of(ca_pem))).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13]).with_root_certificates(roots).with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    if let Some(idle) = idle {
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(idle.try_into().unwrap()));
        config.transport_config(Arc::new(transport));
    }
    endpoint.set_default_client_config(config);
    let conn = tokio::time::timeout(Duration::from_secs(10), endpoint.connect(addr, sni).unwrap()).await.expect("QUIC handshake in time").expect("QUIC handshake");
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await.unwrap();
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    Client { send, conn, _endpoint: endpoint }
}

impl Client {
    /// One request; the status, headers and body of the answer.
    async fn request(&mut self, method: &str, url: &str, body: &[u8]) -> (u16, http::HeaderMap, Vec<u8>) {
        let req = http::Request::builder().method(method).uri(url).body(()).unwrap();
        let mut stream = self.send.send_request(req).await.unwrap();
        if !body.is_empty() {
            stream.send_data(Bytes::copy_from_slice(body)).await.unwrap();
        }
        stream.finish().await.unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.recv_response()).await.expect("answer in time").unwrap();
        let mut out = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await.unwrap() {
            out.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
        }
        (resp.status().as_u16(), resp.headers().clone(), out)
    }
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn requests_over_http3_take_the_same_routes_certificates_and_filters() {
    let tea = echo("tea").await;
    let cert = issue_with_ca(&["cafe.example.com"]).unwrap();
    let h = start(&manifests(tea.addr, &cert)).await;
    let h3 = h.running.http3.expect("HTTP/3 is on by default");
    assert_eq!(h3.port(), h.running.https.port(), "the HTTPS port's UDP twin");

    let mut c = connect(h3, "cafe.example.com", &cert.ca_pem).await;
    // The certificate SNI picked is the Ingress's, as over TCP.
    let chain = c.conn.peer_identity().unwrap().downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>().unwrap();
    assert_eq!(chain[0].as_ref(), der_of(&cert.cert_pem).as_slice());

    let (status, headers, body) = c.request("GET", "https://cafe.example.com/tea/green?x=1", b"").await;
    assert_eq!(status, 200);
    let echoed = json(&body);
    assert_eq!(echoed["service"], "tea");
    assert_eq!(echoed["path"], "/tea/green");
    assert_eq!(echoed["query"], "x=1");
    assert_eq!(echoed["host"], "cafe.example.com");
    assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");
    assert!(headers.get("x-request-id").is_none() || !headers["x-request-id"].is_empty());
    assert!(headers.get("alt-svc").is_none(), "not advertised on HTTP/3 itself");
    assert!(headers.get("strict-transport-security").is_some(), "HSTS as on HTTPS");

    // A body goes up as it does over TCP.
    let payload = vec![b'x'; 200_000];
    let (status, _, body) = c.request("POST", "https://cafe.example.com/tea", &payload).await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["body_bytes"], payload.len(), "{}", String::from_utf8_lossy(&body[..body.len().min(300)]));

    // Routing: an unknown path is the same 404 as over TCP.
    let (status, _, _) = c.request("GET", "https://cafe.example.com/coffee", b"").await;
    assert_eq!(status, 404);

    // Metrics count HTTP/3 requests like the others.
    let metrics = h.client.get(format!("http://{}/metrics", h.running.healthz)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("nginx_ingress_controller_requests{") && l.contains("host=\"cafe.example.com\"") && l.contains("method=\"POST\"")), "{metrics}");
}

#[tokio::test]
async fn https_over_tcp_advertises_http3_and_the_flag_turns_it_off() {
    let tea = echo("tea").await;
    let cert = issue_with_ca(&["cafe.example.com"]).unwrap();
    let h = start(&manifests(tea.addr, &cert)).await;
    let client = h.https_client(&["cafe.example.com"], &cert.ca_pem);
    let resp = client.get(format!("https://cafe.example.com:{}/tea", h.running.https.port())).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["alt-svc"], format!("h3=\":{}\"; ma=86400", h.running.https.port()).as_str());
    // Plain HTTP does not advertise it.
    let plain = h.get("cafe.example.com", "/tea").await;
    assert!(plain.headers().get("alt-svc").is_none());

    let off = start_with(&manifests(tea.addr, &cert), |o| o.http3 = false).await;
    assert!(off.running.http3.is_none());
    let client = off.https_client(&["cafe.example.com"], &cert.ca_pem);
    let resp = client.get(format!("https://cafe.example.com:{}/tea", off.running.https.port())).send().await.unwrap();
    assert!(resp.headers().get("alt-svc").is_none());
}

#[tokio::test]
async fn a_host_that_needs_a_client_certificate_is_sent_back_to_tcp() {
    let tea = echo("tea").await;
    let cert = issue_with_ca(&["cafe.example.com", "secure.example.com"]).unwrap();
    let ca = issue_with_ca(&["client"]).unwrap();
    let m = manifest([
        manifests(tea.addr, &cert),
        Ingress::new("default", "secure")
            .annotation("nginx.ingress.kubernetes.io/auth-tls-secret", "default/client-ca")
            .annotation("nginx.ingress.kubernetes.io/auth-tls-verify-client", "on")
            .tls(&["secure.example.com"], "cafe-tls")
            .host_path("secure.example.com", "/", "Prefix", "tea", 80)
            .to_yaml(),
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: client-ca\n  namespace: default\nstringData:\n  ca.crt: {}\n", serde_json::to_string(&ca.ca_pem).unwrap()),
    ]);
    let h = start(&m).await;
    let mut c = connect(h.running.http3.unwrap(), "secure.example.com", &cert.ca_pem).await;
    let (status, _, _) = c.request("GET", "https://secure.example.com/", b"").await;
    assert_eq!(status, 421, "never served without the certificate check");
    // The other host on the same connection is served.
    let (status, _, _) = c.request("GET", "https://cafe.example.com/tea", b"").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn shutdown_lets_an_http3_request_in_flight_finish() {
    let tea = echo("tea").await;
    let cert = issue_with_ca(&["cafe.example.com"]).unwrap();
    let h = start(&manifests(tea.addr, &cert)).await;
    let mut c = connect(h.running.http3.unwrap(), "cafe.example.com", &cert.ca_pem).await;
    assert_eq!(c.request("GET", "https://cafe.example.com/tea", b"").await.0, 200);
    // A slow request in flight (the echo backend waits before answering), then shutdown.
    let req = http::Request::get("https://cafe.example.com/tea?delay_ms=500").body(()).unwrap();
    let mut stream = c.send.send_request(req).await.unwrap();
    stream.finish().await.unwrap();
    let Harness { running, .. } = h;
    let shutdown = tokio::spawn(running.shutdown(Duration::from_millis(0), Duration::from_secs(5)));
    let resp = tokio::time::timeout(Duration::from_secs(5), stream.recv_response()).await.expect("answered").unwrap();
    assert_eq!(resp.status(), 200);
    while stream.recv_data().await.unwrap().is_some() {}
    assert_eq!(shutdown.await.unwrap(), 0, "nothing left open");
}

/// A client that can resume and send early data, sharing one endpoint (and its session cache)
/// across connections.
struct Resuming {
    endpoint: quinn::Endpoint,
}

impl Resuming {
    fn new(ca_pem: &str) -> Self {
        vestibule::tls::install_provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls_pki_types::CertificateDer::from(der_of(ca_pem))).unwrap();
        let mut tls = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13]).with_root_certificates(roots).with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        tls.enable_early_data = true;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        Resuming { endpoint }
    }

    /// A first, full handshake and one request, which leaves a session ticket behind.
    async fn prime(&self, addr: SocketAddr) {
        let conn = self.endpoint.connect(addr, "cafe.example.com").unwrap().await.unwrap();
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await.unwrap();
        tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
        let mut c = Client { send, conn: conn.clone(), _endpoint: self.endpoint.clone() };
        assert_eq!(c.request("GET", "https://cafe.example.com/tea", b"").await.0, 200);
        // Tickets arrive after the handshake; give them a moment before closing.
        tokio::time::sleep(Duration::from_millis(200)).await;
        conn.close(0u32.into(), b"");
    }

    /// Whether the next connection may send 0-RTT: the server's ticket allowed early data.
    fn zero_rtt(&self, addr: SocketAddr) -> Option<quinn::Connection> {
        self.endpoint.connect(addr, "cafe.example.com").unwrap().into_0rtt().ok().map(|(c, _)| c)
    }
}

#[tokio::test]
async fn early_data_is_refused_by_default_and_with_the_flag_only_safe_methods_use_it() {
    let tea = echo("tea").await;
    let cert = issue_with_ca(&["cafe.example.com"]).unwrap();

    let off = start(&manifests(tea.addr, &cert)).await;
    let client = Resuming::new(&cert.ca_pem);
    client.prime(off.running.http3.unwrap()).await;
    assert!(client.zero_rtt(off.running.http3.unwrap()).is_none(), "no 0-RTT without --http3-0rtt");

    let on = start_with(&manifests(tea.addr, &cert), |o| o.http3_0rtt = true).await;
    let addr = on.running.http3.unwrap();
    let client = Resuming::new(&cert.ca_pem);
    client.prime(addr).await;
    let conn = client.zero_rtt(addr).expect("the ticket allows 0-RTT with --http3-0rtt");
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await.unwrap();
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    let mut c = Client { send, conn, _endpoint: client.endpoint.clone() };
    // Sent at once, in early data or just after: a POST is answered 425 (early) or served (the
    // handshake had completed); it is never served from early data.
    let (status, _, body) = c.request("POST", "https://cafe.example.com/tea", b"x").await;
    assert!(status == 425 || (status == 200 && json(&body)["headers"].get("early-data").is_none()), "{status}");
    let (status, _, body) = c.request("GET", "https://cafe.example.com/tea", b"").await;
    assert_eq!(status, 200);
    let early = json(&body)["headers"].get("early-data").cloned();
    assert!(early.is_none() || early == Some(serde_json::json!("1")), "{early:?}");
}

/// An idle HTTP/3 connection holds server state: it is closed after 60 s without traffic, the
/// bound Vestibule announces, even when the client would wait longer (docs/limits.md).
#[tokio::test]
async fn an_idle_http3_connection_is_closed_after_a_minute() {
    let tea = echo("tea").await;
    let cert = issue_with_ca(&["cafe.example.com"]).unwrap();
    let h = start(&manifests(tea.addr, &cert)).await;
    let mut c = connect_idle(h.running.http3.unwrap(), "cafe.example.com", &cert.ca_pem, Some(Duration::from_secs(600))).await;
    let (status, _, _) = c.request("GET", "https://cafe.example.com/tea", b"").await;
    assert_eq!(status, 200);
    let idle = std::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(90), c.conn.closed()).await;
    let after = idle.elapsed();
    assert!(closed.is_ok(), "an idle HTTP/3 connection was still open after 90 s");
    assert!(after >= Duration::from_secs(55), "closed after {after:?}, before the idle timeout");
}

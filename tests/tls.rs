//! TLS through real sockets: certificates picked by SNI from the Secrets an Ingress names in
//! `spec.tls`, the default certificate for everything else (never a failed handshake), protocol
//! versions and ALPN, HTTPS requests with real clients, routing by Host after the handshake, the
//! HTTP→HTTPS redirect, and hot certificate changes.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vestibule::tls::{IssuedCert, issue_with_ca};

const BOTH: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
const H1: &[&[u8]] = &[b"http/1.1"];

fn issue(names: &[&str]) -> IssuedCert {
    issue_with_ca(names).expect("certificate issued")
}

/// An Ingress in `default`. `tls`: (hosts, secretName); `rules`: (host, service), path `/` Prefix.
fn ingress(name: &str, annotations: &[(&str, &str)], tls: &[(&[&str], &str)], rules: &[(&str, &str)]) -> String {
    let mut ing = Ingress::new("default", name).created("2020-01-01T00:00:00Z").annotations(annotations);
    for (hosts, secret) in tls {
        ing = ing.tls(hosts, secret);
    }
    for (host, svc) in rules {
        ing = ing.host_path(host, "/", "Prefix", svc, 80);
    }
    format!("{}---\n", ing.to_yaml())
}

/// Echo backends named `names`, and their Service/EndpointSlice manifests.
async fn backends(names: &[&str]) -> (Vec<Echo>, String) {
    let mut echoes = Vec::new();
    let mut m = String::new();
    for n in names {
        let e = echo(n).await;
        m.push_str(&backend_yaml("default", n, &[e.addr]));
        m.push_str("\n---\n");
        echoes.push(e);
    }
    (echoes, m)
}

fn secret(name: &str, c: &IssuedCert) -> String {
    format!("{}---\n", secret_yaml("default", name, &c.cert_pem, &c.key_pem))
}

/// The certificate the instance serves when nothing else fits, as its configuration holds it.
fn default_der(h: &Harness) -> Vec<u8> {
    h.running.shared.config().tls.default.key.cert[0].to_vec()
}

async fn served(h: &Harness, sni: Option<&str>) -> Vec<u8> {
    handshake(h.running.https, sni, BOTH, H1).await.0
}

/// Waits (up to `timeout`) until a handshake with `sni` is shown `want`.
async fn wait_cert(h: &Harness, sni: &str, want: &[u8], timeout: Duration) {
    let start = Instant::now();
    loop {
        if served(h, Some(sni)).await == want {
            return;
        }
        if start.elapsed() > timeout {
            panic!("SNI {sni}: the expected certificate is still not served after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A reqwest client for the instance's HTTPS port, trusting every CA in `cas`.
fn client_for(h: &Harness, hosts: &[&str], cas: &[&str], http1_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only(cas.iter().map(|c| reqwest::Certificate::from_pem(c.as_bytes()).unwrap()));
    if http1_only {
        b = b.http1_only();
    }
    for host in hosts {
        b = b.resolve(host, h.running.https);
    }
    b.build().unwrap()
}

/// One HTTP/1.1 request over a raw TLS connection: SNI `sni` (any certificate accepted), Host
/// header `host`. Returns the status and the echo's JSON answer (Null when the body is not JSON).
async fn tls_get(addr: SocketAddr, sni: &str, host: &str, path: &str) -> (u16, serde_json::Value) {
    vestibule::tls::install_provider();
    let rec = Arc::new(Recorder(std::sync::Mutex::new(None)));
    let mut cfg = rustls::ClientConfig::builder().dangerous().with_custom_certificate_verifier(rec).with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.expect("handshake succeeds");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // A peer that closes without close_notify ends in an error; what arrived is kept in `out`.
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP response head in {text:?}"));
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The status and the `Location` header of a plain-HTTP GET with `host`.
async fn plain(h: &Harness, host: &str, path: &str) -> (u16, Option<String>) {
    let resp = h.get(host, path).await;
    let loc = resp.headers().get("location").map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), loc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_of_the_secret_named_in_spec_tls() {
    init_tracing();
    let (a, b) = (issue(&["a.example.com"]), issue(&["b.example.com"]));
    let (_echoes, mut m) = backends(&["a-svc", "b-svc"]).await;
    m.push_str(&secret("a-tls", &a));
    m.push_str(&secret("b-tls", &b));
    m.push_str(&ingress("a", &[], &[(&["a.example.com"], "a-tls")], &[("a.example.com", "a-svc")]));
    m.push_str(&ingress("b", &[], &[(&["b.example.com"], "b-tls")], &[("b.example.com", "b-svc")]));
    let h = start(&m).await;

    let (der_a, der_b, der_default) = (der_of(&a.cert_pem), der_of(&b.cert_pem), default_der(&h));
    assert_ne!(der_a, der_b);
    assert_ne!(der_a, der_default);
    assert_ne!(der_b, der_default);
    assert_eq!(served(&h, Some("a.example.com")).await, der_a, "SNI a.example.com must get a-tls");
    assert_eq!(served(&h, Some("b.example.com")).await, der_b, "SNI b.example.com must get b-tls");
    // SNI is matched case-insensitively.
    assert_eq!(served(&h, Some("A.Example.COM")).await, der_a, "SNI A.Example.COM must get a-tls");
    // A name only in the rules of another host, or a sibling, does not borrow a certificate.
    assert_eq!(served(&h, Some("c.example.com")).await, der_default);
    assert_eq!(served(&h, Some("example.com")).await, der_default);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_tls_host_covers_exactly_one_label() {
    init_tracing();
    let wild = issue(&["*.wild.example.com"]);
    let exact = issue(&["exact.wild.example.com"]);
    let (_echoes, mut m) = backends(&["wild-svc", "exact-svc"]).await;
    m.push_str(&secret("wild-tls", &wild));
    m.push_str(&secret("exact-tls", &exact));
    m.push_str(&ingress("wild", &[], &[(&["*.wild.example.com"], "wild-tls")], &[("*.wild.example.com", "wild-svc")]));
    m.push_str(&ingress("exact", &[], &[(&["exact.wild.example.com"], "exact-tls")], &[("exact.wild.example.com", "exact-svc")]));
    let h = start(&m).await;

    let (der_wild, der_exact, der_default) = (der_of(&wild.cert_pem), der_of(&exact.cert_pem), default_der(&h));
    assert_ne!(der_wild, der_default);
    assert_eq!(served(&h, Some("x.wild.example.com")).await, der_wild, "x.wild.example.com is covered by *.wild.example.com");
    assert_eq!(served(&h, Some("X.WILD.example.com")).await, der_wild, "wildcard SNI matching is case-insensitive");
    assert_eq!(served(&h, Some("a.b.wild.example.com")).await, der_default, "a wildcard covers one label only");
    assert_eq!(served(&h, Some("wild.example.com")).await, der_default, "a wildcard does not cover its parent");
    assert_eq!(served(&h, Some("exact.wild.example.com")).await, der_exact, "an exact TLS host beats a wildcard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_absent_missing_or_broken_get_the_default_certificate() {
    init_tracing();
    let a = issue(&["a.example.com"]);
    let other = issue(&["mismatch.example.com"]);
    let (_echoes, mut m) = backends(&["a-svc", "missing-svc", "garbage-svc", "badpem-svc", "mismatch-svc"]).await;
    m.push_str(&secret("a-tls", &a));
    m.push_str(&format!("{}---\n", secret_yaml("default", "garbage-tls", "garbage, not PEM at all", "more garbage")));
    m.push_str(&format!(
        "{}---\n",
        secret_yaml("default", "badpem-tls", "-----BEGIN CERTIFICATE-----\nnot!base64?at all\n-----END CERTIFICATE-----", &a.key_pem)
    ));
    // A certificate with the private key of a different certificate.
    m.push_str(&format!("{}---\n", secret_yaml("default", "mismatch-tls", &other.cert_pem, &a.key_pem)));
    m.push_str(&ingress("a", &[], &[(&["a.example.com"], "a-tls")], &[("a.example.com", "a-svc")]));
    m.push_str(&ingress("missing", &[], &[(&["missing.example.com"], "no-such-secret")], &[("missing.example.com", "missing-svc")]));
    m.push_str(&ingress("garbage", &[], &[(&["garbage.example.com"], "garbage-tls")], &[("garbage.example.com", "garbage-svc")]));
    m.push_str(&ingress("badpem", &[], &[(&["badpem.example.com"], "badpem-tls")], &[("badpem.example.com", "badpem-svc")]));
    m.push_str(&ingress("mismatch", &[], &[(&["mismatch.example.com"], "mismatch-tls")], &[("mismatch.example.com", "mismatch-svc")]));
    let h = start(&m).await;

    let der_default = default_der(&h);
    assert_ne!(der_default, der_of(&a.cert_pem));
    // `handshake` panics when the handshake fails: each of these must succeed.
    let cases: &[(Option<&str>, &str)] = &[
        (Some("unknown.example.net"), "unknown SNI"),
        (None, "no SNI (connecting by IP address)"),
        (Some("missing.example.com"), "Secret does not exist"),
        (Some("garbage.example.com"), "Secret holds no PEM"),
        (Some("badpem.example.com"), "Secret holds a malformed PEM block"),
        (Some("mismatch.example.com"), "Secret's key does not match its certificate"),
    ];
    for (sni, why) in cases {
        for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
            let (der, _, _) = handshake(h.running.https, *sni, versions, H1).await;
            assert_eq!(der, der_default, "{why}: the default certificate must be served ({versions:?})");
        }
    }
    assert_ne!(served(&h, Some("mismatch.example.com")).await, der_of(&other.cert_pem), "a certificate without its key is never served");
    // A broken neighbour does not disturb a good Secret.
    assert_eq!(served(&h, Some("a.example.com")).await, der_of(&a.cert_pem));
    // Hosts with a broken Secret still route once the handshake is done.
    for (host, svc) in [("missing.example.com", "missing-svc"), ("garbage.example.com", "garbage-svc"), ("mismatch.example.com", "mismatch-svc")] {
        let (status, body) = tls_get(h.running.https, host, host, "/").await;
        assert_eq!((status, body["service"].as_str()), (200, Some(svc)), "{host} over HTTPS");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_ssl_certificate_replaces_the_generated_default() {
    init_tracing();
    let a = issue(&["a.example.com"]);
    let custom = issue(&["default.example.com"]);
    let (_echoes, mut m) = backends(&["a-svc"]).await;
    m.push_str(&secret("a-tls", &a));
    m.push_str(&secret("custom-default", &custom));
    m.push_str(&ingress("a", &[], &[(&["a.example.com"], "a-tls")], &[("a.example.com", "a-svc")]));
    m.push_str(&ingress("broken", &[], &[(&["broken.example.com"], "no-such-secret")], &[("broken.example.com", "a-svc")]));
    let h = start_with(&m, |o| o.default_ssl_certificate = Some(("default".into(), "custom-default".into()))).await;

    let der_custom = der_of(&custom.cert_pem);
    assert_eq!(served(&h, Some("unknown.example.net")).await, der_custom, "unknown SNI gets --default-ssl-certificate");
    assert_eq!(served(&h, None).await, der_custom, "no SNI gets --default-ssl-certificate");
    assert_eq!(served(&h, Some("broken.example.com")).await, der_custom, "a missing Secret falls back to --default-ssl-certificate");
    assert_eq!(served(&h, Some("a.example.com")).await, der_of(&a.cert_pem), "a configured host keeps its own certificate");

    // Naming a Secret that does not exist keeps the generated default: handshakes still succeed.
    let (_echoes2, m2) = backends(&["b-svc"]).await;
    let h2 = start_with(&m2, |o| o.default_ssl_certificate = Some(("default".into(), "nope".into()))).await;
    let der = served(&h2, Some("unknown.example.net")).await;
    assert_eq!(der, default_der(&h2));
    assert_ne!(der, der_custom);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_versions_and_alpn() {
    init_tracing();
    let a = issue(&["a.example.com"]);
    let (_echoes, mut m) = backends(&["a-svc"]).await;
    m.push_str(&secret("a-tls", &a));
    m.push_str(&ingress("a", &[], &[(&["a.example.com"], "a-tls")], &[("a.example.com", "a-svc")]));
    let h = start(&m).await;
    let addr = h.running.https;
    let der_a = der_of(&a.cert_pem);

    let (der, v, _) = handshake(addr, Some("a.example.com"), &[&rustls::version::TLS12], H1).await;
    assert_eq!((der == der_a, v), (true, rustls::ProtocolVersion::TLSv1_2), "TLS 1.2 negotiates with the SNI certificate");
    let (der, v, _) = handshake(addr, Some("a.example.com"), &[&rustls::version::TLS13], H1).await;
    assert_eq!((der == der_a, v), (true, rustls::ProtocolVersion::TLSv1_3), "TLS 1.3 negotiates with the SNI certificate");
    let (_, v, _) = handshake(addr, Some("a.example.com"), BOTH, H1).await;
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_3, "TLS 1.3 is preferred when both are offered");
    // The default certificate also serves both versions.
    let (_, v, _) = handshake(addr, None, &[&rustls::version::TLS12], H1).await;
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_2);

    const V13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    const V12: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    for versions in [V13, V12] {
        let alpn = |offer: &'static [&'static [u8]]| handshake(addr, Some("a.example.com"), versions, offer);
        assert_eq!(alpn(&[b"http/1.1"]).await.2.as_deref(), Some(&b"http/1.1"[..]), "only http/1.1 offered ({versions:?})");
        assert_eq!(alpn(&[b"h2", b"http/1.1"]).await.2.as_deref(), Some(&b"h2"[..]), "h2 preferred ({versions:?})");
        assert_eq!(alpn(&[b"http/1.1", b"h2"]).await.2.as_deref(), Some(&b"h2"[..]), "the server's order decides ({versions:?})");
        assert_eq!(alpn(&[b"h2"]).await.2.as_deref(), Some(&b"h2"[..]), "only h2 offered ({versions:?})");
        assert_eq!(alpn(&[]).await.2, None, "no ALPN offered, none chosen ({versions:?})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_requests_reach_the_right_backend_over_http1_and_http2() {
    init_tracing();
    let (a, b) = (issue(&["a.example.com"]), issue(&["b.example.com"]));
    let (_echoes, mut m) = backends(&["a-svc", "b-svc"]).await;
    m.push_str(&secret("a-tls", &a));
    m.push_str(&secret("b-tls", &b));
    m.push_str(&ingress("a", &[], &[(&["a.example.com"], "a-tls")], &[("a.example.com", "a-svc")]));
    m.push_str(&ingress("b", &[], &[(&["b.example.com"], "b-tls")], &[("b.example.com", "b-svc")]));
    let h = start(&m).await;
    // As ingress-nginx's $pass_port: a request on the HTTPS listener reports port 443, the
    // port clients use in front of it, whatever port the listener itself is bound to.
    let https_port = "443".to_string();

    // The harness client (one CA, HTTP/2 via ALPN when the server agrees).
    let ca = h.https_client(&["a.example.com"], &a.ca_pem);
    let resp = ca.get(h.https("a.example.com", "/hello?x=1")).send().await.expect("HTTPS request to a.example.com succeeds");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["service"], "a-svc");
    assert_eq!(v["path"], "/hello");
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");

    let hosts = ["a.example.com", "b.example.com"];
    let cas = [a.ca_pem.as_str(), b.ca_pem.as_str()];
    for (http1_only, want) in [(true, reqwest::Version::HTTP_11), (false, reqwest::Version::HTTP_2)] {
        let client = client_for(&h, &hosts, &cas, http1_only);
        for (host, svc) in [("a.example.com", "a-svc"), ("b.example.com", "b-svc")] {
            let resp = client.get(h.https(host, "/p")).send().await.unwrap_or_else(|e| panic!("HTTPS {host} ({want:?}): {e}"));
            assert_eq!(resp.status(), 200, "{host} {want:?}");
            assert_eq!(resp.version(), want, "{host}: negotiated HTTP version");
            let v: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(v["service"], svc, "{host} {want:?}");
            assert_eq!(v["headers"]["x-forwarded-proto"], "https", "{host} {want:?}");
            assert_eq!(v["headers"]["x-forwarded-port"], https_port.as_str(), "{host} {want:?}");
            assert_eq!(v["headers"]["x-forwarded-host"].as_str().map(|s| router_host(s)), Some(host), "{host} {want:?}");
        }
    }

    // A client trusting only a's CA refuses b: b really is served b's certificate, not a's.
    let only_a = client_for(&h, &hosts, &[a.ca_pem.as_str()], false);
    assert!(only_a.get(h.https("b.example.com", "/")).send().await.is_err(), "b.example.com must not be served a certificate from a's CA");
}

/// `host[:port]` → `host`.
fn router_host(s: &str) -> &str {
    s.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map(|(h, _)| h).unwrap_or(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_after_the_handshake_uses_the_host_header_not_sni() {
    init_tracing();
    let (a, b) = (issue(&["a.example.com"]), issue(&["b.example.com"]));
    let (_echoes, mut m) = backends(&["a-svc", "b-svc", "plain-svc"]).await;
    m.push_str(&secret("a-tls", &a));
    m.push_str(&secret("b-tls", &b));
    m.push_str(&ingress("a", &[], &[(&["a.example.com"], "a-tls")], &[("a.example.com", "a-svc")]));
    m.push_str(&ingress("b", &[], &[(&["b.example.com"], "b-tls")], &[("b.example.com", "b-svc")]));
    m.push_str(&ingress("plain", &[], &[], &[("plain.example.com", "plain-svc")]));
    let h = start(&m).await;
    let addr = h.running.https;

    // Raw TLS stream: SNI a.example.com, Host b.example.com.
    let cases = [
        ("a.example.com", "a.example.com", "a-svc"),
        ("a.example.com", "b.example.com", "b-svc"),
        ("b.example.com", "a.example.com", "a-svc"),
        ("a.example.com", "plain.example.com", "plain-svc"),
        ("unknown.example.net", "b.example.com", "b-svc"),
    ];
    for (sni, host, svc) in cases {
        let (status, body) = tls_get(addr, sni, host, "/x").await;
        assert_eq!((status, body["service"].as_str()), (200, Some(svc)), "SNI {sni}, Host {host}");
        assert_eq!(body["headers"]["x-forwarded-proto"], "https");
    }

    // reqwest over HTTP/1.1: the connection (and SNI) is a.example.com, the Host header is b's.
    let client = client_for(&h, &["a.example.com"], &[a.ca_pem.as_str()], true);
    let resp = client.get(h.https("a.example.com", "/y")).header("host", "b.example.com").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["service"], "b-svc", "Host b.example.com over a connection with SNI a.example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_hosts_redirect_plain_http_with_308() {
    init_tracing();
    let (a, w, n) = (issue(&["a.example.com"]), issue(&["*.wild.example.com"]), issue(&["noredirect.example.com"]));
    let (_echoes, mut m) = backends(&["a-svc", "wild-svc", "plain-svc", "noredirect-svc"]).await;
    m.push_str(&secret("a-tls", &a));
    m.push_str(&secret("wild-tls", &w));
    m.push_str(&secret("n-tls", &n));
    m.push_str(&ingress("a", &[], &[(&["a.example.com"], "a-tls")], &[("a.example.com", "a-svc")]));
    m.push_str(&ingress("wild", &[], &[(&["*.wild.example.com"], "wild-tls")], &[("*.wild.example.com", "wild-svc")]));
    m.push_str(&ingress("plain", &[], &[], &[("plain.example.com", "plain-svc")]));
    m.push_str(&ingress(
        "noredirect",
        &[("nginx.ingress.kubernetes.io/ssl-redirect", "false")],
        &[(&["noredirect.example.com"], "n-tls")],
        &[("noredirect.example.com", "noredirect-svc")],
    ));
    let h = start(&m).await;
    let port = h.running.https.port();
    assert_ne!(port, 443);

    assert_eq!(
        plain(&h, "a.example.com", "/some/path?q=1&r=two").await,
        (308, Some(format!("https://a.example.com:{port}/some/path?q=1&r=two"))),
        "a TLS host redirects to the instance's HTTPS port, keeping path and query"
    );
    // As ingress-nginx, one trailing `/` of the request target is dropped: `/` → nothing.
    assert_eq!(plain(&h, "A.Example.com:8080", "/").await, (308, Some(format!("https://a.example.com:{port}"))), "the port of the Host header is not reused");
    assert_eq!(plain(&h, "x.wild.example.com", "/w").await, (308, Some(format!("https://x.wild.example.com:{port}/w"))), "a wildcard TLS host redirects");
    assert_eq!(h.route("plain.example.com", "/p").await, (200, Some("plain-svc".into())), "a host without TLS is not redirected");
    assert_eq!(
        h.route("noredirect.example.com", "/p").await,
        (200, Some("noredirect-svc".into())),
        "ssl-redirect: \"false\" turns the redirect off for that Ingress"
    );
    // The annotation does not leak to other Ingresses; HTTPS itself is never redirected.
    assert_eq!(plain(&h, "a.example.com", "/again").await.0, 308);
    let (status, body) = tls_get(h.running.https, "a.example.com", "a.example.com", "/some/path?q=1").await;
    assert_eq!((status, body["service"].as_str()), (200, Some("a-svc")), "HTTPS to a TLS host is served, not redirected");
    let (status, body) = tls_get(h.running.https, "noredirect.example.com", "noredirect.example.com", "/").await;
    assert_eq!((status, body["service"].as_str()), (200, Some("noredirect-svc")));

    // ssl_redirect = false switches it off everywhere.
    let off = start_with(&m, |o| o.ssl_redirect = false).await;
    assert_eq!(off.route("a.example.com", "/p").await, (200, Some("a-svc".into())), "ssl_redirect=false: no redirect for a TLS host");
    assert_eq!(off.route("x.wild.example.com", "/p").await, (200, Some("wild-svc".into())), "ssl_redirect=false: no redirect for a wildcard TLS host");

    // Clients reaching HTTPS on 443 get a Location without a port.
    let on443 = start_with(&m, |o| o.public_https_port = Some(443)).await;
    assert_eq!(plain(&on443, "a.example.com", "/p?x=1").await, (308, Some("https://a.example.com/p?x=1".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_changes_apply_to_new_handshakes() {
    init_tracing();
    let v1 = issue(&["a.example.com"]);
    let v2 = issue(&["a.example.com"]);
    let (_echoes, mut m) = backends(&["a-svc"]).await;
    m.push_str(&ingress("a", &[], &[(&["a.example.com"], "a-tls")], &[("a.example.com", "a-svc")]));
    let h = start(&m).await;
    let (der1, der2, der_default) = (der_of(&v1.cert_pem), der_of(&v2.cert_pem), default_der(&h));
    assert_ne!(der1, der2);
    let budget = Duration::from_secs(5);

    // The Secret does not exist yet: the default certificate.
    assert_eq!(served(&h, Some("a.example.com")).await, der_default);

    // It appears.
    h.write("secret.yaml", &secret("a-tls", &v1));
    wait_cert(&h, "a.example.com", &der1, budget).await;

    // It is rewritten with a new certificate.
    h.write("secret.yaml", &secret("a-tls", &v2));
    wait_cert(&h, "a.example.com", &der2, budget).await;
    // And stays so: every later handshake sees the new certificate.
    for _ in 0..5 {
        assert_eq!(served(&h, Some("a.example.com")).await, der2);
    }
    // The new certificate also serves real HTTPS requests.
    let client = h.https_client(&["a.example.com"], &v2.ca_pem);
    let resp = client.get(h.https("a.example.com", "/")).send().await.expect("HTTPS with the rotated certificate");
    assert_eq!(resp.status(), 200);

    // It is deleted: back to the default certificate, handshakes still succeed.
    h.remove("secret.yaml");
    wait_cert(&h, "a.example.com", &der_default, budget).await;
}

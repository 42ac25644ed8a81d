//! Client certificates (`auth-tls-*`) through real sockets, with real certificates made by
//! rcgen: a CA, a client signed by it, one signed by another CA and one it revoked; the
//! certificate is asked for only when SNI names a host with a policy.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const P: &str = "nginx.ingress.kubernetes.io/";

struct Ca {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::OrganizationName, "Test");
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca { pem: cert.pem(), issuer: rcgen::Issuer::new(p, key) }
}

/// A client certificate: (certificate PEM, key PEM).
fn client(ca: &Ca, cn: &str, serial: u64) -> (String, String) {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::OrganizationName, "Clients");
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    p.serial_number = Some(rcgen::SerialNumber::from(serial));
    let key = rcgen::KeyPair::generate().unwrap();
    (p.signed_by(&key, &ca.issuer).unwrap().pem(), key.serialize_pem())
}

fn crl(ca: &Ca, revoked: u64) -> String {
    let params = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams { serial_number: rcgen::SerialNumber::from(revoked), revocation_time: rcgen::date_time_ymd(2024, 1, 1), reason_code: None, invalidity_date: None }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    params.signed_by(&ca.issuer).unwrap().pem().unwrap()
}

/// Presents `cert` when asked, and records whether it was asked.
#[derive(Debug)]
struct Presents {
    key: Option<Arc<rustls::sign::CertifiedKey>>,
    asked: AtomicBool,
}

impl rustls::client::ResolvesClientCert for Presents {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.asked.store(true, Ordering::SeqCst);
        self.key.clone()
    }
    fn has_certs(&self) -> bool {
        true
    }
}

struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
    asked: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        v["headers"][name].as_str().map(str::to_string)
    }
}

/// One HTTP/1.1 GET over TLS with SNI and Host `host`, presenting `cert` when asked. `None`
/// when the connection ended without an answer.
async fn get(h: &Harness, host: &str, cert: Option<&(String, String)>) -> Option<Answer> {
    vestibule::tls::install_provider();
    let key = cert.map(|(c, k)| Arc::new(vestibule::tls::certified_key_from_pem(c.as_bytes(), k.as_bytes()).unwrap()));
    let presents = Arc::new(Presents { key, asked: AtomicBool::new(false) });
    let rec = Arc::new(Recorder(std::sync::Mutex::new(None)));
    let mut cfg = rustls::ClientConfig::builder().dangerous().with_custom_certificate_verifier(rec).with_client_cert_resolver(presents.clone());
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(h.running.https).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(host.to_string()).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.ok()?;
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nssl-client-verify: SUCCESS\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let location = head.lines().find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")).map(str::to_string));
    Some(Answer { status, location, body: body.to_string(), asked: presents.asked.load(Ordering::SeqCst) })
}

fn ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    let full: Vec<(String, String)> = annotations.iter().map(|(k, v)| (format!("{P}{k}"), v.to_string())).collect();
    let pairs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Ingress::new("default", name).created("2020-01-01T00:00:00Z").annotations(&pairs).host_path(host, "/", "Prefix", "app", 80).to_yaml()
}

struct World {
    h: Harness,
    _echo: Echo,
    good: (String, String),
    other: (String, String),
    revoked: (String, String),
    ca_pem: String,
}

async fn world() -> World {
    let e = echo("app").await;
    let ca1 = ca("Test CA");
    let ca2 = ca("Other CA");
    let good = client(&ca1, "alice", 10);
    let revoked = client(&ca1, "mallory", 11);
    let other = client(&ca2, "alice", 12);
    let secret = Secret::new("default", "ca").string_data("ca.crt", &ca1.pem).string_data("ca.crl", &crl(&ca1, 11)).to_yaml();
    let docs = [
        backend_yaml("default", "app", &[e.addr]),
        secret,
        ingress("on", "on.example.com", &[("auth-tls-secret", "default/ca"), ("auth-tls-pass-certificate-to-upstream", "true")]),
        ingress("opt", "opt.example.com", &[("auth-tls-secret", "default/ca"), ("auth-tls-verify-client", "optional")]),
        ingress("cn", "cn.example.com", &[("auth-tls-secret", "default/ca"), ("auth-tls-match-cn", "CN=bob")]),
        ingress("page", "page.example.com", &[("auth-tls-secret", "default/ca"), ("auth-tls-error-page", "https://login.example.com/cert")]),
        ingress("noca", "noca.example.com", &[("auth-tls-secret", "default/missing")]),
        ingress("open", "open.example.com", &[]),
    ];
    let h = start(&manifest(docs.iter())).await;
    h.wait_route("open.example.com", "/", (200, Some("app")), Duration::from_secs(5)).await;
    World { h, _echo: e, good, other, revoked, ca_pem: ca1.pem }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_on_passes_a_good_certificate_and_tells_the_backend() {
    let w = world().await;
    let a = get(&w.h, "on.example.com", Some(&w.good)).await.expect("answer");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.asked);
    assert_eq!(a.header("ssl-client-verify").as_deref(), Some("SUCCESS"));
    assert_eq!(a.header("ssl-client-subject-dn").as_deref(), Some("CN=alice,O=Clients"));
    assert_eq!(a.header("ssl-client-issuer-dn").as_deref(), Some("CN=Test CA,O=Test"));
    let escaped = a.header("ssl-client-cert").expect("certificate passed");
    assert!(escaped.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{escaped}");
    let der = rustls_pki_types::CertificateDer::from_pem_slice(w.good.0.as_bytes()).unwrap();
    let unescaped = escaped.replace("%20", " ").replace("%0A", "\n").replace("%2B", "+").replace("%2F", "/").replace("%3D", "=");
    assert_eq!(rustls_pki_types::CertificateDer::from_pem_slice(unescaped.as_bytes()).unwrap(), der);
    assert!(!w.ca_pem.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_on_refuses_no_certificate_a_wrong_ca_and_a_revoked_one() {
    let w = world().await;
    let a = get(&w.h, "on.example.com", None).await.expect("answer");
    assert_eq!(a.status, 400);
    assert!(a.body.contains("No required SSL certificate was sent"), "{}", a.body);
    assert!(a.header("ssl-client-verify").is_none());
    for cert in [&w.other, &w.revoked] {
        let a = get(&w.h, "on.example.com", Some(cert)).await.expect("answer");
        assert_eq!(a.status, 400);
        assert!(a.body.contains("The SSL certificate error"), "{}", a.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_cn_optional_and_error_page() {
    let w = world().await;
    let a = get(&w.h, "cn.example.com", Some(&w.good)).await.expect("answer");
    assert_eq!(a.status, 403);
    assert!(a.body.contains("client certificate unauthorized"));
    let a = get(&w.h, "opt.example.com", None).await.expect("answer");
    assert_eq!(a.status, 200);
    assert!(a.asked);
    assert_eq!(a.header("ssl-client-verify").as_deref(), Some("NONE"));
    assert!(a.header("ssl-client-subject-dn").is_none());
    let a = get(&w.h, "opt.example.com", Some(&w.other)).await.expect("answer");
    assert_eq!(a.status, 400);
    let a = get(&w.h, "page.example.com", Some(&w.other)).await.expect("answer");
    assert_eq!((a.status, a.location.as_deref()), (302, Some("https://login.example.com/cert")));
    let a = get(&w.h, "page.example.com", Some(&w.good)).await.expect("answer");
    assert_eq!(a.status, 200);
    assert!(a.header("ssl-client-cert").is_none(), "not passed unless asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_without_the_annotation_do_not_ask_and_a_missing_secret_fails_closed() {
    let w = world().await;
    let a = get(&w.h, "open.example.com", Some(&w.good)).await.expect("answer");
    assert_eq!(a.status, 200);
    assert!(!a.asked, "a host without auth-tls must not request a client certificate");
    // The client's own ssl-client-verify reaches the backend unchanged only where no policy is.
    let a = get(&w.h, "noca.example.com", Some(&w.good)).await.expect("answer");
    assert_eq!(a.status, 403);
    let c = w.h.running.shared.config();
    assert!(c.client_auth.get("noca.example.com").is_some_and(|p| p.tls.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_set_up_for_another_host_is_misdirected() {
    let w = world().await;
    // SNI open.example.com (no certificate asked), Host on.example.com: never served.
    vestibule::tls::install_provider();
    let rec = Arc::new(Recorder(std::sync::Mutex::new(None)));
    let mut cfg = rustls::ClientConfig::builder().dangerous().with_custom_certificate_verifier(rec).with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(w.h.running.https).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("open.example.com").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: on.example.com\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 421"), "{}", String::from_utf8_lossy(&out));
}

/// An unusable CA Secret is an Error naming the Ingress and the annotation, and the host keeps
/// a policy that refuses (never one without client authentication).
#[test]
fn unusable_secrets_are_errors_naming_the_ingress_and_key() {
    use vestibule::compile::{Reason, Severity};
    let settings = compile_settings();
    let c = ca("Test CA");
    let docs = [
        Secret::new("default", "nocrt").string_data("tls.crt", &c.pem).to_yaml(),
        Secret::new("default", "badcrl").string_data("ca.crt", &c.pem).string_data("ca.crl", "not a CRL").to_yaml(),
        ingress("missing", "a.example.com", &[("auth-tls-secret", "default/missing")]),
        ingress("nocrt", "b.example.com", &[("auth-tls-secret", "default/nocrt")]),
        ingress("badcrl", "c.example.com", &[("auth-tls-secret", "default/badcrl")]),
        ingress("noslash", "d.example.com", &[("auth-tls-secret", "nocrt")]),
    ];
    let parsed = vestibule::source::parse::parse_text(std::path::Path::new("x.yaml"), &manifest(docs.iter()));
    let mut store = vestibule::store::Store::default();
    for o in parsed.objects {
        store.insert(o);
    }
    let out = vestibule::compile::compile(&store, &settings);
    let field = format!("metadata.annotations[{P}auth-tls-secret]");
    for (name, reason) in [("missing", Reason::SecretNotFound), ("nocrt", Reason::SecretInvalid), ("badcrl", Reason::SecretInvalid), ("noslash", Reason::InvalidField)] {
        let d = out.diagnostics.iter().find(|d| d.object.name == name && d.field == field).unwrap_or_else(|| panic!("no diagnostic for {name}: {:?}", out.diagnostics));
        assert_eq!((d.severity, d.reason.clone()), (Severity::Error, reason), "{d:?}");
    }
    for host in ["a.example.com", "b.example.com", "c.example.com", "d.example.com"] {
        assert!(out.config.client_auth.get(host).is_some_and(|p| p.tls.is_none()), "{host} must fail closed");
    }
}

/// Reads one HTTP/1.1 response with a Content-Length body: (status, body).
async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> (u16, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "connection closed in the head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap())).unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (head.split_whitespace().nth(1).unwrap().parse().unwrap(), String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_survive_reloads_and_are_judged_by_the_new_ca() {
    let e = echo("app").await;
    let (ca1, ca2) = (ca("Test CA"), ca("Other CA"));
    let good = client(&ca1, "alice", 10);
    let docs = |ca_pem: &str, extra: bool| {
        let mut d = vec![backend_yaml("default", "app", &[e.addr]), Secret::new("default", "ca").string_data("ca.crt", ca_pem).to_yaml(), ingress("on", "on.example.com", &[("auth-tls-secret", "default/ca")])];
        if extra {
            d.push(ingress("new", "new.example.com", &[]));
        }
        manifest(d.iter())
    };
    let h = start(&docs(&ca1.pem, false)).await;
    vestibule::tls::install_provider();
    let key = Arc::new(vestibule::tls::certified_key_from_pem(good.0.as_bytes(), good.1.as_bytes()).unwrap());
    let presents = Arc::new(Presents { key: Some(key), asked: AtomicBool::new(false) });
    let rec = Arc::new(Recorder(std::sync::Mutex::new(None)));
    let mut cfg = rustls::ClientConfig::builder().dangerous().with_custom_certificate_verifier(rec).with_client_cert_resolver(presents);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(h.running.https).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("on.example.com").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.unwrap();
    let req = b"GET / HTTP/1.1\r\nHost: on.example.com\r\n\r\n";
    tls.write_all(req).await.unwrap();
    assert_eq!(read_response(&mut tls).await.0, 200);
    // An unrelated change: the connection keeps working.
    h.write("manifests.yaml", &docs(&ca1.pem, true));
    h.wait_route("new.example.com", "/", (200, Some("app")), Duration::from_secs(5)).await;
    tls.write_all(req).await.unwrap();
    assert_eq!(read_response(&mut tls).await.0, 200);
    // The CA is replaced: the same connection's certificate is no longer trusted.
    h.write("manifests.yaml", &docs(&ca2.pem, true));
    let other = client(&ca2, "bob", 13);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while get(&h, "on.example.com", Some(&other)).await.map(|a| a.status) != Some(200) {
        assert!(std::time::Instant::now() < deadline, "the new CA never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tls.write_all(req).await.unwrap();
    let (status, body) = read_response(&mut tls).await;
    assert_eq!(status, 400, "{body}");
}

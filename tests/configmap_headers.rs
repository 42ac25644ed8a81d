//! The controller ConfigMap's security and header keys through real sockets on 127.0.0.1:
//! `hsts*` on HTTPS answers only, `add-headers`, `proxy-set-headers` and `hide-headers`, and
//! `ssl-protocols` / `ssl-ciphers` followed live by the HTTPS listener.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CM: (&str, &str) = ("ingress", "vestibule");
const LIVE: Duration = Duration::from_secs(3);
const BOTH: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

fn manifests(web: &Echo, data: &[(&str, &str)]) -> String {
    let mut cm = ConfigMap::new(CM.0, CM.1);
    for (k, v) in data {
        cm = cm.data(k, v);
    }
    let resp = ConfigMap::new("default", "resp-headers").data("X-Frame-Options", "DENY").data("X-Literal", "$remote_addr");
    let req = ConfigMap::new("default", "req-headers").data("X-Team", "blue").data("X-Literal", "$host");
    manifest([
        backend_yaml("default", "web", &[web.addr]),
        Ingress::new("default", "web").created("2020-01-01T00:00:00Z").host_path("h.test", "/", "Prefix", "web", 80).to_yaml(),
        cm.to_yaml(),
        resp.to_yaml(),
        req.to_yaml(),
    ])
}

async fn start_cm(web: &Echo, data: &[(&str, &str)]) -> Harness {
    start_with(&manifests(web, data), |o| o.configmap = Some((CM.0.into(), CM.1.into()))).await
}

/// One request over TLS offering `versions` and, when given, only `suites`: the response head
/// (lowercase), the version and suite negotiated; `None` when the handshake fails.
async fn tls_head(addr: SocketAddr, versions: &[&'static rustls::SupportedProtocolVersion], suites: Option<&[rustls::CipherSuite]>, path: &str) -> Option<(String, rustls::ProtocolVersion, rustls::CipherSuite)> {
    vestibule::tls::install_provider();
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(s) = suites {
        provider.cipher_suites.retain(|c| s.contains(&c.suite()));
    }
    let rec = Arc::new(Recorder(std::sync::Mutex::new(None)));
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider)).with_protocol_versions(versions).unwrap().dangerous().with_custom_certificate_verifier(rec).with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("h.test").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.ok()?;
    let (_, conn) = tls.get_ref();
    let (v, suite) = (conn.protocol_version().unwrap(), conn.negotiated_cipher_suite().unwrap().suite());
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: h.test\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    Some((text.split("\r\n\r\n").next().unwrap().to_string(), v, suite))
}

async fn until<F: FnMut() -> Fut, Fut: std::future::Future<Output = bool>>(what: &str, mut probe: F) {
    let start = Instant::now();
    while !probe().await {
        assert!(start.elapsed() < LIVE, "not within {LIVE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn https_hsts(h: &Harness) -> Option<String> {
    let (head, _, _) = tls_head(h.running.https, BOTH, None, "/").await.expect("handshake");
    head.lines().find_map(|l| l.strip_prefix("strict-transport-security: ").map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_on_https_only_and_its_variants_live() {
    let web = echo("web").await;
    let h = start_cm(&web, &[]).await;
    assert_eq!(https_hsts(&h).await.as_deref(), Some("max-age=31536000; includesubdomains"));
    let plain = h.client.get(h.http("/")).header("host", "h.test").send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("strict-transport-security").is_none(), "never on plain HTTP");

    h.write("manifests.yaml", &manifests(&web, &[("hsts-max-age", "600"), ("hsts-include-subdomains", "false"), ("hsts-preload", "true")]));
    until("hsts variants", || async { https_hsts(&h).await.as_deref() == Some("max-age=600; preload") }).await;
    // A 404 of the backend carries it too.
    let (head, _, _) = tls_head(h.running.https, BOTH, None, "/?status=404").await.unwrap();
    assert!(head.starts_with("http/1.1 404") && head.contains("strict-transport-security: max-age=600; preload"), "{head}");
    h.write("manifests.yaml", &manifests(&web, &[("hsts", "false")]));
    until("hsts off", || async { https_hsts(&h).await.is_none() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_set_and_hide_headers() {
    let web = echo("web").await;
    let data = [("add-headers", "default/resp-headers"), ("proxy-set-headers", "default/req-headers"), ("hide-headers", "Content-Type")];
    let h = start_cm(&web, &data).await;
    let r = h.client.get(h.http("/")).header("host", "h.test").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let hd = r.headers().clone();
    assert_eq!(hd.get("x-frame-options").unwrap(), "DENY");
    assert_eq!(hd.get("x-literal").unwrap(), "$remote_addr", "values are sent literally");
    assert!(hd.get("content-type").is_none(), "hide-headers removed the backend's Content-Type");
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["headers"]["x-team"], "blue", "{body}");
    assert_eq!(body["headers"]["x-literal"], "$host", "{body}");
    // Vestibule's own answers get add-headers too.
    let r = h.client.get(h.http("/")).header("host", "nobody.test").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers().get("x-frame-options").unwrap(), "DENY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_protocols_follow_the_configmap() {
    let web = echo("web").await;
    let h = start_cm(&web, &[]).await;
    let tls12 = &[&rustls::version::TLS12][..];
    assert_eq!(tls_head(h.running.https, tls12, None, "/").await.map(|t| t.1), Some(rustls::ProtocolVersion::TLSv1_2));
    h.write("manifests.yaml", &manifests(&web, &[("ssl-protocols", "TLSv1.3")]));
    until("TLS 1.2 refused", || async { tls_head(h.running.https, tls12, None, "/").await.is_none() }).await;
    let (head, v, _) = tls_head(h.running.https, &[&rustls::version::TLS13], None, "/").await.expect("TLS 1.3 still served");
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_3);
    assert!(head.starts_with("http/1.1 200"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_ciphers_restrict_the_suites_and_unknown_names_are_reported() {
    use rustls::CipherSuite as S;
    let web = echo("web").await;
    let aes128 = [S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256];
    let tls12 = &[&rustls::version::TLS12][..];
    let h = start_cm(&web, &[("ssl-ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:NO-SUCH-CIPHER")]).await;
    assert!(tls_head(h.running.https, tls12, Some(&aes128), "/").await.is_none(), "AES-128 suites are not offered");
    let (_, _, suite) = tls_head(h.running.https, tls12, None, "/").await.expect("an AES-256 suite is");
    assert!(matches!(suite, S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384), "{suite:?}");
    let diags = debug(&h).await;
    assert!(diags.iter().any(|d| d["field"] == "data.ssl-ciphers" && d["severity"] == "Warning" && d["message"].as_str().unwrap().contains("NO-SUCH-CIPHER")), "{diags:?}");

    h.write("manifests.yaml", &manifests(&web, &[("ssl-ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")]));
    until("AES-128 chosen", || async { tls_head(h.running.https, tls12, None, "/").await.is_some_and(|t| aes128.contains(&t.2)) }).await;
    // Nothing that maps: the defaults stay, with an Error.
    h.write("manifests.yaml", &manifests(&web, &[("ssl-ciphers", "RC4-MD5")]));
    until("an Error on ssl-ciphers", || async { debug(&h).await.iter().any(|d| d["field"] == "data.ssl-ciphers" && d["severity"] == "Error") }).await;
    assert!(tls_head(h.running.https, tls12, Some(&aes128), "/").await.is_some(), "defaults offer AES-128 again");
}

async fn debug(h: &Harness) -> Vec<serde_json::Value> {
    let body = h.client.get(format!("http://{}/debug/config", h.running.healthz)).send().await.unwrap().text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["diagnostics"].as_array().unwrap().clone()
}

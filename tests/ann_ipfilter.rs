//! Source-address lists (`whitelist-source-range`, `denylist-source-range`, the ConfigMap's
//! lists, `block-cidrs`, `proxy-real-ip-cidr`) through real sockets: clients bound to
//! 127.0.0.1, 127.0.0.2 and 127.0.0.3 are different source addresses.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vestibule::compile::diag::Severity;

const CM: (&str, &str) = ("ingress", "vestibule");
const P: &str = "nginx.ingress.kubernetes.io/";

/// The status of `GET /` for `host`, sent from source address `src` with extra header lines.
pub async fn status_from(addr: SocketAddr, src: &str, host: &str, extra: &str) -> u16 {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"))
}

fn ing(host: &str, ann: &[(&str, &str)]) -> String {
    let full: Vec<(String, &str)> = ann.iter().map(|(k, v)| (format!("{P}{k}"), *v)).collect();
    let refs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    Ingress::new("default", host).annotations(&refs).host_path(host, "/", "Prefix", "web", 80).to_yaml()
}

async fn start_all(web: &Echo, ingresses: &[String], cm: &[(&str, &str)]) -> Harness {
    init_tracing();
    let mut c = ConfigMap::new(CM.0, CM.1);
    for (k, v) in cm {
        c = c.data(k, v);
    }
    let mut docs = vec![backend_yaml("default", "web", &[web.addr]), c.to_yaml()];
    docs.extend(ingresses.iter().cloned());
    start_with(&manifest(docs), |o| o.configmap = Some((CM.0.into(), CM.1.into()))).await
}

#[tokio::test]
async fn an_allow_list_admits_only_its_addresses() {
    let web = echo("web").await;
    let h = start_all(&web, &[ing("a", &[("whitelist-source-range", "127.0.0.1/32")]), ing("b", &[("allowlist-source-range", "10.0.0.0/8")]), ing("c", &[])], &[]).await;
    let a = h.running.http;
    assert_eq!(status_from(a, "127.0.0.1", "a", "").await, 200);
    assert_eq!(status_from(a, "127.0.0.2", "a", "").await, 403);
    assert_eq!(status_from(a, "127.0.0.1", "b", "").await, 403);
    assert_eq!(status_from(a, "127.0.0.2", "c", "").await, 200, "no list: everyone");
}

#[tokio::test]
async fn the_deny_list_wins_over_the_allow_list() {
    let web = echo("web").await;
    let h = start_all(&web, &[ing("a", &[("whitelist-source-range", "127.0.0.0/8"), ("denylist-source-range", "127.0.0.3, 10.0.0.0/8")])], &[]).await;
    assert_eq!(status_from(h.running.http, "127.0.0.2", "a", "").await, 200);
    assert_eq!(status_from(h.running.http, "127.0.0.3", "a", "").await, 403);
}

#[tokio::test]
async fn block_cidrs_refuse_everything_and_global_lists_are_replaced_by_annotations() {
    let web = echo("web").await;
    let cm = [("block-cidrs", "127.0.0.3/32"), ("whitelist-source-range", "127.0.0.2")];
    let h = start_all(&web, &[ing("a", &[]), ing("b", &[("whitelist-source-range", "127.0.0.1")])], &cm).await;
    let a = h.running.http;
    assert_eq!(status_from(a, "127.0.0.3", "a", "").await, 403);
    assert_eq!(status_from(a, "127.0.0.3", "unknown.example", "").await, 403, "every host");
    assert_eq!(status_from(a, "127.0.0.2", "a", "").await, 200, "the global allow list");
    assert_eq!(status_from(a, "127.0.0.1", "a", "").await, 403);
    assert_eq!(status_from(a, "127.0.0.1", "b", "").await, 200, "the annotation replaces the global list");
    assert_eq!(status_from(a, "127.0.0.2", "b", "").await, 403);
}

#[tokio::test]
async fn an_invalid_list_fails_closed_with_an_error() {
    let web = echo("web").await;
    let h = start_all(&web, &[ing("a", &[("whitelist-source-range", "127.0.0.0/40")]), ing("b", &[("denylist-source-range", "10.0.0.0/8, bogus")])], &[]).await;
    assert_eq!(status_from(h.running.http, "127.0.0.1", "a", "").await, 403);
    assert_eq!(status_from(h.running.http, "127.0.0.1", "b", "").await, 403);
    let snap = h.running.snapshot.load();
    for key in ["whitelist-source-range", "denylist-source-range"] {
        assert!(snap.diagnostics.iter().any(|d| d.severity == Severity::Error && d.field.contains(key)), "{key}: {:?}", snap.diagnostics);
    }
}

#[tokio::test]
async fn proxy_real_ip_cidr_trusts_only_its_forwarders() {
    let web = echo("web").await;
    let cm = [("use-forwarded-headers", "true"), ("proxy-real-ip-cidr", "127.0.0.2/32")];
    let h = start_all(&web, &[ing("a", &[("whitelist-source-range", "10.1.1.1")])], &cm).await;
    let a = h.running.http;
    let xff = "X-Forwarded-For: 10.1.1.1\r\n";
    assert_eq!(status_from(a, "127.0.0.2", "a", xff).await, 200, "a trusted forwarder names the client");
    assert_eq!(status_from(a, "127.0.0.1", "a", xff).await, 403, "an untrusted peer is the client");
    let chain = "X-Forwarded-For: 10.1.1.1, 6.6.6.6\r\n";
    assert_eq!(status_from(a, "127.0.0.2", "a", chain).await, 403, "the walk stops at the first untrusted address");
    let trusted_chain = "X-Forwarded-For: 10.1.1.1, 127.0.0.2\r\n";
    assert_eq!(status_from(a, "127.0.0.2", "a", trusted_chain).await, 200);
}

/// What an Ingress's defaultBackend serves is protected as its paths are: the unmatched paths of
/// its hosts, and (for a rule-less Ingress) every host no rule names.
#[tokio::test]
async fn default_backends_carry_their_ingress_protections() {
    let web = echo("web").await;
    let full = format!("{P}whitelist-source-range");
    let with_rules = Ingress::new("default", "guarded").annotation(&full, "127.0.0.1/32").default_backend("web", 80).host_path("guarded", "/app", "Prefix", "web", 80).to_yaml();
    let catch_all = Ingress::new("default", "catch-all").annotation(&full, "127.0.0.1/32").default_backend("web", 80).to_yaml();
    let h = start_all(&web, &[with_rules, catch_all], &[]).await;
    let a = h.running.http;
    assert_eq!(status_from(a, "127.0.0.1", "guarded", "").await, 200, "/ is the host's defaultBackend, and 127.0.0.1 is listed");
    assert_eq!(status_from(a, "127.0.0.2", "guarded", "").await, 403, "the host's defaultBackend is not a way around the list");
    assert_eq!(status_from(a, "127.0.0.1", "elsewhere", "").await, 200);
    assert_eq!(status_from(a, "127.0.0.2", "elsewhere", "").await, 403, "nor is the catch-all");
}

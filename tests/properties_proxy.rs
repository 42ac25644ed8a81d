//! Properties of the running proxy, on generated configurations (proptest, a few cases each):
//! every request to a routed configuration gets an answer (a status line, whatever the routes
//! say), and the configuration round-trips through `/debug/config` with no key material in it.
//! Each case starts a real Vestibule on loopback ports with real backends and clients.

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use proptest::prelude::*;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, max_shrink_iters: 64, ..ProptestConfig::default() }
}

// -------------------------------------------------------------------------------------------
// A routed request always gets an answer

const HOSTS: &[&str] = &["a.example.com", "b.example.com", "*.w.example.com", ""];
const PATHS: &[&str] = &["/", "/api", "/api/", "/api(/|$)(.*)", "/x/y", "/x/[0-9]+"];
const TYPES: &[&str] = &["Prefix", "Exact", "ImplementationSpecific"];
/// `web` answers, `empty` has no endpoints, `missing` does not exist, `dead` has an endpoint
/// nothing listens on.
const SERVICES: &[&str] = &["web", "empty", "missing", "dead"];
const ANNOTATIONS: &[(&str, &str)] = &[
    ("nginx.ingress.kubernetes.io/rewrite-target", "/$2"),
    ("nginx.ingress.kubernetes.io/use-regex", "true"),
    ("nginx.ingress.kubernetes.io/whitelist-source-range", "10.0.0.0/8"),
    ("nginx.ingress.kubernetes.io/whitelist-source-range", "not-a-cidr"),
    ("nginx.ingress.kubernetes.io/proxy-body-size", "1k"),
    ("nginx.ingress.kubernetes.io/upstream-hash-by", "$request_uri"),
    ("nginx.ingress.kubernetes.io/affinity", "cookie"),
    ("nginx.ingress.kubernetes.io/enable-cors", "true"),
    ("nginx.ingress.kubernetes.io/permanent-redirect", "https://elsewhere.example/"),
    ("nginx.ingress.kubernetes.io/auth-type", "basic"),
    ("nginx.ingress.kubernetes.io/auth-secret", "missing"),
    ("nginx.ingress.kubernetes.io/custom-http-errors", "404,503"),
    ("nginx.ingress.kubernetes.io/app-root", "/app"),
    ("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "2"),
];
const REQUEST_HOSTS: &[&str] = &["a.example.com", "b.example.com:80", "x.w.example.com", "other.example", "", "A.EXAMPLE.COM"];
const REQUEST_PATHS: &[&str] = &["/", "/api", "/api/v1?q=1", "/x/y/", "/x/12", "//api/../x/y", "/%2e%2e/api", "/%zz", "*", "/app"];
const METHODS: &[&str] = &["GET", "HEAD", "POST", "OPTIONS", "DELETE"];

type GenIngress = (Vec<(usize, usize, usize, usize)>, Vec<usize>);

fn gen_ingresses() -> impl Strategy<Value = Vec<GenIngress>> {
    prop::collection::vec(
        (prop::collection::vec((0..HOSTS.len(), 0..PATHS.len(), 0..TYPES.len(), 0..SERVICES.len()), 1..4), prop::collection::vec(0..ANNOTATIONS.len(), 0..3)),
        1..4,
    )
}

fn gen_requests() -> impl Strategy<Value = Vec<(usize, usize, usize)>> {
    prop::collection::vec((0..REQUEST_HOSTS.len(), 0..REQUEST_PATHS.len(), 0..METHODS.len()), 4..7)
}

fn routed_manifest(ings: &[GenIngress], web: std::net::SocketAddr, dead: std::net::SocketAddr) -> String {
    let mut docs = vec![backend_yaml("default", "web", &[web]), backend_yaml("default", "dead", &[dead]), service_yaml("default", "empty")];
    for (i, (paths, anns)) in ings.iter().enumerate() {
        let mut ing = Ingress::new("default", &format!("ing-{i}"));
        let mut keys = BTreeSet::new();
        for &a in anns {
            if keys.insert(ANNOTATIONS[a].0) {
                ing = ing.annotation(ANNOTATIONS[a].0, ANNOTATIONS[a].1);
            }
        }
        for &(h, p, t, s) in paths {
            ing = if HOSTS[h].is_empty() { ing.path(PATHS[p], TYPES[t], SERVICES[s], 80) } else { ing.host_path(HOSTS[h], PATHS[p], TYPES[t], SERVICES[s], 80) };
        }
        docs.push(ing.to_yaml());
    }
    manifest(docs)
}

proptest! {
    #![proptest_config(config(8))]

    #[test]
    fn a_routed_request_always_gets_an_answer(ings in gen_ingresses(), requests in gen_requests()) {
        runtime().block_on(async {
            let web = echo("web").await;
            let h = start(&routed_manifest(&ings, web.addr, dead_addr())).await;
            for &(host, path, method) in &requests {
                let (host, path, method) = (REQUEST_HOSTS[host], REQUEST_PATHS[path], METHODS[method]);
                let host_line = if host.is_empty() { String::new() } else { format!("Host: {host}\r\n") };
                let body = if method == "POST" { "Content-Length: 5\r\n\r\nhello" } else { "\r\n" };
                let req = format!("{method} {path} HTTP/1.1\r\n{host_line}Connection: close\r\n{body}");
                let resp = raw(h.running.http, req.as_bytes(), Duration::from_secs(10)).await;
                let status = resp.split("\r\n").next().unwrap_or("");
                let ok = status.len() >= 12 && status.starts_with("HTTP/1.1 ") && status[9..12].bytes().all(|b| b.is_ascii_digit());
                prop_assert!(ok, "{method} {path} (Host {host:?}) got no status line: {resp:?}");
            }
            h.running.stop();
            Ok(())
        })?;
    }
}

// -------------------------------------------------------------------------------------------
// The configuration round-trips through /debug/config, without key material

struct Pair {
    cert: String,
    key: String,
}

fn pairs() -> &'static [Pair] {
    static PAIRS: OnceLock<Vec<Pair>> = OnceLock::new();
    PAIRS.get_or_init(|| {
        vestibule::tls::install_provider();
        (0..2)
            .map(|i| {
                let (_, cert, key) = vestibule::tls::self_signed(&[&format!("h{i}.example.com"), "*.example.com"]).unwrap();
                Pair { cert, key }
            })
            .collect()
    })
}

/// What each Secret holds: a good pair, a certificate with another pair's key, or a key that is
/// not a key.
#[derive(Debug, Clone, Copy)]
enum SecretKind {
    Good(usize),
    Mismatched,
    Garbage,
}

fn secret_kind() -> impl Strategy<Value = SecretKind> {
    prop_oneof![4 => (0..2usize).prop_map(SecretKind::Good), 1 => Just(SecretKind::Mismatched), 1 => Just(SecretKind::Garbage)]
}

const GARBAGE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDfakefakefake\n-----END PRIVATE KEY-----\n";

/// The lines of a PEM text between its BEGIN and END lines.
fn pem_body_lines(pem: &str) -> Vec<&str> {
    pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16).collect()
}

proptest! {
    #![proptest_config(config(6))]

    #[test]
    fn config_round_trips_through_debug_config_without_keys(
        secrets in prop::collection::vec(secret_kind(), 1..4),
        hosts in prop::collection::vec((0..6usize, 0..4usize, any::<bool>()), 1..5),
    ) {
        runtime().block_on(async {
            let web = echo("web").await;
            let p = pairs();
            let mut docs = vec![backend_yaml("default", "web", &[web.addr])];
            for (i, s) in secrets.iter().enumerate() {
                let (cert, key) = match *s {
                    SecretKind::Good(n) => (p[n].cert.as_str(), p[n].key.as_str()),
                    SecretKind::Mismatched => (p[0].cert.as_str(), p[1].key.as_str()),
                    SecretKind::Garbage => (p[1].cert.as_str(), GARBAGE_KEY),
                };
                docs.push(secret_yaml("default", &format!("tls-{i}"), cert, key));
            }
            // One Ingress per host: hN.example.com, TLS from Secret tls-M (which may not exist).
            let mut seen = BTreeSet::new();
            for &(host, secret, tls) in &hosts {
                if !seen.insert(host) {
                    continue;
                }
                let name = format!("h{host}.example.com");
                let mut ing = Ingress::new("default", &format!("ing-{host}")).host_path(&name, "/", "Prefix", "web", 80);
                if tls {
                    ing = ing.tls(&[&name], &format!("tls-{secret}"));
                }
                docs.push(ing.to_yaml());
            }
            let h = start(&manifest(docs)).await;
            let text = h.client.get(format!("http://{}/debug/config", h.running.healthz)).send().await.unwrap().text().await.unwrap();
            let served: serde_json::Value = serde_json::from_str(&text).expect("/debug/config is JSON");
            let expected = vestibule::debug::config_json(&h.running.shared.config(), &h.running.snapshot.load());
            prop_assert_eq!(&served, &expected, "/debug/config is not the live configuration");
            let listed: BTreeSet<&str> = served["hosts"].as_array().unwrap().iter().filter_map(|v| v["host"].as_str()).collect();
            for &host in &seen {
                let name = format!("h{host}.example.com");
                prop_assert!(listed.contains(name.as_str()), "{} missing from {:?}", name, listed);
            }
            prop_assert!(!text.contains("PRIVATE KEY"), "key material in /debug/config:\n{}", text);
            for pair in p {
                for line in pem_body_lines(&pair.key) {
                    prop_assert!(!text.contains(line), "a line of a private key in /debug/config:\n{}", text);
                }
            }
            for line in pem_body_lines(GARBAGE_KEY) {
                prop_assert!(!text.contains(line), "a line of a key in /debug/config:\n{}", text);
            }
            h.running.stop();
            Ok(())
        })?;
    }
}

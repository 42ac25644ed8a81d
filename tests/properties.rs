//! Properties that must hold for every input, checked on generated inputs (proptest): path
//! normalisation is idempotent, and compile is deterministic. The case counts are small so the
//! suite stays fast; the fuzz targets in `fuzz/` search the same ground for much longer.

mod common;

use common::*;
use proptest::prelude::*;
use vestibule::config::Config;
use vestibule::config::path::normalize_path;

/// Path pieces that exercise normalisation: dot segments, repeated and encoded slashes, percent
/// escapes (valid, invalid, of unreserved characters), queries, and multi-byte characters.
fn path_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2e".to_string()),
        Just("%2f".to_string()),
        Just("%2F".to_string()),
        Just("%25".to_string()),
        Just("%41".to_string()),
        Just("%7e".to_string()),
        Just("%zz".to_string()),
        Just("%".to_string()),
        Just("?".to_string()),
        Just("#".to_string()),
        Just(";".to_string()),
        Just("\\".to_string()),
        Just("é".to_string()),
        "[a-c]{1,3}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(path_piece(), 0..14).prop_map(|p| p.concat()),
        "\\PC{0,24}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn normalising_a_path_is_idempotent(p in path()) {
        let once = normalize_path(&p).into_owned();
        let twice = normalize_path(&once).into_owned();
        prop_assert_eq!(&once, &twice, "normalize({:?}) = {:?}, normalize of that = {:?}", p, once, twice);
    }
}

// -------------------------------------------------------------------------------------------
// Compile is deterministic

const HOSTS: &[&str] = &["a.example.com", "b.example.com", "*.example.com", ""];
const PATHS: &[&str] = &["/", "/api", "/api/", "/api(/|$)(.*)", "/x/y", "/[bad"];
const TYPES: &[&str] = &["Prefix", "Exact", "ImplementationSpecific"];
const SERVICES: &[&str] = &["web", "empty", "missing"];

/// Annotations with valid and invalid values, each from a family that changes the routes.
const ANNOTATIONS: &[(&str, &str)] = &[
    ("nginx.ingress.kubernetes.io/rewrite-target", "/$2"),
    ("nginx.ingress.kubernetes.io/use-regex", "true"),
    ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
    ("nginx.ingress.kubernetes.io/whitelist-source-range", "10.0.0.0/8, ::1"),
    ("nginx.ingress.kubernetes.io/whitelist-source-range", "10.0.0.0/99"),
    ("nginx.ingress.kubernetes.io/proxy-body-size", "1m"),
    ("nginx.ingress.kubernetes.io/proxy-body-size", "lots"),
    ("nginx.ingress.kubernetes.io/upstream-hash-by", "$request_uri"),
    ("nginx.ingress.kubernetes.io/canary", "true"),
    ("nginx.ingress.kubernetes.io/canary-weight", "40"),
    ("nginx.ingress.kubernetes.io/affinity", "cookie"),
    ("nginx.ingress.kubernetes.io/enable-cors", "true"),
    ("nginx.ingress.kubernetes.io/permanent-redirect", "https://elsewhere.example/"),
    ("nginx.ingress.kubernetes.io/configuration-snippet", "return 200;"),
    ("nginx.ingress.kubernetes.io/auth-type", "basic"),
];

#[derive(Debug, Clone)]
struct GenIngress {
    paths: Vec<(usize, usize, usize, usize)>,
    annotations: Vec<usize>,
    tls: bool,
    class: Option<bool>,
    created: u8,
}

fn gen_ingress() -> impl Strategy<Value = GenIngress> {
    (
        prop::collection::vec((0..HOSTS.len(), 0..PATHS.len(), 0..TYPES.len(), 0..SERVICES.len()), 1..4),
        prop::collection::vec(0..ANNOTATIONS.len(), 0..4),
        any::<bool>(),
        prop::option::of(any::<bool>()),
        0u8..3,
    )
        .prop_map(|(paths, annotations, tls, class, created)| GenIngress { paths, annotations, tls, class, created })
}

/// The manifest text of generated Ingresses, with Service `web` (one endpoint), Service `empty`
/// (none), a TLS Secret for `*.example.com`, and a ConfigMap setting a few globals.
fn manifest_of(ings: &[GenIngress], cert: &(String, String)) -> String {
    let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut docs = vec![backend_yaml("default", "web", &[addr]), service_yaml("default", "empty"), secret_yaml("default", "tls", &cert.0, &cert.1)];
    for (i, g) in ings.iter().enumerate() {
        let mut ing = Ingress::new("default", &format!("ing-{i}")).created(&format!("2024-01-0{}T00:00:00Z", g.created + 1));
        match g.class {
            Some(true) => ing = ing.class("vestibule"),
            Some(false) => ing = ing.class("other"),
            None => {}
        }
        let mut keys = std::collections::BTreeSet::new();
        for &a in &g.annotations {
            if keys.insert(ANNOTATIONS[a].0) {
                ing = ing.annotation(ANNOTATIONS[a].0, ANNOTATIONS[a].1);
            }
        }
        let mut tls_hosts = Vec::new();
        for &(h, p, t, s) in &g.paths {
            let host = HOSTS[h];
            ing = if host.is_empty() { ing.path(PATHS[p], TYPES[t], SERVICES[s], 80) } else { ing.host_path(host, PATHS[p], TYPES[t], SERVICES[s], 80) };
            if !host.is_empty() {
                tls_hosts.push(host);
            }
        }
        if g.tls && !tls_hosts.is_empty() {
            ing = ing.tls(&tls_hosts, "tls");
        }
        docs.push(ing.to_yaml());
    }
    manifest(docs)
}

fn cert() -> (String, String) {
    vestibule::tls::install_provider();
    let (_, cert, key) = vestibule::tls::self_signed(&["example.com", "*.example.com"]).unwrap();
    (cert, key)
}

/// The configuration as text, with the host tables (hash maps, whose iteration order is not
/// part of what compile decides) in name order.
fn canonical(c: &Config) -> String {
    let mut exact: Vec<_> = c.exact.iter().collect();
    exact.sort_by(|a, b| a.0.cmp(b.0));
    let mut wildcard: Vec<_> = c.wildcard.iter().collect();
    wildcard.sort_by(|a, b| a.0.cmp(b.0));
    let mut tls_exact: Vec<_> = c.tls.exact.iter().map(|(n, t)| (n, format!("{:?}", t.key.cert))).collect();
    tls_exact.sort();
    let mut tls_wild: Vec<_> = c.tls.wildcard.iter().map(|(n, t)| (n, format!("{:?}", t.key.cert))).collect();
    tls_wild.sort();
    format!(
        "exact {exact:#?}\nwildcard {wildcard:#?}\nhostless {:#?}\ndefault {:#?}\ntls {tls_exact:?} {tls_wild:?}\nlisteners {:?}\nproxy {:?}\ncounts {} {}\nhttp {:?}\nl4 {:?}",
        c.hostless, c.default_backend, c.listeners, c.proxy, c.route_count, c.backend_count, c.http, c.l4
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn compile_is_deterministic(ings in prop::collection::vec(gen_ingress(), 1..5)) {
        static CERT: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
        static SETTINGS: std::sync::OnceLock<vestibule::compile::Settings> = std::sync::OnceLock::new();
        let text = manifest_of(&ings, CERT.get_or_init(cert));
        let mut settings = SETTINGS.get_or_init(compile_settings).clone();
        // A fresh memo each time, so the second compile cannot lean on the first one's work.
        settings.cert_cache = Default::default();
        let first = vestibule::compile::compile(&store_of(&text), &settings);
        settings.cert_cache = Default::default();
        let second = vestibule::compile::compile(&store_of(&text), &settings);
        prop_assert_eq!(&first.diagnostics, &second.diagnostics);
        prop_assert_eq!(format!("{:?}", first.status), format!("{:?}", second.status));
        prop_assert_eq!(canonical(&first.config), canonical(&second.config));
        // The operator's view of it too (`/debug/config`), which sorts everything it lists.
        let snapshot = |c: &vestibule::compile::Compiled| vestibule::engine::Snapshot {
            store: Default::default(),
            settings: None,
            diagnostics: c.diagnostics.clone(),
            status: std::sync::Arc::new(c.status.clone()),
            manifest_errors: Vec::new(),
        };
        prop_assert_eq!(
            vestibule::debug::config_json(&first.config, &snapshot(&first)),
            vestibule::debug::config_json(&second.config, &snapshot(&second))
        );
    }
}

//! What several targets share: compile settings made once, a store from manifest text, and a
//! small fixed cluster (a Service with a ready endpoint, Secrets, ConfigMaps) that fuzzed
//! objects are added to.
#![allow(dead_code)]

use std::path::Path;
use std::sync::LazyLock;

use vestibule::compile::Settings;
use vestibule::store::Store;

/// The default settings with a fallback certificate generated once per process.
pub static SETTINGS: LazyLock<Settings> = LazyLock::new(|| {
    vestibule::tls::install_provider();
    let mut s = Settings::new(vestibule::tls::self_signed(&["vestibule.invalid"]).expect("self-signed certificate").0);
    s.configmap = Some(("default".into(), "vestibule".into()));
    s.tcp_services = Some(("default".into(), "tcp-services".into()));
    s.udp_services = Some(("default".into(), "udp-services".into()));
    s.ssl_passthrough = true;
    s
});

/// A certificate and key for `*.example.com`, generated once, in PEM.
pub static CERT: LazyLock<(String, String)> = LazyLock::new(|| {
    vestibule::tls::install_provider();
    let (_, cert, key) = vestibule::tls::self_signed(&["example.com", "*.example.com"]).expect("self-signed certificate");
    (cert, key)
});

/// Adds every object `text` holds to `store` (documents that do not parse are left out, as the
/// file source leaves them out).
pub fn add_text(store: &mut Store, file: &str, text: &str) {
    for obj in vestibule::source::parse::parse_text(Path::new(file), text).objects {
        store.insert(obj);
    }
}

fn indent(s: &str, by: usize) -> String {
    s.lines().map(|l| format!("{}{l}\n", " ".repeat(by))).collect()
}

/// The fixed cluster: Service `web` with a ready endpoint, a TLS Secret `tls`, a basic-auth
/// Secret `basic` (user `u`, password `p`), ConfigMaps for headers, and the TCP/UDP services
/// ConfigMaps naming `web`. Parsed once; each run gets a copy.
pub fn base_store() -> Store {
    static BASE: LazyLock<Store> = LazyLock::new(parse_base);
    BASE.clone()
}

fn parse_base() -> Store {
    let (cert, key) = &*CERT;
    let text = format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints:
- addresses: [127.0.0.1]
  conditions: {{ready: true}}
---
apiVersion: v1
kind: Secret
metadata: {{name: tls, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
apiVersion: v1
kind: Secret
metadata: {{name: basic, namespace: default}}
stringData:
  auth: "u:{{SHA}}UWuXg/ylF+7L0dBk2i0WUxCxl1k="
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: headers, namespace: default}}
data: {{X-Extra: "1"}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: tcp-services, namespace: default}}
data: {{"9000": "default/web:80"}}
"#,
        indent(cert, 4),
        indent(key, 4)
    );
    let mut store = Store::default();
    add_text(&mut store, "base.yaml", &text);
    store
}

/// `key=value` lines (at most `max`); a key without a `/` gets the ingress-nginx prefix when
/// `prefix` is set.
pub fn pairs(text: &str, max: usize, prefix: bool) -> Vec<(String, String)> {
    text.lines()
        .take(max)
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let k = k.trim();
            let k = if prefix && !k.contains('/') { format!("nginx.ingress.kubernetes.io/{k}") } else { k.to_string() };
            (k, v.to_string())
        })
        .collect()
}

/// An Ingress (JSON) of class `vestibule` on `host` with paths `/` and `/api` to `web:80`, TLS
/// from Secret `tls`, and `annotations`.
pub fn ingress_json(name: &str, host: &str, annotations: &[(String, String)]) -> String {
    let ann: serde_json::Map<String, serde_json::Value> = annotations.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let backend = serde_json::json!({"service": {"name": "web", "port": {"number": 80}}});
    serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default", "annotations": ann},
        "spec": {
            "ingressClassName": "vestibule",
            "tls": [{"hosts": [host], "secretName": "tls"}],
            "rules": [{"host": host, "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": backend},
                {"path": "/api/(.*)", "pathType": "ImplementationSpecific", "backend": backend},
            ]}}]
        }
    })
    .to_string()
}

/// Compiles and touches every part of the result a caller reads.
pub fn compile(store: &Store) {
    let compiled = vestibule::compile::compile(store, &SETTINGS);
    for d in &compiled.diagnostics {
        let _ = d.to_string();
    }
    let _ = format!("{:?}", compiled.config);
}

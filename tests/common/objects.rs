//! Builders for the Kubernetes objects the tests feed Vestibule: Ingress, Service,
//! EndpointSlice, Secret, IngressClass and ConfigMap. Each writes one YAML document (no `---`
//! separator) with `to_yaml()`, or the same object as JSON with `to_json()`.
//!
//! An empty namespace leaves `metadata.namespace` out (the object lands in `default`, or is
//! cluster-scoped).

use std::net::SocketAddr;

use serde_json::Value;

/// A YAML scalar: plain where that reads back as the same string, double-quoted otherwise.
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
        && !s.starts_with(['-', '.'])
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.parse::<f64>().is_err()
        && !matches!(s.to_ascii_lowercase().as_str(), "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n");
    if plain { s.to_string() } else { quoted(s) }
}

/// A double-quoted YAML scalar (JSON string syntax, which YAML reads the same way).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn metadata(out: &mut String, ns: &str, name: &str) {
    out.push_str(&format!("metadata:\n  name: {}\n", scalar(name)));
    if !ns.is_empty() {
        out.push_str(&format!("  namespace: {}\n", scalar(ns)));
    }
}

fn annotations(out: &mut String, annotations: &[(String, String)]) {
    if annotations.is_empty() {
        return;
    }
    out.push_str("  annotations:\n");
    for (k, v) in annotations {
        out.push_str(&format!("    {}: {}\n", scalar(k), quoted(v)));
    }
}

fn yaml_to_json(yaml: &str) -> Value {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("a builder wrote YAML that does not parse ({e}):\n{yaml}"))
}

/// Joins YAML documents into one multi-document text, `---` between them.
pub fn manifest<S: AsRef<str>>(docs: impl IntoIterator<Item = S>) -> String {
    let mut out = String::new();
    for d in docs {
        let d = d.as_ref();
        if !out.is_empty() {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("---\n");
        }
        out.push_str(d);
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// A Service port as an Ingress backend names it: by number or by name.
#[derive(Clone, Debug)]
pub enum Port {
    Number(u16),
    Name(String),
}

impl From<u16> for Port {
    fn from(n: u16) -> Self {
        Port::Number(n)
    }
}

impl From<&str> for Port {
    fn from(name: &str) -> Self {
        Port::Name(name.to_string())
    }
}

impl Port {
    /// The `port:` mapping of an Ingress service backend, its keys indented by `indent` spaces.
    fn yaml(&self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        match self {
            Port::Number(n) => format!("{pad}number: {n}\n"),
            Port::Name(name) => format!("{pad}name: {}\n", scalar(name)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ingress

#[derive(Clone, Debug)]
struct IngressPath {
    path: String,
    path_type: String,
    service: String,
    port: Port,
}

#[derive(Clone, Debug)]
struct Rule {
    host: Option<String>,
    paths: Vec<IngressPath>,
}

/// A `networking.k8s.io/v1` Ingress.
#[derive(Clone, Debug)]
pub struct Ingress {
    ns: String,
    name: String,
    created: Option<String>,
    annotations: Vec<(String, String)>,
    class: Option<String>,
    default_backend: Option<(String, Port)>,
    tls: Vec<(Vec<String>, String)>,
    rules: Vec<Rule>,
}

impl Ingress {
    pub fn new(ns: &str, name: &str) -> Self {
        Ingress { ns: ns.into(), name: name.into(), created: None, annotations: Vec::new(), class: None, default_backend: None, tls: Vec::new(), rules: Vec::new() }
    }

    /// `metadata.creationTimestamp`, which decides which Ingress wins a conflict.
    pub fn created(mut self, timestamp: &str) -> Self {
        self.created = Some(timestamp.into());
        self
    }

    /// One annotation; the value is always written as a string.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.into(), value.into()));
        self
    }

    pub fn annotations(mut self, pairs: &[(&str, &str)]) -> Self {
        for (k, v) in pairs {
            self = self.annotation(k, v);
        }
        self
    }

    /// The legacy `kubernetes.io/ingress.class` annotation.
    pub fn legacy_class(self, class: &str) -> Self {
        self.annotation("kubernetes.io/ingress.class", class)
    }

    /// `spec.ingressClassName`.
    pub fn class(mut self, class: &str) -> Self {
        self.class = Some(class.into());
        self
    }

    /// `spec.defaultBackend`.
    pub fn default_backend(mut self, service: &str, port: impl Into<Port>) -> Self {
        self.default_backend = Some((service.into(), port.into()));
        self
    }

    /// One `spec.tls` entry.
    pub fn tls(mut self, hosts: &[&str], secret: &str) -> Self {
        self.tls.push((hosts.iter().map(|h| h.to_string()).collect(), secret.into()));
        self
    }

    /// A path of the rule for `host`: added to the last rule when that rule is for the same
    /// host, else starting a new rule.
    pub fn host_path(self, host: &str, path: &str, path_type: &str, service: &str, port: impl Into<Port>) -> Self {
        self.add_path(Some(host), path, path_type, service, port.into())
    }

    /// A path of a rule without a host (any host), added like `host_path`.
    pub fn path(self, path: &str, path_type: &str, service: &str, port: impl Into<Port>) -> Self {
        self.add_path(None, path, path_type, service, port.into())
    }

    fn add_path(mut self, host: Option<&str>, path: &str, path_type: &str, service: &str, port: Port) -> Self {
        let p = IngressPath { path: path.into(), path_type: path_type.into(), service: service.into(), port };
        match self.rules.last_mut() {
            Some(r) if r.host.as_deref() == host => r.paths.push(p),
            _ => self.rules.push(Rule { host: host.map(str::to_string), paths: vec![p] }),
        }
        self
    }

    pub fn to_yaml(&self) -> String {
        let mut y = String::from("apiVersion: networking.k8s.io/v1\nkind: Ingress\n");
        metadata(&mut y, &self.ns, &self.name);
        if let Some(t) = &self.created {
            y.push_str(&format!("  creationTimestamp: {}\n", quoted(t)));
        }
        annotations(&mut y, &self.annotations);
        y.push_str("spec:\n");
        if let Some(c) = &self.class {
            y.push_str(&format!("  ingressClassName: {}\n", scalar(c)));
        }
        if let Some((svc, port)) = &self.default_backend {
            y.push_str(&format!("  defaultBackend:\n    service:\n      name: {}\n      port:\n{}", scalar(svc), port.yaml(8)));
        }
        if !self.tls.is_empty() {
            y.push_str("  tls:\n");
            for (hosts, secret) in &self.tls {
                let hosts: Vec<String> = hosts.iter().map(|h| scalar(h)).collect();
                y.push_str(&format!("  - hosts: [{}]\n    secretName: {}\n", hosts.join(", "), scalar(secret)));
            }
        }
        if !self.rules.is_empty() {
            y.push_str("  rules:\n");
            for r in &self.rules {
                match &r.host {
                    Some(h) => y.push_str(&format!("  - host: {}\n    http:\n", scalar(h))),
                    None => y.push_str("  - http:\n"),
                }
                y.push_str("      paths:\n");
                for p in &r.paths {
                    y.push_str(&format!(
                        "      - path: {}\n        pathType: {}\n        backend:\n          service:\n            name: {}\n            port:\n{}",
                        scalar(&p.path),
                        scalar(&p.path_type),
                        scalar(&p.service),
                        p.port.yaml(14)
                    ));
                }
            }
        }
        y
    }

    pub fn to_json(&self) -> Value {
        yaml_to_json(&self.to_yaml())
    }
}

/// The Ingress `default/{svc}` sending every host and path to `svc` port 80.
pub fn catch_all(svc: &str) -> Ingress {
    Ingress::new("default", svc).path("/", "Prefix", svc, 80)
}

// ---------------------------------------------------------------------------------------------
// Service, EndpointSlice

/// A `v1` Service with named ports.
#[derive(Clone, Debug)]
pub struct Service {
    ns: String,
    name: String,
    ports: Vec<(String, u16)>,
}

impl Service {
    pub fn new(ns: &str, name: &str) -> Self {
        Service { ns: ns.into(), name: name.into(), ports: Vec::new() }
    }

    pub fn port(mut self, name: &str, port: u16) -> Self {
        self.ports.push((name.into(), port));
        self
    }

    pub fn to_yaml(&self) -> String {
        let mut y = String::from("apiVersion: v1\nkind: Service\n");
        metadata(&mut y, &self.ns, &self.name);
        y.push_str("spec:\n  ports:\n");
        for (name, port) in &self.ports {
            y.push_str(&format!("  - name: {}\n    port: {port}\n", scalar(name)));
        }
        if self.ports.is_empty() {
            y.truncate(y.len() - 1);
            y.push_str(" []\n");
        }
        y
    }

    pub fn to_json(&self) -> Value {
        yaml_to_json(&self.to_yaml())
    }
}

/// The Service `name` with one port, `http` 80: the shape every test backend has.
pub fn service_yaml(ns: &str, name: &str) -> String {
    Service::new(ns, name).port("http", 80).to_yaml()
}

/// One endpoint of an EndpointSlice; conditions left out are not written.
#[derive(Clone, Debug)]
pub struct Endpoint {
    ip: String,
    ready: Option<bool>,
    terminating: Option<bool>,
}

impl Endpoint {
    /// An endpoint without conditions (which Kubernetes reads as ready).
    pub fn at(ip: impl ToString) -> Self {
        Endpoint { ip: ip.to_string(), ready: None, terminating: None }
    }

    pub fn ready(mut self, ready: bool) -> Self {
        self.ready = Some(ready);
        self
    }

    pub fn terminating(mut self, terminating: bool) -> Self {
        self.terminating = Some(terminating);
        self
    }
}

/// A `discovery.k8s.io/v1` EndpointSlice (IPv4) of `service`.
#[derive(Clone, Debug)]
pub struct EndpointSlice {
    ns: String,
    name: String,
    service: String,
    ports: Vec<(String, u16)>,
    endpoints: Vec<Endpoint>,
}

impl EndpointSlice {
    pub fn new(ns: &str, name: &str, service: &str) -> Self {
        EndpointSlice { ns: ns.into(), name: name.into(), service: service.into(), ports: Vec::new(), endpoints: Vec::new() }
    }

    pub fn port(mut self, name: &str, port: u16) -> Self {
        self.ports.push((name.into(), port));
        self
    }

    pub fn endpoint(mut self, e: Endpoint) -> Self {
        self.endpoints.push(e);
        self
    }

    /// An endpoint whose `ready` condition is true.
    pub fn ready(self, ip: impl ToString) -> Self {
        self.endpoint(Endpoint::at(ip).ready(true))
    }

    pub fn to_yaml(&self) -> String {
        let mut y = String::from("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n");
        metadata(&mut y, &self.ns, &self.name);
        y.push_str(&format!("  labels:\n    kubernetes.io/service-name: {}\naddressType: IPv4\nports:\n", scalar(&self.service)));
        for (name, port) in &self.ports {
            y.push_str(&format!("- name: {}\n  port: {port}\n", scalar(name)));
        }
        if self.ports.is_empty() {
            y.truncate(y.len() - 1);
            y.push_str(" []\n");
        }
        if self.endpoints.is_empty() {
            y.push_str("endpoints: []\n");
        } else {
            y.push_str("endpoints:\n");
        }
        for e in &self.endpoints {
            y.push_str(&format!("- addresses: [{}]\n", quoted(&e.ip)));
            if e.ready.is_some() || e.terminating.is_some() {
                y.push_str("  conditions:\n");
            }
            if let Some(r) = e.ready {
                y.push_str(&format!("    ready: {r}\n"));
            }
            if let Some(t) = e.terminating {
                y.push_str(&format!("    terminating: {t}\n"));
            }
        }
        y
    }

    pub fn to_json(&self) -> Value {
        yaml_to_json(&self.to_yaml())
    }
}

/// The EndpointSlice `{svc}-abc` of a test backend: port `http` at the first endpoint's port
/// (1 when there is none), every address ready.
pub fn backend_slice(ns: &str, svc: &str, endpoints: &[SocketAddr]) -> EndpointSlice {
    let port = endpoints.first().map(|a| a.port()).unwrap_or(1);
    let mut s = EndpointSlice::new(ns, &format!("{svc}-abc"), svc).port("http", port);
    for a in endpoints {
        s = s.ready(a.ip());
    }
    s
}

/// A Service with one port (`http`, 80) and an EndpointSlice with the given ready endpoints.
pub fn backend_yaml(ns: &str, svc: &str, endpoints: &[SocketAddr]) -> String {
    manifest([service_yaml(ns, svc), backend_slice(ns, svc, endpoints).to_yaml()])
}

// ---------------------------------------------------------------------------------------------
// Secret, IngressClass, ConfigMap

/// A `v1` Secret; `stringData` values are written as literal blocks, `data` values base64.
#[derive(Clone, Debug)]
pub struct Secret {
    ns: String,
    name: String,
    type_: Option<String>,
    string_data: Vec<(String, String)>,
    data: Vec<(String, Vec<u8>)>,
}

impl Secret {
    pub fn new(ns: &str, name: &str) -> Self {
        Secret { ns: ns.into(), name: name.into(), type_: None, string_data: Vec::new(), data: Vec::new() }
    }

    /// A `kubernetes.io/tls` Secret with `tls.crt` and `tls.key` as `stringData`.
    pub fn tls(ns: &str, name: &str, cert_pem: &str, key_pem: &str) -> Self {
        Secret::new(ns, name).type_("kubernetes.io/tls").string_data("tls.crt", cert_pem).string_data("tls.key", key_pem)
    }

    pub fn type_(mut self, t: &str) -> Self {
        self.type_ = Some(t.into());
        self
    }

    pub fn string_data(mut self, key: &str, value: &str) -> Self {
        self.string_data.push((key.into(), value.into()));
        self
    }

    /// A `data` entry: the bytes, base64-encoded as the API has them.
    pub fn data(mut self, key: &str, value: &[u8]) -> Self {
        self.data.push((key.into(), value.to_vec()));
        self
    }

    pub fn to_yaml(&self) -> String {
        use base64::Engine;
        let mut y = String::from("apiVersion: v1\nkind: Secret\n");
        metadata(&mut y, &self.ns, &self.name);
        if let Some(t) = &self.type_ {
            y.push_str(&format!("type: {}\n", scalar(t)));
        }
        if !self.string_data.is_empty() {
            y.push_str("stringData:\n");
            for (k, v) in &self.string_data {
                y.push_str(&format!("  {}: |\n", scalar(k)));
                for l in v.lines() {
                    y.push_str(&format!("    {l}\n"));
                }
            }
        }
        if !self.data.is_empty() {
            y.push_str("data:\n");
            for (k, v) in &self.data {
                y.push_str(&format!("  {}: {}\n", scalar(k), base64::engine::general_purpose::STANDARD.encode(v)));
            }
        }
        y
    }

    pub fn to_json(&self) -> Value {
        yaml_to_json(&self.to_yaml())
    }
}

/// A TLS Secret holding `cert_pem`/`key_pem`.
pub fn secret_yaml(ns: &str, name: &str, cert_pem: &str, key_pem: &str) -> String {
    Secret::tls(ns, name, cert_pem, key_pem).to_yaml()
}

/// A `networking.k8s.io/v1` IngressClass (cluster-scoped).
#[derive(Clone, Debug)]
pub struct IngressClass {
    name: String,
    controller: String,
    annotations: Vec<(String, String)>,
}

impl IngressClass {
    pub fn new(name: &str, controller: &str) -> Self {
        IngressClass { name: name.into(), controller: controller.into(), annotations: Vec::new() }
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.into(), value.into()));
        self
    }

    /// The `ingressclass.kubernetes.io/is-default-class: "true"` annotation.
    pub fn default_class(self) -> Self {
        self.annotation("ingressclass.kubernetes.io/is-default-class", "true")
    }

    pub fn to_yaml(&self) -> String {
        let mut y = String::from("apiVersion: networking.k8s.io/v1\nkind: IngressClass\n");
        metadata(&mut y, "", &self.name);
        annotations(&mut y, &self.annotations);
        y.push_str(&format!("spec:\n  controller: {}\n", scalar(&self.controller)));
        y
    }

    pub fn to_json(&self) -> Value {
        yaml_to_json(&self.to_yaml())
    }
}

/// A `v1` ConfigMap; its `data` is always written, `{}` when empty.
#[derive(Clone, Debug)]
pub struct ConfigMap {
    ns: String,
    name: String,
    data: Vec<(String, String)>,
}

impl ConfigMap {
    pub fn new(ns: &str, name: &str) -> Self {
        ConfigMap { ns: ns.into(), name: name.into(), data: Vec::new() }
    }

    pub fn data(mut self, key: &str, value: &str) -> Self {
        self.data.push((key.into(), value.into()));
        self
    }

    pub fn to_yaml(&self) -> String {
        let mut y = String::from("apiVersion: v1\nkind: ConfigMap\n");
        metadata(&mut y, &self.ns, &self.name);
        if self.data.is_empty() {
            y.push_str("data: {}\n");
        } else {
            y.push_str("data:\n");
            for (k, v) in &self.data {
                y.push_str(&format!("  {}: {}\n", scalar(k), quoted(v)));
            }
        }
        y
    }

    pub fn to_json(&self) -> Value {
        yaml_to_json(&self.to_yaml())
    }
}

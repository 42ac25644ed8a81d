//! A fake Kubernetes API server speaking the real list/watch HTTP protocol, for the controller
//! tests: JSON lists carrying `metadata.resourceVersion`, watch streams (`?watch=true`,
//! newline-delimited ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events), `410 Gone` for a too-old
//! resourceVersion, create/replace/patch/delete, the status subresource with optimistic
//! concurrency, and enough of server-side apply's field ownership on Leases for leader
//! election (applying another holder over a holder some other manager set is a 409).
//!
//! The test drives the cluster directly (`apply`, `delete`, `set_silently`), can kill the
//! server and restart it on the same port, and can expire every open watch with a 410.
#![allow(dead_code)]

pub mod admission;
mod discovery;
pub mod options;
pub mod outage;
pub mod rbac;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A resource the fake serves.
#[derive(Debug, Clone, Copy)]
struct Type {
    /// `api/v1` or `apis/GROUP/VERSION`.
    prefix: &'static str,
    plural: &'static str,
    kind: &'static str,
    api_version: &'static str,
    namespaced: bool,
}

const TYPES: &[Type] = &[
    Type { prefix: "api/v1", plural: "services", kind: "Service", api_version: "v1", namespaced: true },
    Type { prefix: "api/v1", plural: "secrets", kind: "Secret", api_version: "v1", namespaced: true },
    Type { prefix: "api/v1", plural: "configmaps", kind: "ConfigMap", api_version: "v1", namespaced: true },
    Type { prefix: "api/v1", plural: "namespaces", kind: "Namespace", api_version: "v1", namespaced: false },
    Type { prefix: "api/v1", plural: "events", kind: "Event", api_version: "v1", namespaced: true },
    Type { prefix: "api/v1", plural: "pods", kind: "Pod", api_version: "v1", namespaced: true },
    Type { prefix: "apis/discovery.k8s.io/v1", plural: "endpointslices", kind: "EndpointSlice", api_version: "discovery.k8s.io/v1", namespaced: true },
    Type { prefix: "apis/networking.k8s.io/v1", plural: "ingresses", kind: "Ingress", api_version: "networking.k8s.io/v1", namespaced: true },
    Type { prefix: "apis/networking.k8s.io/v1", plural: "ingressclasses", kind: "IngressClass", api_version: "networking.k8s.io/v1", namespaced: false },
    Type { prefix: "apis/coordination.k8s.io/v1", plural: "leases", kind: "Lease", api_version: "coordination.k8s.io/v1", namespaced: true },
    Type { prefix: "apis/events.k8s.io/v1", plural: "events", kind: "Event", api_version: "events.k8s.io/v1", namespaced: true },
    // Gateway API CRDs (v1.5.1): each version of one CRD shares its objects, as the API server's
    // conversion does. For a kind served in several versions, the last is the one `apply` and
    // `get` by kind name use.
    Type { prefix: "apis/gateway.networking.k8s.io/v1", plural: "gatewayclasses", kind: "GatewayClass", api_version: "gateway.networking.k8s.io/v1", namespaced: false },
    Type { prefix: "apis/gateway.networking.k8s.io/v1", plural: "gateways", kind: "Gateway", api_version: "gateway.networking.k8s.io/v1", namespaced: true },
    Type { prefix: "apis/gateway.networking.k8s.io/v1", plural: "httproutes", kind: "HTTPRoute", api_version: "gateway.networking.k8s.io/v1", namespaced: true },
    Type { prefix: "apis/gateway.networking.k8s.io/v1", plural: "grpcroutes", kind: "GRPCRoute", api_version: "gateway.networking.k8s.io/v1", namespaced: true },
    Type { prefix: "apis/gateway.networking.k8s.io/v1alpha2", plural: "tlsroutes", kind: "TLSRoute", api_version: "gateway.networking.k8s.io/v1alpha2", namespaced: true },
    Type { prefix: "apis/gateway.networking.k8s.io/v1", plural: "tlsroutes", kind: "TLSRoute", api_version: "gateway.networking.k8s.io/v1", namespaced: true },
    Type { prefix: "apis/gateway.networking.k8s.io/v1", plural: "referencegrants", kind: "ReferenceGrant", api_version: "gateway.networking.k8s.io/v1", namespaced: true },
    Type { prefix: "apis/gateway.networking.k8s.io/v1beta1", plural: "referencegrants", kind: "ReferenceGrant", api_version: "gateway.networking.k8s.io/v1beta1", namespaced: true },
    Type {
        prefix: "apis/admissionregistration.k8s.io/v1",
        plural: "validatingwebhookconfigurations",
        kind: "ValidatingWebhookConfiguration",
        api_version: "admissionregistration.k8s.io/v1",
        namespaced: false,
    },
];

fn type_of(api_version: &str, kind: &str) -> Type {
    *TYPES.iter().find(|t| t.kind == kind && t.api_version == api_version).unwrap_or_else(|| panic!("fake API server: unknown {api_version} {kind}"))
}

/// The type for a kind name (Events are events.k8s.io/v1 ones).
fn type_by_kind(kind: &str) -> Type {
    *TYPES.iter().rev().find(|t| t.kind == kind).unwrap_or_else(|| panic!("fake API server: unknown kind {kind}"))
}

impl Type {
    /// The storage key of the resource: one per group and plural, whatever the version.
    fn id(&self) -> String {
        match self.prefix.strip_prefix("apis/") {
            Some(gv) => format!("apis/{}/{}", gv.split('/').next().unwrap_or(gv), self.plural),
            None => format!("{}/{}", self.prefix, self.plural),
        }
    }

    fn group(&self) -> &'static str {
        self.prefix.strip_prefix("apis/").map(|gv| gv.split('/').next().unwrap_or(gv)).unwrap_or("")
    }

    fn version(&self) -> &'static str {
        self.prefix.rsplit('/').next().unwrap_or("v1")
    }

    /// Whether it is a CRD (served only when installed; see `FakeApi::serve_only`).
    fn is_crd(&self) -> bool {
        self.group() == GATEWAY_GROUP
    }
}

pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The object as this version presents it (the API server converts between served versions).
fn as_version(mut obj: Value, ty: &Type) -> Value {
    if obj.is_object() {
        obj["apiVersion"] = json!(ty.api_version);
    }
    obj
}

/// One change, as the watch log keeps it.
#[derive(Debug, Clone)]
struct Entry {
    rv: u64,
    resource: String,
    kind: &'static str,
    object: Value,
}

#[derive(Debug, Clone)]
enum Signal {
    Event(Entry),
    /// Every open watch of this resource (all when None) ends with a 410.
    Expire(Option<String>),
}

/// One request the fake served, for assertions.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The bearer token it carried.
    pub token: String,
    pub content_type: String,
    pub body: Value,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Req {
    /// A query parameter, decoded.
    pub fn param(&self, key: &str) -> Option<String> {
        query_map(&self.query).remove(key)
    }
}

#[derive(Default)]
struct Inner {
    rv: u64,
    /// (resource id, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    log: Vec<Entry>,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted: u64,
    requests: Vec<Req>,
    /// Lease (ns, name) → the field manager that owns `spec.holderIdentity`.
    holder_owner: HashMap<(String, String), String>,
    next_uid: u64,
    /// The CRD versions served, as `group/version plural`; None serves every one.
    crds: Option<std::collections::BTreeSet<String>>,
    /// Answer 403 to a list of Secrets, and to a watch of Secrets without a `metadata.name`
    /// field selector, as RBAC does for a Role with `get` and `watch` on Secrets but no `list`.
    secrets_get_watch_only: bool,
    /// When set, every resource request is authorized by these RBAC rules (see `rbac`).
    policy: Option<rbac::Policy>,
    /// The requests the policy refused.
    denied: Vec<rbac::Attributes>,
}

impl Inner {
    fn served(&self, ty: &Type) -> bool {
        !ty.is_crd() || self.crds.as_ref().is_none_or(|c| c.contains(&format!("{}/{} {}", ty.group(), ty.version(), ty.plural)))
    }
}

pub struct State {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Signal>,
}

struct Server {
    accept: AbortHandle,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

pub struct FakeApi {
    pub state: Arc<State>,
    pub addr: SocketAddr,
    server: Mutex<Option<Server>>,
    /// Set when it serves HTTPS and requires client certificates.
    pub tls: Option<TlsMaterial>,
}

/// The certificates of an HTTPS fake: its CA, and a client certificate it accepts.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    config: Arc<rustls::ServerConfig>,
}

impl TlsMaterial {
    fn generate() -> TlsMaterial {
        use rustls_pki_types::pem::PemObject;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "fake API server CA");
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let mut server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();

        let mut client = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        client.distinguished_name.push(rcgen::DnType::CommonName, "vestibule");
        client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = rcgen::KeyPair::generate().unwrap();
        let client_cert = client.signed_by(&client_key, &issuer).unwrap();

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(server_key.serialize_pem().as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![server_cert.der().clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsMaterial { ca_pem: ca_cert.pem(), client_cert_pem: client_cert.pem(), client_key_pem: client_key.serialize_pem(), config: Arc::new(config) }
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

fn respond(code: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(v).unwrap())).boxed_unsync());
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

fn error(code: u16, reason: &str, message: &str) -> Response<Body> {
    respond(code, &status(code, reason, message))
}

/// A response body fed by a channel: the watch stream.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// `metadata.name=x,type=y` / `a=b,c!=d,e` → (key, op, value).
fn selectors(s: &str) -> Vec<(String, String, String)> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            if let Some((k, v)) = t.split_once("!=") {
                (k.into(), "!=".into(), v.into())
            } else if let Some((k, v)) = t.split_once("==") {
                (k.into(), "=".into(), v.into())
            } else if let Some((k, v)) = t.split_once('=') {
                (k.into(), "=".into(), v.into())
            } else {
                (t.into(), "exists".into(), String::new())
            }
        })
        .collect()
}

fn field_value<'v>(obj: &'v Value, key: &str) -> Option<&'v str> {
    match key {
        "metadata.name" => obj["metadata"]["name"].as_str(),
        "metadata.namespace" => obj["metadata"]["namespace"].as_str(),
        "type" => obj["type"].as_str(),
        other => panic!("fake API server: unsupported field selector {other}"),
    }
}

#[derive(Debug, Clone, Default)]
struct Filter {
    namespace: Option<String>,
    fields: Vec<(String, String, String)>,
    labels: Vec<(String, String, String)>,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj["metadata"]["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        for (k, op, v) in &self.fields {
            let actual = field_value(obj, k).unwrap_or("");
            let eq = actual == v;
            if (op == "=" && !eq) || (op == "!=" && eq) {
                return false;
            }
        }
        for (k, op, v) in &self.labels {
            let actual = obj["metadata"]["labels"][k.as_str()].as_str();
            let ok = match op.as_str() {
                "=" => actual == Some(v.as_str()),
                "!=" => actual != Some(v.as_str()),
                _ => actual.is_some(),
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// JSON merge patch (RFC 7386); strategic merge and apply patches of the shapes used here mean
/// the same.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn query_map(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(c) => {
                        out.push(c);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parts of a request path.
struct Target {
    ty: Type,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match *segs.first()? {
        "api" if segs.len() >= 2 => (format!("api/{}", segs[1]), &segs[2..]),
        "apis" if segs.len() >= 3 => (format!("apis/{}/{}", segs[1], segs[2]), &segs[3..]),
        _ => return None,
    };
    let (namespace, plural, name, sub) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_string()), rest[2], rest.get(3), rest.get(4))
    } else {
        (None, *rest.first()?, rest.get(1), rest.get(2))
    };
    let ty = *TYPES.iter().find(|t| t.prefix == prefix && t.plural == plural)?;
    Some(Target { ty, namespace, name: name.map(|s| s.to_string()), sub: sub.map(|s| s.to_string()) })
}

impl State {
    fn new() -> Arc<State> {
        let (tx, _) = broadcast::channel(4096);
        Arc::new(State { inner: Mutex::new(Inner::default()), tx })
    }

    /// Records a change and tells the watches (unless `silent`).
    fn commit(&self, inner: &mut Inner, ty: Type, kind: &'static str, mut obj: Value, silent: bool) -> Value {
        inner.rv += 1;
        let rv = inner.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("").to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let key = (ty.id(), ns, name);
        if kind == "DELETED" {
            inner.objects.remove(&key);
        } else {
            inner.objects.insert(key, obj.clone());
        }
        if !silent {
            let entry = Entry { rv, resource: ty.id(), kind, object: obj.clone() };
            inner.log.push(entry.clone());
            let _ = self.tx.send(Signal::Event(entry));
        }
        obj
    }

    /// Creates or replaces an object as a controller-manager would: metadata filled in,
    /// generation bumped when the spec changes.
    fn put(&self, mut obj: Value, silent: bool) -> Value {
        let api_version = obj["apiVersion"].as_str().expect("apiVersion").to_string();
        let kind = obj["kind"].as_str().expect("kind").to_string();
        let ty = type_of(&api_version, &kind);
        if ty.namespaced && obj["metadata"]["namespace"].as_str().is_none() {
            obj["metadata"]["namespace"] = json!("default");
        }
        let ns = if ty.namespaced { obj["metadata"]["namespace"].as_str().unwrap().to_string() } else { String::new() };
        let name = obj["metadata"]["name"].as_str().expect("metadata.name").to_string();
        let mut inner = self.inner.lock().unwrap();
        let existing = inner.objects.get(&(ty.id(), ns, name)).cloned();
        let event = match existing {
            Some(old) => {
                obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
                obj["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                obj["metadata"]["generation"] = json!(if old.get("spec") != obj.get("spec") { generation + 1 } else { generation });
                if obj.get("status").is_none()
                    && let Some(s) = old.get("status")
                {
                    obj["status"] = s.clone();
                }
                "MODIFIED"
            }
            None => {
                inner.next_uid += 1;
                obj["metadata"]["uid"] = json!(format!("uid-{}", inner.next_uid));
                // One second apart, so creation order is the age order.
                obj["metadata"]["creationTimestamp"] = json!(format!("2024-01-01T00:{:02}:{:02}Z", (inner.next_uid / 60) % 60, inner.next_uid % 60));
                obj["metadata"]["generation"] = json!(1);
                "ADDED"
            }
        };
        self.commit(&mut inner, ty, event, obj, silent)
    }
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let state = State::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = serve(listener, state.clone(), None);
        FakeApi { state, addr, server: Mutex::new(Some(server)), tls: None }
    }

    /// Serves HTTPS with a certificate from its own CA, and requires a client certificate
    /// signed by that CA (requests carry no token then).
    pub async fn start_tls() -> FakeApi {
        let tls = TlsMaterial::generate();
        let state = State::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = serve(listener, state.clone(), Some(tls.config.clone()));
        FakeApi { state, addr, server: Mutex::new(Some(server)), tls: Some(tls) }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Writes a kubeconfig with the CA and the client certificate and key as base64 data.
    pub fn kubeconfig_tls(&self, dir: &Path) -> PathBuf {
        use base64::Engine;
        let tls = self.tls.as_ref().expect("an HTTPS fake");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let path = dir.join("kubeconfig-tls");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: cert\ncurrent-context: fake\nusers:\n- name: cert\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            self.url(),
            b64(&tls.ca_pem),
            b64(&tls.client_cert_pem),
            b64(&tls.client_key_pem)
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes a kubeconfig for this server with a bearer token; returns its path.
    pub fn kubeconfig(&self, dir: &Path, token: &str) -> PathBuf {
        let path = dir.join(format!("kubeconfig-{token}"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: {token}\n    namespace: vestibule\ncurrent-context: fake\nusers:\n- name: {token}\n  user:\n    token: {token}\n",
            self.url()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Creates or replaces every object of a YAML text (documents separated by `---`).
    pub fn apply_yaml(&self, yaml: &str) {
        for v in serde_saphyr::from_multiple::<Value>(yaml).unwrap() {
            if !v.is_null() {
                self.apply(v);
            }
        }
    }

    /// Creates or replaces an object; watches see it.
    pub fn apply(&self, obj: Value) -> Value {
        self.state.put(obj, false)
    }

    /// Changes an object as if its watch event were lost: only a relist shows it.
    pub fn set_silently(&self, obj: Value) -> Value {
        self.state.put(obj, true)
    }

    pub fn delete(&self, kind: &str, ns: &str, name: &str) {
        let ty = type_by_kind(kind);
        let mut inner = self.state.inner.lock().unwrap();
        let key = (ty.id(), if ty.namespaced { ns.to_string() } else { String::new() }, name.to_string());
        let obj = inner.objects.get(&key).cloned().unwrap_or_else(|| panic!("fake API server: no {kind} {ns}/{name} to delete"));
        self.state.commit(&mut inner, ty, "DELETED", obj, false);
    }

    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let ty = type_by_kind(kind);
        let inner = self.state.inner.lock().unwrap();
        inner.objects.get(&(ty.id(), if ty.namespaced { ns.to_string() } else { String::new() }, name.to_string())).cloned()
    }

    /// Every object of a kind.
    pub fn list(&self, kind: &str) -> Vec<Value> {
        let id = type_by_kind(kind).id();
        let inner = self.state.inner.lock().unwrap();
        inner.objects.iter().filter(|((r, _, _), _)| *r == id).map(|(_, v)| v.clone()).collect()
    }

    /// Serves only these Gateway API CRD versions, as (kind, version) pairs; the others answer
    /// 404 and are missing from discovery, as in a cluster without them installed.
    pub fn serve_only_crds(&self, served: &[(&str, &str)]) {
        let mut set = std::collections::BTreeSet::new();
        for (kind, version) in served {
            let t = TYPES.iter().find(|t| t.kind == *kind && t.version() == *version && t.is_crd()).unwrap_or_else(|| panic!("fake API server: no CRD {kind} {version}"));
            set.insert(format!("{}/{} {}", t.group(), t.version(), t.plural));
        }
        self.state.inner.lock().unwrap().crds = Some(set);
    }

    /// From now on, Secrets may only be read by name (see `Inner::secrets_get_watch_only`).
    pub fn allow_secrets_get_watch_only(&self) {
        self.state.inner.lock().unwrap().secrets_get_watch_only = true;
    }

    /// From now on, authorize every resource request with the RBAC objects of `manifests` bound
    /// to the ServiceAccount `sa_ns/sa_name`, and refuse the rest with a 403 (see `rbac`).
    pub fn authorize_with(&self, manifests: &str, sa_ns: &str, sa_name: &str) {
        self.state.inner.lock().unwrap().policy = Some(rbac::Policy::from_manifests(manifests, sa_ns, sa_name));
    }

    /// The requests the RBAC policy refused so far.
    pub fn denied(&self) -> Vec<rbac::Attributes> {
        self.state.inner.lock().unwrap().denied.clone()
    }

    pub fn requests(&self) -> Vec<Req> {
        self.state.inner.lock().unwrap().requests.clone()
    }

    /// Ends every open watch with a 410 Gone and forgets the history, so watches resumed from
    /// an older resourceVersion get a 410 too: clients must relist.
    pub fn expire_watches(&self) {
        let mut inner = self.state.inner.lock().unwrap();
        inner.compacted = inner.rv + 1;
        inner.log.clear();
        let _ = self.state.tx.send(Signal::Expire(None));
    }

    /// Stops the server: the listener closes and every connection is cut.
    pub fn kill(&self) {
        if let Some(s) = self.server.lock().unwrap().take() {
            s.accept.abort();
            for c in s.conns.lock().unwrap().drain(..) {
                c.abort();
            }
        }
    }

    /// Starts it again on the same port, with the same objects.
    pub async fn restart(&self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", self.addr),
            }
        };
        *self.server.lock().unwrap() = Some(serve(listener, self.state.clone(), self.tls.as_ref().map(|t| t.config.clone())));
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve(listener: tokio::net::TcpListener, state: Arc<State>, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
    let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
    let c2 = conns.clone();
    let accept = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let state = state.clone();
            let tls = tls.clone();
            let task = tokio::spawn(async move {
                let serve = |io, peer: Option<String>| {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        let peer = peer.clone();
                        async move { Ok::<_, Infallible>(handle(state, req, peer).await) }
                    });
                    hyper::server::conn::http1::Builder::new().serve_connection(io, svc)
                };
                match tls {
                    None => {
                        let _ = serve(TokioIo::new(Box::new(stream) as Box<dyn Io>), None).await;
                    }
                    Some(cfg) => {
                        let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await else { return };
                        let peer = s.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty()).then(|| "client-certificate".to_string());
                        let _ = serve(TokioIo::new(Box::new(s) as Box<dyn Io>), peer).await;
                    }
                }
            });
            let mut c = c2.lock().unwrap();
            c.retain(|h| !h.is_finished());
            c.push(task.abort_handle());
        }
    });
    Server { accept: accept.abort_handle(), conns }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// Serves one request; `peer` names a verified client certificate (recorded as the token
/// when the request carries none).
async fn handle(state: Arc<State>, req: Request<Incoming>, peer: Option<String>) -> Response<Body> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let token = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::to_string).or(peer).unwrap_or_default();
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let bytes = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    state.inner.lock().unwrap().requests.push(Req { method: method.clone(), path: path.clone(), query: query.clone(), token, content_type: content_type.clone(), body: body.clone(), at: std::time::Instant::now() });

    if method == "GET"
        && let Some(doc) = discovery::document(&state.inner.lock().unwrap(), &path)
    {
        return doc;
    }
    let Some(t) = parse_path(&path) else { return error(404, "NotFound", &format!("no resource at {path}")) };
    {
        let mut inner = state.inner.lock().unwrap();
        let attrs = rbac::attributes(&method, &t, &query);
        if inner.policy.as_ref().is_some_and(|p| !p.allows(&attrs)) {
            inner.denied.push(attrs.clone());
            return error(403, "Forbidden", &format!("serviceaccount cannot {attrs}"));
        }
    }
    if !state.inner.lock().unwrap().served(&t.ty) {
        return error(404, "NotFound", &format!("the server could not find the requested resource ({} is not installed)", t.ty.id()));
    }
    let q = query_map(&query);
    let ns = t.namespace.clone().unwrap_or_default();
    if method == "GET" && t.name.is_none() && t.ty.plural == "secrets" && state.inner.lock().unwrap().secrets_get_watch_only {
        let is_watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
        let by_name = q.get("fieldSelector").is_some_and(|f| selectors(f).iter().any(|(k, op, _)| k == "metadata.name" && op == "="));
        if !is_watch || !by_name {
            let verb = if is_watch { "watch" } else { "list" };
            return error(403, "Forbidden", &format!("secrets is forbidden: cannot {verb} resource \"secrets\" without a metadata.name field selector"));
        }
    }
    match (method.as_str(), &t.name) {
        ("GET", None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => watch(&state, &t, &q),
        ("GET", None) => list(&state, &t, &q),
        ("GET", Some(name)) => match state.inner.lock().unwrap().objects.get(&(t.ty.id(), ns.clone(), name.clone())) {
            Some(o) => respond(200, &as_version(o.clone(), &t.ty)),
            None => error(404, "NotFound", &format!("{} \"{name}\" not found", t.ty.plural)),
        },
        ("POST", None) => create(&state, &t, body),
        ("PUT", Some(name)) => replace(&state, &t, name, body),
        ("PATCH", Some(name)) => patch(&state, &t, name, body, &content_type, q.get("fieldManager").cloned().unwrap_or_default()),
        ("DELETE", Some(name)) => {
            let mut inner = state.inner.lock().unwrap();
            match inner.objects.get(&(t.ty.id(), ns.clone(), name.clone())).cloned() {
                Some(o) => {
                    let o = state.commit(&mut inner, t.ty, "DELETED", o, false);
                    respond(200, &as_version(o, &t.ty))
                }
                None => error(404, "NotFound", &format!("{} \"{name}\" not found", t.ty.plural)),
            }
        }
        _ => error(405, "MethodNotAllowed", &format!("{method} {path}")),
    }
}

fn filter_of(t: &Target, q: &HashMap<String, String>) -> Filter {
    Filter {
        namespace: t.namespace.clone(),
        fields: q.get("fieldSelector").map(|s| selectors(s)).unwrap_or_default(),
        labels: q.get("labelSelector").map(|s| selectors(s)).unwrap_or_default(),
    }
}

fn list(state: &State, t: &Target, q: &HashMap<String, String>) -> Response<Body> {
    let filter = filter_of(t, q);
    let inner = state.inner.lock().unwrap();
    let items: Vec<Value> = inner.objects.iter().filter(|((r, _, _), o)| *r == t.ty.id() && filter.matches(o)).map(|(_, o)| as_version(o.clone(), &t.ty)).collect();
    respond(200, &json!({"apiVersion": t.ty.api_version, "kind": format!("{}List", t.ty.kind), "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items}))
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap();
    b.push(b'\n');
    Bytes::from(b)
}

fn watch(state: &Arc<State>, t: &Target, q: &HashMap<String, String>) -> Response<Body> {
    let filter = filter_of(t, q);
    let resource = t.ty.id();
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = q.get("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).unwrap_or(1800);
    let since: Option<u64> = q.get("resourceVersion").and_then(|s| s.parse().ok()).filter(|v| *v > 0);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut replay: Vec<Value> = Vec::new();
    let gone;
    let mut sub;
    let current_rv;
    {
        let inner = state.inner.lock().unwrap();
        sub = state.tx.subscribe();
        current_rv = inner.rv;
        match since {
            Some(rv) if rv < inner.compacted => gone = true,
            Some(rv) => {
                gone = false;
                for e in inner.log.iter().filter(|e| e.rv > rv && e.resource == resource && filter.matches(&e.object)) {
                    replay.push(json!({"type": e.kind, "object": as_version(e.object.clone(), &t.ty)}));
                }
            }
            None => {
                gone = false;
                for ((r, _, _), o) in &inner.objects {
                    if *r == resource && filter.matches(o) {
                        replay.push(json!({"type": "ADDED", "object": as_version(o.clone(), &t.ty)}));
                    }
                }
            }
        }
    }
    let ty = t.ty;
    tokio::spawn(async move {
        let expired = json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")});
        if gone {
            let _ = tx.send(line(&expired)).await;
            return;
        }
        for ev in replay {
            if tx.send(line(&ev)).await.is_err() {
                return;
            }
        }
        if bookmarks {
            let bm = json!({"type": "BOOKMARK", "object": {"apiVersion": ty.api_version, "kind": ty.kind, "metadata": {"resourceVersion": current_rv.to_string()}}});
            if tx.send(line(&bm)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        loop {
            let sig = tokio::select! {
                s = sub.recv() => s,
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            };
            match sig {
                Ok(Signal::Event(e)) => {
                    if e.rv <= current_rv || e.resource != resource || !filter.matches(&e.object) {
                        continue;
                    }
                    if tx.send(line(&json!({"type": e.kind, "object": as_version(e.object, &ty)}))).await.is_err() {
                        return;
                    }
                }
                Ok(Signal::Expire(r)) if r.is_none() || r.as_deref() == Some(resource.as_str()) => {
                    let _ = tx.send(line(&expired)).await;
                    return;
                }
                Ok(Signal::Expire(_)) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = tx.send(line(&expired)).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let mut r = Response::new(ChannelBody(rx).boxed_unsync());
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

fn create(state: &State, t: &Target, mut body: Value) -> Response<Body> {
    if !body.is_object() {
        return error(400, "BadRequest", "body is not an object");
    }
    body["apiVersion"] = json!(t.ty.api_version);
    body["kind"] = json!(t.ty.kind);
    if let Some(ns) = &t.namespace {
        body["metadata"]["namespace"] = json!(ns);
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let Some(name) = body["metadata"]["name"].as_str().map(str::to_string) else { return error(422, "Invalid", "metadata.name is required") };
    if state.inner.lock().unwrap().objects.contains_key(&(t.ty.id(), ns, name.clone())) {
        return error(409, "AlreadyExists", &format!("{} \"{name}\" already exists", t.ty.plural));
    }
    let created = state.put(body, false);
    respond(201, &as_version(created, &t.ty))
}

fn replace(state: &State, t: &Target, name: &str, mut body: Value) -> Response<Body> {
    let ns = t.namespace.clone().unwrap_or_default();
    let key = (t.ty.id(), ns, name.to_string());
    let mut inner = state.inner.lock().unwrap();
    let Some(current) = inner.objects.get(&key).cloned() else { return error(404, "NotFound", &format!("{} \"{name}\" not found", t.ty.plural)) };
    if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
        && Some(rv) != current["metadata"]["resourceVersion"].as_str()
    {
        return error(409, "Conflict", &format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", t.ty.plural));
    }
    let updated = if t.sub.as_deref() == Some("status") {
        let mut o = current.clone();
        o["status"] = body.get("status").cloned().unwrap_or(Value::Null);
        o
    } else {
        body["apiVersion"] = json!(t.ty.api_version);
        body["kind"] = json!(t.ty.kind);
        body["metadata"]["uid"] = current["metadata"]["uid"].clone();
        body["metadata"]["creationTimestamp"] = current["metadata"]["creationTimestamp"].clone();
        body["status"] = current.get("status").cloned().unwrap_or(Value::Null);
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
        body["metadata"]["generation"] = json!(if current.get("spec") != body.get("spec") { generation + 1 } else { generation });
        body
    };
    let o = state.commit(&mut inner, t.ty, "MODIFIED", updated, false);
    respond(200, &as_version(o, &t.ty))
}

fn patch(state: &State, t: &Target, name: &str, body: Value, content_type: &str, field_manager: String) -> Response<Body> {
    let ns = t.namespace.clone().unwrap_or_default();
    let key = (t.ty.id(), ns.clone(), name.to_string());
    let apply = content_type.starts_with("application/apply-patch");
    let mut inner = state.inner.lock().unwrap();
    let current = match inner.objects.get(&key).cloned() {
        Some(c) => c,
        None if apply => json!({"apiVersion": t.ty.api_version, "kind": t.ty.kind, "metadata": {"name": name, "namespace": ns, "uid": format!("uid-apply-{name}"), "creationTimestamp": "2024-01-01T00:00:00Z"}}),
        None => return error(404, "NotFound", &format!("{} \"{name}\" not found", t.ty.plural)),
    };
    // Server-side apply's field ownership, for the one field leader election contends on.
    let lease = (ns.clone(), name.to_string());
    let holder_patch = (t.ty.kind == "Lease").then(|| body.get("spec").and_then(|s| s.get("holderIdentity")).cloned()).flatten();
    if apply
        && let Some(Value::String(new_holder)) = &holder_patch
        && let (Some(cur), Some(owner)) = (current["spec"]["holderIdentity"].as_str(), inner.holder_owner.get(&lease))
        && cur != new_holder
        && *owner != field_manager
    {
        return error(409, "Conflict", &format!("Apply failed with 1 conflict: conflict with \"{owner}\": .spec.holderIdentity"));
    }
    if content_type.starts_with("application/json-patch+json") {
        let mut patched = current.clone();
        if let Err(e) = admission::json_patch(&mut patched, &body) {
            return error(422, "Invalid", &format!("the JSON patch does not apply: {e}"));
        }
        // On the status subresource only the status changes; on the object, everything but
        // the status, and a spec change bumps the generation.
        let mut updated = current.clone();
        if t.sub.as_deref() == Some("status") {
            updated["status"] = patched.get("status").cloned().unwrap_or(Value::Null);
        } else {
            updated = patched;
            updated["status"] = current.get("status").cloned().unwrap_or(Value::Null);
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
            if current.get("spec") != updated.get("spec") {
                updated["metadata"]["generation"] = json!(generation + 1);
            }
        }
        let o = state.commit(&mut inner, t.ty, "MODIFIED", updated, false);
        return respond(200, &as_version(o, &t.ty));
    }
    let mut updated = current.clone();
    let mut patch_body = body.clone();
    if let Some(m) = patch_body.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        m.remove("resourceVersion");
    }
    if t.sub.as_deref() == Some("status") {
        updated["status"] = current.get("status").cloned().unwrap_or(json!({}));
        merge(&mut updated["status"], patch_body.get("status").unwrap_or(&Value::Null));
    } else {
        patch_body.as_object_mut().map(|o| o.remove("status"));
        merge(&mut updated, &patch_body);
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
        if current.get("spec") != updated.get("spec") {
            updated["metadata"]["generation"] = json!(generation + 1);
        }
    }
    match holder_patch {
        Some(Value::Null) => {
            inner.holder_owner.remove(&lease);
        }
        Some(Value::String(_)) => {
            inner.holder_owner.insert(lease, field_manager);
        }
        _ => {}
    }
    let event = if inner.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
    let o = state.commit(&mut inner, t.ty, event, updated, false);
    respond(200, &as_version(o, &t.ty))
}

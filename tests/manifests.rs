//! Reading manifests: every kind of bad manifest is reported with its file, document, line,
//! column and field; good inputs in every accepted shape are read; legacy Ingress versions are
//! converted; and the live file source keeps the last good objects while files are broken.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use vestibule::source::parse::{ParseError, Parsed, parse_text};
use vestibule::store::Object;

const WAIT: Duration = Duration::from_secs(10);

/// A valid Service, used as the first document so that the bad one is not at the top of the file.
const GOOD_SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: good\nspec:\n  ports:\n  - name: http\n    port: 80\n";

/// The 1-based number of the line of `text` equal to `line` (after trimming), which must be unique.
fn line_of(text: &str, line: &str) -> usize {
    let hits: Vec<usize> = text.lines().enumerate().filter(|(_, l)| l.trim() == line.trim()).map(|(i, _)| i + 1).collect();
    assert_eq!(hits.len(), 1, "line {line:?} must occur once in the test manifest");
    hits[0]
}

/// Parses `text` as `file` and returns its only error.
fn only_error(file: &str, text: &str) -> (ParseError, Parsed) {
    let parsed = parse_text(Path::new(file), text);
    assert_eq!(parsed.errors.len(), 1, "expected exactly one error, got {:#?}", parsed.errors);
    (parsed.errors[0].clone(), parsed)
}

/// Every "line N" the text mentions, so that a message cannot name a different line than the error.
fn lines_mentioned(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("line ") {
        rest = &rest[i + 5..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(n) = digits.parse() {
            out.push(n);
        }
    }
    out
}

/// Checks the error's location and its Display form: file, document, line, column, object, field.
fn check(e: &ParseError, file: &str, document: usize, line: usize, object: Option<&str>, field: Option<&str>) {
    let shown = e.to_string();
    assert_eq!(e.file, Path::new(file), "{shown}");
    assert_eq!(e.document, document, "{shown}");
    assert_eq!(e.line, Some(line), "wrong line in: {shown}");
    assert!(e.column.is_some_and(|c| c >= 1), "a column is reported: {shown}");
    assert!(shown.starts_with(&format!("{file}: document {document}, line {line}, column ")), "{shown}");
    if let Some(o) = object {
        assert_eq!(e.object.as_ref().map(|o| o.to_string()).as_deref(), Some(o), "{shown}");
        assert!(shown.contains(o), "{shown}");
    }
    if let Some(f) = field {
        assert_eq!(e.field.as_deref(), Some(f), "{shown}");
        assert!(shown.contains(&format!(": {f}: ")), "{shown}");
    }
    assert!(lines_mentioned(&shown).iter().all(|l| *l == line), "every line the message names is line {line}: {shown}");
}

fn ingress_doc(name: &str, rules: &str) -> String {
    format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\nspec:\n  rules:\n{rules}")
}

fn rule(host: &str, path: &str, path_type: &str, backend: &str) -> String {
    format!("  - host: {host}\n    http:\n      paths:\n      - path: {path}\n        pathType: {path_type}\n        backend:\n{backend}")
}

const SERVICE_BACKEND: &str = "          service:\n            name: good\n            port:\n              number: 80\n";

// ---- 1. Every kind of bad manifest names where it is ----

#[test]
fn yaml_syntax_error_names_file_document_and_line() {
    let text = format!("{GOOD_SERVICE}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: broken\n  labels: {{app: [web}}\nspec: {{}}\n");
    let (e, parsed) = only_error("syntax.yaml", &text);
    assert!(parsed.fatal, "a file that is not YAML is fatal for the file");
    check(&e, "syntax.yaml", 2, line_of(&text, "labels: {app: [web}"), None, None);
}

#[test]
fn yaml_bad_indentation_names_its_line() {
    let text = format!("{GOOD_SERVICE}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: broken\n   extra: indented\nspec: {{}}\n");
    let (e, parsed) = only_error("indent.yaml", &text);
    assert!(parsed.fatal);
    check(&e, "indent.yaml", 2, line_of(&text, "extra: indented"), None, None);
}

#[test]
fn missing_kind_and_missing_api_version() {
    let text = format!("{GOOD_SERVICE}---\napiVersion: v1\nmetadata:\n  name: nokind\n");
    let (e, parsed) = only_error("nokind.yaml", &text);
    assert!(!parsed.fatal);
    assert_eq!(parsed.objects.len(), 1, "the good document is still read");
    assert_eq!(e.document, 2);
    assert_eq!(e.field.as_deref(), Some("kind"));
    let doc_start = GOOD_SERVICE.lines().count() + 2;
    assert_eq!(e.line, Some(doc_start), "a missing field points at its document's first line: {e}");
    let shown = e.to_string();
    assert!(shown.starts_with(&format!("nokind.yaml: document 2, line {doc_start}")) && shown.contains("kind"), "{shown}");

    let text = format!("{GOOD_SERVICE}---\nkind: Service\nmetadata:\n  name: noapi\n");
    let (e, _) = only_error("noapi.yaml", &text);
    assert_eq!(e.document, 2);
    assert_eq!(e.field.as_deref(), Some("apiVersion"));
    assert_eq!(e.line, Some(doc_start), "{e}");
    assert!(e.to_string().starts_with(&format!("noapi.yaml: document 2, line {doc_start}")) && e.to_string().contains("apiVersion"), "{e}");
}

#[test]
fn wrong_type_service_port_names_the_field_and_line() {
    let text = format!("{GOOD_SERVICE}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: typed\nspec:\n  ports:\n  - name: http\n    port: \"abc\"\n");
    let (e, _) = only_error("type.yaml", &text);
    check(&e, "type.yaml", 2, line_of(&text, "port: \"abc\""), Some("Service default/typed"), Some("spec.ports[0].port"));
}

#[test]
fn wrong_type_ingress_paths_names_the_field_and_line() {
    let text = format!("{GOOD_SERVICE}---\n{}", ingress_doc("typed", "  - host: a.com\n    http:\n      paths: 3\n"));
    let (e, _) = only_error("paths.yaml", &text);
    check(&e, "paths.yaml", 2, line_of(&text, "paths: 3"), Some("Ingress default/typed"), Some("spec.rules[0].http.paths"));
}

#[test]
fn invalid_path_type() {
    let text = format!("{GOOD_SERVICE}---\n{}", ingress_doc("pt", &rule("a.com", "/", "Regex", SERVICE_BACKEND)));
    let (e, _) = only_error("pt.yaml", &text);
    check(&e, "pt.yaml", 2, line_of(&text, "pathType: Regex"), Some("Ingress default/pt"), Some("spec.rules[0].http.paths[0].pathType"));
    assert!(e.message.contains("Regex"), "{e}");
}

#[test]
fn prefix_path_must_start_with_slash() {
    let text = format!("{GOOD_SERVICE}---\n{}", ingress_doc("rel", &rule("a.com", "api/v1", "Prefix", SERVICE_BACKEND)));
    let (e, _) = only_error("rel.yaml", &text);
    check(&e, "rel.yaml", 2, line_of(&text, "- path: api/v1"), Some("Ingress default/rel"), Some("spec.rules[0].http.paths[0].path"));
}

#[test]
fn invalid_hosts_uppercase_and_ip() {
    let upper = format!("{GOOD_SERVICE}---\n{}", ingress_doc("upper", &rule("Foo.Example.com", "/", "Prefix", SERVICE_BACKEND)));
    let (e, _) = only_error("upper.yaml", &upper);
    check(&e, "upper.yaml", 2, line_of(&upper, "- host: Foo.Example.com"), Some("Ingress default/upper"), Some("spec.rules[0].host"));

    let two_rules = format!("{}{}", rule("ok.example.com", "/", "Prefix", SERVICE_BACKEND), rule("10.1.2.3", "/", "Prefix", SERVICE_BACKEND));
    let ip = format!("{GOOD_SERVICE}---\n{}", ingress_doc("ip", &two_rules));
    let (e, _) = only_error("ip.yaml", &ip);
    check(&e, "ip.yaml", 2, line_of(&ip, "- host: 10.1.2.3"), Some("Ingress default/ip"), Some("spec.rules[1].host"));
    assert!(e.message.contains("IP"), "{e}");
}

#[test]
fn backend_with_both_or_neither_service_and_resource() {
    let both = "          service:\n            name: good\n            port:\n              number: 80\n          resource:\n            apiGroup: k8s.example.com\n            kind: StorageBucket\n            name: assets\n";
    let text = format!("{GOOD_SERVICE}---\n{}", ingress_doc("both", &rule("a.com", "/", "Prefix", both)));
    let (e, _) = only_error("both.yaml", &text);
    check(&e, "both.yaml", 2, line_of(&text, "backend:"), Some("Ingress default/both"), Some("spec.rules[0].http.paths[0].backend"));

    let text = format!("{GOOD_SERVICE}---\n{}", ingress_doc("neither", &rule("a.com", "/", "Prefix", "          {}\n")));
    let (e, _) = only_error("neither.yaml", &text);
    check(&e, "neither.yaml", 2, line_of(&text, "backend:"), Some("Ingress default/neither"), Some("spec.rules[0].http.paths[0].backend"));
}

#[test]
fn service_port_out_of_range() {
    let text = format!("{GOOD_SERVICE}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: big\nspec:\n  ports:\n  - name: http\n    port: 80\n  - name: huge\n    port: 70000\n");
    let (e, _) = only_error("range.yaml", &text);
    check(&e, "range.yaml", 2, line_of(&text, "port: 70000"), Some("Service default/big"), Some("spec.ports[1].port"));
}

#[test]
fn tls_secret_without_key_in_data() {
    let text = format!("{GOOD_SERVICE}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: half\ntype: kubernetes.io/tls\ndata:\n  tls.crt: YWJj\n");
    let (e, _) = only_error("half.yaml", &text);
    check(&e, "half.yaml", 2, line_of(&text, "data:"), Some("Secret default/half"), Some("data[tls.key]"));
}

#[test]
fn tls_secret_without_key_in_string_data_points_at_string_data() {
    let text = format!("{GOOD_SERVICE}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: half\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: abc\n");
    let (e, _) = only_error("half-string.yaml", &text);
    assert!(e.field.as_deref().is_some_and(|f| f.contains("tls.key")), "{e}");
    assert_eq!(e.line, Some(line_of(&text, "stringData:")), "the error points at the stringData the key is missing from: {e}");
}

#[test]
fn endpoint_slice_with_a_non_ip_address() {
    let text = format!(
        "{GOOD_SERVICE}---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: eps\n  labels:\n    kubernetes.io/service-name: good\naddressType: IPv4\nports:\n- name: http\n  port: 8080\nendpoints:\n- addresses: [\"10.0.0.1\"]\n- addresses:\n  - \"10.0.0.2\"\n  - pod.backend.local\n"
    );
    let (e, _) = only_error("eps.yaml", &text);
    check(&e, "eps.yaml", 2, line_of(&text, "- pod.backend.local"), Some("EndpointSlice default/eps"), Some("endpoints[1].addresses[1]"));
    assert!(e.message.contains("pod.backend.local"), "{e}");
}

#[test]
fn unsupported_api_version_for_a_kind() {
    // apiVersion is not the document's first line, so the error must find it.
    let text = format!("{GOOD_SERVICE}---\n# the old slice API\nkind: EndpointSlice\napiVersion: discovery.k8s.io/v1beta1\nmetadata:\n  name: old\naddressType: IPv4\n");
    let (e, _) = only_error("version.yaml", &text);
    assert_eq!(e.field.as_deref(), Some("apiVersion"), "{e}");
    assert!(e.message.contains("discovery.k8s.io/v1beta1") && e.message.contains("discovery.k8s.io/v1"), "{e}");
    check(&e, "version.yaml", 2, line_of(&text, "apiVersion: discovery.k8s.io/v1beta1"), Some("EndpointSlice default/old"), Some("apiVersion"));

    let text = "apiVersion: networking.k8s.io/v2\nkind: Ingress\nmetadata:\n  name: future\n";
    let (e, _) = only_error("v2.yaml", text);
    assert_eq!(e.line, Some(1), "{e}");
    assert_eq!(e.field.as_deref(), Some("apiVersion"));
    assert!(e.to_string().contains("Ingress default/future") && e.to_string().contains("networking.k8s.io/v2"), "{e}");
}

#[test]
fn json_file_errors_name_their_line() {
    let text = "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Service\",\n  \"metadata\": {\"name\": \"j\"},\n  \"spec\": {\"ports\": [\n    {\"name\": \"http\", \"port\": 70000}\n  ]}\n}\n";
    let (e, _) = only_error("svc.json", text);
    check(&e, "svc.json", 1, 6, Some("Service default/j"), Some("spec.ports[0].port"));
}

// ---- 2. Good inputs ----

fn names(p: &Parsed) -> Vec<String> {
    p.objects.iter().map(|o| o.obj_ref().to_string()).collect()
}

#[test]
fn multi_document_yaml_with_comments_and_empty_documents() {
    let text = format!(
        "# header comment\n---\n{GOOD_SERVICE}---\n---\n# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: second\n  namespace: shop\nspec:\n  ports:\n  - port: 8080\n...\n"
    );
    let p = parse_text(Path::new("multi.yaml"), &text);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(names(&p), vec!["Service default/good", "Service shop/second"]);
}

#[test]
fn json_files_and_kind_list() {
    let json = r#"{
  "apiVersion": "v1",
  "kind": "List",
  "items": [
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "web"}, "spec": {"ports": [{"name": "http", "port": 80}]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "vestibule"}, "spec": {"controller": "vestibule.dev/ingress-controller"}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {}}
  ]
}"#;
    let p = parse_text(Path::new("list.json"), json);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(names(&p), vec!["Service web/svc", "IngressClass vestibule"]);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);

    let single = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "one"}, "spec": {"ports": [{"port": 80}]}}"#;
    let p = parse_text(Path::new("one.json"), single);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(names(&p), vec!["Service default/one"]);

    let yaml_list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: a\n  spec:\n    ports:\n    - port: 80\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: b\n  spec:\n    ports:\n    - port: 81\n";
    let p = parse_text(Path::new("list.yaml"), yaml_list);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(names(&p), vec!["Service default/a", "Service default/b"]);
}

#[test]
fn objects_without_namespace_land_in_default() {
    let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: \"\"\nstringData:\n  x: y\n---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: cls\nspec:\n  controller: vestibule.dev/ingress-controller\n";
    let p = parse_text(Path::new("ns.yaml"), text);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let nss: Vec<Option<String>> = p.objects.iter().map(|o| o.meta().namespace.clone()).collect();
    assert_eq!(nss, vec![Some("default".into()), Some("default".into()), None], "cluster-scoped kinds stay without a namespace");
}

#[test]
fn unknown_kinds_are_skipped_with_a_warning() {
    let text = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  template:\n    spec:\n      containers: [{{name: web, image: nginx}}]\n---\n{GOOD_SERVICE}---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: cert\n"
    );
    let p = parse_text(Path::new("mixed.yaml"), &text);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert!(!p.fatal);
    assert_eq!(names(&p), vec!["Service default/good"]);
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("mixed.yaml") && p.warnings[0].contains("Deployment") && p.warnings[0].contains("web"), "{:?}", p.warnings);
    assert!(p.warnings[1].contains("Certificate") && p.warnings[1].contains("cert"), "{:?}", p.warnings);
}

/// A TLS Secret (without namespace) with its certificate and key base64-encoded under `data`.
fn data_secret_yaml(name: &str, cert_pem: &str, key_pem: &str) -> String {
    Secret::new("", name).type_("kubernetes.io/tls").data("tls.crt", cert_pem.as_bytes()).data("tls.key", key_pem.as_bytes()).to_yaml()
}

#[test]
fn secrets_with_data_and_with_string_data_parse() {
    let issued = vestibule::tls::issue_with_ca(&["a.example.com"]).unwrap();
    let text = format!("{}---\n{}", data_secret_yaml("by-data", &issued.cert_pem, &issued.key_pem), secret_yaml("default", "by-string", &issued.cert_pem, &issued.key_pem));
    let p = parse_text(Path::new("secrets.yaml"), &text);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.objects.len(), 2);
    for obj in &p.objects {
        let Object::Secret(s) = obj else { panic!("a Secret: {obj:?}") };
        vestibule::compile::cert_of_secret(s).unwrap_or_else(|e| panic!("{}: {e}", obj.obj_ref()));
    }
    let Object::Secret(s) = &p.objects[0] else { unreachable!() };
    assert_eq!(s.data.as_ref().unwrap()["tls.crt"].0, issued.cert_pem.as_bytes(), "data is base64-decoded");
}

fn tls_ingress(name: &str, host: &str, secret: &str, svc: &str) -> String {
    Ingress::new("", name).tls(&[host], secret).host_path(host, "/", "Prefix", svc, 80).to_yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_served_from_data_and_string_data_secrets() {
    init_tracing();
    let web = echo("web").await;
    let by_data = vestibule::tls::issue_with_ca(&["data.example.com"]).unwrap();
    let by_string = vestibule::tls::issue_with_ca(&["string.example.com"]).unwrap();
    let m = [
        backend_yaml("default", "web", &[web.addr]),
        data_secret_yaml("by-data", &by_data.cert_pem, &by_data.key_pem),
        secret_yaml("default", "by-string", &by_string.cert_pem, &by_string.key_pem),
        tls_ingress("data", "data.example.com", "by-data", "web"),
        tls_ingress("string", "string.example.com", "by-string", "web"),
    ]
    .join("\n---\n");
    let h = start(&m).await;

    let (cert, _, _) = handshake(h.running.https, Some("data.example.com"), &[&rustls::version::TLS13], &[]).await;
    assert_eq!(cert, der_of(&by_data.cert_pem), "the certificate from the data Secret is served");
    let (cert, _, _) = handshake(h.running.https, Some("string.example.com"), &[&rustls::version::TLS13], &[]).await;
    assert_eq!(cert, der_of(&by_string.cert_pem), "the certificate from the stringData Secret is served");

    let client = h.https_client(&["data.example.com"], &by_data.ca_pem);
    let resp = client.get(h.https("data.example.com", "/x")).send().await.expect("a verified HTTPS request");
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["service"], "web");
}

// ---- 3. Legacy Ingress versions ----

const LEGACY: &str = "apiVersion: extensions/v1beta1
kind: Ingress
metadata:
  name: old-ext
spec:
  rules:
  - host: ext.example.com
    http:
      paths:
      - path: /
        backend:
          serviceName: legacy
          servicePort: 80
---
apiVersion: networking.k8s.io/v1beta1
kind: Ingress
metadata:
  name: old-net
  namespace: default
spec:
  rules:
  - host: net.example.com
    http:
      paths:
      - path: /api
        backend:
          serviceName: legacy
          servicePort: http
---
apiVersion: extensions/v1beta1
kind: Ingress
metadata:
  name: old-default
spec:
  backend:
    serviceName: fallback
    servicePort: web
";

#[test]
fn legacy_ingress_is_converted_with_a_warning_naming_it() {
    let p = parse_text(Path::new("legacy.yaml"), LEGACY);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(names(&p), vec!["Ingress default/old-ext", "Ingress default/old-net", "Ingress default/old-default"]);
    assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("Ingress default/old-ext") && p.warnings[0].contains("extensions/v1beta1"), "{:?}", p.warnings);
    assert!(p.warnings[1].contains("Ingress default/old-net") && p.warnings[1].contains("networking.k8s.io/v1beta1"), "{:?}", p.warnings);
    assert!(p.warnings[2].contains("Ingress default/old-default"), "{:?}", p.warnings);

    let Object::Ingress(ext) = &p.objects[0] else { panic!() };
    let path = &ext.spec.as_ref().unwrap().rules.as_ref().unwrap()[0].http.as_ref().unwrap().paths[0];
    assert_eq!(path.path_type, "ImplementationSpecific", "the old API had no pathType");
    let svc = path.backend.service.as_ref().unwrap();
    assert_eq!((svc.name.as_str(), svc.port.as_ref().unwrap().number), ("legacy", Some(80)));

    let Object::Ingress(net) = &p.objects[1] else { panic!() };
    let svc = net.spec.as_ref().unwrap().rules.as_ref().unwrap()[0].http.as_ref().unwrap().paths[0].backend.service.clone().unwrap();
    assert_eq!(svc.port.unwrap().name.as_deref(), Some("http"));

    let Object::Ingress(def) = &p.objects[2] else { panic!() };
    let svc = def.spec.as_ref().unwrap().default_backend.as_ref().unwrap().service.clone().unwrap();
    assert_eq!((svc.name.as_str(), svc.port.unwrap().name.as_deref()), ("fallback", Some("web")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_ingress_routes_end_to_end() {
    init_tracing();
    let legacy = echo("legacy").await;
    let fallback = echo("fallback").await;
    let fallback_svc = manifest([
        Service::new("", "fallback").port("web", 8000).to_yaml(),
        EndpointSlice::new("", "fallback-1", "fallback").port("web", fallback.addr.port()).endpoint(Endpoint::at("127.0.0.1")).to_yaml(),
    ]);
    let m = format!("{}\n---\n{fallback_svc}---\n{LEGACY}", backend_yaml("default", "legacy", &[legacy.addr]));
    let h = start(&m).await;
    assert_eq!(h.route("ext.example.com", "/anything").await, (200, Some("legacy".into())), "servicePort by number");
    assert_eq!(h.route("net.example.com", "/api/users").await, (200, Some("legacy".into())), "servicePort by name");
    assert_eq!(h.route("net.example.com", "/other").await, (200, Some("fallback".into())), "spec.backend catches the rest");
    assert_eq!(h.route("unknown.example.com", "/").await, (200, Some("fallback".into())), "spec.backend of a rule-less Ingress");
}

// ---- 4. The live file source ----

/// An Ingress (without namespace) sending `host` to `svc`.
fn simple_ingress(name: &str, host: &str, svc: &str) -> String {
    Ingress::new("", name).host_path(host, "/", "Prefix", svc, 80).to_yaml()
}

async fn backends() -> (Echo, Echo, String) {
    let a = echo("svc-a").await;
    let b = echo("svc-b").await;
    let m = format!("{}\n---\n{}", backend_yaml("default", "svc-a", &[a.addr]), backend_yaml("default", "svc-b", &[b.addr]));
    (a, b, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_file_keeps_its_last_good_objects_while_other_files_apply() {
    init_tracing();
    let (_a, _b, backends) = backends().await;
    let h = start(&format!("{backends}\n---\n{}", simple_ingress("one", "one.example.com", "svc-a"))).await;
    h.write("two.yaml", &simple_ingress("two", "two.example.com", "svc-a"));
    h.wait_route("two.example.com", "/", (200, Some("svc-a")), WAIT).await;
    assert_eq!(h.route("one.example.com", "/").await, (200, Some("svc-a".into())));

    // The first file breaks, in an edit that would also have moved one.example.com to svc-b.
    let broken = format!("{backends}\n---\n{}  labels: {{oops: [\n", simple_ingress("one", "one.example.com", "svc-b"));
    assert!(parse_text(Path::new("x.yaml"), &broken).fatal, "the edit is a YAML syntax error");
    h.write("manifests.yaml", &broken);
    // Then the second file changes: that change applies.
    h.write("two.yaml", &format!("{}---\n{}", simple_ingress("two", "two.example.com", "svc-b"), simple_ingress("three", "three.example.com", "svc-b")));
    h.wait_route("two.example.com", "/", (200, Some("svc-b")), WAIT).await;
    h.wait_route("three.example.com", "/", (200, Some("svc-b")), WAIT).await;
    assert_eq!(h.route("one.example.com", "/").await, (200, Some("svc-a".into())), "the broken file's last good Ingress keeps serving");

    // Another change elsewhere does not lose them either.
    h.write("two.yaml", &simple_ingress("two", "two.example.com", "svc-a"));
    h.wait_route("two.example.com", "/", (200, Some("svc-a")), WAIT).await;
    assert_eq!(h.route("three.example.com", "/").await.0, 404, "an Ingress removed from a good file is gone");
    assert_eq!(h.route("one.example.com", "/").await, (200, Some("svc-a".into())));

    // Fixing the first file applies its edit.
    h.write("manifests.yaml", &format!("{backends}\n---\n{}", simple_ingress("one", "one.example.com", "svc-b")));
    h.wait_route("one.example.com", "/", (200, Some("svc-b")), WAIT).await;

    // Deleting a file removes its routes.
    h.remove("two.yaml");
    h.wait_route("two.example.com", "/", (404, None), WAIT).await;
    assert_eq!(h.route("one.example.com", "/").await, (200, Some("svc-b".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_document_keeps_its_last_good_version_while_its_neighbours_update() {
    init_tracing();
    let (_a, _b, backends) = backends().await;
    let h = start(&backends).await;
    h.write("apps.yaml", &format!("{}---\n{}", simple_ingress("app-x", "x.example.com", "svc-a"), simple_ingress("app-y", "y.example.com", "svc-a")));
    h.wait_route("x.example.com", "/", (200, Some("svc-a")), WAIT).await;
    h.wait_route("y.example.com", "/", (200, Some("svc-a")), WAIT).await;

    // x gets an invalid pathType (and a new backend); y moves to svc-b.
    let x_invalid = Ingress::new("", "app-x").host_path("x.example.com", "/", "Regex", "svc-b", 80).to_yaml();
    h.write("apps.yaml", &format!("{x_invalid}---\n{}", simple_ingress("app-y", "y.example.com", "svc-b")));
    h.wait_route("y.example.com", "/", (200, Some("svc-b")), WAIT).await;
    assert_eq!(h.route("x.example.com", "/").await, (200, Some("svc-a".into())), "the invalid document keeps its last good version");

    // A wrong type in x's document (a port number that is not a number, which the builder
    // cannot write) is also kept at the last good version.
    let x_typed = simple_ingress("app-x", "x.example.com", "svc-b").replace("number: 80", "number: eighty");
    h.write("apps.yaml", &format!("{x_typed}---\n{}", simple_ingress("app-y", "y.example.com", "svc-a")));
    h.wait_route("y.example.com", "/", (200, Some("svc-a")), WAIT).await;
    assert_eq!(h.route("x.example.com", "/").await, (200, Some("svc-a".into())));

    // Fixing x applies the fix.
    h.write("apps.yaml", &format!("{}---\n{}", simple_ingress("app-x", "x.example.com", "svc-b"), simple_ingress("app-y", "y.example.com", "svc-a")));
    h.wait_route("x.example.com", "/", (200, Some("svc-b")), WAIT).await;
    assert_eq!(h.route("y.example.com", "/").await, (200, Some("svc-a".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_files_at_start_do_not_stop_the_good_ones() {
    init_tracing();
    let (_a, _b, backends) = backends().await;
    let good = format!("{backends}\n---\n{}", simple_ingress("good", "good.example.com", "svc-a"));
    let h = start_with(&good, |o| {
        let dir = o.manifests[0].clone();
        std::fs::write(dir.join("broken.yaml"), format!("{}  labels: {{oops: [\n", simple_ingress("broken", "broken.example.com", "svc-a"))).unwrap();
        let invalid = Ingress::new("", "invalid").host_path("invalid.example.com", "nope", "Prefix", "svc-a", 80).to_yaml();
        std::fs::write(dir.join("partial.yaml"), format!("{invalid}---\n{}", simple_ingress("partial", "partial.example.com", "svc-b"))).unwrap();
        let json_ingress = Ingress::new("", "json").host_path("json.example.com", "/", "Prefix", "svc-b", 80).to_json();
        std::fs::write(dir.join("list.json"), serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [json_ingress]}).to_string()).unwrap();
    })
    .await;
    let healthz = h.client.get(format!("http://{}/healthz", h.running.healthz)).send().await.unwrap();
    assert_eq!(healthz.status(), 200, "ready despite the broken files");
    assert_eq!(h.route("good.example.com", "/").await, (200, Some("svc-a".into())));
    assert_eq!(h.route("partial.example.com", "/").await, (200, Some("svc-b".into())), "the good document of a partly invalid file serves");
    assert_eq!(h.route("json.example.com", "/").await, (200, Some("svc-b".into())), "a JSON List file serves");
    assert_eq!(h.route("broken.example.com", "/").await.0, 404);
    assert_eq!(h.route("invalid.example.com", "/").await.0, 404);

    // Fixing the broken file brings its Ingress in.
    h.write("broken.yaml", &simple_ingress("broken", "broken.example.com", "svc-b"));
    h.wait_route("broken.example.com", "/", (200, Some("svc-b")), WAIT).await;
}

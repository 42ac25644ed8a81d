//! The install manifests under deploy/: every YAML document parses into its k8s-openapi type,
//! and the properties that matter hold (replicas, probes, security context, least-privilege
//! RBAC, the IngressClass, the Services, the flags), plus the Dockerfile's shape.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde_json::Value;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        // The Helm chart's templates are not plain YAML, and kustomization files are not
        // objects (tests/deploy_overlays.rs renders and checks both).
        if p.file_name().is_some_and(|n| n == "helm" || n == "kustomization.yaml") {
            continue;
        }
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

/// Every document of every file under deploy/, as (file, kind, name, document text).
fn documents() -> Vec<(PathBuf, String, String, String)> {
    let mut files = Vec::new();
    yaml_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy"), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no manifests under deploy/");
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut doc = String::new();
        let mut docs = Vec::new();
        for line in text.lines() {
            if line.trim_end() == "---" {
                docs.push(std::mem::take(&mut doc));
            } else {
                doc.push_str(line);
                doc.push('\n');
            }
        }
        docs.push(doc);
        for doc in docs {
            let v: Value = serde_saphyr::from_str(&doc).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if v.is_null() {
                continue;
            }
            let kind = v["kind"].as_str().unwrap_or_else(|| panic!("{}: a document without kind", f.display())).to_string();
            let name = v["metadata"]["name"].as_str().unwrap_or_else(|| panic!("{}: a {kind} without name", f.display())).to_string();
            out.push((f.clone(), kind, name, doc));
        }
    }
    out
}

/// Deserializes a document into its typed object (serde-saphyr straight into k8s-openapi).
fn typed<T: serde::de::DeserializeOwned>(doc: &str) -> T {
    serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{e}\n{doc}"))
}

fn one<T: serde::de::DeserializeOwned>(docs: &[(PathBuf, String, String, String)], kind: &str, file: &str) -> T {
    let found: Vec<_> = docs.iter().filter(|d| d.1 == kind && d.0.ends_with(file)).collect();
    assert_eq!(found.len(), 1, "expected one {kind} in {file}");
    typed(&found[0].3)
}

#[test]
fn every_document_parses_into_its_type() {
    let docs = documents();
    for (file, kind, name, doc) in &docs {
        let what = format!("{} {kind} {name}", file.display());
        match kind.as_str() {
            "Namespace" => { typed::<Namespace>(doc); }
            "ServiceAccount" => { typed::<ServiceAccount>(doc); }
            "ClusterRole" => { typed::<ClusterRole>(doc); }
            "ClusterRoleBinding" => { typed::<ClusterRoleBinding>(doc); }
            "Role" => { typed::<Role>(doc); }
            "RoleBinding" => { typed::<RoleBinding>(doc); }
            "ConfigMap" => { typed::<ConfigMap>(doc); }
            "IngressClass" => { typed::<IngressClass>(doc); }
            "Service" => { typed::<Service>(doc); }
            "Deployment" => { typed::<Deployment>(doc); }
            "ValidatingWebhookConfiguration" => { typed::<ValidatingWebhookConfiguration>(doc); }
            "GatewayClass" => { typed::<vestibule::gateway_api::GatewayClass>(doc); }
            other => panic!("{what}: unexpected kind {other}"),
        }
        // Everything namespaced lives in `vestibule`.
        let v: Value = serde_saphyr::from_str(doc).unwrap();
        if !matches!(kind.as_str(), "Namespace" | "ClusterRole" | "ClusterRoleBinding" | "IngressClass" | "ValidatingWebhookConfiguration" | "GatewayClass") {
            assert_eq!(v["metadata"]["namespace"], "vestibule", "{what}");
        }
    }
    let kinds: BTreeSet<&str> = docs.iter().map(|d| d.1.as_str()).collect();
    for k in ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "IngressClass", "Service", "Deployment"] {
        assert!(kinds.contains(k), "no {k} under deploy/");
    }
}

fn controller(d: &Deployment) -> &Container {
    let spec = d.spec.template.spec.as_ref().unwrap();
    assert_eq!(spec.containers.len(), 1);
    &spec.containers[0]
}

#[test]
fn deployment() {
    let docs = documents();
    let d: Deployment = one(&docs, "Deployment", "static/vestibule.yaml");
    let spec = &d.spec;
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("vestibule"));
    assert_eq!(pod.security_context.as_ref().and_then(|s| s.run_as_non_root), Some(true));
    // The selector selects the template.
    let labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
    for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
        assert_eq!(labels.get(k), Some(v));
    }

    let c = controller(&d);
    for (name, probe) in [("liveness", &c.liveness_probe), ("readiness", &c.readiness_probe)] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap_or_else(|| panic!("no {name} probe"));
        assert_eq!(get.path.as_deref(), Some("/healthz"), "{name}");
        assert_eq!(serde_json::to_value(&get.port).unwrap(), serde_json::json!(10254), "{name}");
    }
    let sc = c.security_context.as_ref().expect("container securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert!(sc.run_as_user.is_some_and(|u| u != 0));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(caps.add.as_deref(), Some(&["NET_BIND_SERVICE".to_string()][..]));
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref()).expect("resource requests");
    assert!(requests.contains_key("cpu") && requests.contains_key("memory"));

    // POD_NAME and POD_NAMESPACE from the downward API.
    let env: BTreeMap<&str, Option<&str>> = c
        .env
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|e| (e.name.as_str(), e.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).map(|f| f.field_path.as_str())))
        .collect();
    assert_eq!(env.get("POD_NAME"), Some(&Some("metadata.name")));
    assert_eq!(env.get("POD_NAMESPACE"), Some(&Some("metadata.namespace")));

    // Ports, and flags the controller accepts.
    let ports: BTreeSet<i32> = c.ports.as_deref().unwrap_or(&[]).iter().map(|p| p.container_port).collect();
    assert_eq!(ports, BTreeSet::from([80, 443, 8443, 10254]));
    let args = c.args.clone().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("controller"));
    assert!(args.iter().any(|a| a == "--publish-service=$(POD_NAMESPACE)/vestibule-controller"), "{args:?}");
    let expanded: Vec<String> = std::iter::once("vestibule".to_string()).chain(args.iter().map(|a| a.replace("$(POD_NAMESPACE)", "vestibule"))).collect();
    use clap::Parser;
    let cli = vestibule::cli::Cli::try_parse_from(&expanded).unwrap_or_else(|e| panic!("the Deployment's args do not parse: {e}"));
    let vestibule::cli::Command::Controller(a) = cli.command else { panic!("not the controller command") };
    let o = a.into_options();
    assert_eq!(o.publish_service, Some(("vestibule".into(), "vestibule-controller".into())));
    assert_eq!(o.configmap, Some(("vestibule".into(), "vestibule-controller".into())));
    assert_eq!(o.serve.tcp_services, Some(("vestibule".into(), "vestibule-tcp-services".into())));
    assert_eq!(o.serve.udp_services, Some(("vestibule".into(), "vestibule-udp-services".into())));
    assert_eq!((o.serve.http_port, o.serve.https_port, o.serve.healthz_port), (80, 443, 10254));
    let webhook = o.serve.webhook.as_ref().expect("--validating-webhook");
    assert_eq!(webhook.addr, "0.0.0.0:8443".parse().unwrap());
    assert!(webhook.cert_file.is_none(), "the certificate is generated");
    assert_eq!(o.patch_webhook_ca.as_deref(), Some("vestibule-admission"));
    // What the flags name exists in the manifests.
    assert!(docs.iter().any(|d| d.1 == "Service" && d.2 == "vestibule-controller"));
    assert!(docs.iter().any(|d| d.1 == "ConfigMap" && d.2 == "vestibule-controller"));
    for cm in ["vestibule-tcp-services", "vestibule-udp-services"] {
        assert!(docs.iter().any(|d| d.1 == "ConfigMap" && d.2 == cm), "{cm} is shipped");
    }
    let role: Role = one(&docs, "Role", "static/vestibule.yaml");
    assert!(
        role.rules.unwrap_or_default().iter().any(|r| r.resource_names.as_deref().is_some_and(|n| n.contains(&o.election_id))),
        "the Role's Lease rule names the --election-id Lease"
    );
}

#[test]
fn services() {
    let docs = documents();
    let d: Deployment = one(&docs, "Deployment", "static/vestibule.yaml");
    let pod_labels = d.spec.template.metadata.unwrap().labels.unwrap();
    for (file, ty) in [("static/vestibule.yaml", "NodePort"), ("static/service-loadbalancer.yaml", "LoadBalancer")] {
        let s: Service = one(&docs, "Service", file);
        assert_eq!(s.metadata.name.as_deref(), Some("vestibule-controller"), "{file}");
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some(ty), "{file}");
        let ports: BTreeSet<i32> = spec.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, BTreeSet::from([80, 443]), "{file}");
        for (k, v) in spec.selector.unwrap() {
            assert_eq!(pod_labels.get(&k), Some(&v), "{file}: the selector matches the controller's pods");
        }
    }
}

#[test]
fn ingress_class() {
    let docs = documents();
    let c: IngressClass = one(&docs, "IngressClass", "static/vestibule.yaml");
    assert_eq!(c.metadata.name.as_deref(), Some("vestibule"));
    assert_eq!(c.spec.unwrap().controller.as_deref(), Some("vestibule.dev/ingress-controller"));
}

fn rule_set(rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in r.api_groups.as_deref().unwrap_or(&[]) {
            for res in r.resources.as_deref().unwrap_or(&[]) {
                for v in &r.verbs {
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

fn set(items: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    items.iter().map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string())).collect()
}

#[test]
fn rbac_is_least_privilege() {
    let docs = documents();
    // No wildcard anywhere in any RBAC object.
    for (file, kind, name, doc) in &docs {
        if kind == "ClusterRole" || kind == "Role" {
            let v: Value = serde_saphyr::from_str(doc).unwrap();
            assert!(!v.to_string().contains("\"*\""), "{} {kind} {name} has a wildcard", file.display());
        }
    }

    let cr: ClusterRole = one(&docs, "ClusterRole", "static/vestibule.yaml");
    let rules = cr.rules.unwrap();
    assert!(rules.iter().all(|r| r.non_resource_urls.is_none() && r.resource_names.is_none()));
    let mut expected = Vec::new();
    expected.extend([("", "secrets", "get"), ("", "secrets", "watch")]);
    for (g, r) in [("", "services"), ("", "configmaps"), ("", "namespaces"), ("discovery.k8s.io", "endpointslices"), ("networking.k8s.io", "ingresses"), ("networking.k8s.io", "ingressclasses")] {
        for v in ["get", "list", "watch"] {
            expected.push((g, r, v));
        }
    }
    expected.extend([("networking.k8s.io", "ingresses/status", "update"), ("events.k8s.io", "events", "create")]);
    // Gateway API: the six kinds read, the status of the five that have one written.
    for r in ["gatewayclasses", "gateways", "httproutes", "grpcroutes", "tlsroutes", "referencegrants"] {
        for v in ["get", "list", "watch"] {
            expected.push(("gateway.networking.k8s.io", r, v));
        }
    }
    for r in ["gatewayclasses/status", "gateways/status", "httproutes/status", "grpcroutes/status", "tlsroutes/status"] {
        for v in ["update", "patch"] {
            expected.push(("gateway.networking.k8s.io", r, v));
        }
    }
    assert_eq!(rule_set(&rules), set(&expected), "the ClusterRole grants exactly what the controller uses");
    assert!(!rule_set(&rules).contains(&("".to_string(), "secrets".to_string(), "list".to_string())), "Secrets are never listed");


    let role: Role = one(&docs, "Role", "static/vestibule.yaml");
    assert_eq!(role.metadata.namespace.as_deref(), Some("vestibule"));
    let rules = role.rules.unwrap();
    assert_eq!(
        rule_set(&rules),
        set(&[
            ("coordination.k8s.io", "leases", "get"),
            ("coordination.k8s.io", "leases", "patch"),
            ("coordination.k8s.io", "leases", "create"),
            ("events.k8s.io", "events", "create"),
        ])
    );
    // Reading and writing the Lease is limited to the election's Lease (create cannot be).
    for r in &rules {
        if r.resources.as_deref() == Some(&["leases".to_string()][..]) && r.verbs.iter().any(|v| v != "create") {
            assert_eq!(r.resource_names.as_deref(), Some(&["vestibule-leader".to_string()][..]));
        }
    }

    // The bindings give these roles to the controller's ServiceAccount.
    let sa: ServiceAccount = one(&docs, "ServiceAccount", "static/vestibule.yaml");
    let (sa_name, sa_ns) = (sa.metadata.name.unwrap(), sa.metadata.namespace.unwrap());
    let crb: ClusterRoleBinding = one(&docs, "ClusterRoleBinding", "static/vestibule.yaml");
    assert_eq!((crb.role_ref.kind.as_str(), crb.role_ref.name.as_str()), ("ClusterRole", cr.metadata.name.as_deref().unwrap()));
    let rb: RoleBinding = one(&docs, "RoleBinding", "static/vestibule.yaml");
    assert_eq!((rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()), ("Role", role.metadata.name.as_deref().unwrap()));
    for subjects in [crb.subjects.unwrap(), rb.subjects.unwrap()] {
        assert_eq!(subjects.len(), 1);
        assert_eq!((subjects[0].kind.as_str(), subjects[0].name.as_str(), subjects[0].namespace.as_deref()), ("ServiceAccount", sa_name.as_str(), Some(sa_ns.as_str())));
    }
}

#[test]
fn dockerfile_is_multi_stage_and_non_root() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "a builder stage and a runtime stage");
    assert!(froms[0].contains("rust") && froms[0].contains(" AS builder"));
    assert!(!froms.last().unwrap().contains("rust"), "the runtime image carries no toolchain");
    assert!(text.contains("COPY --from=builder"));
    let user = text.lines().rev().find_map(|l| l.trim().strip_prefix("USER ")).expect("a USER");
    let uid: u32 = user.split(':').next().unwrap().parse().expect("a numeric USER, for runAsNonRoot");
    assert_ne!(uid, 0);

    // The same image as deploy/build-image.sh (buildah, offline): both lay out the root
    // filesystem with deploy/image/rootfs.sh on scratch, with the same user and entrypoint.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(froms.last().unwrap().trim(), "FROM scratch");
    assert!(text.contains("deploy/image/rootfs.sh target/release/vestibule /rootfs"));
    assert!(text.contains("COPY --from=builder /rootfs/ /"));
    assert!(text.lines().any(|l| l.trim() == r#"ENTRYPOINT ["/vestibule"]"#));
    let script = std::fs::read_to_string(root.join("deploy/build-image.sh")).unwrap();
    assert!(script.contains("buildah from scratch"));
    assert!(script.contains("deploy/image/rootfs.sh \"$bin\""));
    assert!(script.contains(&format!("--user {user}")), "build-image.sh runs as the Dockerfile's USER {user}");
    assert!(script.contains(r#"--entrypoint '["/vestibule"]'"#));
    let rootfs = std::fs::read_to_string(root.join("deploy/image/rootfs.sh")).unwrap();
    assert!(rootfs.contains(&format!(":{uid}:{uid}:")), "rootfs.sh names user {uid} in /etc/passwd");
    assert!(rootfs.contains("ca-certificates.crt") && rootfs.contains("ldd") && rootfs.contains("cap_net_bind_service"));
    // The Deployment runs the image as that user.
    let d: Deployment = one(&documents(), "Deployment", "static/vestibule.yaml");
    assert_eq!(controller(&d).security_context.as_ref().and_then(|s| s.run_as_user), Some(uid as i64));
}

#[test]
fn webhook() {
    let docs = documents();
    let file = "static/webhook.yaml";
    let v: ValidatingWebhookConfiguration = one(&docs, "ValidatingWebhookConfiguration", file);
    let name = v.metadata.name.clone().unwrap();
    let hooks = v.webhooks.unwrap();
    assert_eq!(hooks.len(), 1);
    let w = &hooks[0];
    assert_eq!(w.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(w.side_effects, "None");
    assert!(w.timeout_seconds.is_some_and(|t| (1..=30).contains(&t)));
    assert_eq!(w.admission_review_versions, ["v1"]);
    assert!(w.object_selector.is_none(), "the webhook itself tells our class from others");
    let rules = w.rules.clone().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].api_groups.as_deref(), Some(&["networking.k8s.io".to_string()][..]));
    assert_eq!(rules[0].resources.as_deref(), Some(&["ingresses".to_string()][..]));
    assert_eq!(rules[0].operations.clone().unwrap(), ["CREATE", "UPDATE"]);
    let svc_ref = w.client_config.service.clone().expect("a Service reference");
    assert_eq!(svc_ref.path.as_deref(), Some(vestibule::webhook::server::PATH));
    assert!(w.client_config.ca_bundle.is_none(), "the controller patches it in");

    // The Service it names exists, selects the controller's pods and reaches the webhook port.
    let svc: Service = one(&docs, "Service", file);
    assert_eq!((svc.metadata.namespace.as_deref(), svc.metadata.name.as_deref()), (Some(svc_ref.namespace.as_str()), Some(svc_ref.name.as_str())));
    assert_eq!(svc_ref.name, vestibule::webhook::SERVICE, "the generated certificate's names are this Service's");
    let spec = svc.spec.unwrap();
    let port = spec.ports.unwrap().into_iter().find(|p| Some(p.port) == svc_ref.port).expect("the referenced port");
    assert_eq!(serde_json::to_value(&port.target_port).unwrap(), "webhook");
    let d: Deployment = one(&docs, "Deployment", "static/vestibule.yaml");
    let c = controller(&d);
    assert!(c.ports.as_deref().unwrap().iter().any(|p| p.name.as_deref() == Some("webhook") && p.container_port == 8443));
    let pod_labels = d.spec.template.metadata.clone().unwrap().labels.unwrap();
    for (k, val) in spec.selector.unwrap() {
        assert_eq!(pod_labels.get(&k), Some(&val));
    }
    let args = c.args.clone().unwrap();
    assert!(args.contains(&format!("--patch-webhook-ca={name}")), "{args:?}");

    // RBAC: only patch, only on that one configuration, bound to the controller.
    let cr: ClusterRole = one(&docs, "ClusterRole", file);
    let rules = cr.rules.unwrap();
    assert_eq!(rule_set(&rules), set(&[("admissionregistration.k8s.io", "validatingwebhookconfigurations", "patch")]));
    assert!(rules.iter().all(|r| r.resource_names.as_deref() == Some(&[name.clone()][..])));
    let crb: ClusterRoleBinding = one(&docs, "ClusterRoleBinding", file);
    assert_eq!(crb.role_ref.name, cr.metadata.name.unwrap());
    let subjects = crb.subjects.unwrap();
    assert_eq!((subjects[0].name.as_str(), subjects[0].namespace.as_deref()), ("vestibule", Some("vestibule")));
}

#[test]
fn gateway_class_and_install_docs() {
    let docs = documents();
    let class: vestibule::gateway_api::GatewayClass = one(&docs, "GatewayClass", "gateway-api/gatewayclass.yaml");
    assert_eq!(class.metadata.name.as_deref(), Some("vestibule"));
    assert_eq!(class.spec.controller_name, vestibule::compile::DEFAULT_GATEWAY_CONTROLLER, "the default --gateway-controller-name");
    assert!(!docs.iter().any(|d| d.1 == "GatewayClass" && d.0.ends_with("static/vestibule.yaml")), "the GatewayClass is applied after the CRDs, not with the controller");
    // Every Gateway API kind the ClusterRole names is one the controller watches.
    let cr: ClusterRole = one(&docs, "ClusterRole", "static/vestibule.yaml");
    let named: BTreeSet<String> = rule_set(&cr.rules.unwrap()).into_iter().filter(|r| r.0 == "gateway.networking.k8s.io" && r.2 == "watch").map(|r| r.1).collect();
    let watched: BTreeSet<String> = vestibule::source::kube_gateway::GATEWAY_KINDS.iter().map(|k| k.plural.to_string()).collect();
    assert_eq!(named, watched);

    // The install doc pins the upstream bundle of the release the types come from.
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/gateway-api-install.md")).unwrap();
    let commands: Vec<&str> = doc.lines().filter(|l| l.starts_with("kubectl apply")).collect();
    assert!(commands.contains(&"kubectl apply --server-side -f https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.5.1/standard-install.yaml"), "{commands:?}");
    assert!(commands.contains(&"kubectl apply --server-side -f https://raw.githubusercontent.com/kubernetes-sigs/gateway-api/v1.5.1/config/crd/experimental/gateway.networking.k8s.io_tlsroutes.yaml"), "{commands:?}");
    assert!(commands.contains(&"kubectl apply -f deploy/gateway-api/gatewayclass.yaml"), "{commands:?}");
    // The versions the doc names are those the shared CRDs of that release serve.
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/crds/gateway-api");
    if let Ok(source) = std::fs::read_to_string(crds.join("SOURCE.txt")) {
        assert!(source.contains("tag v1.5.1"), "{source}");
        for k in vestibule::source::kube_gateway::GATEWAY_KINDS {
            let channel = if k.kind == "TLSRoute" { "experimental" } else { "standard" };
            let text = std::fs::read_to_string(crds.join(format!("{channel}/gateway.networking.k8s.io_{}.yaml", k.plural))).unwrap();
            let crd: Value = serde_saphyr::from_str(&text).unwrap();
            let served: Vec<&str> = crd["spec"]["versions"].as_array().unwrap().iter().filter(|v| v["served"] == true).filter_map(|v| v["name"].as_str()).collect();
            for v in k.versions {
                assert!(served.contains(v), "{} {v} is served by the v1.5.1 CRD ({served:?})", k.kind);
            }
        }
    }
}

/// deploy/static/vestibule-namespaced.yaml: --watch-namespace with a Role in that namespace,
/// and cluster-wide only the cluster-scoped kinds the controller reads.
#[test]
fn namespaced_manifest_reads_nothing_outside_its_namespace() {
    let docs = documents();
    let file = "static/vestibule-namespaced.yaml";
    let d: Deployment = one(&docs, "Deployment", file);
    let args = controller(&d).args.clone().unwrap();
    let watched = args.iter().find_map(|a| a.strip_prefix("--watch-namespace=")).expect("--watch-namespace").to_string();
    assert_eq!(watched, "vestibule");
    // Otherwise the controller of vestibule.yaml, without the webhook.
    let full: Deployment = one(&docs, "Deployment", "static/vestibule.yaml");
    let mut expected = controller(&full).args.clone().unwrap();
    expected.retain(|a| !a.contains("webhook"));
    expected.push(format!("--watch-namespace={watched}"));
    assert_eq!(args, expected);

    let cr: ClusterRole = one(&docs, "ClusterRole", file);
    let cluster_scoped = ["namespaces", "ingressclasses", "gatewayclasses", "gatewayclasses/status"];
    for r in cr.rules.as_deref().unwrap() {
        for res in r.resources.as_deref().unwrap() {
            assert!(cluster_scoped.contains(&res.as_str()), "the ClusterRole grants {:?} on the namespaced {res}", r.verbs);
            if res == "namespaces" {
                assert_eq!(r.resource_names.as_deref(), Some(&[watched.clone()][..]), "only the watched Namespace");
            }
        }
    }
    let found: Vec<Role> = docs.iter().filter(|d| d.1 == "Role" && d.2 == "vestibule-watch" && d.0.ends_with(file)).map(|d| typed(&d.3)).collect();
    assert_eq!(found.len(), 1);
    let role = &found[0];
    assert_eq!(role.metadata.namespace.as_deref(), Some(watched.as_str()), "the Role is in the watched namespace");
    let rules = rule_set(role.rules.as_deref().unwrap());
    assert_eq!(rules.iter().filter(|(_, r, _)| r == "secrets").map(|(_, _, v)| v.as_str()).collect::<Vec<_>>(), vec!["get", "watch"], "Secrets: get and watch only");
    for (g, r) in [("networking.k8s.io", "ingresses"), ("", "services"), ("discovery.k8s.io", "endpointslices")] {
        assert!(rules.contains(&(g.to_string(), r.to_string(), "watch".to_string())), "{r}");
    }
    let rb: Vec<RoleBinding> = docs.iter().filter(|d| d.1 == "RoleBinding" && d.2 == "vestibule-watch" && d.0.ends_with(file)).map(|d| typed(&d.3)).collect();
    assert_eq!(rb.len(), 1);
    assert_eq!(rb[0].metadata.namespace.as_deref(), Some(watched.as_str()));
    assert_eq!(rb[0].role_ref.name, "vestibule-watch");
    let s = &rb[0].subjects.as_deref().unwrap()[0];
    assert_eq!((s.kind.as_str(), s.name.as_str(), s.namespace.as_deref()), ("ServiceAccount", "vestibule", Some("vestibule")));
}

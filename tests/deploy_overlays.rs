//! The kustomize base and overlays under deploy/: each overlay is rendered here (the subset
//! of kustomize they use: `resources` lists of files and directories, no patches, no
//! generators), and the rendered objects are checked: they equal the objects of the
//! deploy/static/ files, and they keep the properties that matter (RBAC verbs, probes, ports,
//! the security context). Where `kubectl` is on the PATH, `kubectl kustomize` must render the
//! same objects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use serde_json::Value;

/// (kind, namespace, name): how kustomize identifies an object.
type Id = (String, String, String);

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The non-empty documents of a multi-document YAML text.
fn parse_docs(text: &str, what: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let d = docs.last_mut().unwrap();
            d.push_str(line);
            d.push('\n');
        }
    }
    docs.iter()
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn id(v: &Value, what: &str) -> Id {
    let s = |x: &Value| x.as_str().unwrap_or("").to_string();
    let id = (s(&v["kind"]), s(&v["metadata"]["namespace"]), s(&v["metadata"]["name"]));
    assert!(!id.0.is_empty() && !id.2.is_empty(), "{what}: an object without kind or name");
    id
}

/// Renders a kustomization directory: its `resources`, files and directories, in order.
/// Any other field is refused, so that an overlay growing a patch fails here rather than
/// being checked wrongly.
fn render(dir: &Path) -> BTreeMap<Id, Value> {
    let file = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let k: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_eq!(k["apiVersion"], "kustomize.config.k8s.io/v1beta1", "{}", file.display());
    assert_eq!(k["kind"], "Kustomization", "{}", file.display());
    for key in k.as_object().unwrap().keys() {
        assert!(matches!(key.as_str(), "apiVersion" | "kind" | "resources"), "{}: `{key}` is not rendered by this test", file.display());
    }
    let mut out = BTreeMap::new();
    for r in k["resources"].as_array().expect("resources") {
        let path = dir.join(r.as_str().expect("a resource path"));
        let objects: Vec<(Id, Value)> = if path.is_dir() {
            render(&path).into_iter().collect()
        } else {
            assert!(path.starts_with(dir), "{}: kustomize loads files only from under the kustomization's directory", path.display());
            let what = path.display().to_string();
            parse_docs(&std::fs::read_to_string(&path).unwrap(), &what).into_iter().map(|v| (id(&v, &what), v)).collect()
        };
        for (i, v) in objects {
            assert!(out.insert(i.clone(), v).is_none(), "{}: {i:?} twice", dir.display());
        }
    }
    out
}

fn file_objects(rel: &str) -> BTreeMap<Id, Value> {
    let text = std::fs::read_to_string(deploy().join(rel)).unwrap();
    parse_docs(&text, rel).into_iter().map(|v| (id(&v, rel), v)).collect()
}

const OVERLAYS: [&str; 3] = ["controller", "webhook", "gateway-api"];

#[test]
fn overlays_render_the_static_files() {
    let controller = file_objects("static/vestibule.yaml");
    assert_eq!(render(&deploy().join("base")), controller, "deploy/base and deploy/static/vestibule.yaml hold the same objects");
    assert_eq!(render(&deploy().join("overlays/controller")), controller);

    let mut webhook = controller.clone();
    let hook = file_objects("static/webhook.yaml");
    assert_eq!(hook.len(), 4);
    webhook.extend(hook);
    assert_eq!(render(&deploy().join("overlays/webhook")), webhook, "the webhook overlay is vestibule.yaml plus webhook.yaml");

    let mut gateway = controller.clone();
    gateway.extend(file_objects("gateway-api/gatewayclass.yaml"));
    let rendered = render(&deploy().join("overlays/gateway-api"));
    assert_eq!(rendered, gateway);
    // The upstream CRDs are not copied in: the overlay only documents the pinned bundle.
    assert!(!rendered.keys().any(|k| k.0 == "CustomResourceDefinition"));
    let k = std::fs::read_to_string(deploy().join("overlays/gateway-api/kustomization.yaml")).unwrap();
    assert!(k.contains("gateway-api/releases/download/v1.5.1/standard-install.yaml"), "the pinned bundle is named");
}

/// `kubectl kustomize` (kustomize itself) renders what this test renders. Skipped where no
/// kubectl is installed.
#[test]
fn kubectl_kustomize_agrees() {
    let Ok(out) = std::process::Command::new("kubectl").arg("version").arg("--client").output() else {
        eprintln!("kubectl is not installed: skipping the comparison with kustomize");
        return;
    };
    assert!(out.status.success());
    for o in OVERLAYS {
        let dir = deploy().join("overlays").join(o);
        let out = std::process::Command::new("kubectl").arg("kustomize").arg(&dir).output().unwrap();
        assert!(out.status.success(), "kubectl kustomize {o}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let theirs: BTreeMap<Id, Value> = parse_docs(&text, o).into_iter().map(|v| (id(&v, o), v)).collect();
        assert_eq!(theirs, render(&dir), "overlay {o}");
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}\n{v}"))
}

fn one<T: serde::de::DeserializeOwned>(objs: &BTreeMap<Id, Value>, kind: &str, name: &str) -> T {
    let v = objs.iter().find(|(k, _)| k.0 == kind && k.2 == name).unwrap_or_else(|| panic!("no {kind} {name}")).1;
    typed(v)
}

fn verbs(rules: &[PolicyRule]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in r.api_groups.as_deref().unwrap_or(&[]) {
            for res in r.resources.as_deref().unwrap_or(&[]) {
                for v in &r.verbs {
                    out.insert(format!("{g}/{res}:{v}"));
                }
            }
        }
    }
    out
}

#[test]
fn rendered_overlays_keep_what_matters() {
    for o in OVERLAYS {
        let objs = render(&deploy().join("overlays").join(o));

        // RBAC: no wildcard, `list` (and `watch`) only on what the controller reads, and
        // writes only on status subresources, the Lease and Events.
        for ((kind, _, name), v) in &objs {
            if kind != "ClusterRole" && kind != "Role" {
                continue;
            }
            assert!(!v.to_string().contains("\"*\""), "{o}: {kind} {name} has a wildcard");
            let rules: Vec<PolicyRule> = typed(&v["rules"]);
            for rv in verbs(&rules) {
                let (what, verb) = rv.rsplit_once(':').unwrap();
                let ok = match verb {
                    "get" | "list" | "watch" => !what.ends_with("/status") && !what.contains("webhook"),
                    "update" | "patch" => what.ends_with("/status") || what == "coordination.k8s.io/leases" || (what == "admissionregistration.k8s.io/validatingwebhookconfigurations" && verb == "patch"),
                    "create" => what == "events.k8s.io/events" || what == "coordination.k8s.io/leases",
                    _ => false,
                };
                assert!(ok, "{o}: {kind} {name} grants {rv}");
            }
        }
        let cr: ClusterRole = one(&objs, "ClusterRole", "vestibule");
        let listed: BTreeSet<String> = verbs(&cr.rules.unwrap()).into_iter().filter_map(|v| v.strip_suffix(":list").map(str::to_string)).collect();
        let expected: BTreeSet<String> = [
            "/services", "/configmaps", "/namespaces", "discovery.k8s.io/endpointslices", "networking.k8s.io/ingresses", "networking.k8s.io/ingressclasses",
            "gateway.networking.k8s.io/gatewayclasses", "gateway.networking.k8s.io/gateways", "gateway.networking.k8s.io/httproutes",
            "gateway.networking.k8s.io/grpcroutes", "gateway.networking.k8s.io/tlsroutes", "gateway.networking.k8s.io/referencegrants",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(listed, expected, "{o}: what the ClusterRole may list");
        assert!(!listed.contains("/secrets"), "{o}: Secrets are never listed");
        let role: Role = one(&objs, "Role", "vestibule");
        assert!(!verbs(&role.rules.unwrap()).iter().any(|v| v.ends_with(":list")), "{o}: the namespaced Role lists nothing");

        // The Deployment: probes on /healthz, the ports (UDP 443 for HTTP/3), the security context.
        let d: Deployment = one(&objs, "Deployment", "vestibule-controller");
        let pod = d.spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.security_context.as_ref().and_then(|s| s.run_as_non_root), Some(true), "{o}");
        let c = &pod.containers[0];
        for probe in [&c.liveness_probe, &c.readiness_probe] {
            let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("an httpGet probe");
            assert_eq!(get.path.as_deref(), Some("/healthz"), "{o}");
        }
        let ports: BTreeSet<(i32, String)> = c.ports.as_deref().unwrap().iter().map(|p| (p.container_port, p.protocol.clone().unwrap_or_default())).collect();
        for p in [(80, "TCP"), (443, "TCP"), (443, "UDP"), (10254, "TCP")] {
            assert!(ports.contains(&(p.0, p.1.to_string())), "{o}: container port {p:?}");
        }
        let sc = c.security_context.as_ref().expect("a container securityContext");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{o}");
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{o}");
        assert_eq!(sc.run_as_non_root, Some(true), "{o}");
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(caps.add.as_deref(), Some(&["NET_BIND_SERVICE".to_string()][..]), "{o}");
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]), "{o}");

        let s: Service = one(&objs, "Service", "vestibule-controller");
        let sp: BTreeSet<(i32, String)> = s.spec.unwrap().ports.unwrap().iter().map(|p| (p.port, p.protocol.clone().unwrap_or_default())).collect();
        assert_eq!(sp, [(80, "TCP"), (443, "TCP"), (443, "UDP")].iter().map(|(p, q)| (*p, q.to_string())).collect(), "{o}: Service ports");

        let has_webhook = objs.keys().any(|k| k.0 == "ValidatingWebhookConfiguration");
        assert_eq!(has_webhook, o == "webhook", "{o}: the webhook registration is in the webhook overlay only");
        let has_class = objs.keys().any(|k| k.0 == "GatewayClass");
        assert_eq!(has_class, o == "gateway-api", "{o}: the GatewayClass is in the gateway-api overlay only");
    }
}

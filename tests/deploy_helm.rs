//! The Helm chart under deploy/helm/vestibule. No helm binary is available to render it, so
//! this checks what can be checked without one: Chart.yaml and values.yaml parse and carry
//! ingress-nginx's value names, every `.Values.X` a template uses exists in values.yaml, the
//! template actions are balanced, and the templates create the same kinds and names as the
//! kustomize webhook overlay (the namespace aside, which is the release's).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/vestibule")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn templates() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(chart().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 5, "templates: {out:?}");
    out
}

/// The contents of every `{{ ... }}` action in a template.
fn actions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        let j = rest[i..].find("}}").unwrap_or_else(|| panic!("an unclosed action in {rest}"));
        out.push(rest[i + 2..i + j].trim_matches(|c: char| c == '-' || c.is_whitespace()).to_string());
        rest = &rest[i + j + 2..];
    }
    out
}

#[test]
fn chart_and_values_parse() {
    let c = yaml(&chart().join("Chart.yaml"));
    assert_eq!(c["apiVersion"], "v2");
    assert_eq!(c["name"], "vestibule");
    assert!(c["version"].is_string() && c["appVersion"].is_string());

    let v = yaml(&chart().join("values.yaml"));
    let ctl = &v["controller"];
    assert_eq!(ctl["replicaCount"], 2);
    assert_eq!(ctl["service"]["type"], "NodePort");
    let class = &ctl["ingressClassResource"];
    assert_eq!(class["name"], "vestibule");
    assert_eq!(class["enabled"], true);
    assert_eq!(class["default"], false);
    assert_eq!(class["controllerValue"], "vestibule.dev/ingress-controller");
    assert!(ctl["config"].is_object());
    assert_eq!(ctl["admissionWebhooks"]["enabled"], true);
    assert!(v["tcp"].is_object() && v["udp"].is_object());
}

#[test]
fn every_value_a_template_uses_exists() {
    let values = yaml(&chart().join("values.yaml"));
    let mut used = BTreeSet::new();
    for (name, text) in templates().iter().chain([("NOTES.txt".to_string(), std::fs::read_to_string(chart().join("templates/NOTES.txt")).unwrap())].iter()) {
        let mut depth = 0i32;
        for a in actions(text) {
            let word = a.split_whitespace().next().unwrap_or("");
            match word {
                "if" | "with" | "range" => depth += 1,
                "end" => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0, "{name}: an `end` without its block");
            let mut rest = a.as_str();
            while let Some(i) = rest.find(".Values.") {
                let path: String = rest[i + 8..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_').collect();
                rest = &rest[i + 8 + path.len()..];
                let mut v = &values;
                for key in path.split('.') {
                    v = v.get(key).unwrap_or_else(|| panic!("{name}: .Values.{path} is not in values.yaml"));
                }
                used.insert(path);
            }
        }
        assert_eq!(depth, 0, "{name}: unbalanced if/with/range and end");
    }
    for name in ["controller.replicaCount", "controller.service.type", "controller.ingressClassResource.enabled", "controller.ingressClassResource.default", "controller.admissionWebhooks.enabled", "controller.config", "tcp", "udp"] {
        assert!(used.contains(name), "no template uses .Values.{name}: {used:?}");
    }
}

/// (kind, name) of the objects a set of YAML documents declares, reading only the top-level
/// `kind:` and the first `  name:` under `metadata:` of each document.
fn kinds_and_names(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for doc in text.split("\n---\n") {
        let kind = doc.lines().find_map(|l| l.strip_prefix("kind: "));
        let name = doc.lines().skip_while(|l| *l != "metadata:").find_map(|l| l.strip_prefix("  name: "));
        if let (Some(k), Some(n)) = (kind, name) {
            out.insert((k.trim().to_string(), n.trim().to_string()));
        }
    }
    out
}

#[test]
fn templates_declare_the_webhook_overlay_objects() {
    let mut chart_objects = BTreeSet::new();
    for (_, text) in templates() {
        chart_objects.extend(kinds_and_names(&text));
    }
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut overlay = BTreeSet::new();
    for f in ["static/vestibule.yaml", "static/webhook.yaml"] {
        overlay.extend(kinds_and_names(&std::fs::read_to_string(deploy.join(f)).unwrap()));
    }
    // The chart installs into the release's namespace instead of creating one, and names the
    // IngressClass from controller.ingressClassResource.name.
    overlay.remove(&("Namespace".to_string(), "vestibule".to_string()));
    overlay.remove(&("IngressClass".to_string(), "vestibule".to_string()));
    assert!(chart_objects.remove(&("IngressClass".to_string(), "{{ .Values.controller.ingressClassResource.name }}".to_string())));
    assert_eq!(chart_objects, overlay);
}

//! Regex paths: the first line is a path as an Ingress writes it (compiled as the route's
//! `(?i)^PATH` expression, then through compile with `use-regex`), the following lines are request
//! paths matched against it. Never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vestibule::config::PathKind;
use vestibule::config::route::{PathMatch, Pattern};

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.lines();
    let source = lines.next().unwrap_or("");
    if let Ok(p) = Pattern::new(&format!("(?i)^{source}")) {
        let m = PathMatch { path: source.to_string(), kind: PathKind::Regex, regex: Some(p) };
        for req in lines.take(8) {
            let _ = m.matches(&vestibule::config::path::normalize_path(req));
        }
    }
    let backend = serde_json::json!({"service": {"name": "web", "port": {"number": 80}}});
    let ing = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "re", "namespace": "default", "annotations": {
            "nginx.ingress.kubernetes.io/use-regex": "true",
            "nginx.ingress.kubernetes.io/rewrite-target": "/$1/$2",
        }},
        "spec": {"ingressClassName": "vestibule", "rules": [{"host": "re.example.com", "http": {"paths": [
            {"path": source, "pathType": "ImplementationSpecific", "backend": backend},
            {"path": "/", "pathType": "Prefix", "backend": backend},
        ]}}]}
    });
    let mut store = common::base_store();
    common::add_text(&mut store, "ingress.json", &ing.to_string());
    common::compile(&store);
});

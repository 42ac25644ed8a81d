//! Controller ConfigMap values: `key=value` lines as the data of the `--configmap`, over an
//! Ingress with a few annotations, compiled with the fixed cluster.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let data: serde_json::Map<String, serde_json::Value> = common::pairs(text, 48, false).into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
    let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "vestibule", "namespace": "default"}, "data": data});
    let mut store = common::base_store();
    common::add_text(&mut store, "configmap.json", &cm.to_string());
    let ann = [("nginx.ingress.kubernetes.io/use-regex".to_string(), "true".to_string()), ("nginx.ingress.kubernetes.io/custom-headers".to_string(), "default/headers".to_string())];
    common::add_text(&mut store, "ingress.json", &common::ingress_json("app", "app.example.com", &ann));
    common::compile(&store);
});

//! Gateway API objects for tests, written as JSON documents (which manifests accept as YAML).

use serde_json::{Value, json};

/// The default `--gateway-controller-name`.
pub const CONTROLLER: &str = "vestibule.dev/gateway-controller";

pub fn gateway_class(name: &str, controller: &str) -> String {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": name}, "spec": {"controllerName": controller}}).to_string()
}

/// A listener: `{"name", "port", "protocol"}` plus what `extra` adds (hostname, tls, ...).
pub fn listener(name: &str, port: u16, protocol: &str, extra: Value) -> Value {
    let mut l = json!({"name": name, "port": port, "protocol": protocol});
    merge(&mut l, extra);
    l
}

pub fn gateway(ns: &str, name: &str, class: &str, listeners: Vec<Value>) -> String {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
           "metadata": {"namespace": ns, "name": name, "generation": 1, "creationTimestamp": "2024-01-01T00:00:00Z"},
           "spec": {"gatewayClassName": class, "listeners": listeners}})
    .to_string()
}

/// A route of `kind` (HTTPRoute, GRPCRoute, TLSRoute) with its spec as given.
pub fn route(kind: &str, ns: &str, name: &str, created: &str, spec: Value) -> String {
    let api = if kind == "TLSRoute" { "gateway.networking.k8s.io/v1alpha2" } else { "gateway.networking.k8s.io/v1" };
    json!({"apiVersion": api, "kind": kind, "metadata": {"namespace": ns, "name": name, "generation": 1, "creationTimestamp": created}, "spec": spec}).to_string()
}

/// A backendRef to `service` port 80 with `weight`.
pub fn backend_ref(service: &str, weight: i32) -> Value {
    json!({"name": service, "port": 80, "weight": weight})
}

pub fn reference_grant(ns: &str, name: &str, from_kind: &str, from_ns: &str, to_kind: &str) -> String {
    json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant", "metadata": {"namespace": ns, "name": name},
           "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": from_kind, "namespace": from_ns}],
                    "to": [{"group": "", "kind": to_kind}]}})
    .to_string()
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), extra) {
        a.extend(b);
    }
}

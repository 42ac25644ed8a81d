//! Services as the store keeps them: only what compile reads.
//!
//! A Kubernetes `Service` is about 840 bytes inline (every optional field of its spec and
//! status) before its labels, selector and ports, each a map node or vector of its own. At
//! 10,000 Ingresses with five Services each, that was about 75 MB of the store. The store keeps
//! this form instead, converted as objects arrive from either source; compile sees only it.

use k8s_openapi::api::core::v1::Service;

/// One Service: its name, its type as far as routing cares, its ClusterIP and its ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Svc {
    pub namespace: String,
    pub name: String,
    /// `spec.type` is `ExternalName`: there is nothing to route to (no endpoints).
    pub external_name: bool,
    /// `spec.clusterIP` as written: `"None"` for a headless Service, absent when unset.
    pub cluster_ip: Option<String>,
    pub ports: Box<[SvcPort]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SvcPort {
    pub name: Option<String>,
    pub port: i32,
    /// `appProtocol`: how the Gateway API reaches the port (`kubernetes.io/h2c`, `https`, ...).
    pub app_protocol: Option<String>,
}

impl Svc {
    /// The port an Ingress or a route names, by number or by name.
    pub fn port_numbered(&self, n: i32) -> Option<&SvcPort> {
        self.ports.iter().find(|p| p.port == n)
    }

    pub fn port_named(&self, name: &str) -> Option<&SvcPort> {
        self.ports.iter().find(|p| p.name.as_deref() == Some(name))
    }
}

impl From<&Service> for Svc {
    fn from(s: &Service) -> Self {
        let spec = s.spec.as_ref();
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or(&[]);
        Svc {
            namespace: s.metadata.namespace.clone().unwrap_or_default(),
            name: s.metadata.name.clone().unwrap_or_default(),
            external_name: spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName"),
            cluster_ip: spec.and_then(|s| s.cluster_ip.clone()),
            ports: ports.iter().map(|p| SvcPort { name: p.name.clone(), port: p.port, app_protocol: p.app_protocol.clone() }).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_compile_reads() {
        let k: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.96.0.10",
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                    {"name": "grpc", "port": 9090, "appProtocol": "kubernetes.io/h2c"},
                ],
            },
        }))
        .unwrap();
        let s = Svc::from(&k);
        assert_eq!((s.namespace.as_str(), s.name.as_str(), s.external_name), ("shop", "web", false));
        assert_eq!(s.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert_eq!(s.port_numbered(80).and_then(|p| p.name.as_deref()), Some("http"));
        assert_eq!(s.port_named("grpc").map(|p| (p.port, p.app_protocol.as_deref())), Some((9090, Some("kubernetes.io/h2c"))));
        assert!(s.port_numbered(8080).is_none(), "a target port is not a Service port");
        assert!(s.port_named("none").is_none());

        let external: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ext", "namespace": "shop"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"},
        }))
        .unwrap();
        let e = Svc::from(&external);
        assert!(e.external_name);
        assert!(e.ports.is_empty() && e.cluster_ip.is_none());
    }
}

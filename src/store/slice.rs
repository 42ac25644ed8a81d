//! EndpointSlices as the store keeps them: only what compile reads.
//!
//! A Kubernetes `EndpointSlice` spends about 350 bytes on each endpoint before any of its
//! addresses (every optional field of an endpoint, its target reference and hints, inline), and
//! a map node on its labels. At 10,000 Ingresses with five Services each, that was 200 MB of
//! the store. The store keeps this form instead, converted as objects arrive from either
//! source; nothing downstream sees the Kubernetes type.

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::SERVICE_NAME_LABEL;

/// One EndpointSlice: its name, its Service, and its ports and endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    pub namespace: String,
    pub name: String,
    /// The `kubernetes.io/service-name` label: the Service the slice belongs to.
    pub service: Option<String>,
    /// `addressType`: IPv4, IPv6 or FQDN (or what the object said, for validation to refuse).
    pub address_type: String,
    pub ports: Box<[SlicePort]>,
    pub endpoints: Box<[SliceEndpoint]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePort {
    pub name: Option<String>,
    pub port: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceEndpoint {
    pub addresses: Box<[String]>,
    /// `conditions.ready` and `conditions.terminating`, absent when the object left them out.
    pub ready: Option<bool>,
    pub terminating: Option<bool>,
}

impl From<&EndpointSlice> for Slice {
    fn from(s: &EndpointSlice) -> Self {
        let ports = s.ports.iter().flatten().map(|p| SlicePort { name: p.name.clone(), port: p.port }).collect();
        let endpoints = s.endpoints.iter().flatten().map(|e| {
            let cond = e.conditions.as_ref();
            SliceEndpoint {
                addresses: e.addresses.clone().into_boxed_slice(),
                ready: cond.and_then(|c| c.ready),
                terminating: cond.and_then(|c| c.terminating),
            }
        });
        Slice {
            namespace: s.metadata.namespace.clone().unwrap_or_default(),
            name: s.metadata.name.clone().unwrap_or_default(),
            service: s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).cloned(),
            address_type: s.address_type.clone(),
            ports,
            endpoints: endpoints.collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_compile_reads() {
        let k: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-abc", "namespace": "shop", "labels": {SERVICE_NAME_LABEL: "web", "other": "x"}, "annotations": {"a": "b"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"port": 9090}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true, "serving": true, "terminating": false}, "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "p"}},
                {"addresses": ["10.0.0.2", "10.0.0.3"]},
            ],
        }))
        .unwrap();
        let s = Slice::from(&k);
        assert_eq!((s.namespace.as_str(), s.name.as_str(), s.service.as_deref()), ("shop", "web-abc", Some("web")));
        assert_eq!(s.address_type, "IPv4");
        assert_eq!(&*s.ports, &[SlicePort { name: Some("http".into()), port: Some(8080) }, SlicePort { name: None, port: Some(9090) }]);
        assert_eq!(s.endpoints[0], SliceEndpoint { addresses: vec!["10.0.0.1".to_string()].into(), ready: Some(true), terminating: Some(false) });
        assert_eq!(s.endpoints[1], SliceEndpoint { addresses: vec!["10.0.0.2".to_string(), "10.0.0.3".to_string()].into(), ready: None, terminating: None });
        assert!(std::mem::size_of::<SliceEndpoint>() <= 24, "an endpoint is {} bytes", std::mem::size_of::<SliceEndpoint>());
    }
}

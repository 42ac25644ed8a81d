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
    /// Every endpoint's addresses as written, one after the other (`Slice::addresses`). Kept
    /// in two allocations per slice rather than two per endpoint (its list and its string):
    /// a slice of ten endpoints went from about 720 to 300 bytes.
    text: Box<str>,
    spans: Box<[(u32, u32)]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePort {
    pub name: Option<String>,
    pub port: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceEndpoint {
    /// This endpoint's addresses: `spans[first..first + count]`.
    first: u32,
    count: u32,
    /// `conditions.ready` and `conditions.terminating`, absent when the object left them out.
    pub ready: Option<bool>,
    pub terminating: Option<bool>,
}

impl Slice {
    /// The addresses of `ep`, one of this slice's endpoints, in order.
    pub fn addresses<'s>(&'s self, ep: &SliceEndpoint) -> impl ExactSizeIterator<Item = &'s str> + 's {
        let (first, count) = (ep.first as usize, ep.count as usize);
        let spans = self.spans.get(first..first.saturating_add(count)).unwrap_or(&[]);
        spans.iter().map(|&(start, end)| self.text.get(start as usize..end as usize).unwrap_or(""))
    }
}

impl From<&EndpointSlice> for Slice {
    fn from(s: &EndpointSlice) -> Self {
        let ports = s.ports.iter().flatten().map(|p| SlicePort { name: p.name.clone(), port: p.port }).collect();
        let all = s.endpoints.as_deref().unwrap_or(&[]);
        let mut text = String::with_capacity(all.iter().flat_map(|e| &e.addresses).map(|a| a.len()).sum());
        let mut spans = Vec::with_capacity(all.iter().map(|e| e.addresses.len()).sum());
        let endpoints = all.iter().map(|e| {
            // Offsets past 4 GB (no slice the API server accepts comes near: 1,000 endpoints of
            // 100 addresses at most) read as empty addresses, which validation refuses.
            let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            let first = at(spans.len());
            for a in &e.addresses {
                let start = at(text.len());
                text.push_str(a);
                spans.push((start, at(text.len())));
            }
            let cond = e.conditions.as_ref();
            SliceEndpoint { first, count: at(e.addresses.len()), ready: cond.and_then(|c| c.ready), terminating: cond.and_then(|c| c.terminating) }
        });
        let endpoints = endpoints.collect();
        Slice {
            namespace: s.metadata.namespace.clone().unwrap_or_default(),
            name: s.metadata.name.clone().unwrap_or_default(),
            service: s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).cloned(),
            address_type: s.address_type.clone(),
            ports,
            endpoints,
            text: text.into_boxed_str(),
            spans: spans.into_boxed_slice(),
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
        let endpoints: Vec<(Vec<&str>, Option<bool>, Option<bool>)> = s.endpoints.iter().map(|e| (s.addresses(e).collect(), e.ready, e.terminating)).collect();
        assert_eq!(endpoints, [(vec!["10.0.0.1"], Some(true), Some(false)), (vec!["10.0.0.2", "10.0.0.3"], None, None)]);
        assert!(std::mem::size_of::<SliceEndpoint>() <= 12, "an endpoint is {} bytes", std::mem::size_of::<SliceEndpoint>());
    }
}

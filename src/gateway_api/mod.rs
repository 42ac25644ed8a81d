//! The Gateway API kinds Vestibule reads (`gateway.networking.k8s.io`, v1.5): GatewayClass,
//! Gateway, HTTPRoute, GRPCRoute, ReferenceGrant and TLSRoute.
//!
//! Defined here from the published CRD schemas, with kube's `CustomResource` derive, because
//! the `gateway-api` crate is built on another kube and k8s-openapi. Only the fields compile
//! reads are typed; unknown fields are ignored, so newer objects still parse. Fields the API
//! server defaults are `Option`s here (manifests in file mode are not defaulted): the
//! `*_or_default` accessors give the CRD's default.

mod gateway;
mod routes;

pub use gateway::*;
pub use routes::*;

/// The API group of every kind here.
pub const GROUP: &str = "gateway.networking.k8s.io";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_come_from_accessors_and_unknown_fields_are_ignored() {
        let r: HTTPRoute = serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {"parentRefs": [{"name": "gw"}], "futureField": 1,
                     "rules": [{"backendRefs": [{"name": "svc", "port": 80}], "matches": [{"path": {"value": "/a"}}]}]}
        }))
        .unwrap();
        assert_eq!(r.spec.parent_refs[0].kind_or_default(), "Gateway");
        let rule = &r.spec.rules_or_default()[0];
        assert_eq!(rule.backend_refs[0].backend.weight_or_default(), 1);
        assert_eq!(rule.backend_refs[0].backend.kind_or_default(), "Service");
        assert_eq!(rule.matches_or_default()[0].path.as_ref().unwrap().type_or_default(), "PathPrefix");
        let none: HTTPRoute = serde_json::from_value(serde_json::json!({"metadata": {"name": "r"}, "spec": {}})).unwrap();
        assert_eq!(none.spec.rules_or_default()[0].matches_or_default()[0], HTTPRouteMatch::default());
    }
}

//! Ingresses in `extensions/v1beta1` and `networking.k8s.io/v1beta1`, converted to
//! `networking.k8s.io/v1` as they are read.

use k8s_openapi::api::networking::v1 as net;
use serde::Deserialize;

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct LegacyIngress {
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    #[serde(default)]
    spec: LegacySpec,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct LegacySpec {
    ingress_class_name: Option<String>,
    backend: Option<LegacyBackend>,
    #[serde(default)]
    rules: Vec<LegacyRule>,
    #[serde(default)]
    tls: Vec<net::IngressTLS>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct LegacyRule {
    host: Option<String>,
    http: Option<LegacyHttp>,
}

#[derive(Deserialize, Debug)]
struct LegacyHttp {
    paths: Vec<LegacyPath>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct LegacyPath {
    path: Option<String>,
    path_type: Option<String>,
    backend: LegacyBackend,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct LegacyBackend {
    service_name: String,
    service_port: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
}

impl LegacyBackend {
    fn into_v1(self) -> net::IngressBackend {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        let port = match self.service_port {
            IntOrString::Int(n) => net::ServiceBackendPort { number: Some(n), name: None },
            IntOrString::String(s) => match s.parse::<i32>() {
                Ok(n) => net::ServiceBackendPort { number: Some(n), name: None },
                Err(_) => net::ServiceBackendPort { number: None, name: Some(s) },
            },
        };
        net::IngressBackend { service: Some(net::IngressServiceBackend { name: self.service_name, port: Some(port) }), resource: None }
    }
}

impl LegacyIngress {
    pub fn into_v1(self) -> net::Ingress {
        let spec = self.spec;
        let rules = spec
            .rules
            .into_iter()
            .map(|r| net::IngressRule {
                host: r.host,
                http: r.http.map(|h| net::HTTPIngressRuleValue {
                    paths: h
                        .paths
                        .into_iter()
                        .map(|p| net::HTTPIngressPath {
                            // The old API had no pathType; its meaning was the controller's own.
                            path_type: p.path_type.unwrap_or_else(|| "ImplementationSpecific".into()),
                            path: p.path,
                            backend: p.backend.into_v1(),
                        })
                        .collect(),
                }),
            })
            .collect::<Vec<_>>();
        net::Ingress {
            metadata: self.metadata,
            spec: Some(net::IngressSpec {
                ingress_class_name: spec.ingress_class_name,
                default_backend: spec.backend.map(LegacyBackend::into_v1),
                rules: if rules.is_empty() { None } else { Some(rules) },
                tls: if spec.tls.is_empty() { None } else { Some(spec.tls) },
            }),
            status: None,
        }
    }
}

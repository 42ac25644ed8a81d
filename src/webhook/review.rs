//! The review itself, pure: an `admission.k8s.io/v1` AdmissionReview for an Ingress in, the
//! answer out. The would-be store (the live one, this object in, its old version out) goes
//! through the same `compile::compile` the data plane's configuration comes from; the object
//! is only ever deserialized into typed data, never executed or templated.
//!
//! Denied, as ingress-nginx denies (its `CheckIngress`): an Ingress of ours that fails
//! validation, carries an annotation value that does not parse, carries a `*-snippet`
//! annotation (configuration text, which Vestibule never runs), or claims a host and path
//! another Ingress of ours already serves. Annotations Vestibule does not implement only warn.

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::Ingress;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compile::{self, Diagnostic, Reason, Settings};
use crate::store::{ObjRef, Object, Store};

/// `admission.k8s.io/v1` `AdmissionReview` (k8s-openapi has no admission types: they are not
/// part of the API server's OpenAPI document).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<AdmissionRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<AdmissionResponse>,
}

/// What is being admitted: the fields a review reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    pub uid: String,
    #[serde(default)]
    pub kind: GroupVersionKind,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    /// CREATE, UPDATE, DELETE or CONNECT.
    #[serde(default)]
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_object: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ReviewStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The `metav1.Status` of a denial.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReviewStatus {
    pub status: String,
    pub message: String,
    pub reason: String,
    pub code: u16,
}

/// What one review found, for the answer and the metrics.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub allowed: bool,
    /// Why it is denied: `FIELD: MESSAGE` per finding.
    pub denials: Vec<String>,
    pub warnings: Vec<String>,
    /// Whether compile ran (the object was an Ingress of ours to judge).
    pub compiled: bool,
    /// Ingresses in the would-be store.
    pub ingresses: usize,
    pub render_seconds: f64,
}

impl Verdict {
    fn allow() -> Verdict {
        Verdict { allowed: true, ..Default::default() }
    }

    fn deny(message: String) -> Verdict {
        Verdict { allowed: false, denials: vec![message], ..Default::default() }
    }

    /// The AdmissionReview answering `uid`.
    pub fn answer(&self, uid: &str) -> AdmissionReview {
        let status = (!self.allowed).then(|| ReviewStatus {
            status: "Failure".into(),
            message: self.denials.join("; "),
            reason: "BadRequest".into(),
            code: 400,
        });
        AdmissionReview {
            api_version: "admission.k8s.io/v1".into(),
            kind: "AdmissionReview".into(),
            request: None,
            response: Some(AdmissionResponse { uid: uid.to_string(), allowed: self.allowed, status, warnings: self.warnings.clone() }),
        }
    }
}

/// Annotation keys under ingress-nginx's or our prefix that carry configuration text.
fn snippets(ing: &Ingress) -> Vec<String> {
    let keys = ing.metadata.annotations.iter().flat_map(|a| a.keys());
    keys.filter(|k| compile::annotations::PREFIXES.iter().any(|p| k.starts_with(p)) && k.ends_with("-snippet"))
        .map(|k| format!("metadata.annotations[{k}]: snippets are configuration text and Vestibule runs none; remove it"))
        .collect()
}

/// Reviews `review` against the live `store` compiled with `settings`; `live` are the live
/// configuration's diagnostics (a conflict that already stands is not news). Pure.
pub fn review(review: &AdmissionReview, store: &Store, settings: &Settings, live: &[Diagnostic]) -> Verdict {
    let Some(req) = &review.request else { return Verdict::deny("the AdmissionReview has no request".into()) };
    if req.operation == "DELETE" {
        return Verdict::allow();
    }
    if req.kind.group != "networking.k8s.io" || req.kind.kind != "Ingress" {
        return Verdict::deny(format!("this webhook reviews networking.k8s.io Ingresses, not {}/{} {}", req.kind.group, req.kind.version, req.kind.kind));
    }
    let Some(object) = &req.object else { return Verdict::deny("request.object: missing".into()) };
    let mut ing: Ingress = match serde_json::from_value(object.clone()) {
        Ok(i) => i,
        Err(e) => return Verdict::deny(format!("request.object: not an Ingress: {e}")),
    };
    if ing.metadata.namespace.as_deref().unwrap_or("").is_empty() {
        ing.metadata.namespace = Some(if req.namespace.is_empty() { "default".into() } else { req.namespace.clone() });
    }
    if ing.metadata.name.as_deref().unwrap_or("").is_empty() {
        ing.metadata.name = Some(req.name.clone());
    }
    let key = (ing.metadata.namespace.clone().unwrap_or_default(), ing.metadata.name.clone().unwrap_or_default());
    let oref = ObjRef::new("Ingress", &key.0, &key.1);

    let mut would_be = store.clone();
    if let Some(old) = req.old_object.as_ref().and_then(|o| serde_json::from_value::<Ingress>(o.clone()).ok()) {
        let old_ns = old.metadata.namespace.clone().unwrap_or_else(|| key.0.clone());
        would_be.ingresses.remove(&(old_ns, old.metadata.name.clone().unwrap_or_default()));
    }
    would_be.ingresses.remove(&key);
    let snippet_denials = snippets(&ing);
    would_be.insert(Object::Ingress(ing));

    let started = std::time::Instant::now();
    let compiled = compile::compile(&would_be, settings);
    let mut verdict = Verdict { compiled: true, ingresses: would_be.ingresses.len(), render_seconds: started.elapsed().as_secs_f64(), ..Verdict::allow() };
    if !compiled.status.owns_ingress(&key) {
        // Another class's: not ours to judge, and it changes nothing we serve.
        return verdict;
    }
    verdict.denials = judge(&oref, &compiled.diagnostics, live);
    verdict.denials.extend(snippet_denials);
    verdict.warnings = compiled
        .diagnostics
        .iter()
        .filter(|d| d.object == oref && d.reason == Reason::AnnotationNotSupported && !d.field.ends_with("-snippet]"))
        .map(|d| format!("{}: {}", d.field, d.message))
        .collect();
    verdict.allowed = verdict.denials.is_empty();
    verdict
}

/// The findings of a compile that deny `oref`: its invalid fields, its annotation values that
/// do not parse, its paths another Ingress already serves, and new conflicts it causes for
/// paths others already served (an older Ingress updated onto a newer one's path).
fn judge(oref: &ObjRef, diags: &[Diagnostic], live: &[Diagnostic]) -> Vec<String> {
    let mut out = Vec::new();
    let standing: BTreeSet<&Diagnostic> = live.iter().collect();
    let served_by = format!("served by {oref},");
    for d in diags {
        let ours = d.object == *oref;
        let deny = match d.reason {
            Reason::InvalidField => ours,
            Reason::PathConflict => (ours) || (d.message.contains(&served_by) && !standing.contains(d)),
            _ => false,
        };
        if !deny {
            continue;
        }
        if ours {
            out.push(format!("{}: {}", d.field, d.message));
        } else {
            out.push(format!("{} {}: {}", d.object, d.field, d.message));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> Settings {
        crate::tls::install_provider();
        Settings::new(crate::tls::self_signed(&["vestibule.invalid"]).unwrap().0)
    }

    fn ingress(name: &str, created: Option<&str>, annotations: Value, path_type: &str) -> Value {
        let mut meta = json!({"namespace": "ns", "name": name, "annotations": annotations});
        if let Some(c) = created {
            meta["creationTimestamp"] = json!(c);
        }
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": {"rules": [{"host": "a.example.com", "http": {"paths": [
            {"path": "/", "pathType": path_type, "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    }

    fn req(op: &str, object: Value) -> AdmissionReview {
        AdmissionReview {
            api_version: "admission.k8s.io/v1".into(),
            kind: "AdmissionReview".into(),
            request: Some(AdmissionRequest {
                uid: "u-1".into(),
                kind: GroupVersionKind { group: "networking.k8s.io".into(), version: "v1".into(), kind: "Ingress".into() },
                name: object["metadata"]["name"].as_str().unwrap_or("").into(),
                namespace: "ns".into(),
                operation: op.into(),
                object: Some(object),
                ..Default::default()
            }),
            response: None,
        }
    }

    #[test]
    fn judges_validation_annotations_snippets_and_conflicts() {
        let s = settings();
        let empty = Store::default();
        assert!(review(&req("CREATE", ingress("a", None, json!({}), "Prefix")), &empty, &s, &[]).allowed);
        let bad = review(&req("CREATE", ingress("a", None, json!({}), "Sometimes")), &empty, &s, &[]);
        assert!(!bad.allowed && bad.denials[0].starts_with("spec.rules[0].http.paths[0].pathType"), "{bad:?}");
        let ann = review(&req("CREATE", ingress("a", None, json!({"nginx.ingress.kubernetes.io/backend-protocol": "FTP"}), "Prefix")), &empty, &s, &[]);
        assert!(!ann.allowed && ann.denials[0].contains("metadata.annotations[nginx.ingress.kubernetes.io/backend-protocol]"), "{ann:?}");
        let snip = review(&req("CREATE", ingress("a", None, json!({"nginx.ingress.kubernetes.io/server-snippet": "x"}), "Prefix")), &empty, &s, &[]);
        assert!(!snip.allowed && snip.denials.len() == 1 && snip.warnings.is_empty(), "{snip:?}");
        let warn = review(&req("CREATE", ingress("a", None, json!({"nginx.ingress.kubernetes.io/enable-opentelemetry": "true"}), "Prefix")), &empty, &s, &[]);
        assert!(warn.allowed && warn.warnings.len() == 1, "{warn:?}");

        let mut live = Store::default();
        live.insert(Object::Ingress(serde_json::from_value(ingress("old", Some("2020-01-01T00:00:00Z"), json!({}), "Prefix")).unwrap()));
        let clash = review(&req("CREATE", ingress("new", None, json!({}), "Prefix")), &live, &s, &[]);
        assert!(!clash.allowed && clash.denials[0].contains("already served by Ingress ns/old"), "{clash:?}");
        // The same object updated is no conflict with itself; DELETE always passes.
        assert!(review(&req("UPDATE", ingress("old", Some("2020-01-01T00:00:00Z"), json!({}), "Prefix")), &live, &s, &[]).allowed);
        assert!(review(&req("DELETE", ingress("new", None, json!({}), "Sometimes")), &live, &s, &[]).allowed);
        // Another class's Ingress is not judged.
        let mut other = ingress("x", None, json!({}), "Sometimes");
        other["spec"]["ingressClassName"] = json!("nginx");
        assert!(review(&req("CREATE", other), &live, &s, &[]).allowed);
    }

    #[test]
    fn answers_with_the_uid_and_a_status_when_denied() {
        let v = Verdict::deny("spec: bad".into()).answer("abc");
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["response"]["uid"], "abc");
        assert_eq!(j["response"]["allowed"], false);
        assert_eq!(j["response"]["status"]["code"], 400);
        assert_eq!(j["response"]["status"]["message"], "spec: bad");
        assert_eq!(j["apiVersion"], "admission.k8s.io/v1");
    }
}

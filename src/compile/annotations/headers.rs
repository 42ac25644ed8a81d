//! `custom-headers`: the data of a ConfigMap (`NAMESPACE/NAME`) become response headers, each
//! name allowed by the controller ConfigMap's `global-allowed-response-headers`. Any failure
//! fails closed: the Ingress's paths answer 503 (ingress-nginx denies the location).

use http::{HeaderName, HeaderValue};

use super::Reader;
use crate::store::Store;

pub const KEYS: &[&str] = &["custom-headers"];

/// The annotation as written: the ConfigMap it names, or why it names none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CustomHeaders {
    #[default]
    None,
    ConfigMap { namespace: String, name: String },
    Invalid(String),
}

pub fn parse(r: &mut Reader) -> CustomHeaders {
    let Some((_, v)) = r.get("custom-headers") else { return CustomHeaders::None };
    let v = v.trim();
    if v.is_empty() {
        return CustomHeaders::None;
    }
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    match v.split_once('/') {
        Some((ns, name)) if ok(ns) && ok(name) => CustomHeaders::ConfigMap { namespace: ns.into(), name: name.into() },
        _ => CustomHeaders::Invalid(format!("{v:?}: must be NAMESPACE/NAME of a ConfigMap")),
    }
}

/// The headers to set, or why none can be: the ConfigMap must exist, and each of its keys be a
/// header name (`[A-Za-z0-9_-]+`) listed verbatim in `allowed`, with a printable value.
pub fn resolve(store: &Store, allowed: &[String], namespace: &str, name: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let Some(cm) = store.config_maps.get(&(namespace.to_string(), name.to_string())) else {
        return Err(format!("ConfigMap {namespace}/{name} not found"));
    };
    let mut out = Vec::new();
    for (k, v) in cm.data.iter().flatten() {
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("header {k:?} in ConfigMap {namespace}/{name} is not a valid header name"));
        }
        if !allowed.iter().any(|a| a == k) {
            return Err(format!("header {k:?} in ConfigMap {namespace}/{name} is not listed in global-allowed-response-headers"));
        }
        if !v.chars().all(|c| (' '..='~').contains(&c)) {
            return Err(format!("header {k:?} in ConfigMap {namespace}/{name} has a value that is not printable ASCII"));
        }
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k:?}: {e}"))?;
        let value = HeaderValue::from_str(v).map_err(|e| format!("header {k:?}: {e}"))?;
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Object;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn allowed_names_only() {
        let mut cm = ConfigMap::default();
        cm.metadata.namespace = Some("ns".into());
        cm.metadata.name = Some("h".into());
        cm.data = Some([("My-Header".to_string(), "$remote_addr".to_string())].into_iter().collect());
        let mut store = Store::default();
        store.insert(Object::ConfigMap(cm));
        let got = resolve(&store, &["My-Header".into()], "ns", "h").unwrap();
        assert_eq!(got[0].1, "$remote_addr", "values are literal");
        assert!(resolve(&store, &["my-header".into()], "ns", "h").unwrap_err().contains("\"My-Header\""), "case-sensitive allowlist");
        assert!(resolve(&store, &[], "ns", "missing").unwrap_err().contains("not found"));
    }
}

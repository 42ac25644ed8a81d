//! Manifests → typed objects, with errors that name the file, document, line, column and field.

use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1 as net;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::legacy::LegacyIngress;
pub use super::locate::{field_at, locate};
use crate::compile::validate;
use crate::gateway_api as gw;
use crate::store::{ObjRef, Object};

/// Why one document (or one whole file) was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: PathBuf,
    /// 1-based document number within the file; 0 when the whole file was not read.
    pub document: usize,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The object, when its kind and name could be read.
    pub object: Option<ObjRef>,
    pub field: Option<String>,
    pub message: String,
    /// A rejected Ingress's annotations, read from the document as it is: the migration report
    /// names the ones Vestibule does not honour even when the Ingress itself is not usable.
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

impl ParseError {
    /// The whole file was not read (not a regular file, too large, not UTF-8...).
    pub fn file(file: &Path, message: String) -> Self {
        ParseError { file: file.to_path_buf(), document: 0, line: None, column: None, object: None, field: None, message, annotations: None }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.document > 0 {
            write!(f, ": document {}", self.document)?;
        }
        if let Some(l) = self.line {
            write!(f, ", line {l}")?;
            if let Some(c) = self.column {
                write!(f, ", column {c}")?;
            }
        }
        if let Some(o) = &self.object {
            write!(f, ": {o}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The result of reading one file.
#[derive(Debug, Default)]
pub struct Parsed {
    pub objects: Vec<Object>,
    /// Documents that were rejected; `object` says which object when it is known.
    pub errors: Vec<ParseError>,
    /// The file could not be split into documents at all (YAML syntax): nothing in it is usable.
    pub fatal: bool,
    /// Accepted with a remark (old API versions converted, unknown kinds skipped); the caller
    /// logs them.
    pub warnings: Vec<String>,
}

/// Splits a YAML stream into documents: (first line number, text).
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t") || line == "...";
        if is_marker {
            docs.push((start, std::mem::take(&mut cur)));
            start = i + 2;
            if let Some(rest) = line.strip_prefix("--- ") {
                // Content after the marker on the same line belongs to the new document.
                start = i + 1;
                cur.push_str(rest);
                cur.push('\n');
            }
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    docs.push((start, cur));
    docs
}

fn blank(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

struct Ctx<'a> {
    file: &'a Path,
    document: usize,
    first_line: usize,
}

impl Ctx<'_> {
    fn error(&self, line: Option<usize>, column: Option<usize>, object: Option<ObjRef>, field: Option<String>, message: String) -> ParseError {
        ParseError { file: self.file.to_path_buf(), document: self.document, line, column, object, field, message, annotations: None }
    }

    /// A serde-saphyr error, placed in the file (its own positions count from the document)
    /// and, when the document could be read as YAML, named by field.
    fn from_saphyr(&self, e: &serde_saphyr::Error, object: Option<ObjRef>, doc: Option<&str>) -> ParseError {
        let loc = e.location();
        let line = loc.map(|l| l.line() as usize + self.first_line - 1);
        let column = loc.map(|l| l.column() as usize);
        let msg = e.without_snippet().to_string();
        let mut msg = msg.lines().next().unwrap_or("").trim().to_string();
        // The message repeats the position relative to the document; the file position is
        // reported instead.
        if let Some(i) = msg.find(" at line ") {
            msg.truncate(i);
        }
        let field = match (doc, loc) {
            (Some(doc), Some(l)) => field_at(doc, l.line() as usize, l.column() as usize),
            _ => None,
        };
        self.error(line, column, object, field, msg)
    }
}

/// Reads every document of a file's text.
pub fn parse_text(file: &Path, text: &str) -> Parsed {
    let mut out = Parsed::default();
    let is_json = file.extension().is_some_and(|e| e == "json");
    let docs = if is_json { vec![(1, text.to_string())] } else { split_documents(text) };
    let mut n = 0;
    for (first_line, doc) in docs {
        if blank(&doc) {
            continue;
        }
        n += 1;
        let ctx = Ctx { file, document: n, first_line };
        let value: Value = match serde_saphyr::from_str(&doc) {
            Ok(v) => v,
            Err(e) => {
                out.errors.push(ctx.from_saphyr(&e, None, None));
                out.fatal = true;
                continue;
            }
        };
        if value.is_null() {
            continue;
        }
        parse_value(&ctx, &doc, value, &mut out);
    }
    out
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn identity(v: &Value) -> Option<ObjRef> {
    let kind = str_at(v, &["kind"])?;
    let name = str_at(v, &["metadata", "name"]).unwrap_or("");
    let kind: &'static str = match kind {
        "Ingress" => "Ingress",
        "IngressClass" => "IngressClass",
        "Service" => "Service",
        "EndpointSlice" => "EndpointSlice",
        "Secret" => "Secret",
        "ConfigMap" => "ConfigMap",
        "Namespace" => "Namespace",
        "GatewayClass" => "GatewayClass",
        "Gateway" => "Gateway",
        "HTTPRoute" => "HTTPRoute",
        "GRPCRoute" => "GRPCRoute",
        "TLSRoute" => "TLSRoute",
        "ReferenceGrant" => "ReferenceGrant",
        _ => return None,
    };
    let ns = if matches!(kind, "IngressClass" | "Namespace" | "GatewayClass") { "" } else { str_at(v, &["metadata", "namespace"]).unwrap_or("default") };
    Some(ObjRef::new(kind, ns, name))
}

/// Deserializes a typed object from the already parsed document. Only when that fails is the
/// text read again, for an error with its line, column and field.
fn typed<T: DeserializeOwned>(ctx: &Ctx, doc: Option<&str>, value: &Value, id: &ObjRef) -> Result<T, ParseError> {
    match T::deserialize(value) {
        Ok(t) => Ok(t),
        Err(json_err) => match doc {
            Some(doc) => match serde_saphyr::from_str::<T>(doc) {
                Err(e) => Err(ctx.from_saphyr(&e, Some(id.clone()), Some(doc))),
                Ok(t) => Ok(t),
            },
            None => Err(ctx.error(None, None, Some(id.clone()), None, json_err.to_string())),
        },
    }
}

fn parse_value(ctx: &Ctx, doc: &str, value: Value, out: &mut Parsed) {
    let kind = str_at(&value, &["kind"]).unwrap_or("").to_string();
    if kind == "List" || (kind.ends_with("List") && value.get("items").is_some_and(|i| i.is_array())) {
        for item in value.get("items").and_then(|i| i.as_array()).cloned().unwrap_or_default() {
            parse_object(ctx, None, item, out);
        }
        return;
    }
    parse_object(ctx, Some(doc), value, out);
}

fn parse_object(ctx: &Ctx, doc: Option<&str>, value: Value, out: &mut Parsed) {
    let kind = str_at(&value, &["kind"]).unwrap_or("").to_string();
    let api_version = str_at(&value, &["apiVersion"]).unwrap_or("").to_string();
    if kind.is_empty() || api_version.is_empty() {
        let missing = if kind.is_empty() { "kind" } else { "apiVersion" };
        out.errors.push(ctx.error(Some(ctx.first_line), None, None, Some(missing.into()), "is required".into()));
        return;
    }
    let Some(id) = identity(&value) else {
        let name = str_at(&value, &["metadata", "name"]).unwrap_or("?");
        let msg = format!("{}: document {}: skipping {kind} {name} ({api_version}): not a kind Vestibule uses", ctx.file.display(), ctx.document);
        out.warnings.push(msg);
        return;
    };
    if id.name.is_empty() {
        out.errors.push(located(ctx, doc, Some(id), "metadata.name", "is required".into()));
        return;
    }
    let wrong_version = |expected: &str| -> ParseError {
        located(ctx, doc, Some(id.clone()), "apiVersion", format!("{api_version:?} is not supported for {kind}; use {expected}"))
    };
    let result: Result<Object, ParseError> = match (kind.as_str(), api_version.as_str()) {
        ("Ingress", "networking.k8s.io/v1") => typed::<net::Ingress>(ctx, doc, &value, &id).map(Object::Ingress),
        ("Ingress", "extensions/v1beta1" | "networking.k8s.io/v1beta1") => typed::<LegacyIngress>(ctx, doc, &value, &id).map(|legacy| {
            let msg = format!("{}: document {}: {id}: converted from {api_version}, which Kubernetes no longer serves; please move to networking.k8s.io/v1", ctx.file.display(), ctx.document);
            out.warnings.push(msg);
            Object::Ingress(legacy.into_v1())
        }),
        ("Ingress", _) => Err(wrong_version("networking.k8s.io/v1")),
        ("IngressClass", "networking.k8s.io/v1") => typed::<net::IngressClass>(ctx, doc, &value, &id).map(Object::IngressClass),
        ("IngressClass", _) => Err(wrong_version("networking.k8s.io/v1")),
        ("Service", "v1") => typed::<Service>(ctx, doc, &value, &id).map(Object::Service),
        ("EndpointSlice", "discovery.k8s.io/v1") => typed::<EndpointSlice>(ctx, doc, &value, &id).map(Object::EndpointSlice),
        ("EndpointSlice", _) => Err(wrong_version("discovery.k8s.io/v1")),
        ("Secret", "v1") => typed::<Secret>(ctx, doc, &value, &id).map(Object::Secret),
        ("ConfigMap", "v1") => typed::<ConfigMap>(ctx, doc, &value, &id).map(Object::ConfigMap),
        ("Namespace", "v1") => typed::<Namespace>(ctx, doc, &value, &id).map(Object::Namespace),
        ("GatewayClass", "gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1") => typed::<gw::GatewayClass>(ctx, doc, &value, &id).map(Object::GatewayClass),
        ("Gateway", "gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1") => typed::<gw::Gateway>(ctx, doc, &value, &id).map(Object::Gateway),
        ("HTTPRoute", "gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1") => typed::<gw::HTTPRoute>(ctx, doc, &value, &id).map(Object::HTTPRoute),
        ("GRPCRoute", "gateway.networking.k8s.io/v1") => typed::<gw::GRPCRoute>(ctx, doc, &value, &id).map(Object::GRPCRoute),
        ("TLSRoute", "gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1alpha3" | "gateway.networking.k8s.io/v1alpha2") => typed::<gw::TLSRoute>(ctx, doc, &value, &id).map(Object::TLSRoute),
        ("ReferenceGrant", "gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1") => typed::<gw::ReferenceGrant>(ctx, doc, &value, &id).map(Object::ReferenceGrant),
        ("GatewayClass" | "Gateway" | "HTTPRoute" | "GRPCRoute" | "TLSRoute" | "ReferenceGrant", _) => Err(wrong_version("gateway.networking.k8s.io/v1")),
        _ => Err(wrong_version("v1")),
    };
    let annotations = (kind == "Ingress").then(|| string_map(value.pointer("/metadata/annotations")));
    let with_annotations = |e: ParseError| ParseError { annotations: annotations.clone(), ..e };
    match result {
        Err(e) => out.errors.push(with_annotations(e)),
        Ok(mut obj) => {
            default_namespace(&mut obj);
            let errors = validate_object(&obj);
            if errors.is_empty() {
                out.objects.push(obj);
            } else {
                for e in errors {
                    out.errors.push(with_annotations(located(ctx, doc, Some(id.clone()), &e.field, e.message)));
                }
            }
        }
    }
}

/// The string entries of a JSON object (annotations as written; other values are skipped).
fn string_map(v: Option<&Value>) -> std::collections::BTreeMap<String, String> {
    let entries = v.and_then(|v| v.as_object()).into_iter().flatten();
    entries.filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
}

fn default_namespace(obj: &mut Object) {
    if !obj.namespaced() {
        return;
    }
    let meta = match obj {
        Object::Ingress(o) => &mut o.metadata,
        Object::Service(o) => &mut o.metadata,
        Object::EndpointSlice(o) => &mut o.metadata,
        Object::Secret(o) => &mut o.metadata,
        Object::ConfigMap(o) => &mut o.metadata,
        Object::Gateway(o) => &mut o.metadata,
        Object::HTTPRoute(o) => &mut o.metadata,
        Object::GRPCRoute(o) => &mut o.metadata,
        Object::TLSRoute(o) => &mut o.metadata,
        Object::ReferenceGrant(o) => &mut o.metadata,
        Object::IngressClass(_) | Object::Namespace(_) | Object::GatewayClass(_) => return,
    };
    if meta.namespace.as_deref().unwrap_or("").is_empty() {
        meta.namespace = Some("default".into());
    }
}

/// The API server's checks for the kinds we read, so that a file cannot hold what a cluster
/// would refuse.
fn validate_object(obj: &Object) -> Vec<validate::FieldError> {
    let mut errors = Vec::new();
    match obj {
        Object::Ingress(ing) => errors = validate::ingress(ing),
        Object::Secret(s) if s.type_.as_deref() == Some("kubernetes.io/tls") => {
            for key in ["tls.crt", "tls.key"] {
                let present = s.data.as_ref().is_some_and(|d| d.contains_key(key)) || s.string_data.as_ref().is_some_and(|d| d.contains_key(key));
                if !present {
                    // Name the map the author used.
                    let map = if s.data.is_none() && s.string_data.is_some() { "stringData" } else { "data" };
                    errors.push(validate::FieldError { field: format!("{map}[{key}]"), message: "is required for a Secret of type kubernetes.io/tls".into() });
                }
            }
        }
        Object::EndpointSlice(s) => errors = validate::endpoint_slice(&crate::store::Slice::from(s)),
        Object::Service(s) => {
            for (i, p) in s.spec.as_ref().and_then(|s| s.ports.as_ref()).into_iter().flatten().enumerate() {
                if !(1..=65535).contains(&p.port) {
                    errors.push(validate::FieldError { field: format!("spec.ports[{i}].port"), message: format!("{}: must be between 1 and 65535", p.port) });
                }
            }
        }
        _ => {}
    }
    errors
}

fn located(ctx: &Ctx, doc: Option<&str>, object: Option<ObjRef>, field: &str, message: String) -> ParseError {
    let (line, column) = match doc.and_then(|d| locate(d, field)) {
        Some((l, c)) => (Some(l + ctx.first_line - 1), Some(c)),
        None => (None, None),
    };
    ctx.error(line, column, object, Some(field.to_string()), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_fields() {
        let doc = "apiVersion: v1\nkind: Ingress\nmetadata:\n  name: x\nspec:\n  rules:\n  - host: a\n    http:\n      paths:\n      - path: /\n        pathType: Wrong\n";
        assert_eq!(locate(doc, "spec.rules[0].http.paths[0].pathType"), Some((11, 9)));
        assert_eq!(locate(doc, "metadata.name"), Some((4, 3)));
        // A missing field points at its deepest existing ancestor.
        assert_eq!(locate(doc, "spec.rules[0].http.paths[0].backend"), Some((10, 9)));
    }

    #[test]
    fn names_the_field_at_a_position() {
        let doc = "kind: Service\nspec:\n  ports:\n  - name: a\n    port: \"abc\"\n";
        assert_eq!(field_at(doc, 5, 11).as_deref(), Some("spec.ports[0].port"));
        assert_eq!(field_at(doc, 5, 1).as_deref(), Some("spec.ports[0].port"));
    }

    #[test]
    fn splits_documents() {
        let docs = split_documents("a: 1\n---\nb: 2\n--- \nc: 3\n");
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1].0, 3);
        // Text after "--- " belongs to the new document, so it starts on the marker's line.
        assert_eq!(docs[2].0, 4);
        assert_eq!(docs[2].1, "\nc: 3\n");
    }
}

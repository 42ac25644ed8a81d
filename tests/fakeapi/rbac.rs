//! An RBAC authorizer for the fake API server, opt-in (`FakeApi::authorize_with`): the rules of
//! the Roles and ClusterRoles in a set of manifests, bound to one ServiceAccount by their
//! RoleBindings and ClusterRoleBindings, decide every resource request, as the API server's
//! RBAC authorizer does. What it models:
//!
//! - the verb: `get` (GET of an object), `list` and `watch` (GET of a collection, `watch=true`),
//!   `create` (POST), `update` (PUT), `patch` (PATCH), `delete` (DELETE);
//! - the name: the object's, or, for a list or watch, the value of a `metadata.name=` field
//!   selector (the API server authorizes such a collection request as a request for that name);
//! - the resource with its subresource (`ingresses/status`), and the API group;
//! - a Role's rules (or a ClusterRole's, through a RoleBinding) apply in the binding's namespace
//!   only; a ClusterRole bound by a ClusterRoleBinding applies everywhere.
//!
//! Discovery documents are served to everyone, as `system:discovery` allows. Anything else not
//! allowed is a 403 Forbidden, and is recorded (`FakeApi::denied`).

use serde_json::Value;

use super::{Target, query_map, selectors};

/// One rule, with the namespace it applies in (None: everywhere, and cluster-scoped objects).
#[derive(Debug, Clone)]
struct Rule {
    namespace: Option<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    names: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// What a request asks for, in RBAC's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl std::fmt::Display for Attributes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.verb, if self.group.is_empty() { "core" } else { &self.group }, self.resource)?;
        if let Some(n) = &self.name {
            write!(f, " {n}")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns}"),
            None => write!(f, " (cluster-wide)"),
        }
    }
}

pub(super) fn attributes(method: &str, t: &Target, query: &str) -> Attributes {
    let q = query_map(query);
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (method, &t.name) {
        ("GET", Some(_)) => "get",
        ("GET", None) if watch => "watch",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", Some(_)) => "delete",
        ("DELETE", None) => "deletecollection",
        _ => "unknown",
    };
    let name = t.name.clone().or_else(|| {
        let fields = q.get("fieldSelector").map(|f| selectors(f)).unwrap_or_default();
        fields.into_iter().find(|(k, op, _)| k == "metadata.name" && op == "=").map(|(_, _, v)| v)
    });
    let resource = match &t.sub {
        Some(sub) => format!("{}/{sub}", t.ty.plural),
        None => t.ty.plural.to_string(),
    };
    Attributes { verb: verb.into(), group: t.ty.group().into(), resource, namespace: t.namespace.clone(), name }
}

impl Policy {
    /// The rules `manifests` (YAML documents) grant to the ServiceAccount `sa_ns/sa_name`.
    pub fn from_manifests(manifests: &str, sa_ns: &str, sa_name: &str) -> Policy {
        let docs: Vec<Value> = manifests
            .split("\n---\n")
            .map(|d| serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("RBAC manifests: {e}\n{d}")))
            .filter(|v| !v.is_null())
            .collect();
        let role_rules = |kind: &str, ns: Option<&str>, name: &str| -> Vec<Value> {
            let role = docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name && (kind == "ClusterRole" || d["metadata"]["namespace"].as_str() == ns));
            role.unwrap_or_else(|| panic!("RBAC manifests: a binding names the missing {kind} {name}"))["rules"].as_array().cloned().unwrap_or_default()
        };
        let mut rules = Vec::new();
        for b in &docs {
            let kind = b["kind"].as_str().unwrap_or("");
            if kind != "RoleBinding" && kind != "ClusterRoleBinding" {
                continue;
            }
            let ours = b["subjects"].as_array().into_iter().flatten().any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa_name && s["namespace"] == sa_ns);
            if !ours {
                continue;
            }
            let ns = if kind == "RoleBinding" { Some(b["metadata"]["namespace"].as_str().expect("a RoleBinding's namespace").to_string()) } else { None };
            let role_kind = b["roleRef"]["kind"].as_str().unwrap_or("");
            assert!(kind == "RoleBinding" || role_kind == "ClusterRole", "a ClusterRoleBinding binds ClusterRoles only");
            for r in role_rules(role_kind, ns.as_deref(), b["roleRef"]["name"].as_str().unwrap_or("")) {
                assert!(r.get("nonResourceURLs").is_none(), "nonResourceURLs rules are not modelled");
                rules.push(Rule { namespace: ns.clone(), groups: strings(&r["apiGroups"]), resources: strings(&r["resources"]), verbs: strings(&r["verbs"]), names: strings(&r["resourceNames"]) });
            }
        }
        assert!(!rules.is_empty(), "RBAC manifests grant nothing to {sa_ns}/{sa_name}");
        Policy { rules }
    }

    pub fn allows(&self, a: &Attributes) -> bool {
        let any = |list: &[String], x: &str| list.iter().any(|v| v == "*" || v == x);
        self.rules.iter().any(|r| {
            (r.namespace.is_none() || r.namespace == a.namespace)
                && any(&r.groups, &a.group)
                && any(&r.resources, &a.resource)
                && any(&r.verbs, &a.verb)
                && (r.names.is_empty() || a.name.as_deref().is_some_and(|n| r.names.iter().any(|x| x == n)))
        })
    }
}

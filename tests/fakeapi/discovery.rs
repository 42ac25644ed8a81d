//! API discovery documents of the fake API server.

use hyper::Response;
use serde_json::{Value, json};

use super::{Body, Inner, TYPES, Type, error, respond};

/// API discovery: `/api`, `/apis`, `/apis/GROUP` and `/apis/GROUP/VERSION`, listing what is
/// served (a CRD that is not installed is in none of them).
pub(super) fn document(inner: &Inner, path: &str) -> Option<Response<Body>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let served: Vec<&Type> = TYPES.iter().filter(|t| inner.served(t)).collect();
    // Group → its served versions, preferred (first listed in TYPES as v1, then others) first.
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for t in served.iter().filter(|t| !t.group().is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == t.group()) {
            Some((_, vs)) if !vs.contains(&t.version()) => vs.push(t.version()),
            Some(_) => {}
            None => groups.push((t.group(), vec![t.version()])),
        }
    }
    for (_, vs) in &mut groups {
        vs.sort_by_key(|v| (*v != "v1", !v.starts_with("v1beta"), v.to_string()));
    }
    let group_doc = |g: &str, vs: &[&str]| {
        let versions: Vec<Value> = vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect();
        json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
    };
    let resources = |prefix: &str| -> Vec<Value> {
        let mut out = Vec::new();
        for t in served.iter().filter(|t| t.prefix == prefix) {
            let verbs = ["create", "delete", "get", "list", "patch", "update", "watch"];
            out.push(json!({"name": t.plural, "singularName": t.kind.to_lowercase(), "namespaced": t.namespaced, "kind": t.kind, "verbs": verbs}));
            out.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
        out
    };
    let doc = match segs.as_slice() {
        ["api"] => json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ["api", "v1"] => json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": resources("api/v1")}),
        ["apis"] => json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups.iter().map(|(g, vs)| group_doc(g, vs)).collect::<Vec<_>>()}),
        ["apis", g] => match groups.iter().find(|(n, _)| n == g) {
            Some((g, vs)) => {
                let mut d = group_doc(g, vs);
                d["kind"] = json!("APIGroup");
                d["apiVersion"] = json!("v1");
                d
            }
            None => return Some(error(404, "NotFound", &format!("the server could not find the requested resource ({path})"))),
        },
        ["apis", g, v] => {
            let list = resources(&format!("apis/{g}/{v}"));
            if list.is_empty() {
                return Some(error(404, "NotFound", &format!("the server could not find the requested resource ({path})")));
            }
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{g}/{v}"), "resources": list})
        }
        _ => return None,
    };
    Some(respond(200, &doc))
}


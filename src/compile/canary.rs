//! Canary Ingresses (`canary: "true"`): no routes of their own. Each path adds its backend as the
//! alternative of the mainline route with the same host, path string and pathType; a rule-less
//! canary with a defaultBackend adds it to the catch-all default. Only the canary's traffic
//! policy and upstream-level settings (load-balance, upstream-hash-by,
//! affinity-canary-behavior) are taken from it; everything else comes from the mainline.
//! One canary per rule: later ones, and canaries without mainline, serve nothing.

use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use super::annotations::{self, Annotations};
use super::builder::Builder;
use super::ingress::{oref_of, path_type_of, resolve, served};
use super::{Reason, Severity};
use crate::config::{Affinity, Backend, Canary, CanaryRule, HostDefault};
use crate::store::ObjRef;

/// Adds `ing` (a canary) to the mainlines already built, and to `catch_all`.
pub(super) fn merge(b: &mut Builder, ing: &Ingress, owned: &[&Ingress], defaults: &Annotations, catch_all: &mut Option<HostDefault>) {
    let oref = Arc::new(oref_of(ing));
    let (ann, _) = annotations::parse(ing, defaults);
    let Some(rule) = ann.canary.clone() else { return };
    let Some(spec) = ing.spec.as_ref() else { return };
    let rules = spec.rules.as_deref().unwrap_or(&[]);
    if rules.is_empty()
        && let Some(d) = &spec.default_backend
    {
        let field = "spec.defaultBackend";
        match catch_all {
            Some(main) if main.canary.is_none() => {
                let mainline = main.ingress.clone();
                if let Some(backend) = canary_backend(b, &oref, field, d, &ann, &mainline, owned, defaults) {
                    main.canary = Some(Arc::new(Canary { rule: rule.clone(), backend, affinity: None, ingress: oref.clone() }));
                }
            }
            Some(main) => {
                let msg = format!("the catch-all default backend of {} already has a canary; this one is not used", main.ingress);
                b.diag(Severity::Warning, &oref, field, Reason::CanaryWithoutMainline, msg);
            }
            None => b.diag(Severity::Warning, &oref, field, Reason::CanaryWithoutMainline, "no Ingress provides a catch-all default backend for this canary; it serves nothing"),
        }
    }
    for (i, r) in rules.iter().enumerate() {
        let host = r.host.as_deref().map(|h| h.to_ascii_lowercase()).unwrap_or_else(|| "*".to_string());
        let Some(http) = &r.http else { continue };
        for (j, p) in http.paths.iter().enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}]");
            let rule_path = p.path.clone().unwrap_or_else(|| "/".into());
            let path_type = path_type_of(&p.path_type);
            let found = b.route_mut(&host, &rule_path, path_type).map(|route| (route.ingress.clone(), route.canary.as_ref().map(|c| c.ingress.clone()), route.affinity.clone()));
            let problem = match &found {
                None => Some(format!("no Ingress serves host {host:?} path {rule_path:?} ({path_type}); this canary path serves nothing")),
                Some((main, Some(other), _)) => Some(format!("{main} already has the canary {other} for host {host:?} path {rule_path:?}; one canary per rule, this one is not used")),
                Some(_) => None,
            };
            if let Some(msg) = problem {
                b.diag(Severity::Warning, &oref, &field, Reason::CanaryWithoutMainline, msg);
                continue;
            }
            let (mainline, _, main_affinity) = found.expect("checked");
            let Some(backend) = canary_backend(b, &oref, &format!("{field}.backend"), &p.backend, &ann, &mainline, owned, defaults) else { continue };
            let canary = make(rule.clone(), backend, &ann, main_affinity, &oref);
            if let Some(route) = b.route_mut(&host, &rule_path, path_type) {
                route.canary = Some(canary);
                served(b, &oref).hosts.insert(host.clone());
            }
        }
    }
}

/// Behaviour `sticky` (the default) gives the canary the mainline's affinity; `legacy` none.
fn make(rule: CanaryRule, backend: Arc<Backend>, ann: &Annotations, main_affinity: Option<Arc<Affinity>>, oref: &Arc<ObjRef>) -> Arc<Canary> {
    let affinity = if ann.affinity.canary_legacy { None } else { main_affinity };
    Arc::new(Canary { rule, backend, affinity, ingress: oref.clone() })
}

/// The canary's backend: its balancing, the mainline's protocol and backend TLS (location-level
/// settings are the mainline's).
#[allow(clippy::too_many_arguments)]
fn canary_backend(
    b: &mut Builder,
    oref: &ObjRef,
    field: &str,
    backend: &IngressBackend,
    ann: &Annotations,
    mainline: &ObjRef,
    owned: &[&Ingress],
    defaults: &Annotations,
) -> Option<Arc<Backend>> {
    let main_ing = owned.iter().find(|i| oref_of(i) == *mainline);
    let mut mixed = match main_ing {
        Some(m) => annotations::parse(m, defaults).0,
        None => defaults.clone(),
    };
    mixed.policy = ann.policy.clone();
    resolve(b, oref, field, backend, &mixed)
}

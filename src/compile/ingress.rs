//! The Ingress processor: which Ingresses are ours and valid, in the order they win conflicts
//! (oldest first), and what their TLS hosts, rules and default backends add to the `Builder`.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use super::annotations::{self, AnnotationError, Annotations};
use super::locations::{self, HostPlan};
use super::backend::{self, PortRef};
use super::builder::Builder;
use super::status::{IngressStatus, Ownership};
use super::{Reason, Settings, Severity, class, location, route_path, validate};
use crate::config::{Backend, HostDefault, Route, RouteLabels, WeightedBackend};
use crate::store::{ObjRef, Store};

pub(super) fn oref_of(ing: &Ingress) -> ObjRef {
    ObjRef::new("Ingress", ing.metadata.namespace.as_deref().unwrap_or(""), ing.metadata.name.as_deref().unwrap_or(""))
}

/// Oldest first, then by namespace/name: the order in which Ingresses win conflicts.
fn age_key(ing: &Ingress) -> (bool, Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>, String, String) {
    let ts = ing.metadata.creation_timestamp.clone();
    (ts.is_none(), ts, ing.metadata.namespace.clone().unwrap_or_default(), ing.metadata.name.clone().unwrap_or_default())
}

/// The Ingresses that are ours and valid, oldest first; the others get a diagnostic.
pub(super) fn owned<'s>(b: &mut Builder, store: &'s Store, settings: &Settings) -> Vec<&'s Ingress> {
    owned_of(b, store.ingresses.values().map(|i| &**i), store, settings)
}

/// `owned`, of the Ingresses `ingresses` only (in store order).
pub(super) fn owned_of<'s>(b: &mut Builder, ingresses: impl Iterator<Item = &'s Ingress>, store: &Store, settings: &Settings) -> Vec<&'s Ingress> {
    let default_class = class::we_are_default(store, settings);
    let mut owned: Vec<&Ingress> = Vec::new();
    for ing in ingresses {
        let oref = oref_of(ing);
        let key = (oref.namespace.clone(), oref.name.clone());
        if let Err(why) = class::owns(ing, store, settings, default_class) {
            b.diag(Severity::Info, &oref, "spec.ingressClassName", Reason::ClassIgnored, format!("ignored: {why}"));
            b.status.ingresses.insert(key, IngressStatus::new(Ownership::NotOurs(why)));
            continue;
        }
        let errors = validate::ingress(ing);
        let mut status = IngressStatus::new(Ownership::Ours);
        status.invalid = errors.first().map(|e| format!("{}: {}", e.field, e.message));
        b.status.ingresses.insert(key, status);
        if !errors.is_empty() {
            for e in errors {
                b.diag(Severity::Error, &oref, e.field, Reason::InvalidField, format!("{}; the Ingress is skipped", e.message));
            }
            continue;
        }
        owned.push(ing);
    }
    owned.sort_by_key(|i| age_key(i));
    owned
}

/// Adds the routes and defaults of `owned` (as `owned` returned them). Returns the default
/// backend for unmatched hosts that the oldest rule-less Ingress provides, if any.
pub(super) fn process(b: &mut Builder, owned: &[&Ingress], settings: &Settings) -> Option<HostDefault> {
    let tls_hosts = tls_hosts(owned);
    let defaults = super::configmap::annotation_defaults(settings);
    let (anns, errors): (Vec<Annotations>, Vec<Vec<AnnotationError>>) = owned.iter().map(|i| annotations::parse(i, &defaults)).unzip();
    let plan = locations::plan(owned, &anns);
    let code = settings.redirects.code;
    let mut catch_all: Option<HostDefault> = None;
    for ((ing, ann), errors) in owned.iter().zip(&anns).zip(errors) {
        let oref = oref_of(ing);
        for e in errors {
            b.diag(e.severity, &oref, e.field, e.reason, e.message);
        }
        if let Some(d) = add_ingress(b, ing, &tls_hosts, ann, &plan, code) {
            match &catch_all {
                None => {
                    served(b, &d.ingress).default_backend = true;
                    catch_all = Some(d);
                }
                Some(winner) => {
                    let msg = format!("{} is older and already provides the default backend for unmatched hosts; this one is not used", winner.ingress);
                    let oref = (*d.ingress).clone();
                    b.diag(Severity::Warning, &oref, "spec.defaultBackend", Reason::DefaultConflict, msg);
                }
            }
        }
    }
    locations::add_www(b, &plan, code);
    // Canaries create no routes: they join the mainlines built above (oldest canary first).
    for ing in owned {
        super::canary::merge(b, ing, owned, &defaults, &mut catch_all);
    }
    catch_all
}

/// The pathType as written, for route data and canary matching.
pub(super) fn path_type_of(t: &str) -> &'static str {
    match t {
        "Exact" => "Exact",
        "Prefix" => "Prefix",
        _ => "ImplementationSpecific",
    }
}

/// The status of an Ingress `owned` accepted.
pub(super) fn served<'b>(b: &'b mut Builder, oref: &ObjRef) -> &'b mut IngressStatus {
    b.status.ingresses.entry((oref.namespace.clone(), oref.name.clone())).or_insert_with(|| IngressStatus::new(Ownership::Ours))
}

/// Hosts with TLS configured, from every Ingress we own.
fn tls_hosts(owned: &[&Ingress]) -> HashSet<String> {
    let mut tls_hosts: HashSet<String> = HashSet::new();
    for ing in owned {
        let spec = ing.spec.as_ref().expect("validated");
        for tls in spec.tls.as_deref().unwrap_or(&[]) {
            match tls.hosts.as_deref() {
                Some(hosts) if !hosts.is_empty() => tls_hosts.extend(hosts.iter().map(|h| h.to_ascii_lowercase())),
                _ => tls_hosts.extend(spec.rules.as_deref().unwrap_or(&[]).iter().filter_map(|r| r.host.as_ref().map(|h| h.to_ascii_lowercase()))),
            }
        }
    }
    tls_hosts
}

/// Resolves an Ingress backend; `None` when it can never route (a resource backend).
pub(super) fn resolve(b: &mut Builder, ing: &ObjRef, field: &str, backend: &IngressBackend, ann: &Annotations) -> Option<Arc<Backend>> {
    let Some(svc) = &backend.service else {
        b.diag(Severity::Warning, ing, field, Reason::Unsupported, "resource backends are not supported; this backend is skipped");
        return None;
    };
    let port = PortRef::of(svc)?;
    let reach = reach(b, ing, &svc.name, ann);
    let (backend, problem) = b.resolver.resolve(&ing.namespace, &svc.name, &port, &reach);
    if let Some((reason, msg)) = problem {
        b.diag(Severity::Warning, ing, format!("{field}.service"), reason, msg);
    }
    Some(backend)
}

/// The protocol, balancing and backend TLS an Ingress asks for.
fn reach(b: &mut Builder, ing: &ObjRef, service: &str, ann: &Annotations) -> backend::Reach {
    let protocol = ann.backend_protocol;
    let ssl = &ann.proxy_ssl;
    let tls = if protocol.tls() && (ssl.verify || ssl.secret.is_some() || ssl.name.is_some() || ssl.server_name) {
        match super::tls::upstream_tls(b.store, ing, service, protocol, ssl) {
            Ok(t) => Some(t),
            Err(msg) => {
                b.diag(Severity::Warning, ing, "metadata.annotations[proxy-ssl-secret]", Reason::SecretInvalid, msg);
                None
            }
        }
    } else {
        None
    };
    backend::Reach { protocol, policy: ann.policy.clone(), tls, tls_key: protocol.tls().then(|| ssl.clone()), service_upstream: ann.hosts.service_upstream }
}

/// Adds one Ingress's rules. Returns its defaultBackend when it has no rules: a candidate
/// catch-all for unmatched hosts.
fn add_ingress(b: &mut Builder, ing: &Ingress, tls_hosts: &HashSet<String>, ann: &Annotations, plan: &HostPlan, code: u16) -> Option<HostDefault> {
    let oref = Arc::new(oref_of(ing));
    let spec = ing.spec.as_ref()?;
    if ann.canary.is_some() {
        // A canary serves through its mainline's routes (`canary::merge`), never its own.
        return None;
    }
    let rules = spec.rules.as_deref().unwrap_or(&[]);
    let default = match &spec.default_backend {
        Some(d) => resolve(b, &oref, "spec.defaultBackend", d, ann).map(|backend| {
            let mut d = b.host_default(backend, oref.clone(), "");
            d.proxy = location::proxy(b, ann);
            // As a catch-all it carries its Ingress's filters (protections first), never none.
            let ctx = location::context(&oref, &d.backend);
            d.filters = Some(location::filters(b, ing, &oref, ann, &Arc::from(Vec::new()), ctx, None));
            d
        }),
        None => None,
    };
    for (i, rule) in rules.iter().enumerate() {
        let host = rule.host.as_deref().map(|h| h.to_ascii_lowercase()).unwrap_or_else(|| "*".to_string());
        let is_tls = tls_hosts.contains(&host);
        let redirect = locations::host_filters(plan, &host, ann, is_tls, code);
        let has_default = b.vhost(&host, is_tls, &redirect).default.is_some();
        if let Some(d) = &default
            && !has_default
        {
            let mut hd = b.host_default(d.backend.clone(), d.ingress.clone(), rule.host.as_deref().unwrap_or(""));
            hd.proxy = d.proxy.clone();
            // The host's unmatched paths get the Ingress's filters, as its paths do.
            let ctx = location::context(&oref, &hd.backend);
            hd.filters = Some(location::filters(b, ing, &oref, ann, &redirect, ctx, None));
            b.vhost(&host, is_tls, &redirect).default = Some(hd);
            served(b, &oref).hosts.insert(host.clone());
        }
        let Some(http) = &rule.http else { continue };
        for (j, p) in http.paths.iter().enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}]");
            let (path, kind) = route_path(p.path.as_deref(), &p.path_type);
            if let Some(winner) = b.claimant(&host, &path, kind) {
                if **winner != *oref {
                    let msg = format!(
                        "host {host:?} path {:?} ({}) is already served by {winner}, which is older; this path is not used",
                        p.path.as_deref().unwrap_or("/"),
                        p.path_type
                    );
                    b.diag(Severity::Warning, &oref, &field, Reason::PathConflict, msg);
                }
                continue;
            }
            let matches = match locations::path_match(plan, &host, ann, p.path.as_deref(), &p.path_type) {
                Ok(m) => m,
                Err(msg) => {
                    b.diag(Severity::Error, &oref, format!("{field}.path"), Reason::InvalidField, msg);
                    continue;
                }
            };
            let Some(backend) = resolve(b, &oref, &format!("{field}.backend"), &p.backend, ann) else { continue };
            b.claim(&host, &path, kind, &oref);
            let id = b.next_id();
            let error_context = location::context(&oref, &backend);
            let (backend, fallback) = location::fallback(b, &oref, ann, backend);
            let service = error_context.service.clone();
            let rule_path = p.path.clone().unwrap_or_else(|| "/".into());
            let base = locations::route_filters(plan, &host, ann, is_tls, code, &locations::rule_path_of(p.path.as_deref()), &matches);
            let filters = location::filters(b, ing, &oref, ann, &base, error_context, fallback);
            let proxy = location::proxy(b, ann);
            let labels = RouteLabels::new(rule.host.as_deref().unwrap_or(""), &rule_path, &oref, &service);
            let path_type = path_type_of(&p.path_type);
            // The cookie's Path defaults to the Ingress path as written.
            let affinity = ann.affinity.affinity.clone().map(|mut a| {
                if a.path.is_empty() {
                    a.path = rule_path.clone();
                }
                Arc::new(a)
            });
            b.vhost(&host, is_tls, &redirect).routes.push(Route {
                id,
                matches,
                filters,
                backends: Arc::new([WeightedBackend::new(backend, 100)]),
                proxy,
                rule_path,
                path_type,
                ingress: oref.clone(),
                labels,
                canary: None,
                affinity,
                order: crate::config::RouteOrder::of(&ing.metadata, (i, j)),
            });
            served(b, &oref).hosts.insert(host.clone());
        }
    }
    let hosts: Vec<String> = rules.iter().map(|r| r.host.as_deref().map(|h| h.to_ascii_lowercase()).unwrap_or_else(|| "*".to_string())).collect();
    location::aliases(b, ann, &hosts);
    // A rule-less Ingress with a defaultBackend is a candidate catch-all for unmatched hosts.
    if rules.is_empty() { default } else { None }
}

#[cfg(test)]
mod tests {
    use crate::compile::{Settings, compile};
    use crate::store::{Object, Store};

    fn ingress(name: &str, created: &str, spec: serde_json::Value) -> Object {
        let v = serde_json::json!({"metadata": {"namespace": "ns", "name": name, "creationTimestamp": created}, "spec": spec});
        Object::Ingress(serde_json::from_value(v).expect("an Ingress"))
    }

    fn path(p: &str) -> serde_json::Value {
        serde_json::json!({"path": p, "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}})
    }

    #[test]
    fn status_records_ownership_hosts_and_the_catch_all() {
        crate::tls::install_provider();
        let mut store = Store::default();
        let backend = serde_json::json!({"service": {"name": "web", "port": {"number": 80}}});
        store.insert(ingress("old", "2020-01-01T00:00:00Z", serde_json::json!({"rules": [{"host": "a.example.com", "http": {"paths": [path("/")]}}, {"http": {"paths": [path("/x")]}}]})));
        store.insert(ingress("new", "2021-01-01T00:00:00Z", serde_json::json!({"rules": [{"host": "a.example.com", "http": {"paths": [path("/")]}}]})));
        store.insert(ingress("catch", "2020-01-01T00:00:00Z", serde_json::json!({"defaultBackend": backend.clone()})));
        store.insert(ingress("catch-2", "2021-01-01T00:00:00Z", serde_json::json!({"defaultBackend": backend})));
        store.insert(ingress("bad", "2020-01-01T00:00:00Z", serde_json::json!({"rules": [{"host": "b.example.com", "http": {"paths": [path("relative")]}}]})));
        store.insert(ingress("theirs", "2020-01-01T00:00:00Z", serde_json::json!({"ingressClassName": "nginx", "rules": [{"host": "c.example.com", "http": {"paths": [path("/")]}}]})));
        let settings = Settings::new(crate::tls::self_signed(&["vestibule.invalid"]).unwrap().0);
        let status = compile(&store, &settings).status;

        let get = |name: &str| status.ingress("ns", name).unwrap_or_else(|| panic!("no status for {name}: {status:?}"));
        assert_eq!(get("old").hosts.iter().map(String::as_str).collect::<Vec<_>>(), ["*", "a.example.com"]);
        assert!(get("new").is_ours() && get("new").hosts.is_empty(), "the newer Ingress lost its only path: {:?}", get("new"));
        assert!(get("catch").default_backend && !get("catch-2").default_backend);
        assert!(get("bad").is_ours() && get("bad").invalid.as_deref().is_some_and(|e| e.starts_with("spec.rules[0].http.paths[0].path: ")), "{:?}", get("bad"));
        assert!(get("bad").hosts.is_empty());
        assert!(get("theirs").not_ours().is_some_and(|why| why.contains("\"nginx\"")), "{:?}", get("theirs"));
        assert_eq!(status.ingresses.len(), 6);
    }
}

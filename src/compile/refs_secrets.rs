//! Which Secrets a store names: the only Secrets the Kubernetes source reads. Pure, and in
//! step with the readers of Secrets in compile (`tls.rs`, `auth.rs`, `client_auth.rs`,
//! `gateway/certs.rs`): `spec.tls[].secretName`, `auth-secret` (with `auth-type: basic`),
//! `auth-tls-secret`, `proxy-ssl-secret`, Gateway listener `certificateRefs`, and
//! `--default-ssl-certificate`. Only Ingresses of our class and Gateways of our
//! GatewayClasses count; a `certificateRef` into another namespace counts only when a
//! ReferenceGrant there allows it.

use std::collections::BTreeSet;

use super::annotations::{self, Annotations};
use super::{Settings, class, gateway};
use crate::store::{Key, Store};

/// The namespace and name of every Secret the objects of `store` that are ours name.
pub fn named(store: &Store, settings: &Settings) -> BTreeSet<Key> {
    let mut out = BTreeSet::new();
    if let Some(k) = &settings.default_ssl_certificate {
        out.insert(k.clone());
    }
    let default_class = class::we_are_default(store, settings);
    let defaults = Annotations::default();
    for ing in store.ingresses.values() {
        if class::owns(ing, store, settings, default_class).is_err() {
            continue;
        }
        let ns = ing.metadata.namespace.clone().unwrap_or_default();
        let tls = ing.spec.as_ref().and_then(|s| s.tls.as_deref()).unwrap_or(&[]);
        for name in tls.iter().filter_map(|t| t.secret_name.clone()).filter(|n| !n.is_empty()) {
            out.insert((ns.clone(), name));
        }
        let (a, _) = annotations::parse(ing, &defaults);
        if let Some(Ok(b)) = &a.auth.basic {
            out.insert((b.namespace.clone(), b.name.clone()));
        }
        out.extend(a.auth_tls.secret.clone());
        out.extend(a.proxy_ssl.secret.clone());
    }
    let ours: BTreeSet<&String> = store.gateway_classes.iter().filter(|(_, c)| c.spec.controller_name == settings.gateway_controller_name).map(|(n, _)| n).collect();
    for g in store.gateways.values().filter(|g| ours.contains(&g.spec.gateway_class_name)) {
        let gw_ns = g.metadata.namespace.clone().unwrap_or_default();
        for l in &g.spec.listeners {
            for r in l.tls.as_ref().map(|t| t.certificate_refs.as_slice()).unwrap_or(&[]) {
                if r.group_or_default() != "" || r.kind_or_default() != "Secret" || r.name.is_empty() {
                    continue;
                }
                let ns = r.namespace.clone().unwrap_or_else(|| gw_ns.clone());
                if ns == gw_ns || gateway::refs::granted(store, "Gateway", &gw_ns, "", "Secret", &ns, &r.name) {
                    out.insert((ns, r.name.clone()));
                }
            }
        }
    }
    out
}

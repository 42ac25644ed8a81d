//! A HTTPS listener's `certificateRefs`: `kubernetes.io/tls` Secrets, in the Gateway's
//! namespace or in another one that grants it with a ReferenceGrant.

use super::conditions::{cond, set};
use super::listeners::GwListener;
use super::refs;
use crate::compile::builder::Builder;
use crate::compile::{Reason, Severity};
use crate::config::TlsCert;
use crate::gateway_api as gw;

/// Resolves the listener's certificates into `gl.certs`; a reference that cannot be used is
/// `ResolvedRefs: False` (InvalidCertificateRef, or RefNotPermitted across namespaces without
/// a grant), and a listener left with no certificate is not served.
pub fn resolve(b: &mut Builder, gl: &mut GwListener, l: &gw::Listener) {
    let refs_list = l.tls.as_ref().map(|t| t.certificate_refs.as_slice()).unwrap_or(&[]);
    let field = format!("{}.tls.certificateRefs", gl.field());
    let gw_ns = gl.gw_ref.namespace.clone();
    let mut problem: Option<(&'static str, String)> = None;
    if refs_list.is_empty() {
        problem = Some(("InvalidCertificateRef", "a HTTPS listener needs at least one certificateRef".to_string()));
    }
    for (i, r) in refs_list.iter().enumerate() {
        let ns = r.namespace.clone().unwrap_or_else(|| gw_ns.clone());
        let f = format!("{field}[{i}]");
        let outcome = if r.group_or_default() != "" || r.kind_or_default() != "Secret" {
            Err(("InvalidCertificateRef", format!("{}/{} is not a Secret", r.group_or_default(), r.kind_or_default())))
        } else if ns != gw_ns && !refs::granted(b.store, "Gateway", &gw_ns, "", "Secret", &ns, &r.name) {
            Err(("RefNotPermitted", format!("Secret {ns}/{} is in another namespace and no ReferenceGrant there allows it", r.name)))
        } else {
            match b.store.secrets.get(&(ns.clone(), r.name.clone())) {
                None => Err(("InvalidCertificateRef", format!("Secret {ns}/{} not found", r.name))),
                Some(s) if s.type_.as_deref() != Some("kubernetes.io/tls") => Err(("InvalidCertificateRef", format!("Secret {ns}/{} is not of type kubernetes.io/tls", r.name))),
                Some(s) => b.certs.get(s).map_err(|e| ("InvalidCertificateRef", format!("Secret {ns}/{}: {e}", r.name))),
            }
        };
        match outcome {
            Ok(key) => gl.certs.push(TlsCert { key, secret: Some((ns, r.name.clone())) }),
            Err((reason, msg)) => {
                let why = if reason == "RefNotPermitted" { Reason::InvalidField } else { Reason::SecretInvalid };
                b.diag(Severity::Warning, &gl.gw_ref.clone(), f, why, format!("{msg}; this certificate is not used"));
                problem.get_or_insert((reason, msg));
            }
        }
    }
    if let Some((reason, msg)) = problem {
        set(&mut gl.conditions, cond("ResolvedRefs", false, reason, msg.clone(), &gl.gateway.metadata));
        if gl.certs.is_empty() {
            gl.ready = false;
            set(&mut gl.conditions, cond("Programmed", false, "Invalid", msg, &gl.gateway.metadata));
        }
    }
}

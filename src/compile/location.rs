//! What an Ingress's annotations add to each of its routes ("locations" in ingress-nginx): the
//! route's proxy settings, its filters (`upstream-vhost`, `custom-headers`, redirect and cookie
//! rewriting, error pages), the `default-backend` that stands in for a Service without
//! endpoints, and the `server-alias` names of its hosts.

use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

use super::annotations::headers::{self, CustomHeaders};
use super::annotations::{self, Annotations};
use super::builder::Builder;
use super::{Reason, Severity};
use crate::config::filter::{CookieRewrite, ErrorContext, ErrorPages};
use crate::config::{Backend, Filter, ProxySettings};
use crate::store::ObjRef;

/// The route's limits: the global settings unless the annotations changed them.
pub(super) fn proxy(b: &Builder, ann: &Annotations) -> Arc<ProxySettings> {
    if ann.proxy == *b.proxy { b.proxy.clone() } else { Arc::new(ann.proxy.clone()) }
}

/// The context an error backend is told about, for a rule going to `backend`.
pub(super) fn context(oref: &ObjRef, backend: &Backend) -> ErrorContext {
    ErrorContext { namespace: oref.namespace.clone(), ingress: oref.name.clone(), service: backend.service.clone(), port: backend.port.clone() }
}

/// The Ingress's `default-backend` Service (its first port), if it exists and has endpoints.
fn custom_default(b: &mut Builder, oref: &ObjRef, ann: &Annotations) -> Option<Arc<Backend>> {
    let name = ann.errors.default_backend.as_deref()?;
    if !b.store.services.contains_key(&(oref.namespace.clone(), name.to_string())) {
        let msg = format!("Service {}/{name} not found; the annotation is not used", oref.namespace);
        b.diag(Severity::Warning, oref, "metadata.annotations[default-backend]", Reason::ServiceNotFound, msg);
        return None;
    }
    let (backend, _) = b.resolver.resolve_first_port(&oref.namespace, name);
    (!backend.endpoints.is_empty()).then_some(backend)
}

/// A rule whose Service has no endpoints (or does not exist) goes to the Ingress's
/// `default-backend`, told so by `X-Code: 503` and the rule's context.
pub(super) fn fallback(b: &mut Builder, oref: &ObjRef, ann: &Annotations, backend: Arc<Backend>) -> (Arc<Backend>, Option<Filter>) {
    if !backend.endpoints.is_empty() || ann.errors.default_backend.is_none() {
        return (backend, None);
    }
    match custom_default(b, oref, ann) {
        Some(d) => (d, Some(Filter::DefaultBackendHeaders(context(oref, &backend)))),
        None => (backend, None),
    }
}

/// The error backend for `custom-http-errors`: the Ingress's `default-backend` when it has
/// endpoints, else `--default-backend-service` when that has; else none (404).
fn error_backend(b: &mut Builder, oref: &ObjRef, ann: &Annotations) -> Option<Arc<Backend>> {
    if let Some(d) = custom_default(b, oref, ann) {
        return Some(d);
    }
    let (ns, name) = b.settings.default_backend_service.clone()?;
    let (backend, _) = b.resolver.resolve_first_port(&ns, &name);
    (!backend.endpoints.is_empty()).then_some(backend)
}

/// The `custom-headers` filter: the headers, or a denial (503) when they cannot be set.
fn custom_headers(b: &mut Builder, ing: &Ingress, oref: &ObjRef, ann: &Annotations) -> Option<Filter> {
    let result = match &ann.custom_headers {
        CustomHeaders::None => return None,
        CustomHeaders::Invalid(e) => Err(e.clone()),
        CustomHeaders::ConfigMap { namespace, name } => headers::resolve(b.store, &b.settings.allowed_response_headers, namespace, name),
    };
    match result {
        Ok(h) if h.is_empty() => None,
        Ok(headers) => Some(Filter::ResponseHeaders { headers }),
        Err(e) => {
            // Fail closed, as ingress-nginx denies the location.
            let key = annotations::get(ing, "custom-headers").map(|(k, _)| k).unwrap_or_default();
            b.diag(Severity::Error, oref, format!("metadata.annotations[{key}]"), Reason::InvalidField, format!("{e}; every request to this Ingress's paths answers 503"));
            Some(Filter::LocationDenied { status: 503 })
        }
    }
}

/// The filters of one route: `base` (the HTTPS redirect), then the annotations'.
pub(super) fn filters(b: &mut Builder, ing: &Ingress, oref: &ObjRef, ann: &Annotations, base: &Arc<[Filter]>, ctx: ErrorContext, fallback: Option<Filter>) -> Arc<[Filter]> {
    // CORS first: ingress-nginx answers preflights before its HTTPS redirect runs.
    let mut out: Vec<Filter> = ann.cors.iter().map(|p| Filter::Cors(Box::new(p.clone()))).collect();
    let base_len = out.len() + base.len();
    out.extend(base.iter().cloned());
    // Access and limits next: a refused client reaches nothing else.
    if let Some(f) = &ann.ipfilter {
        out.push(Filter::IpFilter(f.clone()));
    }
    if let Some(status) = ann.ratelimit.closed {
        out.push(Filter::LocationDenied { status });
    }
    if let Some(l) = &ann.ratelimit.limit {
        out.push(Filter::RateLimit(l.clone()));
    }
    let headers = custom_headers(b, ing, oref, ann);
    if let Some(f @ Filter::LocationDenied { .. }) = &headers {
        out.push(f.clone());
    }
    out.extend(super::auth::filters(b, ing, oref, ann, &ann.proxy));
    if let Some(host) = &ann.hosts.upstream_vhost {
        out.push(Filter::UpstreamVhost { host: host.clone() });
    }
    out.extend(fallback);
    if let Some(f @ Filter::ResponseHeaders { .. }) = headers {
        out.push(f);
    }
    let rw = &ann.rewrite_response;
    if let Some((from, to)) = &rw.redirect {
        out.push(Filter::ProxyRedirect { from: from.clone(), to: to.clone() });
    }
    if rw.cookie_path.is_some() || rw.cookie_domain.is_some() {
        let (path, domain): (Option<CookieRewrite>, Option<CookieRewrite>) = (rw.cookie_path.clone(), rw.cookie_domain.clone());
        out.push(Filter::ProxyCookie { path, domain });
    }
    if !ann.errors.codes.is_empty() {
        let backend = error_backend(b, oref, ann);
        out.push(Filter::ErrorPages(ErrorPages { codes: ann.errors.codes.clone(), intercept: !ann.errors.disable_intercept, backend, context: ctx }));
    }
    if out.len() == base_len && ann.cors.is_none() { base.clone() } else { out.into() }
}

/// `server-alias`: the Ingress's aliases name its hosts too (the first Ingress per host that
/// sets aliases wins; `Builder::finish` drops aliases that are hosts already).
pub(super) fn aliases(b: &mut Builder, ann: &Annotations, hosts: &[String]) {
    for host in hosts.iter().filter(|h| h.as_str() != "*") {
        b.set_aliases(host, &ann.hosts.aliases);
    }
}

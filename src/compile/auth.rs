//! Basic and external authentication resolved against the store: the users of the
//! `auth-secret`, the `auth-proxy-set-headers` ConfigMap, the ConfigMap's `global-auth-url`.
//! Anything that cannot be set up fails closed: a `LocationDenied` 503 filter and an Error.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;

use super::annotations::auth::{Basic, External, SecretType};
use super::annotations::{self, Annotations};
use super::builder::Builder;
use super::{Reason, Severity};
use crate::config::auth::{BasicAuth, ExternalAuth, PasswordHash};
use crate::config::{Filter, ProxySettings};
use crate::store::ObjRef;

/// The longest an auth sub-request waits for an answer.
const READ_CAP: Duration = Duration::from_secs(30);

/// The auth filters of one route of `ing`: basic, then external; or a 503 denial.
pub(super) fn filters(b: &mut Builder, ing: &Ingress, oref: &ObjRef, ann: &Annotations, proxy: &ProxySettings) -> Vec<Filter> {
    let mut out = Vec::new();
    let deny = |b: &mut Builder, key: &str, msg: String| {
        let full = annotations::get(ing, key).map(|(k, _)| k).unwrap_or_else(|| key.to_string());
        b.diag(Severity::Error, oref, format!("metadata.annotations[{full}]"), Reason::InvalidField, format!("{msg}; every request to this Ingress's paths answers 503"));
        Filter::LocationDenied { status: 503 }
    };
    match &ann.auth.basic {
        None => {}
        Some(Err(e)) => out.push(deny(b, "auth-type", e.clone())),
        Some(Ok(basic)) => match users(b, oref, basic) {
            Ok(f) => out.push(f),
            Err(e) => out.push(deny(b, "auth-secret", e)),
        },
    }
    let external = match &ann.auth.external {
        Some(e) => Some(("auth-url", e)),
        None if ann.auth.global => b.settings.global_auth.as_ref().map(|e| ("global-auth-url", e)),
        None => None,
    };
    match external {
        None => {}
        Some((key, Err(e))) => out.push(deny(b, key, e.clone())),
        Some((_, Ok(e))) => match external_filter(b, e, proxy) {
            Ok(f) => out.push(f),
            Err(msg) => out.push(deny(b, "auth-proxy-set-headers", msg)),
        },
    }
    // One denial is enough: it answers every request.
    if let Some(d) = out.iter().find(|f| matches!(f, Filter::LocationDenied { .. })) {
        return vec![d.clone()];
    }
    out
}

fn secret_value<'s>(secret: &'s Secret, key: &str) -> Option<&'s [u8]> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.as_bytes());
    }
    secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.as_slice())
}

/// The Secret's users as parsed hashes; lines Vestibule cannot verify are reported and skipped.
fn users(b: &mut Builder, oref: &ObjRef, basic: &Basic) -> Result<Filter, String> {
    let (ns, name) = (&basic.namespace, &basic.name);
    let secret = b.store.secrets.get(&(ns.clone(), name.clone())).cloned().ok_or_else(|| format!("Secret {ns}/{name} not found"))?;
    let mut pairs: Vec<(String, String)> = Vec::new();
    match basic.secret_type {
        SecretType::File => {
            let text = secret_value(&secret, "auth").ok_or_else(|| format!("Secret {ns}/{name} has no key \"auth\""))?;
            let text = String::from_utf8_lossy(text);
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                if let Some((u, h)) = line.split_once(':') {
                    pairs.push((u.to_string(), h.to_string()));
                }
            }
        }
        SecretType::Map => {
            let keys = secret.data.iter().flat_map(|d| d.keys()).chain(secret.string_data.iter().flat_map(|d| d.keys()));
            for k in keys {
                let v = secret_value(&secret, k).unwrap_or_default();
                pairs.push((k.clone(), String::from_utf8_lossy(v).trim().to_string()));
            }
        }
    }
    let mut users = Vec::new();
    for (user, hash) in pairs {
        match PasswordHash::parse(&hash) {
            Some(h) if !users.iter().any(|(u, _): &(String, PasswordHash)| *u == user) => users.push((user, h)),
            Some(_) => {}
            None => {
                let msg = format!("user {user:?} of Secret {ns}/{name}: the password hash is not bcrypt (cost at most {}), $apr1$, {{SHA}}, $5$ or $6$ (at most {} rounds); that user cannot log in", crate::config::auth::MAX_BCRYPT_COST, crate::config::auth::MAX_SHA_CRYPT_ROUNDS);
                b.diag(Severity::Warning, oref, "metadata.annotations[auth-secret]", Reason::SecretInvalid, msg);
            }
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (ns, name, format!("{users:?}")).hash(&mut h);
    Ok(Filter::BasicAuth(BasicAuth { realm: basic.realm.clone(), users: Arc::new(users), version: h.finish() }))
}

fn external_filter(b: &Builder, e: &External, proxy: &ProxySettings) -> Result<Filter, String> {
    let set_headers = match &e.set_headers {
        None => Vec::new(),
        Some((ns, name)) => {
            let cm = b.store.config_maps.get(&(ns.clone(), name.clone())).ok_or_else(|| format!("ConfigMap {ns}/{name} not found"))?;
            let mut out = Vec::new();
            for (k, v) in cm.data.iter().flatten() {
                let n = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("{k:?} in ConfigMap {ns}/{name} is not a header name"))?;
                let v = HeaderValue::from_str(v).map_err(|_| format!("the value of {k:?} in ConfigMap {ns}/{name} is not a header value"))?;
                out.push((n, v));
            }
            out
        }
    };
    Ok(Filter::ExternalAuth(Arc::new(ExternalAuth {
        url: e.url.clone(),
        method: e.method.clone(),
        signin: e.signin.clone(),
        signin_redirect_param: e.signin_redirect_param.clone(),
        response_headers: e.response_headers.clone(),
        request_redirect: e.request_redirect.clone(),
        cache: e.cache.clone(),
        set_headers,
        always_set_cookie: e.always_set_cookie,
        connect_timeout: proxy.connect_timeout,
        read_timeout: proxy.read_timeout.min(READ_CAP),
    })))
}

//! Basic and external authentication (`auth-type`, `auth-secret`, `auth-url`, ...).
//!
//! A protection that cannot be set up fails closed, as ingress-nginx denies the location: the
//! Ingress's paths answer 503 (an Error diagnostic says why), never unprotected.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::{Reader, go_bool, string};
use crate::config::auth::{AuthCache, KeyPart};

pub const KEYS: &[&str] = &[
    "auth-type",
    "auth-secret",
    "auth-secret-type",
    "auth-realm",
    "auth-url",
    "auth-method",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-response-headers",
    "auth-request-redirect",
    "auth-cache-key",
    "auth-cache-duration",
    "auth-proxy-set-headers",
    "auth-always-set-cookie",
    "enable-global-auth",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecretType {
    /// Key `auth` holds htpasswd lines.
    #[default]
    File,
    /// One key per user, the value its hash.
    Map,
}

/// `auth-type: basic`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Basic {
    pub namespace: String,
    pub name: String,
    pub secret_type: SecretType,
    pub realm: String,
}

/// `auth-url` and its companions, parsed (the auth-proxy-set-headers ConfigMap is resolved
/// against the store later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    pub url: http::Uri,
    pub method: Method,
    pub signin: Option<String>,
    pub signin_redirect_param: String,
    pub response_headers: Vec<HeaderName>,
    pub request_redirect: Option<HeaderValue>,
    pub cache: Option<AuthCache>,
    pub set_headers: Option<(String, String)>,
    pub always_set_cookie: bool,
}

/// What the family's annotations ask for. `Denied` (with the reason) answers 503.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    pub basic: Option<Result<Basic, String>>,
    pub external: Option<Result<External, String>>,
    /// `enable-global-auth` (default true): the ConfigMap's `global-auth-url` applies.
    pub global: bool,
}

pub fn parse(r: &mut Reader) -> Auth {
    let mut a = Auth { global: true, ..Default::default() };
    if let Some((k, v)) = r.get("auth-type") {
        a.basic = Some(basic(r, v.trim()));
        if v.trim() == "digest" {
            r.bad(&k, "digest authentication is not supported by Vestibule; every request to this Ingress's paths answers 503".into());
        }
    }
    if let Some((_, v)) = r.get("auth-url") {
        a.external = Some(external(r, v));
    }
    if let Some((k, v)) = r.get("enable-global-auth") {
        match go_bool(v) {
            Some(b) => a.global = b,
            None => r.bad(&k, format!("{v:?}: must be \"true\" or \"false\"; true is used")),
        }
    }
    a
}

fn basic(r: &Reader, kind: &str) -> Result<Basic, String> {
    match kind {
        "basic" => {}
        "digest" => return Err("auth-type digest is not supported".into()),
        other => return Err(format!("auth-type {other:?}: must be \"basic\"")),
    }
    let ns = r.ingress.metadata.namespace.clone().unwrap_or_default();
    let secret = r.get("auth-secret").and_then(|(_, v)| string(v)).ok_or("auth-type basic without auth-secret")?;
    let (namespace, name) = match secret.split_once('/') {
        Some((n, s)) => (n.to_string(), s.to_string()),
        None => (ns, secret.clone()),
    };
    if namespace.is_empty() || name.is_empty() || name.contains('/') {
        return Err(format!("auth-secret {secret:?}: must be NAME or NAMESPACE/NAME"));
    }
    let secret_type = match r.get("auth-secret-type").map(|(_, v)| v.trim()) {
        None | Some("auth-file") => SecretType::File,
        Some("auth-map") => SecretType::Map,
        Some(o) => return Err(format!("auth-secret-type {o:?}: must be \"auth-file\" or \"auth-map\"")),
    };
    let realm = r.get("auth-realm").map(|(_, v)| v.trim().to_string()).unwrap_or_default();
    if realm.chars().any(|c| c.is_control()) {
        return Err("auth-realm has control characters".into());
    }
    Ok(Basic { namespace, name, secret_type, realm })
}

/// An `http` or `https` URL with a host.
pub fn http_url(v: &str) -> Result<http::Uri, String> {
    let v = v.trim();
    let u: http::Uri = v.parse().map_err(|_| format!("{v:?} is not a URL"))?;
    match (u.scheme_str(), u.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(u),
        _ => Err(format!("{v:?}: must be an http or https URL with a host")),
    }
}

fn external(r: &mut Reader, url: &str) -> Result<External, String> {
    let url = http_url(url).map_err(|e| format!("auth-url {e}"))?;
    let method = match r.get("auth-method").map(|(_, v)| v.trim().to_string()) {
        None => Method::GET,
        Some(m) => match m.as_str() {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" => Method::from_bytes(m.as_bytes()).expect("a method"),
            _ => return Err(format!("auth-method {m:?} is not an HTTP method")),
        },
    };
    let signin = match r.get("auth-signin") {
        Some((_, v)) => Some(http_url(v).map_err(|e| format!("auth-signin {e}"))?.to_string()),
        None => None,
    };
    let signin_redirect_param = r.get("auth-signin-redirect-param").and_then(|(_, v)| string(v)).unwrap_or_else(|| "rd".into());
    if !signin_redirect_param.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("auth-signin-redirect-param {signin_redirect_param:?} is not a parameter name"));
    }
    let mut response_headers = Vec::new();
    if let Some((_, v)) = r.get("auth-response-headers") {
        for h in v.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            response_headers.push(HeaderName::from_bytes(h.as_bytes()).map_err(|_| format!("auth-response-headers: {h:?} is not a header name"))?);
        }
    }
    let request_redirect = match r.get("auth-request-redirect").and_then(|(_, v)| string(v)) {
        Some(v) => Some(HeaderValue::from_str(&v).map_err(|_| "auth-request-redirect is not a header value".to_string())?),
        None => None,
    };
    let set_headers = match r.get("auth-proxy-set-headers").and_then(|(_, v)| string(v)) {
        Some(v) => Some(match v.split_once('/') {
            Some((n, s)) => (n.to_string(), s.to_string()),
            None => (r.ingress.metadata.namespace.clone().unwrap_or_default(), v),
        }),
        None => None,
    };
    let always_set_cookie = r.get("auth-always-set-cookie").is_some_and(|(_, v)| go_bool(v) == Some(true));
    let cache = cache(r);
    Ok(External { url, method, signin, signin_redirect_param, response_headers, request_redirect, cache, set_headers, always_set_cookie })
}

/// The controller ConfigMap's `global-auth-*` keys, each the global form of its `auth-*`
/// annotation.
pub const GLOBAL_KEYS: &[&str] = &[
    "global-auth-url",
    "global-auth-method",
    "global-auth-signin",
    "global-auth-signin-redirect-param",
    "global-auth-response-headers",
    "global-auth-request-redirect",
    "global-auth-cache-key",
    "global-auth-cache-duration",
    "global-auth-always-set-cookie",
];

/// Fields and messages of values that fell back.
pub type Warnings = Vec<(String, String)>;

/// `global-auth-url` and its companions, read as the annotations they are global forms of;
/// with the warnings of values that fell back (field name and message).
pub fn global(data: &std::collections::BTreeMap<String, String>) -> (Option<Result<External, String>>, Warnings) {
    let Some(url) = data.get("global-auth-url").filter(|v| !v.trim().is_empty()) else { return (None, Vec::new()) };
    let mut ing = k8s_openapi::api::networking::v1::Ingress::default();
    let anns = GLOBAL_KEYS.iter().filter_map(|k| data.get(*k).map(|v| (format!("nginx.ingress.kubernetes.io/{}", &k["global-".len()..]), v.clone())));
    ing.metadata.annotations = Some(anns.collect());
    let mut r = Reader { ingress: &ing, errors: Vec::new() };
    let e = external(&mut r, url);
    let warnings = r.errors.into_iter().map(|e| (e.field.replace("nginx.ingress.kubernetes.io/", "global-"), e.message)).collect();
    (Some(e), warnings)
}

/// `auth-cache-key` (without it nothing is cached) and `auth-cache-duration`.
fn cache(r: &mut Reader) -> Option<AuthCache> {
    let (k, v) = r.get("auth-cache-key")?;
    let key = match cache_key(v) {
        Ok(key) => key,
        Err(e) => {
            r.bad(&k, format!("{e}; auth answers are not cached"));
            return None;
        }
    };
    let (codes, ttl) = match r.get("auth-cache-duration") {
        Some((dk, dv)) => cache_duration(dv).unwrap_or_else(|e| {
            r.bad(&dk, format!("{e}; \"200 202 401 5m\" is used"));
            (vec![200, 202, 401], Duration::from_secs(300))
        }),
        None => (vec![200, 202, 401], Duration::from_secs(300)),
    };
    Some(AuthCache { key, codes, ttl })
}

/// The key as text and the variables Vestibule evaluates; any other `$variable` is refused.
pub fn cache_key(v: &str) -> Result<Vec<KeyPart>, String> {
    let mut out = Vec::new();
    let mut rest = v.trim();
    while !rest.is_empty() {
        let Some(i) = rest.find('$') else {
            out.push(KeyPart::Text(rest.to_string()));
            break;
        };
        if i > 0 {
            out.push(KeyPart::Text(rest[..i].to_string()));
        }
        let after = &rest[i + 1..];
        let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
        let var = &after[..end];
        let part = if let Some(h) = var.strip_prefix("http_") {
            KeyPart::Header(HeaderName::from_bytes(h.replace('_', "-").as_bytes()).map_err(|_| format!("${var} is not a header"))?)
        } else if let Some(c) = var.strip_prefix("cookie_") {
            KeyPart::Cookie(c.to_string())
        } else if let Some(a) = var.strip_prefix("arg_") {
            KeyPart::Arg(a.to_string())
        } else {
            match var {
                "host" => KeyPart::Host,
                "remote_addr" => KeyPart::RemoteAddr,
                "request_uri" => KeyPart::RequestUri,
                "uri" => KeyPart::Uri,
                "request_method" => KeyPart::Method,
                _ => return Err(format!("${var} is not a variable Vestibule evaluates in auth-cache-key")),
            }
        };
        out.push(part);
        rest = &after[end..];
    }
    if out.is_empty() {
        return Err("auth-cache-key is empty".into());
    }
    Ok(out)
}

/// `CODE... DURATION` (nginx's `proxy_cache_valid`): codes default to 200 301 302.
pub fn cache_duration(v: &str) -> Result<(Vec<u16>, Duration), String> {
    let words: Vec<&str> = v.split_whitespace().collect();
    let (last, codes) = words.split_last().ok_or("auth-cache-duration is empty")?;
    let ttl = crate::units::parse_duration(last).map_err(|_| format!("{last:?} is not a duration"))?;
    let mut out = Vec::new();
    for c in codes {
        match c.parse::<u16>() {
            Ok(n) if (100..600).contains(&n) => out.push(n),
            _ => return Err(format!("{c:?} is not a status code")),
        }
    }
    if out.is_empty() {
        out = vec![200, 301, 302];
    }
    Ok((out, ttl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::annotations::tests::{ing, parse_default};
    use crate::compile::diag::Severity;

    #[test]
    fn digest_is_a_warning_and_denied() {
        let (a, e) = parse_default(&ing(&[("nginx.ingress.kubernetes.io/auth-type", "digest"), ("nginx.ingress.kubernetes.io/auth-secret", "s")]));
        assert!(matches!(a.auth.basic, Some(Err(_))), "fails closed");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].severity, e[0].field.as_str()), (Severity::Warning, "metadata.annotations[nginx.ingress.kubernetes.io/auth-type]"));
        let (a, e) = parse_default(&ing(&[("vestibule.dev/auth-type", "basic"), ("nginx.ingress.kubernetes.io/auth-type", "digest"), ("vestibule.dev/auth-secret", "other/s")]));
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(a.auth.basic, Some(Ok(Basic { namespace: "other".into(), name: "s".into(), secret_type: SecretType::File, realm: String::new() })), "our prefix wins");
    }

    #[test]
    fn cache_keys_and_durations() {
        assert_eq!(cache_key("$http_authorization-x").unwrap(), vec![KeyPart::Header(HeaderName::from_static("authorization")), KeyPart::Text("-x".into())]);
        assert!(cache_key("$upstream_addr").is_err());
        assert_eq!(cache_duration("200 202 5m").unwrap(), (vec![200, 202], Duration::from_secs(300)));
        assert!(cache_duration("abc").is_err());
        assert!(http_url("ftp://x/").is_err() && http_url("http://a.b/x?y").is_ok() && http_url("/x").is_err());
    }
}

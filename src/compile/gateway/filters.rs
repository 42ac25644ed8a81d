//! HTTPRoute and GRPCRoute filters → typed `config::Filter`s, and Gateway API durations. Pure:
//! the objects in, filters (or the first problem, naming its field) out.
//!
//! A rule whose filters give a problem must not be served as though the filter were absent:
//! the spec says requests that would use it are answered with an error, so the processor
//! serves that rule's matches with `unusable()` (500) and reports the problem in the route's
//! conditions (`reason`: `UnsupportedValue` for a filter Vestibule cannot apply, or the
//! reason `resolve` gave for a mirror's backendRef).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::config::cors::{CorsOrigins, CorsPolicy};
use crate::config::filter::{HeaderEdit, Mirror, PathRewrite, Redirect, UrlRewrite};
use crate::config::{Backend, Filter, PathKind, PathMatch, ProxySettings};
use crate::gateway_api as gw;

/// What is wrong with one filter: the field (`spec.rules[0].filters[1].requestRedirect.port`),
/// what is wrong, and the condition reason it gives the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterProblem {
    pub field: String,
    pub message: String,
    pub reason: &'static str,
}

/// The reason for a filter Vestibule does not apply, or a value it cannot use.
pub const UNSUPPORTED: &str = "UnsupportedValue";

fn problem(field: String, message: impl Into<String>) -> FilterProblem {
    FilterProblem { field, message: message.into(), reason: UNSUPPORTED }
}

/// Resolves a backendRef (a mirror's) to a backend, or the problem with it.
pub type Resolve<'a> = dyn FnMut(&gw::BackendRef, &str) -> Result<Arc<Backend>, FilterProblem> + 'a;

/// What a rule whose filters cannot be applied serves: 500 to every request it matches.
pub fn unusable() -> Vec<Filter> {
    vec![Filter::LocationDenied { status: 500 }]
}

/// The filters of one HTTPRoute rule (or backendRef), for one of its matches, in order.
/// `field` prefixes problem fields (e.g. "spec.rules[0].filters"). `matched` is the route
/// match's path (for ReplacePrefixMatch). `resolve` turns a backendRef (RequestMirror) into a
/// Backend or a problem.
pub fn http_filters(filters: &[gw::HTTPRouteFilter], field: &str, matched: &PathMatch, resolve: &mut Resolve<'_>) -> Result<Vec<Filter>, FilterProblem> {
    let mut out = Vec::with_capacity(filters.len());
    let mut seen: Vec<&str> = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let t = f.type_.as_str();
        // Every type but RequestMirror may appear once per list, as the CRD's rules say.
        if t != "RequestMirror" && seen.contains(&t) {
            return Err(problem(format!("{at}.type"), format!("{t} may appear only once in a list of filters")));
        }
        seen.push(t);
        if (t == "RequestRedirect" && seen.contains(&"URLRewrite")) || (t == "URLRewrite" && seen.contains(&"RequestRedirect")) {
            return Err(problem(format!("{at}.type"), "RequestRedirect and URLRewrite cannot both be used in one list of filters"));
        }
        let filter = match t {
            "RequestHeaderModifier" => Filter::RequestHeaderEdit(Arc::new(header_edit(f.request_header_modifier.as_ref(), &at, "requestHeaderModifier")?)),
            "ResponseHeaderModifier" => Filter::ResponseHeaderEdit(Arc::new(header_edit(f.response_header_modifier.as_ref(), &at, "responseHeaderModifier")?)),
            "RequestRedirect" => Filter::Redirect(Box::new(redirect(required(f.request_redirect.as_ref(), &at, "requestRedirect")?, &format!("{at}.requestRedirect"), matched)?)),
            "URLRewrite" => Filter::UrlRewrite(Box::new(url_rewrite(required(f.url_rewrite.as_ref(), &at, "urlRewrite")?, &format!("{at}.urlRewrite"), matched)?)),
            "RequestMirror" => Filter::Mirror(Arc::new(mirror(required(f.request_mirror.as_ref(), &at, "requestMirror")?, &format!("{at}.requestMirror"), resolve)?)),
            "CORS" => Filter::Cors(Box::new(cors(required(f.cors.as_ref(), &at, "cors")?, &format!("{at}.cors"))?)),
            "ExtensionRef" => return Err(extension_ref(f.extension_ref.as_ref(), &at)),
            other => return Err(problem(format!("{at}.type"), format!("filter type {other:?} is not supported"))),
        };
        out.push(filter);
    }
    Ok(out)
}

/// The filters of one GRPCRoute rule (or backendRef), in order: header modifiers and mirrors.
pub fn grpc_filters(filters: &[gw::GRPCRouteFilter], field: &str, resolve: &mut Resolve<'_>) -> Result<Vec<Filter>, FilterProblem> {
    let mut out = Vec::with_capacity(filters.len());
    let mut seen: Vec<&str> = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let t = f.type_.as_str();
        if t != "RequestMirror" && seen.contains(&t) {
            return Err(problem(format!("{at}.type"), format!("{t} may appear only once in a list of filters")));
        }
        seen.push(t);
        let filter = match t {
            "RequestHeaderModifier" => Filter::RequestHeaderEdit(Arc::new(header_edit(f.request_header_modifier.as_ref(), &at, "requestHeaderModifier")?)),
            "ResponseHeaderModifier" => Filter::ResponseHeaderEdit(Arc::new(header_edit(f.response_header_modifier.as_ref(), &at, "responseHeaderModifier")?)),
            "RequestMirror" => Filter::Mirror(Arc::new(mirror(required(f.request_mirror.as_ref(), &at, "requestMirror")?, &format!("{at}.requestMirror"), resolve)?)),
            "ExtensionRef" => return Err(extension_ref(f.extension_ref.as_ref(), &at)),
            other => return Err(problem(format!("{at}.type"), format!("filter type {other:?} is not supported"))),
        };
        out.push(filter);
    }
    Ok(out)
}

fn required<'a, T>(v: Option<&'a T>, at: &str, name: &str) -> Result<&'a T, FilterProblem> {
    v.ok_or_else(|| problem(format!("{at}.{name}"), format!("required when the type is {}", type_of(name))))
}

fn type_of(field: &str) -> String {
    match field {
        "urlRewrite" => "URLRewrite".into(),
        "cors" => "CORS".into(),
        f => f[..1].to_ascii_uppercase() + &f[1..],
    }
}

fn extension_ref(r: Option<&gw::LocalObjectReference>, at: &str) -> FilterProblem {
    let what = r.map(|r| format!(" ({}/{} {})", r.group, r.kind, r.name)).unwrap_or_default();
    problem(format!("{at}.extensionRef"), format!("extension filters{what} are not supported: requests this rule matches are answered 500"))
}

fn header_edit(m: Option<&gw::HeaderModifier>, at: &str, name: &str) -> Result<HeaderEdit, FilterProblem> {
    let m = required(m, at, name)?;
    let at = format!("{at}.{name}");
    let pairs = |list: &[gw::HeaderValue], key: &str| -> Result<Vec<(HeaderName, HeaderValue)>, FilterProblem> {
        let mut out: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(list.len());
        for (i, h) in list.iter().enumerate() {
            let n = header_name(&h.name, &format!("{at}.{key}[{i}].name"))?;
            if out.iter().any(|(o, _)| *o == n) {
                return Err(problem(format!("{at}.{key}[{i}].name"), format!("{:?} is listed twice (header names are case-insensitive)", h.name)));
            }
            let v = HeaderValue::from_str(&h.value).map_err(|_| problem(format!("{at}.{key}[{i}].value"), format!("{:?} is not a valid header value", h.value)))?;
            out.push((n, v));
        }
        Ok(out)
    };
    let set = pairs(&m.set, "set")?;
    let add = pairs(&m.add, "add")?;
    let remove = m.remove.iter().enumerate().map(|(i, n)| header_name(n, &format!("{at}.remove[{i}]"))).collect::<Result<Vec<_>, _>>()?;
    Ok(HeaderEdit { set, add, remove })
}

fn header_name(n: &str, field: &str) -> Result<HeaderName, FilterProblem> {
    HeaderName::from_bytes(n.as_bytes()).map_err(|_| problem(field.to_string(), format!("{n:?} is not a valid header name")))
}

fn path_rewrite(p: &gw::HTTPPathModifier, at: &str, matched: &PathMatch) -> Result<PathRewrite, FilterProblem> {
    let check = |v: &str, f: &str, empty_ok: bool| {
        if (v.is_empty() && empty_ok) || (v.starts_with('/') && v.len() <= 1024 && !v.contains(['?', '#']) && !v.contains("//")) {
            Ok(())
        } else {
            Err(problem(format!("{at}.{f}"), format!("{v:?}: must be an absolute path (starting with /, no query or fragment)")))
        }
    };
    match p.type_.as_str() {
        "ReplaceFullPath" => {
            let v = p.replace_full_path.as_deref().ok_or_else(|| problem(format!("{at}.replaceFullPath"), "required when the type is ReplaceFullPath"))?;
            check(v, "replaceFullPath", false)?;
            Ok(PathRewrite::Full(v.to_string()))
        }
        "ReplacePrefixMatch" => {
            let v = p.replace_prefix_match.as_deref().ok_or_else(|| problem(format!("{at}.replacePrefixMatch"), "required when the type is ReplacePrefixMatch"))?;
            check(v, "replacePrefixMatch", true)?;
            if matched.kind != PathKind::Prefix {
                return Err(problem(format!("{at}.type"), "ReplacePrefixMatch needs a PathPrefix match in the rule"));
            }
            Ok(PathRewrite::Prefix { matched: matched.path.trim_end_matches('/').to_string(), replacement: v.trim_end_matches('/').to_string() })
        }
        other => Err(problem(format!("{at}.type"), format!("{other:?}: must be ReplaceFullPath or ReplacePrefixMatch"))),
    }
}

fn hostname(h: &str, field: String) -> Result<String, FilterProblem> {
    let lower = h.to_ascii_lowercase();
    let label_ok = |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !l.starts_with('-') && !l.ends_with('-');
    if lower.len() <= 253 && lower.split('.').all(label_ok) {
        Ok(lower)
    } else {
        Err(problem(field, format!("{h:?} is not a valid hostname (no wildcards, ports or IP literals)")))
    }
}

fn redirect(r: &gw::HTTPRequestRedirect, at: &str, matched: &PathMatch) -> Result<Redirect, FilterProblem> {
    let scheme = match r.scheme.as_deref() {
        None => None,
        Some(s @ ("http" | "https")) => Some(s.to_string()),
        Some(s) => return Err(problem(format!("{at}.scheme"), format!("{s:?}: must be http or https"))),
    };
    let hostname = r.hostname.as_deref().map(|h| hostname(h, format!("{at}.hostname"))).transpose()?;
    let port = match r.port {
        None => None,
        Some(p) if (1..=65535).contains(&p) => Some(p as u16),
        Some(p) => return Err(problem(format!("{at}.port"), format!("{p}: must be 1 to 65535"))),
    };
    let status = match r.status_code.unwrap_or(302) {
        s @ (301 | 302 | 303 | 307 | 308) => s as u16,
        s => return Err(problem(format!("{at}.statusCode"), format!("{s}: must be 301, 302, 303, 307 or 308"))),
    };
    let path = r.path.as_ref().map(|p| path_rewrite(p, &format!("{at}.path"), matched)).transpose()?;
    Ok(Redirect { scheme, hostname, port, path, status })
}

fn url_rewrite(r: &gw::HTTPURLRewrite, at: &str, matched: &PathMatch) -> Result<UrlRewrite, FilterProblem> {
    let hostname = match r.hostname.as_deref() {
        Some(h) => Some(HeaderValue::from_str(&hostname(h, format!("{at}.hostname"))?).map_err(|_| problem(format!("{at}.hostname"), "not a valid Host"))?),
        None => None,
    };
    let path = r.path.as_ref().map(|p| path_rewrite(p, &format!("{at}.path"), matched)).transpose()?;
    Ok(UrlRewrite { hostname, path })
}

fn mirror(m: &gw::RequestMirror, at: &str, resolve: &mut Resolve<'_>) -> Result<Mirror, FilterProblem> {
    let (numerator, denominator) = match (m.percent, &m.fraction) {
        (Some(_), Some(_)) => return Err(problem(at.to_string(), "percent and fraction cannot both be set")),
        (Some(p), None) if (0..=100).contains(&p) => (p as u32, 100),
        (Some(p), None) => return Err(problem(format!("{at}.percent"), format!("{p}: must be 0 to 100"))),
        (None, Some(f)) => {
            let d = f.denominator.unwrap_or(100);
            if d < 1 || f.numerator < 0 || f.numerator > d {
                return Err(problem(format!("{at}.fraction"), format!("{}/{d}: the numerator must be 0 to the denominator, which must be at least 1", f.numerator)));
            }
            (f.numerator as u32, d as u32)
        }
        (None, None) => (1, 1),
    };
    let backend = resolve(&m.backend_ref, &format!("{at}.backendRef"))?;
    Ok(Mirror { backend, numerator, denominator })
}

fn cors(c: &gw::HTTPCORSFilter, at: &str) -> Result<CorsPolicy, FilterProblem> {
    let mut list = Vec::new();
    let mut any = false;
    for (i, o) in c.allow_origins.iter().enumerate() {
        if o == "*" {
            any = true;
            continue;
        }
        let mut p = crate::compile::annotations::cors::origin(o).ok_or_else(|| problem(format!("{at}.allowOrigins[{i}]"), format!("{o:?}: must be *, or http(s)://HOST[:PORT] where HOST may start with *.")))?;
        p.multi_label = true;
        list.push(p);
    }
    let origins = if any { CorsOrigins::Any } else { CorsOrigins::List(list) };
    let joined = |v: &[String], key: &str| -> Result<String, FilterProblem> {
        if v.iter().any(|x| x == "*") && v.len() > 1 {
            return Err(problem(format!("{at}.{key}"), "* must be the only entry when it is used"));
        }
        for (i, x) in v.iter().enumerate() {
            if x != "*" && (x.is_empty() || !x.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))) {
                return Err(problem(format!("{at}.{key}[{i}]"), format!("{x:?} is not a valid token")));
            }
        }
        Ok(v.join(", "))
    };
    let max_age = c.max_age.unwrap_or(5);
    if max_age < 0 {
        return Err(problem(format!("{at}.maxAge"), format!("{max_age}: must not be negative")));
    }
    Ok(CorsPolicy {
        origins,
        allow_methods: joined(&c.allow_methods, "allowMethods")?,
        allow_headers: joined(&c.allow_headers, "allowHeaders")?,
        expose_headers: joined(&c.expose_headers, "exposeHeaders")?,
        allow_credentials: c.allow_credentials.unwrap_or(false),
        max_age: max_age as i64,
        gateway: true,
    })
}

/// A Gateway API duration (`^([0-9]{1,5}(h|m|s|ms)){1,4}$`: `1h`, `30s`, `1m30s`, `500ms`).
/// `0s` is zero, which the API reads as "no timeout".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?}: must be one to four numbers of up to 5 digits, each followed by h, m, s or ms (such as 1m30s or 500ms)");
    let (mut rest, mut total, mut parts) = (s, Duration::ZERO, 0);
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else {
            match rest.bytes().next() {
                Some(b'h') => (Duration::from_secs(3600), 1),
                Some(b'm') => (Duration::from_secs(60), 1),
                Some(b's') => (Duration::from_secs(1), 1),
                _ => return Err(bad()),
            }
        };
        rest = &rest[len..];
        total += unit * n as u32;
        parts += 1;
        if parts > 4 {
            return Err(bad());
        }
    }
    if parts == 0 { Err(bad()) } else { Ok(total) }
}

/// A rule's `timeouts` into its proxy settings: `request` → `request_timeout`,
/// `backendRequest` → `try_timeout`; `0s` is none. `backendRequest` may not exceed `request`
/// (when both are set and `request` is not zero). `field` is the `timeouts` field.
pub fn apply_timeouts(t: &gw::HTTPRouteTimeouts, field: &str, proxy: &mut ProxySettings) -> Result<(), FilterProblem> {
    let parse = |v: &Option<String>, key: &str| -> Result<Option<Duration>, FilterProblem> {
        match v {
            None => Ok(None),
            Some(s) => parse_duration(s).map(|d| (!d.is_zero()).then_some(d)).map_err(|m| problem(format!("{field}.{key}"), m)),
        }
    };
    let request = parse(&t.request, "request")?;
    let backend = parse(&t.backend_request, "backendRequest")?;
    if let (Some(r), Some(b)) = (request, backend)
        && b > r
    {
        return Err(problem(format!("{field}.backendRequest"), format!("{} is longer than request ({})", t.backend_request.as_deref().unwrap_or(""), t.request.as_deref().unwrap_or(""))));
    }
    if t.request.is_some() {
        proxy.request_timeout = request;
    }
    if t.backend_request.is_some() {
        proxy.try_timeout = backend;
    }
    Ok(())
}

#[cfg(test)]
#[path = "filters_tests.rs"]
mod tests;

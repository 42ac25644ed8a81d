//! The canary decision: which of a route's two backends (mainline, canary) serves a request,
//! in ingress-nginx's order — affinity cookies, then header, then cookie, then weight.

use std::sync::Arc;

use http::HeaderMap;

use super::affinity::cookie;
use crate::config::affinity::backend_key;
use crate::config::{Affinity, Backend, Canary, HeaderPattern, WeightedBackend};

/// The share of a weighted split that serves a request: one backend takes everything; among
/// several, each is picked in proportion to its weight, and a weight of 0 never. `None` when
/// every weight is 0 (the route answers 500).
pub fn weighted(backends: &[WeightedBackend]) -> Option<&WeightedBackend> {
    if let [only] = backends {
        return Some(only);
    }
    let total: u64 = backends.iter().map(|b| b.weight as u64).sum();
    if total == 0 {
        return None;
    }
    let mut n = super::ids::random_u64() % total;
    for b in backends {
        if n < b.weight as u64 {
            return Some(b);
        }
        n -= b.weight as u64;
    }
    None
}

/// The backend chosen for a request, and the session affinity it is balanced with.
pub struct Choice<'a> {
    pub backend: &'a Arc<Backend>,
    pub affinity: Option<&'a Affinity>,
}

/// Picks between the mainline (`main`, with the route's affinity) and the route's canary.
pub fn choose<'a>(main: &'a Arc<Backend>, affinity: Option<&'a Arc<Affinity>>, canary: Option<&'a Arc<Canary>>, headers: &HeaderMap) -> Choice<'a> {
    let mainline = Choice { backend: main, affinity: affinity.map(|a| &**a) };
    match canary {
        Some(c) if to_canary(c, main, affinity, headers) => Choice { backend: &c.backend, affinity: c.affinity.as_deref() },
        _ => mainline,
    }
}

/// The BACKEND part of the affinity cookie `name`, when the request has one.
fn cookie_backend<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    cookie(headers, name).and_then(|v| v.split_once('|')).map(|(_, b)| b)
}

fn to_canary(c: &Canary, main: &Backend, affinity: Option<&Arc<Affinity>>, headers: &HeaderMap) -> bool {
    // 1. Already pinned to the mainline by its affinity cookie.
    if let Some(a) = affinity
        && cookie_backend(headers, &a.cookie_name) == Some(backend_key(&main.name).as_str())
    {
        return false;
    }
    // 2. A canary with nothing to serve it.
    if c.backend.endpoints.is_empty() {
        return false;
    }
    // 3. Pinned to the canary.
    if let Some(a) = &c.affinity
        && cookie_backend(headers, &a.cookie_name) == Some(backend_key(&c.backend.name).as_str())
    {
        return true;
    }
    let r = &c.rule;
    // 4. The header: an exact value, else a pattern, else always/never.
    if let Some(name) = &r.header
        && let Some(v) = headers.get(name)
    {
        let v = v.to_str().unwrap_or("");
        if let Some(want) = &r.header_value {
            if v == want {
                return true;
            }
        } else if let Some(p) = &r.header_pattern {
            match p {
                HeaderPattern::Valid(p) if p.0.is_match(v) => return true,
                HeaderPattern::Valid(_) => {}
                // ingress-nginx on a regex error: the mainline, without looking further.
                HeaderPattern::Invalid => return false,
            }
        } else if v == "always" {
            return true;
        } else if v == "never" {
            return false;
        }
    }
    // 5. The cookie.
    if let Some(name) = &r.cookie {
        match cookie(headers, name) {
            Some("always") => return true,
            Some("never") => return false,
            _ => {}
        }
    }
    // 6. The weight, out of the total: canary iff random(1..=total) <= weight.
    r.weight > 0 && (super::ids::random_u64() % r.total()) < r.weight as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CanaryRule;
    use crate::config::route::Pattern;
    use crate::store::ObjRef;

    fn backend(name: &str) -> Arc<Backend> {
        Arc::new(Backend::new(0, "ns", name, "80", vec!["127.0.0.1:1".parse().unwrap()], None))
    }

    fn canary(rule: CanaryRule) -> Arc<Canary> {
        Arc::new(Canary { rule, backend: backend("canary"), affinity: None, ingress: Arc::new(ObjRef::new("Ingress", "ns", "c")) })
    }

    fn pick(rule: &CanaryRule, pairs: &[(&str, &str)]) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let (main, c) = (backend("main"), canary(rule.clone()));
        choose(&main, None, Some(&c), &h).backend.service.clone()
    }

    #[test]
    fn weighted_shares() {
        let w = |name: &str, weight| WeightedBackend::new(backend(name), weight);
        let split = [w("a", 70), w("zero", 0), w("b", 30)];
        let mut counts = std::collections::HashMap::new();
        for _ in 0..10_000 {
            *counts.entry(weighted(&split).unwrap().backend.service.clone()).or_insert(0) += 1;
        }
        assert!(!counts.contains_key("zero"), "weight 0 is never picked");
        // 7000 expected; the bound is more than 8 standard deviations (~46) away.
        assert!((6600..7400).contains(&counts["a"]), "{counts:?}");
        assert!(weighted(&[w("x", 0), w("y", 0)]).is_none(), "all zero");
        assert_eq!(weighted(&[w("only", 0)]).unwrap().backend.service, "only", "a lone backend takes everything");
    }

    #[test]
    fn decision_order() {
        let header = CanaryRule { header: Some(http::HeaderName::from_static("canarybyheader")), weight_total: 100, ..Default::default() };
        assert_eq!(pick(&header, &[("CanaryByHeader", "always")]), "canary");
        assert_eq!(pick(&header, &[("CanaryByHeader", "never")]), "main");
        assert_eq!(pick(&header, &[("CanaryByHeader", "bad")]), "main");
        let never_beats_cookie = CanaryRule { cookie: Some("c".into()), ..header.clone() };
        assert_eq!(pick(&never_beats_cookie, &[("CanaryByHeader", "never"), ("cookie", "c=always")]), "main");
        assert_eq!(pick(&never_beats_cookie, &[("CanaryByHeader", "other"), ("cookie", "a=b; c=always")]), "canary");
        let value = CanaryRule { header_value: Some("DoCanary".into()), header_pattern: Some(HeaderPattern::Valid(Pattern::new("^Do[A-Z][a-z]+y$").unwrap())), ..header.clone() };
        assert_eq!(pick(&value, &[("CanaryByHeader", "DoCanary")]), "canary");
        assert_eq!(pick(&value, &[("CanaryByHeader", "DoCananry")]), "main", "the value wins over the pattern");
        assert_eq!(pick(&value, &[("CanaryByHeader", "always")]), "main");
        let invalid = CanaryRule { header_pattern: Some(HeaderPattern::Invalid), cookie: Some("c".into()), ..header.clone() };
        assert_eq!(pick(&invalid, &[("CanaryByHeader", "DoCanary"), ("cookie", "c=always")]), "main");
        assert_eq!(pick(&invalid, &[("cookie", "c=always")]), "canary", "no header: the cookie decides");
        let all = CanaryRule { weight: 100, weight_total: 50, ..Default::default() };
        assert!((0..50).all(|_| pick(&all, &[]) == "canary"), "totals up to 100 are ignored");
        let none = CanaryRule { weight: 0, ..Default::default() };
        assert!((0..50).all(|_| pick(&none, &[]) == "main"));
        let half = CanaryRule { weight: 100, weight_total: 200, ..Default::default() };
        let n = (0..400).filter(|_| pick(&half, &[]) == "canary").count();
        assert!((120..280).contains(&n), "{n} of 400");
    }
}

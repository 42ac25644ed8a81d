//! Gateway API hostnames: a listener's and a route's, and what they have in common.
//!
//! `*.example.com` matches any name with one or more labels before `.example.com` (not
//! `example.com` itself); the listener and route names a route is served under are those
//! both accept (GEP-1154's intersection): equal names, or the more specific of a name and a
//! wildcard that covers it.

/// Whether the (possibly wildcard) `pattern` covers the name `name`, which may itself be a
/// wildcard: `*.a.com` covers `x.a.com`, `x.y.a.com` and `*.x.a.com`, not `a.com`.
pub fn covers(pattern: &str, name: &str) -> bool {
    if pattern == name {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            let name = name.strip_prefix('*').unwrap_or(name);
            name.len() > suffix.len() && name.ends_with(suffix)
        }
        None => false,
    }
}

/// The names a route with `route_names` is served under on a listener with `listener`:
/// `None` when they have none in common (the route does not attach there). An empty route
/// list takes the listener's name; no name on either side is `*` (every host).
pub fn intersect(listener: Option<&str>, route_names: &[String]) -> Option<Vec<String>> {
    let route_names: Vec<String> = route_names.iter().map(|h| h.to_ascii_lowercase()).collect();
    match (listener, route_names.is_empty()) {
        (None, true) => Some(vec!["*".to_string()]),
        (Some(l), true) => Some(vec![l.to_string()]),
        (None, false) => Some(dedup(route_names)),
        (Some(l), false) => {
            let mut out = Vec::new();
            for r in route_names {
                if covers(l, &r) {
                    out.push(r);
                } else if covers(&r, l) {
                    out.push(l.to_string());
                }
            }
            (!out.is_empty()).then(|| dedup(out))
        }
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// Whether `name` is a valid Gateway API hostname: a DNS name, optionally with a leading
/// `*.` label, no IP address, no port.
pub fn valid(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    !rest.is_empty()
        && name.len() <= 253
        && rest.parse::<std::net::IpAddr>().is_err()
        && rest.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') && !l.starts_with('-') && !l.ends_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn intersection_per_the_spec() {
        assert_eq!(intersect(None, &[]), Some(v(&["*"])));
        assert_eq!(intersect(Some("a.com"), &[]), Some(v(&["a.com"])));
        assert_eq!(intersect(Some("*.a.com"), &v(&["x.a.com", "b.com", "x.y.a.com"])), Some(v(&["x.a.com", "x.y.a.com"])));
        assert_eq!(intersect(Some("x.a.com"), &v(&["*.a.com"])), Some(v(&["x.a.com"])));
        assert_eq!(intersect(Some("*.x.a.com"), &v(&["*.a.com"])), Some(v(&["*.x.a.com"])));
        assert_eq!(intersect(Some("*.a.com"), &v(&["*.a.com"])), Some(v(&["*.a.com"])));
        assert_eq!(intersect(Some("*.a.com"), &v(&["a.com"])), None, "a wildcard does not cover its parent");
        assert_eq!(intersect(Some("a.com"), &v(&["b.com"])), None);
        assert!(valid("*.a.com") && valid("a-b.c") && !valid("1.2.3.4") && !valid("a.*.com") && !valid("a.com:80"));
    }
}

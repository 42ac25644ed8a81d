//! Source-address lists: `whitelist-source-range` (also spelled `allowlist-source-range`) and
//! `denylist-source-range`, comma-separated CIDRs or addresses, over the ConfigMap's lists of the
//! same names (an annotation replaces the global list, as in ingress-nginx). The deny list wins;
//! with an allow list, every other address is answered 403.
//!
//! ingress-nginx denies the location when a list cannot be parsed. Vestibule fails closed the
//! same way: an Error naming the key, and the route answers 403 to everyone.

use std::sync::Arc;

use super::Reader;
use crate::config::http::HttpSettings;
use crate::config::limits::{IpFilter, parse_nets};

pub const KEYS: &[&str] = &["whitelist-source-range", "allowlist-source-range", "denylist-source-range"];

/// The filter of an Ingress without these annotations: the ConfigMap's lists.
pub fn global(http: &HttpSettings) -> Option<Arc<IpFilter>> {
    let allow = (!http.allow_source_range.is_empty()).then(|| http.allow_source_range.clone());
    let f = IpFilter { allow, deny: http.deny_source_range.clone(), closed: http.source_range_closed };
    (f != IpFilter::default()).then(|| Arc::new(f))
}

/// One list: `Ok(None)` when absent, `Err(())` (reported) when it cannot be parsed.
fn list(r: &mut Reader, keys: &[&str]) -> Result<Option<Vec<crate::config::limits::IpNet>>, ()> {
    let Some((k, v)) = keys.iter().find_map(|key| r.get(key)) else { return Ok(None) };
    match parse_nets(v) {
        Ok(n) if n.is_empty() => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(e) => {
            r.invalid(&k, format!("{e}; fails closed: every request to this Ingress's paths answers 403"));
            Err(())
        }
    }
}

pub fn parse(r: &mut Reader, global: &Option<Arc<IpFilter>>) -> Option<Arc<IpFilter>> {
    let allow = list(r, &["allowlist-source-range", "whitelist-source-range"]);
    let deny = list(r, &["denylist-source-range"]);
    if matches!((&allow, &deny), (Ok(None), Ok(None))) {
        return global.clone();
    }
    let g = global.as_deref().cloned().unwrap_or_default();
    let closed = allow.is_err() || deny.is_err();
    let own_allow = allow.as_ref().is_ok_and(|a| a.is_some());
    let f = IpFilter {
        // Each annotation replaces its global list; the other global list still applies.
        allow: match allow { Ok(Some(a)) => Some(a), _ => g.allow },
        deny: match deny { Ok(Some(d)) => d, _ => g.deny },
        closed: closed || (g.closed && !own_allow),
    };
    Some(Arc::new(f))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ing, parse_default};
    use crate::compile::diag::Severity;

    #[test]
    fn lists_and_invalid_lists() {
        let (a, e) = parse_default(&ing(&[("nginx.ingress.kubernetes.io/whitelist-source-range", "10.0.0.0/8, 127.0.0.1"), ("nginx.ingress.kubernetes.io/denylist-source-range", "10.1.0.0/16")]));
        let f = a.ipfilter.expect("filter");
        assert!(e.is_empty() && !f.closed && f.allow.as_ref().unwrap().len() == 2 && f.deny.len() == 1);
        let (a, e) = parse_default(&ing(&[("nginx.ingress.kubernetes.io/allowlist-source-range", "10.0.0.0/99")]));
        assert!(a.ipfilter.expect("filter").closed);
        assert_eq!(e.iter().map(|e| e.severity).collect::<Vec<_>>(), [Severity::Error]);
        let (a, _) = parse_default(&ing(&[("nginx.ingress.kubernetes.io/denylist-source-range", "x")]));
        assert!(a.ipfilter.expect("filter").closed);
        let (a, _) = parse_default(&ing(&[]));
        assert!(a.ipfilter.is_none());
    }
}

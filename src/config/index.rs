//! An index over one virtual host's routes, built once with the `Config`, so that a request is
//! checked only against the routes its path can take.
//!
//! The routes of a host are kept in precedence order (`VirtualHost::sort_routes`) and the
//! answer is the first route whose conditions all hold. The index keeps that answer: it maps
//! each path to the positions of the routes whose path condition can hold for it, and a
//! lookup takes the lowest position among those whose conditions hold. Which routes a path
//! can take is decided by `PathMatch::matches` itself:
//!
//! - an `Exact` route only for the path it names: a map from path to positions;
//! - a `Prefix` route `P` for the path `P`, and for every path that continues `P` with `/`
//!   (`""` for every path): a map from prefix to positions, probed with each prefix of the
//!   request path that ends at a segment boundary, longest first;
//! - a `Regex` route for any path: checked on every lookup.
//!
//! A host with few routes keeps the plain scan, which is cheaper there than hashing the path.

use std::collections::HashMap;

use super::{PathKind, Route};

/// Hosts with fewer routes than this are scanned in order rather than through the index.
pub const SCAN_BELOW: usize = 8;

/// The route positions of one host by path condition; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct RouteIndex {
    /// The number of routes the index was built for; a host whose routes differ in number
    /// (changed after it was built) is scanned instead.
    len: usize,
    /// Scan in order: the host is small.
    scan: bool,
    /// `Exact` routes by path; positions ascending.
    exact: HashMap<Box<str>, Vec<u32>>,
    /// `Prefix` routes by prefix (as stored: without trailing slash, `""` for `/`); positions
    /// ascending.
    prefix: HashMap<Box<str>, Vec<u32>>,
    /// `has_len[n]`: some prefix is `n` bytes long, so a request prefix of that length is
    /// worth a probe.
    has_len: Vec<bool>,
    /// Routes checked on every lookup (regular expressions); positions ascending.
    always: Vec<u32>,
}

impl RouteIndex {
    /// The index of `routes` (in their precedence order), scanning hosts below `SCAN_BELOW`.
    pub fn build(routes: &[Route]) -> RouteIndex {
        Self::build_scanning_below(routes, SCAN_BELOW)
    }

    /// The index of `routes`, scanning instead when there are fewer than `scan_below`
    /// (0: always the index).
    pub fn build_scanning_below(routes: &[Route], scan_below: usize) -> RouteIndex {
        let mut ix = RouteIndex { len: routes.len(), scan: routes.len() < scan_below, ..Default::default() };
        if ix.scan || u32::try_from(routes.len()).is_err() {
            ix.scan = true;
            return ix;
        }
        for (pos, r) in routes.iter().enumerate() {
            let pos = pos as u32;
            let p = &r.matches.path;
            match p.kind {
                PathKind::Exact => ix.exact.entry(p.path.as_str().into()).or_default().push(pos),
                PathKind::Prefix => {
                    if ix.has_len.len() <= p.path.len() {
                        ix.has_len.resize(p.path.len() + 1, false);
                    }
                    ix.has_len[p.path.len()] = true;
                    ix.prefix.entry(p.path.as_str().into()).or_default().push(pos)
                }
                PathKind::Regex => ix.always.push(pos),
            }
        }
        ix
    }

    /// Whether lookups go through the index (rather than the scan) for `routes`.
    pub fn indexes(&self, routes: &[Route]) -> bool {
        !self.scan && self.len == routes.len()
    }

    /// The first route of `routes` (those the index was built for) whose path condition holds
    /// for `path` and for which `holds` is true; `holds` must imply the route's path condition.
    pub fn first<'r>(&self, routes: &'r [Route], path: &str, mut holds: impl FnMut(&Route) -> bool) -> Option<&'r Route> {
        if !self.indexes(routes) {
            return routes.iter().find(|r| holds(r));
        }
        // The lowest position found so far: a list is read up to it, no further.
        let mut best = u32::MAX;
        let mut take = |list: &[u32]| {
            for &pos in list {
                if pos >= best {
                    break;
                }
                if holds(&routes[pos as usize]) {
                    best = pos;
                    break;
                }
            }
        };
        // Exact first, then prefixes longest first: in both precedence orders these hold the
        // lowest positions, so the lists after them are mostly cut short.
        if let Some(list) = self.exact.get(path) {
            take(list);
        }
        if !self.prefix.is_empty() {
            for end in boundaries(path) {
                if self.has_len.get(end).copied().unwrap_or(false)
                    && let Some(list) = self.prefix.get(&path[..end])
                {
                    take(list);
                }
            }
        }
        take(&self.always);
        routes.get(best as usize)
    }
}

/// The lengths of the prefixes of `path` a `Prefix` route can match on, longest first: the
/// whole path, the part before each `/`, and the empty prefix (once).
fn boundaries(path: &str) -> impl Iterator<Item = usize> + '_ {
    let bytes = path.as_bytes();
    let slashes = bytes.iter().enumerate().rev().filter(|(_, b)| **b == b'/').map(|(i, _)| i);
    // The whole path (unless it is empty), each slash, then 0 unless the path starts with a
    // slash (whose position gave it already).
    let whole = (!path.is_empty()).then_some(path.len());
    let zero = (!path.starts_with('/')).then_some(0);
    whole.into_iter().chain(slashes).chain(zero)
}

#[cfg(test)]
mod tests {
    use super::boundaries;

    #[test]
    fn boundaries_longest_first_each_once() {
        let b = |p: &str| boundaries(p).collect::<Vec<_>>();
        assert_eq!(b("/a/bc"), vec![5, 2, 0]);
        assert_eq!(b("/a/"), vec![3, 2, 0]);
        assert_eq!(b("/"), vec![1, 0]);
        assert_eq!(b(""), vec![0]);
        assert_eq!(b("ab/c"), vec![4, 2, 0]);
        assert_eq!(b("//"), vec![2, 1, 0]);
    }
}

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
//! - a `Regex` route whose every match begins with a literal (`(?i)^/api/v[0-9]+` begins
//!   with `/api/v`, in any case): a map from literal to positions, probed with the request
//!   path's prefixes of the literals' lengths (lowercased for case-insensitive ones); other
//!   expressions, and every expression for a path that is not ASCII (where case folding
//!   reaches beyond ASCII), are checked on every lookup.
//!
//! A host with few routes keeps the plain scan, which is cheaper there than hashing the path.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{PathKind, Route};

/// Hosts with fewer routes than this are scanned in order rather than through the index.
pub const SCAN_BELOW: usize = 8;

/// The route positions of one host by path condition; see the module documentation.
#[derive(Clone, Default)]
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
    /// Case-sensitive expressions by the literal their matches begin with.
    cased: HashMap<Box<str>, Vec<u32>>,
    /// Case-insensitive expressions by their literal, lowercase.
    folded: HashMap<Box<str>, Vec<u32>>,
    /// The distinct lengths of the literals, longest first.
    literal_lens: Vec<usize>,
    /// Expressions without a literal: checked on every lookup.
    always: Vec<u32>,
    /// Every expression: checked on every lookup of a path that is not ASCII.
    regex: Vec<u32>,
}

/// Sorted, so that two equal indexes print alike (the maps' order is random).
impl std::fmt::Debug for RouteIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn sorted(m: &HashMap<Box<str>, Vec<u32>>) -> std::collections::BTreeMap<&Box<str>, &Vec<u32>> {
            m.iter().collect()
        }
        f.debug_struct("RouteIndex")
            .field("len", &self.len)
            .field("scan", &self.scan)
            .field("exact", &sorted(&self.exact))
            .field("prefix", &sorted(&self.prefix))
            .field("cased", &sorted(&self.cased))
            .field("folded", &sorted(&self.folded))
            .field("literal_lens", &self.literal_lens)
            .field("always", &self.always)
            .field("regex", &self.regex)
            .finish()
    }
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
                PathKind::Regex => {
                    ix.regex.push(pos);
                    match p.regex.as_ref().and_then(|r| literal(r.0.as_str())) {
                        None => ix.always.push(pos),
                        Some((lit, fold)) => {
                            if !ix.literal_lens.contains(&lit.len()) {
                                ix.literal_lens.push(lit.len());
                            }
                            let map = if fold { &mut ix.folded } else { &mut ix.cased };
                            map.entry(lit.into()).or_default().push(pos);
                        }
                    }
                }
            }
        }
        ix.literal_lens.sort_unstable_by(|a, b| b.cmp(a));
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
        if !path.is_ascii() {
            take(&self.regex);
        } else if !self.regex.is_empty() {
            let lower = match self.folded.is_empty() || !path.bytes().any(|b| b.is_ascii_uppercase()) {
                true => Cow::Borrowed(path),
                false => Cow::Owned(path.to_ascii_lowercase()),
            };
            for &n in self.literal_lens.iter().filter(|n| **n <= path.len()) {
                if let Some(list) = self.cased.get(&path[..n]) {
                    take(list);
                }
                if let Some(list) = self.folded.get(&lower[..n]) {
                    take(list);
                }
            }
            take(&self.always);
        }
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

/// The literal every match of `pattern` begins with, and whether it is compared without
/// regard to ASCII case: for the forms compile makes, `(?i)^SOURCE` (Ingress) and
/// `^(?:SOURCE)$` (Gateway API), the plain characters SOURCE starts with, less one that a
/// `?`, `*` or `{` makes optional. `None` when there are none, or when an alternation could
/// make the start optional (a `|` outside every group, or any `|` beside an escape or class,
/// which this does not parse).
fn literal(pattern: &str) -> Option<(String, bool)> {
    let (rest, fold) = if let Some(r) = pattern.strip_prefix("(?i)^") {
        (r, true)
    } else if let Some(r) = pattern.strip_prefix("^(?:") {
        (r, false)
    } else {
        (pattern.strip_prefix('^')?, false)
    };
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"/_-~%:@!,;=&'".contains(b);
    let run = rest.bytes().take_while(plain).count();
    let optional_last = matches!(rest.as_bytes().get(run), Some(b'?' | b'*' | b'{'));
    let lit = &rest[..run - usize::from(optional_last && run > 0)];
    let tail = &rest[run..];
    if tail.contains('|') {
        if tail.contains('\\') || tail.contains('[') {
            return None;
        }
        // Depth within SOURCE: below 1 is outside every group of it (for the Gateway API
        // form, a `)` of SOURCE's own can close the wrapping group).
        let mut depth = 0i32;
        for b in tail.bytes() {
            match b {
                b'(' => depth += 1,
                b')' => depth -= 1,
                b'|' if depth <= 0 => return None,
                _ => {}
            }
        }
    }
    (!lit.is_empty()).then(|| (if fold { lit.to_ascii_lowercase() } else { lit.to_string() }, fold))
}

#[cfg(test)]
mod tests {
    use super::{boundaries, literal};

    #[test]
    fn literals_of_expressions() {
        let l = |p: &str| literal(p).map(|(s, f)| format!("{s}{}", if f { " (any case)" } else { "" }));
        assert_eq!(l("(?i)^/API/v[0-9]+").as_deref(), Some("/api/v (any case)"));
        assert_eq!(l("(?i)^/a(/|$)(.*)").as_deref(), Some("/a (any case)"));
        assert_eq!(l("^(?:/a/[a-z]+)$").as_deref(), Some("/a/"));
        assert_eq!(l("^(?:/Ab)$").as_deref(), Some("/Ab"));
        assert_eq!(l("(?i)^/ab?c").as_deref(), Some("/a (any case)"), "an optional character ends it");
        assert_eq!(l("(?i)^/ab*").as_deref(), Some("/a (any case)"));
        assert_eq!(l("(?i)^/ab{0,2}").as_deref(), Some("/a (any case)"));
        assert_eq!(l("(?i)^/ab+").as_deref(), Some("/ab (any case)"));
        assert_eq!(l("(?i)^/a.b").as_deref(), Some("/a (any case)"));
        assert_eq!(l("(?i)^/a|/b"), None, "an alternation outside groups");
        assert_eq!(l("^(?:/a|/b)$"), None);
        assert_eq!(l("^(?:/a)|(/b)$"), None, "a source that closes the wrapping group");
        assert_eq!(l("(?i)^/a[|](x|y)"), None, "a bar beside a class is not parsed");
        assert_eq!(l("(?i)^/a\\|b"), None);
        assert_eq!(l("^(?:.*b)$"), None);
        assert_eq!(l("(?i)^"), None);
        assert_eq!(l("/a"), None, "not anchored");
        assert_eq!(l("(?i)^?"), None);
    }

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

//! Canary releases as data: the alternative backend a canary Ingress adds to its mainline's
//! route, and the rule that decides, per request, which of the two serves it (ingress-nginx's
//! `canary-*` annotations). The decision itself is the data plane's (`proxy/split.rs`).

use std::sync::Arc;

use super::affinity::Affinity;
use super::backend::Backend;
use super::route::Pattern;
use crate::store::ObjRef;

/// How `canary-by-header-pattern` came out of compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderPattern {
    /// Matched unanchored (unless the pattern anchors itself), case-sensitive.
    Valid(Pattern),
    /// The pattern does not compile: a request carrying the header goes to the mainline at
    /// once, as ingress-nginx does on a regex error at run time.
    Invalid,
}

/// The traffic policy of one canary, checked in this order: header, cookie, weight.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CanaryRule {
    /// `canary-by-header`, lowercase.
    pub header: Option<http::HeaderName>,
    /// `canary-by-header-value`: the header must equal it exactly.
    pub header_value: Option<String>,
    /// `canary-by-header-pattern`: used only when no value is set.
    pub header_pattern: Option<HeaderPattern>,
    /// `canary-by-cookie`: the cookie's value `always` or `never` decides.
    pub cookie: Option<String>,
    /// `canary-weight`.
    pub weight: i64,
    /// `canary-weight-total`, as given (honoured only above 100, see `total`).
    pub weight_total: i64,
}

impl CanaryRule {
    /// The total the weight is out of: `canary-weight-total` only when above 100 (smaller
    /// totals are ignored, as in ingress-nginx), else 100.
    pub fn total(&self) -> u64 {
        if self.weight_total > 100 { self.weight_total as u64 } else { 100 }
    }
}

/// The alternative backend of a route and when it is used.
#[derive(Debug, Clone)]
pub struct Canary {
    pub rule: CanaryRule,
    pub backend: Arc<Backend>,
    /// Session affinity of the canary backend: the mainline's (behaviour `sticky`), or none
    /// (`legacy`).
    pub affinity: Option<Arc<Affinity>>,
    /// The canary Ingress.
    pub ingress: Arc<ObjRef>,
}

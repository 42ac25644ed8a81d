//! `load-balance` and `upstream-hash-by`: how requests are spread over endpoints. A valid
//! `upstream-hash-by` wins over `load-balance`.

use super::Reader;
use crate::config::{HashKey, Policy};

pub const KEYS: &[&str] = &["load-balance", "upstream-hash-by"];

pub fn parse(r: &mut Reader, default: &Policy) -> Policy {
    let mut policy = default.clone();
    if let Some((k, v)) = r.get("load-balance") {
        match v.trim() {
            "round_robin" => policy = Policy::RoundRobin,
            "ewma" | "least_request" => policy = Policy::LeastRequest,
            other => r.bad(&k, format!("{other:?}: must be round_robin or ewma; the default is used")),
        }
    }
    if let Some((k, v)) = r.get("upstream-hash-by") {
        match HashKey::parse(v.trim()) {
            Ok(key) => policy = Policy::Hash(key),
            Err(e) => r.bad(&k, format!("{e}; the default is used")),
        }
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ing, parse_default as parse_all};
    use crate::config::Policy;

    #[test]
    fn hash_wins_over_load_balance() {
        let (a, e) = parse_all(&ing(&[("nginx.ingress.kubernetes.io/load-balance", "ewma"), ("nginx.ingress.kubernetes.io/upstream-hash-by", "$request_uri")]));
        assert!(e.is_empty(), "{e:?}");
        assert!(matches!(a.policy, Policy::Hash(_)), "{:?}", a.policy);
        let (a, _) = parse_all(&ing(&[("vestibule.dev/load-balance", "ewma")]));
        assert_eq!(a.policy, Policy::LeastRequest);
    }
}

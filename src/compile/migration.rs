//! The migration report: per Ingress, the ingress-nginx (and Vestibule) annotations that are
//! ignored (no family implements them) or refused (snippets), so a team moving from
//! ingress-nginx sees in one place what will behave differently. The same keys are reported
//! one by one as diagnostics (AnnotationNotSupported, SnippetRefused) for the Ingresses that
//! are served.

use std::collections::{BTreeMap, BTreeSet};

use super::annotations::{PREFIXES, is_supported, snippet};
use crate::store::{ObjRef, Store};

/// The annotation keys one Ingress carries that Vestibule does not honour.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NotHonoured {
    /// Reported as not supported: the annotation is ignored.
    pub ignored: BTreeSet<String>,
    /// Refused (snippets): never executed.
    pub refused: BTreeSet<String>,
    /// The Ingress itself was rejected when read (see the errors above the report).
    pub rejected: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub by_ingress: BTreeMap<ObjRef, NotHonoured>,
}

impl Report {
    /// Every Ingress in the store, whether or not it is ours or valid: a team migrating wants
    /// the whole picture, and an Ingress skipped for another reason still carries the keys.
    pub fn of(store: &Store) -> Report {
        let mut r = Report::default();
        for ((ns, name), ing) in &store.ingresses {
            let empty = BTreeMap::new();
            r.add(ObjRef::new("Ingress", ns, name), ing.metadata.annotations.as_ref().unwrap_or(&empty), false);
        }
        r
    }

    /// Adds one Ingress's annotations; `rejected` when the Ingress itself could not be read
    /// (the source reported it), so that its keys are named all the same.
    pub fn add(&mut self, ingress: ObjRef, annotations: &BTreeMap<String, String>, rejected: bool) {
        let mut n = NotHonoured { rejected, ..Default::default() };
        for key in annotations.keys() {
            let Some(rest) = PREFIXES.iter().find_map(|p| key.strip_prefix(p)) else { continue };
            if snippet::owns(rest) {
                n.refused.insert(key.clone());
            } else if !is_supported(rest) {
                n.ignored.insert(key.clone());
            }
        }
        if !n.ignored.is_empty() || !n.refused.is_empty() {
            self.by_ingress.entry(ingress).or_insert(n);
        }
    }

    /// One line per Ingress with keys it does not honour, then a summary line.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (ing, n) in &self.by_ingress {
            let mut parts = Vec::new();
            if !n.ignored.is_empty() {
                parts.push(format!("ignored {}", n.ignored.iter().cloned().collect::<Vec<_>>().join(", ")));
            }
            if !n.refused.is_empty() {
                parts.push(format!("refused {}", n.refused.iter().cloned().collect::<Vec<_>>().join(", ")));
            }
            let note = if n.rejected { " (the Ingress itself is rejected, see the errors)" } else { "" };
            out.push(format!("migration: {ing}{note}: {}", parts.join("; ")));
        }
        let ignored: usize = self.by_ingress.values().map(|n| n.ignored.len()).sum();
        let refused: usize = self.by_ingress.values().map(|n| n.refused.len()).sum();
        let distinct: BTreeSet<&String> = self.by_ingress.values().flat_map(|n| n.ignored.iter().chain(&n.refused)).collect();
        out.push(format!(
            "annotations not honoured: {ignored} ignored, {refused} refused, on {} Ingress(es); {} distinct key(s)",
            self.by_ingress.len(),
            distinct.len()
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::annotations::tests::ing;

    #[test]
    fn groups_by_ingress_and_counts() {
        let mut store = Store::default();
        let mut add = |name: &str, pairs: &[(&str, &str)]| {
            let mut i = ing(pairs);
            i.metadata.name = Some(name.into());
            store.insert(crate::store::Object::Ingress(i));
        };
        add("shop", &[("nginx.ingress.kubernetes.io/enable-opentelemetry", "true"), ("nginx.ingress.kubernetes.io/configuration-snippet", "x"), ("nginx.ingress.kubernetes.io/ssl-redirect", "false")]);
        add("blog", &[("nginx.ingress.kubernetes.io/enable-opentelemetry", "true"), ("nginx.ingress.kubernetes.io/backend-protocol", "FTP"), ("example.com/x", "y")]);
        add("fine", &[("nginx.ingress.kubernetes.io/backend-protocol", "GRPC")]);
        let lines = Report::of(&store).lines();
        assert_eq!(
            lines,
            [
                "migration: Ingress ns/blog: ignored nginx.ingress.kubernetes.io/enable-opentelemetry",
                "migration: Ingress ns/shop: ignored nginx.ingress.kubernetes.io/enable-opentelemetry; refused nginx.ingress.kubernetes.io/configuration-snippet",
                "annotations not honoured: 2 ignored, 1 refused, on 2 Ingress(es); 2 distinct key(s)",
            ]
        );
    }
}

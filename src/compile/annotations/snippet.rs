//! Snippets (`configuration-snippet`, `server-snippet`, `auth-snippet`, `stream-snippet`,
//! `modsecurity-snippet`, and any other key ending in `-snippet`): text ingress-nginx pastes
//! into its generated configuration. Vestibule never executes or templates anything from an
//! object, so every snippet is refused: an Error names the Ingress and the key, the snippet has
//! no effect, and the rest of the Ingress is served.
//!
//! ingress-nginx rejects the whole Ingress at its default `annotations-risk-level` (snippets are
//! Critical) and strips them when `allow-snippet-annotations` is false; with both opened up it
//! runs them. Vestibule does neither: nothing in the Ingress is lost but the snippet, and no
//! ConfigMap setting makes a snippet run. This is the answer to CVE-2021-25742 and
//! CVE-2025-1974, where snippet text reached the generated configuration.

use super::{PREFIXES, Reader};

/// The snippet keys ingress-nginx documents; `owns` also claims any other `*-snippet` key.
pub const KEYS: &[&str] = &["auth-snippet", "configuration-snippet", "modsecurity-snippet", "server-snippet", "stream-snippet"];

pub const MESSAGE: &str = "snippets are not supported: nothing in an object is executed";

/// Whether `key` (without prefix) is a snippet.
pub fn owns(key: &str) -> bool {
    KEYS.contains(&key) || key.ends_with("-snippet")
}

/// Refuses every snippet under either prefix (both are reported when both are set).
pub fn parse(r: &mut Reader) {
    let keys: Vec<String> = r
        .ingress
        .metadata
        .annotations
        .iter()
        .flat_map(|a| a.keys())
        .filter(|k| PREFIXES.iter().any(|p| k.strip_prefix(p).is_some_and(owns)))
        .cloned()
        .collect();
    for k in keys {
        r.refuse(&k, format!("{MESSAGE}; this annotation has no effect, the rest of the Ingress is served"));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ing, parse_default};
    use crate::compile::{Reason, Severity};

    #[test]
    fn every_snippet_is_an_error_and_nothing_else_is_lost() {
        let (a, e) = parse_default(&ing(&[
            ("nginx.ingress.kubernetes.io/configuration-snippet", "more_set_headers \"Foo: Bar\";"),
            ("nginx.ingress.kubernetes.io/server-snippet", "location /x { return 200; }"),
            ("nginx.ingress.kubernetes.io/auth-snippet", "proxy_set_header A b;"),
            ("nginx.ingress.kubernetes.io/stream-snippet", "server { listen 9000; }"),
            ("nginx.ingress.kubernetes.io/modsecurity-snippet", "SecRuleEngine On"),
            ("nginx.ingress.kubernetes.io/some-future-snippet", "x"),
            ("vestibule.dev/configuration-snippet", "y"),
            ("nginx.ingress.kubernetes.io/backend-protocol", "GRPC"),
        ]));
        assert_eq!(a.backend_protocol, crate::config::BackendProtocol::Grpc, "the other annotations still apply");
        assert_eq!(e.len(), 7, "{e:?}");
        for err in &e {
            assert_eq!((err.severity, err.reason), (Severity::Error, Reason::SnippetRefused), "{err:?}");
            assert!(err.message.starts_with(super::MESSAGE), "{err:?}");
            assert!(err.field.starts_with("metadata.annotations[") && err.field.ends_with("-snippet]"), "{err:?}");
        }
        assert!(e.iter().any(|e| e.field == "metadata.annotations[vestibule.dev/configuration-snippet]"));
    }

    #[test]
    fn snippets_are_owned_but_not_honoured() {
        assert!(!crate::compile::annotations::is_supported("configuration-snippet"));
        assert!(!crate::compile::annotations::is_supported("x-snippet"));
        assert!(crate::compile::annotations::is_owned("x-snippet"));
        assert!(crate::compile::annotations::is_supported("backend-protocol"));
    }
}

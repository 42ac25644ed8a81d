//! `rewrite-target`, `use-regex`, `app-root`, `x-forwarded-prefix`, `preserve-trailing-slash`:
//! how the paths of an Ingress are matched and what path the backend is sent.
//!
//! The values are checked with ingress-nginx's rules: a target, app root or prefix may only hold
//! letters, digits and `- . _ ~ / : $`. Vestibule also requires every `$` to name a capture
//! (`$0`..`$9`), since it has no other variables. Invalid values are reported and not applied,
//! the rest of the Ingress serves; ingress-nginx ignores them too, except `x-forwarded-prefix`,
//! where it drops the whole Ingress (here an Error naming the key).

use super::{Reader, go_bool, string};
use crate::compile::diag::Severity;

pub const KEYS: &[&str] = &["rewrite-target", "use-regex", "app-root", "x-forwarded-prefix", "preserve-trailing-slash"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// The path the backend is sent, `$N` standing for the path's captures.
    pub target: Option<String>,
    pub use_regex: bool,
    /// Where a request for `/` is redirected.
    pub app_root: Option<String>,
    /// Sent as `X-Forwarded-Prefix` by locations that rewrite.
    pub x_forwarded_prefix: Option<String>,
    /// The HTTPS redirect keeps a trailing `/`.
    pub preserve_trailing_slash: bool,
}

impl Rewrite {
    /// Whether a path with this rule path rewrites (a target equal to the path does not).
    pub fn rewrites(&self, rule_path: &str) -> bool {
        self.target.as_deref().is_some_and(|t| t != rule_path)
    }
}

/// ingress-nginx's `RegexPathWithCapture`: `^/?[-._~a-zA-Z0-9/:$]*$`.
pub fn path_with_capture(v: &str) -> bool {
    v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/:$".contains(&b))
}

/// Every `$` is followed by a digit (a capture group).
fn captures_only(v: &str) -> bool {
    let b = v.as_bytes();
    b.iter().enumerate().all(|(i, &c)| c != b'$' || b.get(i + 1).is_some_and(u8::is_ascii_digit))
}

const CHARS: &str = "may only contain letters, digits and - . _ ~ / : $";

fn checked(r: &mut Reader, key: &str, severity: Severity) -> Option<String> {
    let (k, v) = r.get(key)?;
    let v = string(v)?;
    if !path_with_capture(&v) {
        r.bad_with(&k, severity, format!("{v:?}: {CHARS}; it is not applied"));
        return None;
    }
    if !captures_only(&v) {
        r.bad_with(&k, severity, format!("{v:?}: '$' must be followed by a capture group number ($1..$9); it is not applied"));
        return None;
    }
    Some(v)
}

fn flag(r: &mut Reader, key: &str, default: bool) -> bool {
    let Some((k, v)) = r.get(key) else { return default };
    match go_bool(v) {
        Some(b) => b,
        None => {
            r.bad(&k, format!("{v:?}: must be \"true\" or \"false\""));
            default
        }
    }
}

pub fn parse(r: &mut Reader, defaults: &Rewrite) -> Rewrite {
    let target = checked(r, "rewrite-target", Severity::Warning);
    let app_root = match checked(r, "app-root", Severity::Warning) {
        // ingress-nginx requires a request URI that is not absolute: a path.
        Some(v) if !v.starts_with('/') => {
            let (k, _) = r.get("app-root").expect("present");
            r.bad(&k, format!("{v:?}: must be a path starting with '/'; it is not applied"));
            None
        }
        v => v,
    };
    // ingress-nginx drops the whole Ingress for an invalid prefix; Vestibule reports an Error
    // and serves the Ingress without it.
    let x_forwarded_prefix = checked(r, "x-forwarded-prefix", Severity::Error);
    Rewrite {
        target,
        use_regex: flag(r, "use-regex", false),
        app_root,
        x_forwarded_prefix,
        preserve_trailing_slash: flag(r, "preserve-trailing-slash", defaults.preserve_trailing_slash),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ing, parse_default};
    use super::*;

    const P: &str = "nginx.ingress.kubernetes.io/";

    #[test]
    fn validator() {
        for ok in ["/", "/$2", "/new/backend/$1", "new", "/a:b~c.d_e-f"] {
            assert!(path_with_capture(ok), "{ok}");
        }
        for bad in ["/a?b=1", "/a&b", "/(x)", "/{x}", "/%20", "/a b", "/a\"b"] {
            assert!(!path_with_capture(bad), "{bad}");
        }
    }

    #[test]
    fn table() {
        /// Annotations in; target, use-regex, app root, prefix and error count out.
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, bool, Option<&'a str>, Option<&'a str>, usize);
        let cases: &[Case] = &[
            (&[("rewrite-target", "/$2")], Some("/$2"), false, None, None, 0),
            (&[("rewrite-target", " /x \n")], Some("/x"), false, None, None, 0),
            (&[("rewrite-target", "/a?b=1")], None, false, None, None, 1),
            (&[("rewrite-target", "$scheme://x")], None, false, None, None, 1),
            (&[("rewrite-target", "")], None, false, None, None, 0),
            (&[("use-regex", "true")], None, true, None, None, 0),
            (&[("use-regex", "T")], None, true, None, None, 0),
            (&[("use-regex", "maybe")], None, false, None, None, 1),
            (&[("app-root", "/foo")], None, false, Some("/foo"), None, 0),
            (&[("app-root", "foo")], None, false, None, None, 1),
            (&[("app-root", "http://x/foo")], None, false, None, None, 1),
            (&[("x-forwarded-prefix", "/test/value")], None, false, None, Some("/test/value"), 0),
            (&[("x-forwarded-prefix", "/a b")], None, false, None, None, 1),
        ];
        for (pairs, target, regex, root, prefix, errors) in cases {
            let full: Vec<(String, &str)> = pairs.iter().map(|(k, v)| (format!("{P}{k}"), *v)).collect();
            let refs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let (a, e) = parse_default(&ing(&refs));
            let w = &a.rewrite;
            assert_eq!((w.target.as_deref(), w.use_regex, w.app_root.as_deref(), w.x_forwarded_prefix.as_deref()), (*target, *regex, *root, *prefix), "{pairs:?}");
            assert_eq!(e.len(), *errors, "{pairs:?}: {e:?}");
        }
        let (_, e) = parse_default(&ing(&[("nginx.ingress.kubernetes.io/x-forwarded-prefix", "/a?b")]));
        assert_eq!(e[0].severity, Severity::Error);
    }
}

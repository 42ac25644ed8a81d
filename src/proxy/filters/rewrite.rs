//! `rewrite-target`: the path sent upstream is replaced by the target, `$1`..`$9` standing for
//! the captures of the route's path expression on the normalised path (a group that took no
//! part is empty). The query string is kept. `X-Forwarded-Prefix` is set when configured.

use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};

use super::super::context::Ctx;
use super::super::respond::{self, RespBody};
use super::super::router::normalize_path;
use crate::config::route::Pattern;

static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

pub fn on_request<B>(pattern: &Pattern, target: &str, prefix: Option<&str>, ctx: &Ctx<'_>, req: &mut Request<B>) -> Option<Response<RespBody>> {
    let path = normalize_path(req.uri().path()).into_owned();
    let caps = pattern.0.captures(&path);
    let group = |n: usize| caps.as_ref().and_then(|c| c.get(n)).map(|m| m.as_str()).unwrap_or("");
    let new_path = expand(target, group);
    let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    // As nginx: a target that is an absolute URL is answered as a redirect (302).
    if new_path.starts_with("http://") || new_path.starts_with("https://") {
        return Some(respond::redirect(StatusCode::FOUND, &format!("{}{query}", escape(&new_path)), &ctx.request_id));
    }
    let slash = if new_path.starts_with('/') { "" } else { "/" };
    let Ok(pq) = PathAndQuery::try_from(format!("{slash}{}{query}", escape(&new_path))) else { return Some(ctx.fail(StatusCode::INTERNAL_SERVER_ERROR)) };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(pq);
    match Uri::from_parts(parts) {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return Some(ctx.fail(StatusCode::INTERNAL_SERVER_ERROR)),
    }
    if let Some(p) = prefix
        && let Ok(v) = HeaderValue::from_str(&expand(p, group))
    {
        req.headers_mut().insert(X_FORWARDED_PREFIX.clone(), v);
    }
    None
}

/// `template` with each `$N` replaced by group N (compile made sure every `$` has a digit).
fn expand<'a>(template: &str, group: impl Fn(usize) -> &'a str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().and_then(|d| d.to_digit(10))) {
            ('$', Some(n)) => {
                chars.next();
                out.push_str(group(n as usize));
            }
            _ => out.push(c),
        }
    }
    out
}

/// Percent-encodes what may not appear in a path as sent (captures come from the decoded path).
pub(super) fn escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(path_re: &str, target: &str, path: &str) -> String {
        let p = Pattern::new(&format!("(?i)^{path_re}")).unwrap();
        let caps = p.0.captures(path);
        expand(target, |n| caps.as_ref().and_then(|c| c.get(n)).map(|m| m.as_str()).unwrap_or(""))
    }

    #[test]
    fn captures() {
        let cases = [
            ("/something(/|$)(.*)", "/$2", "/something", "/"),
            ("/something(/|$)(.*)", "/$2", "/something/", "/"),
            ("/something(/|$)(.*)", "/$2", "/something/new", "/new"),
            ("/foo/bar/(.+)", "/new/backend/$1", "/foo/bar/bar", "/new/backend/bar"),
            ("/a(x)?", "/$1/$9/$0", "/a", "////a"),
            ("/", "/new/backend", "/anything", "/new/backend"),
        ];
        for (re, target, path, want) in cases {
            assert_eq!(rewrite(re, target, path), want, "{re} {target} {path}");
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("/a b/%/?#/é"), "/a%20b/%25/%3F%23/%C3%A9");
        assert_eq!(escape("/ok/-._~:@"), "/ok/-._~:@");
    }
}

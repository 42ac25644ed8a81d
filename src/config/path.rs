//! The request path and host as routes match them: pure functions shared by the data plane and
//! the tools that explain it.

use std::borrow::Cow;

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The path as routes are matched against it, the way nginx sees it: percent-decoded, with
/// repeated slashes merged and `.`/`..` segments resolved. The request is forwarded unchanged;
/// only matching uses this form, so `/public/../admin` cannot slip past a rule for `/admin`.
///
/// The path is decoded once. A `%` in the result that two hex digits follow (it came from
/// `%25`, as in `/%2541`) stays `%25`, so the result is its own normal form: normalising it
/// again changes nothing, and no second decoding can turn `/%2561dmin` into `/admin`.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    let needs_work = path.contains('%') || path.contains("//") || path.contains("/.") || !path.starts_with('/');
    if !needs_work {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len() + 1);
    if !path.starts_with('/') {
        decoded.push(b'/');
    }
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                decoded.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    let decoded = String::from_utf8_lossy(&decoded);
    let decoded = escape_percent_escapes(&decoded);
    let mut out: Vec<&str> = Vec::new();
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(decoded.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() || trailing {
        s.push('/');
    }
    Cow::Owned(s)
}

/// `%` followed by two hex digits → `%25` and the digits; everything else as it is.
fn escape_percent_escapes(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let escape = |i: usize| b[i] == b'%' && i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some();
    if !(0..b.len()).any(escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 4);
    for (i, c) in s.char_indices() {
        out.push(c);
        if escape(i) {
            out.push_str("25");
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(normalize_path("/a/b"), "/a/b");
        assert_eq!(normalize_path("/a//b"), "/a/b");
        assert_eq!(normalize_path("/a/./b"), "/a/b");
        assert_eq!(normalize_path("/a/../b"), "/b");
        assert_eq!(normalize_path("/../../b"), "/b");
        assert_eq!(normalize_path("/a/%62"), "/a/b");
        assert_eq!(normalize_path("/a/b/"), "/a/b/");
        assert_eq!(normalize_path("/a/b/.."), "/a/");
        assert_eq!(normalize_path("%2Fa"), "/a");
        assert_eq!(normalize_path("/%"), "/%");
        assert_eq!(normalize_path("/a%2"), "/a%2");
        // Decoded once: a percent escape that decoding makes stays escaped.
        assert_eq!(normalize_path("/%25aa"), "/%25aa");
        assert_eq!(normalize_path("/%2561dmin"), "/%2561dmin");
        assert_eq!(normalize_path("/%%34%31"), "/%2541");
        assert_eq!(normalize_path("/100%25"), "/100%");
        assert_eq!(normalize_path("/100%25/x"), "/100%/x");
        for p in ["/%25aa", "/%2561dmin", "/%%34%31", "/100%25", "/%ff", "/a/%2e%2E/b"] {
            let once = normalize_path(p).into_owned();
            assert_eq!(normalize_path(&once), once, "{p}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(strip_port("foo.com:8080"), "foo.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("foo.com"), "foo.com");
    }
}

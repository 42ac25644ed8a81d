//! Filters: typed policies applied to the requests of a route, in order. Each variant is
//! handled by one filter of the data plane; nothing in one is code or configuration text.

use super::route::Pattern;

/// A typed policy on a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Plain-HTTP requests are answered with a redirect to HTTPS (ingress-nginx's
    /// `ssl-redirect` / `force-ssl-redirect`), with this status (`http-redirect-code`).
    /// `preserve_trailing_slash` keeps a final `/` of the request target; `use_port` always
    /// names the HTTPS port (`use-port-in-redirects`).
    HttpsRedirect { status: u16, preserve_trailing_slash: bool, use_port: bool },
    /// The request path is replaced by `target` (ingress-nginx's `rewrite-target`), its
    /// `$1`..`$9` taken from `pattern` (the route's path expression) applied to the normalised
    /// path; the query string is kept. `prefix` is sent as `X-Forwarded-Prefix` (its own
    /// `$N` expanded the same way).
    Rewrite { pattern: Pattern, target: String, prefix: Option<String> },
    /// A request for exactly `/` is answered 302 to `root` on the same scheme and Host
    /// (ingress-nginx's `app-root`).
    AppRoot { root: String },
    /// Every request is answered with `status` and this Location, verbatim
    /// (`permanent-redirect`, `temporal-redirect`).
    FixedRedirect { status: u16, location: String },
    /// The extra host of `from-to-www-redirect`: every request is answered with `status` to
    /// the same scheme, `to_host`, the port it arrived on and its target.
    WwwRedirect { to_host: String, status: u16 },
}

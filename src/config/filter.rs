//! Filters: typed policies applied to the requests of a route, in order. Each variant is
//! handled by one filter of the data plane; nothing in one is code or configuration text.

/// A typed policy on a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Plain-HTTP requests are answered with a redirect to HTTPS (ingress-nginx's
    /// `ssl-redirect`), with this status.
    HttpsRedirect { status: u16 },
}

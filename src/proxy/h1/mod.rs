//! HTTP/1.1 without hyper, for the common case (`--http1-fast-path`): a client connection's
//! requests without a body (`server`), and the upstream exchange of a request without a body
//! with a cleartext HTTP/1.1 endpoint (`client`), with the chunked framing they read
//! (`chunked`). Everything else goes through hyper, and every phase between the two is the
//! general path's: the same handler, filters, retries, logs and metrics.

pub mod chunked;
pub mod client;
pub mod server;

/// Appends `name: value` CRLF for every field.
fn put_fields(out: &mut Vec<u8>, headers: &http::HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Where a parsed field's name and value lie in the head they were parsed from, so that the
/// head can be frozen once and every value shared from it instead of copied one by one.
#[derive(Clone, Copy, Default)]
pub(crate) struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

/// `part`'s range in `head`, which the parser took it from; empty when it is empty.
pub(crate) fn range(head: &[u8], part: &[u8]) -> (u32, u32) {
    if part.is_empty() {
        return (0, 0);
    }
    let start = (part.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize);
    // Out of range only if the parser handed back foreign memory; `fields` then refuses it.
    let start = u32::try_from(start).unwrap_or(u32::MAX);
    (start, start.saturating_add(part.len() as u32))
}

impl Span {
    pub(crate) fn of(head: &[u8], f: &httparse::Header<'_>) -> Span {
        Span { name: range(head, f.name.as_bytes()), value: range(head, f.value) }
    }
}

/// The fields at `spans` of the frozen `head`, in a map with room for `room` more (what the
/// proxy adds later, so that it never grows). `None` if a name or value is not one `http`
/// accepts; whatever httparse accepts is.
pub(crate) fn fields(head: &bytes::Bytes, spans: &[Span], room: usize) -> Option<http::HeaderMap> {
    let mut map = http::HeaderMap::with_capacity(spans.len() + room);
    for s in spans {
        let name = http::HeaderName::from_bytes(head.get(s.name.0 as usize..s.name.1 as usize)?).ok()?;
        let value = http::HeaderValue::from_maybe_shared(slice(head, s.value)?).ok()?;
        map.append(name, value);
    }
    Some(map)
}

/// The bytes of `head` at `range`, shared rather than copied.
pub(crate) fn slice(head: &bytes::Bytes, (start, end): (u32, u32)) -> Option<bytes::Bytes> {
    let (start, end) = (start as usize, end as usize);
    (start <= end && end <= head.len()).then(|| head.slice(start..end))
}

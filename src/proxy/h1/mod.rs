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
    // One size class for requests and answers alike, so that a spare map from either fits.
    let mut map = spare_map((spans.len() + room).max(MAP_ROOM));
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

thread_local! {
    /// Emptied field maps of heads already written, for the next heads parsed on this thread:
    /// a map is two allocations (its index and its entries), each request needs two (its own
    /// and its answer's), and an emptied one keeps its room.
    static SPARE_MAPS: std::cell::RefCell<Vec<http::HeaderMap>> = const { std::cell::RefCell::new(Vec::new()) };
}
/// Maps kept per thread, and the largest kept (a head with many fields does not pin memory).
/// A map of the usual size is about 2.6 KB, so a thread keeps at most about 0.7 MB; fewer
/// than the requests in flight would drop maps as a burst is answered and make them again
/// for the next.
const SPARE_MAPS_KEPT: usize = 256;
const SPARE_MAP_ROOM: usize = 128;
/// The least room a parsed head's map is made with.
const MAP_ROOM: usize = 16;

/// An empty map with room for `room` fields: a spare one when there is one.
fn spare_map(room: usize) -> http::HeaderMap {
    let mut map = SPARE_MAPS.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    map.reserve(room);
    map
}

/// Gives a map whose head has been written back for reuse on this thread.
pub(crate) fn recycle(mut map: http::HeaderMap) {
    if map.capacity() == 0 || map.capacity() > SPARE_MAP_ROOM {
        return;
    }
    map.clear();
    SPARE_MAPS.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARE_MAPS_KEPT {
            s.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_maps_come_back_empty_and_large_ones_are_not_kept() {
        SPARE_MAPS.with(|s| s.borrow_mut().clear());
        let mut m = http::HeaderMap::with_capacity(16);
        m.insert("x-a", http::HeaderValue::from_static("1"));
        let room = m.capacity();
        recycle(m);
        let again = spare_map(4);
        assert!(again.is_empty(), "a spare map is handed out empty");
        assert_eq!(again.capacity(), room, "and with the room it had");
        recycle(http::HeaderMap::with_capacity(4 * SPARE_MAP_ROOM));
        recycle(http::HeaderMap::new());
        assert_eq!(SPARE_MAPS.with(|s| s.borrow().len()), 0, "large and roomless maps are dropped");
        for _ in 0..SPARE_MAPS_KEPT + 5 {
            recycle(http::HeaderMap::with_capacity(8));
        }
        assert_eq!(SPARE_MAPS.with(|s| s.borrow().len()), SPARE_MAPS_KEPT, "no more than the bound are kept");
    }

    #[test]
    fn fields_share_their_values_with_the_head() {
        let head = bytes::Bytes::from_static(b"Host: a\r\nX-B: two\r\n");
        let spans = [Span { name: (0, 4), value: (6, 7) }, Span { name: (9, 12), value: (14, 17) }];
        let m = fields(&head, &spans, 2).unwrap();
        assert_eq!(m["host"], "a");
        assert_eq!(m["x-b"], "two");
        assert!(m.capacity() >= 4);
        assert!(fields(&head, &[Span { name: (0, 4), value: (6, 99) }], 0).is_none(), "a range outside the head is refused");
        assert!(fields(&head, &[Span { name: (4, 6), value: (6, 7) }], 0).is_none(), "so is a name http does not accept");
    }
}

//! Upgraded connections (WebSocket) spliced between client and endpoint. Config swaps never
//! touch them; at shutdown a WebSocket is closed cleanly: each direction finishes the frame it
//! is in, then both sides get a close frame (1001, going away).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// Tracks WebSocket frame boundaries in a byte stream, reading only frame headers.
#[derive(Debug, Default)]
pub struct FrameTracker {
    header: Vec<u8>,
    remaining: u64,
}

impl FrameTracker {
    /// Whether the stream is between two frames.
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0 && self.header.is_empty()
    }

    /// Accounts for every byte of `buf`.
    pub fn feed(&mut self, buf: &[u8]) {
        let _ = self.advance(buf, false);
    }

    /// Accounts for bytes of `buf` up to the first frame boundary; returns how many were
    /// consumed when a boundary was reached, `None` when all of `buf` was inside a frame.
    pub fn advance_to_boundary(&mut self, buf: &[u8]) -> Option<usize> {
        self.advance(buf, true)
    }

    fn advance(&mut self, buf: &[u8], stop_at_boundary: bool) -> Option<usize> {
        let mut i = 0;
        while i < buf.len() {
            if self.remaining > 0 {
                let take = (self.remaining as usize).min(buf.len() - i);
                self.remaining -= take as u64;
                i += take;
            } else {
                self.header.push(buf[i]);
                i += 1;
                if let Some(len) = header_len(&self.header) {
                    if self.header.len() == len {
                        self.remaining = payload_len(&self.header);
                        self.header.clear();
                    }
                }
            }
            if stop_at_boundary && self.at_boundary() {
                return Some(i);
            }
        }
        None
    }
}

fn header_len(h: &[u8]) -> Option<usize> {
    if h.len() < 2 {
        return None;
    }
    let masked = h[1] & 0x80 != 0;
    let ext = match h[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    Some(2 + ext + if masked { 4 } else { 0 })
}

fn payload_len(h: &[u8]) -> u64 {
    match h[1] & 0x7f {
        126 => u16::from_be_bytes([h[2], h[3]]) as u64,
        127 => u64::from_be_bytes(h[2..10].try_into().expect("8 bytes")),
        n => n as u64,
    }
}

/// A close frame with status 1001 (going away); masked when sent by the client side.
pub fn close_frame(masked: bool) -> Vec<u8> {
    let payload = 1001u16.to_be_bytes();
    if masked {
        let mask = crate::proxy::ids::random_u64().to_be_bytes();
        let mask = [mask[0], mask[1], mask[2], mask[3]];
        let mut f = vec![0x88, 0x80 | 2];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    } else {
        vec![0x88, 2, payload[0], payload[1]]
    }
}

/// Copies one direction; on shutdown, stops at the next frame boundary. Returns true when it
/// stopped for shutdown (rather than end of stream).
async fn pump<R, W>(mut from: R, to: &mut W, mut stop: watch::Receiver<bool>, websocket: bool) -> std::io::Result<bool>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut tracker = FrameTracker::default();
    let mut stopping = *stop.borrow();
    loop {
        if stopping && (!websocket || tracker.at_boundary()) {
            return Ok(true);
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => r?,
            _ = stop.changed(), if !stopping => {
                stopping = true;
                continue;
            }
        };
        if n == 0 {
            return Ok(false);
        }
        if websocket && stopping {
            // Finish the frame in flight, and nothing after it.
            if let Some(end) = tracker.advance_to_boundary(&buf[..n]) {
                to.write_all(&buf[..end]).await?;
                return Ok(true);
            }
        } else if websocket {
            tracker.feed(&buf[..n]);
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// Splices `client` and `upstream` until either side ends, or until shutdown is signalled, in
/// which case a WebSocket gets close frames on both sides.
pub async fn splice<C, U>(client: C, upstream: U, stop: watch::Receiver<bool>, websocket: bool)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (cr, mut cw) = tokio::io::split(client);
    let (ur, mut uw) = tokio::io::split(upstream);
    let shutting_down = {
        let up = pump(cr, &mut uw, stop.clone(), websocket);
        let down = pump(ur, &mut cw, stop, websocket);
        tokio::pin!(up, down);
        // When one direction ends on its own, the other is done too; on shutdown both finish
        // their frame.
        tokio::select! {
            r = &mut up => matches!(r, Ok(true)) && matches!((&mut down).await, Ok(true)),
            r = &mut down => matches!(r, Ok(true)) && matches!((&mut up).await, Ok(true)),
        }
    };
    if shutting_down && websocket {
        let _ = cw.write_all(&close_frame(false)).await;
        let _ = uw.write_all(&close_frame(true)).await;
    }
    let _ = cw.shutdown().await;
    let _ = uw.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_boundaries_across_reads() {
        // A masked 5-byte text frame, then a 200-byte binary frame (16-bit length).
        let mut f1 = vec![0x81, 0x85, 1, 2, 3, 4];
        f1.extend_from_slice(b"hello");
        let mut f2 = vec![0x82, 126, 0, 200];
        f2.extend(std::iter::repeat_n(7u8, 200));
        let all = [f1.clone(), f2.clone()].concat();
        let mut t = FrameTracker::default();
        t.feed(&all[..3]);
        assert!(!t.at_boundary());
        // The first boundary is the end of the first frame, even when more follows.
        assert_eq!(t.advance_to_boundary(&all[3..f1.len() + 10]), Some(f1.len() - 3));
        assert!(t.at_boundary());
        t.feed(&all[f1.len()..f1.len() + 10]);
        assert!(!t.at_boundary());
        assert_eq!(t.advance_to_boundary(&all[f1.len() + 10..]), Some(all.len() - f1.len() - 10));
        assert!(t.at_boundary());
    }
}

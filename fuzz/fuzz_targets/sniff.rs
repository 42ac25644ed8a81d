//! The HTTP/1 sniffer: the first 8 bytes give the sizes of the reads the connection delivers,
//! the rest is the byte stream. The sniffer never panics and never changes a byte.
#![no_main]
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};
use vestibule::proxy::sniff::{Sniffer, Verdicts};

struct Reads<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    n: usize,
}

impl AsyncRead for Reads<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let size = self.sizes.get(self.n % self.sizes.len().max(1)).map_or(64, |s| *s as usize + 1);
        self.n += 1;
        let take = size.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..take]);
        self.data = &self.data[take..];
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    let (sizes, stream) = data.split_at(data.len().min(8));
    let verdicts = Arc::new(Verdicts::default());
    let mut sniffer = Sniffer::new(Reads { data: stream, sizes, n: 0 }, verdicts.clone());
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    let mut chunk = [0u8; 300];
    loop {
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut sniffer).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
            Poll::Ready(Ok(())) => out.extend_from_slice(buf.filled()),
            other => panic!("unexpected poll result {other:?}"),
        }
    }
    assert_eq!(out, stream, "the sniffer changed the bytes");
    for _ in 0..4 {
        let _ = verdicts.take("GET", "/");
    }
});

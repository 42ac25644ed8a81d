//! A decoder for HTTP/1.1 chunked framing (RFC 9112 §7.1), working in place on a read buffer:
//! chunk data comes out as slices of the buffer, without a copy. Chunk extensions are skipped
//! and trailer fields dropped. Size lines must end in CRLF, as hyper's decoder requires, and are
//! bounded, so a peer cannot make it buffer without end.

use bytes::{Buf, Bytes, BytesMut};

/// The longest chunk-size line (size, extensions, CRLF) and the most trailer bytes accepted.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

#[derive(Debug)]
pub struct Chunked {
    state: State,
}

/// What one step of decoding gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    /// More bytes are needed.
    More,
    /// The last chunk and the trailers have been read.
    End,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid chunked body: {0}")]
pub struct ChunkError(&'static str);

impl Default for Chunked {
    fn default() -> Self {
        Chunked { state: State::Size }
    }
}

/// The line at the start of `buf` without its CRLF, and the length taken with it.
fn line(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, ChunkError> {
    match buf.iter().take(max).position(|&b| b == b'\n') {
        Some(i) if i > 0 && buf[i - 1] == b'\r' => Ok(Some((&buf[..i - 1], i + 1))),
        Some(_) => Err(ChunkError("line without CRLF")),
        None if buf.len() >= max => Err(ChunkError("line too long")),
        None => Ok(None),
    }
}

fn size(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.iter().position(|&b| !b.is_ascii_hexdigit()).unwrap_or(line.len());
    let rest = &line[digits..];
    // After the digits: nothing, or whitespace and extensions (`;name=value`).
    if digits == 0 || !(rest.is_empty() || rest[0] == b';' || rest[0] == b' ' || rest[0] == b'\t') {
        return Err(ChunkError("bad chunk size"));
    }
    if digits > 15 {
        return Err(ChunkError("chunk size too large"));
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| ChunkError("bad chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| ChunkError("bad chunk size"))
}

impl Chunked {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes what `buf` holds, consuming it; call again after `Data` until `More` or `End`.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        loop {
            match self.state {
                State::Done => return Ok(Step::End),
                State::Size => {
                    let Some((l, taken)) = line(buf, MAX_LINE)? else { return Ok(Step::More) };
                    let n = size(l)?;
                    buf.advance(taken);
                    self.state = if n == 0 { State::Trailers(0) } else { State::Data(n) };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = (buf.len() as u64).min(left) as usize;
                    self.state = if n as u64 == left { State::DataEnd } else { State::Data(left - n as u64) };
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers(seen) => {
                    let Some((l, taken)) = line(buf, MAX_LINE)? else { return Ok(Step::More) };
                    let empty = l.is_empty();
                    buf.advance(taken);
                    if empty {
                        self.state = State::Done;
                        return Ok(Step::End);
                    }
                    if seen + taken > MAX_TRAILERS {
                        return Err(ChunkError("trailers too large"));
                    }
                    self.state = State::Trailers(seen + taken);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `piece` bytes; the body, or the first error.
    fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let (mut d, mut buf, mut out, mut fed) = (Chunked::default(), BytesMut::new(), Vec::new(), 0);
        for part in input.chunks(piece) {
            buf.extend_from_slice(part);
            fed += part.len();
            loop {
                match d.step(&mut buf)? {
                    Step::Data(b) => out.extend_from_slice(&b),
                    Step::More => break,
                    // What is left: in the buffer, and not fed yet.
                    Step::End => return Ok((out, buf.len() + input.len() - fed)),
                }
            }
        }
        Err(ChunkError("incomplete"))
    }

    #[test]
    fn decodes_whatever_the_read_boundaries() {
        let cases: &[(&[u8], &[u8], usize)] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello", 0),
            (b"3;ext=1\r\nabc\r\n2 ; x\r\nde\r\n0\r\nX-Sum: 1\r\n\r\nNEXT", b"abcde", 4),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", 0),
            (b"0\r\n\r\n", b"", 0),
        ];
        for (input, body, left) in cases {
            for piece in [1, 2, 3, 7, input.len()] {
                assert_eq!(decode(input, piece), Ok((body.to_vec(), *left)), "{:?} in pieces of {piece}", String::from_utf8_lossy(input));
            }
        }
    }

    #[test]
    fn refuses_malformed_framing() {
        let cases: &[&[u8]] = &[
            b"5\nhello\r\n0\r\n\r\n",
            b"zz\r\n",
            b"\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"1000000000000000\r\n",
            b"-1\r\n",
            b"5x\r\nhello\r\n",
            b"0\r\nbad trailer\n\r\n",
        ];
        for input in cases {
            assert!(matches!(decode(input, 1), Err(ChunkError(m)) if m != "incomplete"), "{:?} was accepted", String::from_utf8_lossy(input));
        }
        let long = [b"1".repeat(MAX_LINE), b"\r\n".to_vec()].concat();
        assert_eq!(decode(&long, 64), Err(ChunkError("line too long")));
    }
}

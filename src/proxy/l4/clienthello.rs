//! The SNI of a TLS ClientHello, read before any TLS: the record layer and the ClientHello's
//! extensions parsed by hand, bounded in size and time. The bytes read are handed back so
//! that they can be replayed into the TLS acceptor or to a passthrough endpoint.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The most bytes read looking for a complete ClientHello.
pub const MAX_BYTES: usize = 16 * 1024;
/// The longest wait for it.
pub const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("not a TLS ClientHello: {0}")]
    Malformed(&'static str),
    #[error("ClientHello larger than 16 KiB")]
    TooLarge,
    #[error("timed out waiting for the ClientHello")]
    Timeout,
    #[error("connection closed before the ClientHello")]
    Closed,
}

/// A big-endian reader over a byte slice; every read is bounds-checked.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.0.len() < n {
            return Err(Error::Malformed("truncated ClientHello"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<usize, Error> {
        Ok(self.take(1)?[0] as usize)
    }
    fn u16(&mut self) -> Result<usize, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    /// A field prefixed by its length (`len_bytes` of 1 or 2).
    fn vec(&mut self, len_bytes: usize) -> Result<&'a [u8], Error> {
        let n = if len_bytes == 1 { self.u8()? } else { self.u16()? };
        self.take(n)
    }
}

/// Parses the start of a connection. `Ok(None)`: more bytes are needed; `Ok(Some(sni))`: a
/// complete ClientHello, with its server name if it sent one.
pub fn parse(buf: &[u8]) -> Result<Option<Option<String>>, Error> {
    // The handshake message may span several records: gather their payloads.
    let mut handshake = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return if rest.is_empty() || rest[0] == 0x16 { Ok(None) } else { Err(Error::Malformed("not a handshake record")) };
        }
        if rest[0] != 0x16 {
            return Err(Error::Malformed("not a handshake record"));
        }
        if rest[1] != 3 {
            return Err(Error::Malformed("record version"));
        }
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if len == 0 || len > 16384 {
            return Err(Error::Malformed("record length"));
        }
        if rest.len() < 5 + len {
            return Ok(None);
        }
        handshake.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if handshake.len() >= 4 {
            if handshake[0] != 1 {
                return Err(Error::Malformed("first handshake message is not a ClientHello"));
            }
            let hs_len = (handshake[1] as usize) << 16 | (handshake[2] as usize) << 8 | handshake[3] as usize;
            if hs_len + 4 > MAX_BYTES {
                return Err(Error::TooLarge);
            }
            if handshake.len() >= 4 + hs_len {
                return client_hello(&handshake[4..4 + hs_len]).map(Some);
            }
        }
    }
}

fn client_hello(body: &[u8]) -> Result<Option<String>, Error> {
    let mut c = Cursor(body);
    let version = c.take(2)?;
    if version[0] != 3 {
        return Err(Error::Malformed("ClientHello version"));
    }
    c.take(32)?; // random
    c.vec(1)?; // session id
    c.vec(2)?; // cipher suites
    c.vec(1)?; // compression methods
    if c.0.is_empty() {
        return Ok(None); // no extensions at all
    }
    let mut exts = Cursor(c.vec(2)?);
    if !c.0.is_empty() {
        return Err(Error::Malformed("bytes after the extensions"));
    }
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec(2)?;
        if kind == 0 {
            return server_name(data).map(Some);
        }
    }
    Ok(None)
}

/// The host name in a server_name extension.
fn server_name(data: &[u8]) -> Result<String, Error> {
    let mut c = Cursor(data);
    let mut list = Cursor(c.vec(2)?);
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let name = list.vec(2)?;
        if kind == 0 {
            let ok = !name.is_empty() && name.len() <= 253 && name.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !ok {
                return Err(Error::Malformed("server name"));
            }
            return Ok(String::from_utf8_lossy(name).to_ascii_lowercase());
        }
    }
    Err(Error::Malformed("server_name extension without a host name"))
}

/// Reads the ClientHello from `stream` (consuming it); returns the bytes read and the SNI.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(Vec<u8>, Option<String>), Error> {
    let fut = async {
        let mut buf = Vec::with_capacity(2048);
        let mut chunk = [0u8; 4096];
        loop {
            let room = (MAX_BYTES - buf.len()).min(chunk.len());
            if room == 0 {
                return Err(Error::TooLarge);
            }
            let n = stream.read(&mut chunk[..room]).await.map_err(|_| Error::Closed)?;
            if n == 0 {
                return Err(Error::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(sni) = parse(&buf)? {
                return Ok((buf, sni));
            }
        }
    };
    tokio::time::timeout(TIMEOUT, fut).await.map_err(|_| Error::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record with the given extensions block.
    fn hello(exts: &[u8]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(exts);
        let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
        rec.extend_from_slice(&hs);
        rec
    }

    fn sni_ext(name: &[u8]) -> Vec<u8> {
        let mut entry = vec![0, 0, name.len() as u8];
        entry.extend_from_slice(name);
        let mut list = ((entry.len()) as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&entry);
        let mut ext = vec![0, 0];
        ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
        ext.extend_from_slice(&list);
        ext
    }

    #[test]
    fn a_hello_declared_over_the_bound_is_refused_before_it_is_gathered() {
        // Only the handshake header has arrived: the declared length alone decides.
        let declared = MAX_BYTES; // + 4 header bytes is one over the bound
        let rec = [0x16, 3, 1, 0, 4, 1, (declared >> 16) as u8, (declared >> 8) as u8, declared as u8];
        assert!(matches!(parse(&rec), Err(Error::TooLarge)));
        let within = MAX_BYTES - 4;
        let rec = [0x16, 3, 1, 0, 4, 1, (within >> 16) as u8, (within >> 8) as u8, within as u8];
        assert!(matches!(parse(&rec), Ok(None)), "at the bound more bytes are awaited");
    }

    #[test]
    fn finds_the_server_name() {
        let mut exts = vec![0, 23, 0, 0]; // extended_master_secret, empty
        exts.extend(sni_ext(b"Pass.Example.com"));
        let rec = hello(&exts);
        assert_eq!(parse(&rec), Ok(Some(Some("pass.example.com".into()))));
        for cut in [1, 4, 5, 20, rec.len() - 1] {
            assert_eq!(parse(&rec[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse(&hello(&[0, 23, 0, 0])), Ok(Some(None)), "no SNI");
    }

    #[test]
    fn a_hello_split_over_two_records() {
        let rec = hello(&sni_ext(b"a.test"));
        let hs = &rec[5..];
        let (a, b) = hs.split_at(10);
        let mut two = vec![0x16, 3, 1, 0, a.len() as u8];
        two.extend_from_slice(a);
        two.extend_from_slice(&[0x16, 3, 1, (b.len() >> 8) as u8, b.len() as u8]);
        two.extend_from_slice(b);
        assert_eq!(parse(&two), Ok(Some(Some("a.test".into()))));
    }

    #[test]
    fn malformed() {
        assert!(parse(b"GET / HTTP/1.1\r\n").is_err());
        assert!(parse(&[0x16, 3, 1, 0, 0]).is_err(), "empty record");
        let mut rec = hello(&sni_ext(b"a.test"));
        rec[5] = 2; // ServerHello
        assert!(parse(&rec).is_err());
        assert!(parse(&hello(&sni_ext(b"bad name!"))).is_err());
        let mut bad_len = hello(&sni_ext(b"a.test"));
        let n = bad_len.len();
        bad_len[n - 9] = 0xff; // the SNI list length now overruns
        assert!(parse(&bad_len).is_err());
    }
}

//! PROXY protocol v1 (text) and v2 (binary) headers, as sent by load balancers in front of the
//! cluster: they carry the real client address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("timed out waiting for the PROXY protocol header")]
    Timeout,
    #[error("connection closed before the PROXY protocol header")]
    Closed,
}

/// What a complete header says: the client's address (None for `UNKNOWN`/`LOCAL`), and the
/// header's length in bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub source: Option<SocketAddr>,
    pub len: usize,
}

/// Parses a header at the start of `buf`. `Ok(None)` means more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<Header>, Error> {
    if buf.starts_with(b"PROXY") {
        return parse_v1(buf);
    }
    if !buf.is_empty() && b"PROXY".starts_with(buf) {
        return Ok(None);
    }
    if buf.len() < 12 {
        return if V2_SIGNATURE.starts_with(buf) { Ok(None) } else { Err(Error::Missing) };
    }
    if &buf[..12] != V2_SIGNATURE {
        return Err(Error::Missing);
    }
    parse_v2(buf)
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, Error> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= 107 { Err(Error::Malformed("v1 line longer than 107 bytes")) } else { Ok(None) };
    };
    if end + 2 > 107 {
        return Err(Error::Malformed("v1 line longer than 107 bytes"));
    }
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| Error::Malformed("v1 line is not text"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let source = match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => None,
        ["PROXY", fam @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().map_err(|_| Error::Malformed("v1 source address"))?;
            if (*fam == "TCP4") != ip.is_ipv4() {
                return Err(Error::Malformed("v1 address family mismatch"));
            }
            let port: u16 = sport.parse().map_err(|_| Error::Malformed("v1 source port"))?;
            Some(SocketAddr::new(ip, port))
        }
        _ => return Err(Error::Malformed("v1 line")),
    };
    Ok(Some(Header { source, len: end + 2 }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, Error> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(Error::Malformed("v2 version"));
    }
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let source = match (ver_cmd & 0x0f, buf[13] >> 4) {
        (0, _) => None, // LOCAL: health checks from the balancer itself
        (1, 1) if body.len() >= 12 => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(body[0], body[1], body[2], body[3])), u16::from_be_bytes([body[8], body[9]]))),
        (1, 2) if body.len() >= 36 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&body[..16]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), u16::from_be_bytes([body[32], body[33]])))
        }
        (1, _) => None, // UNSPEC or UNIX: no usable address
        _ => return Err(Error::Malformed("v2 command")),
    };
    Ok(Some(Header { source, len: 16 + len }))
}

/// Reads a PROXY header from the start of `stream` (and nothing after it).
pub async fn read(stream: &mut TcpStream, timeout: Duration) -> Result<Option<SocketAddr>, Error> {
    let fut = async {
        let mut buf = [0u8; 536];
        loop {
            let n = stream.peek(&mut buf).await.map_err(|_| Error::Closed)?;
            if n == 0 {
                return Err(Error::Closed);
            }
            match parse(&buf[..n])? {
                Some(h) => {
                    let mut sink = vec![0u8; h.len];
                    stream.read_exact(&mut sink).await.map_err(|_| Error::Closed)?;
                    return Ok(h.source);
                }
                None if n == buf.len() => return Err(Error::Malformed("header too long")),
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| Error::Timeout)?
}

/// A v1 line for `source` → `dest`, as sent to the endpoints of a TCP service whose value ends
/// in a second `:PROXY`. Mixed families are both written as IPv6.
pub fn encode_v1(source: SocketAddr, dest: SocketAddr) -> String {
    match (source, dest) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => format!("PROXY TCP4 {} {} {} {}\r\n", s.ip(), d.ip(), s.port(), d.port()),
        (s, d) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v) => v.to_ipv6_mapped(),
                IpAddr::V6(v) => v,
            };
            format!("PROXY TCP6 {} {} {} {}\r\n", v6(s), v6(d), s.port(), d.port())
        }
    }
}

/// A v2 header for `source` → `dest` (used by tests and tools).
pub fn encode_v2(source: SocketAddr, dest: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    match (source, dest) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v) => v.to_ipv6_mapped(),
                IpAddr::V6(v) => v,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1() {
        let h = parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\nGET /").unwrap().unwrap();
        assert_eq!(h.source, Some("1.2.3.4:1111".parse().unwrap()));
        assert_eq!(h.len, 36);
        assert_eq!(parse(b"PROXY TCP6 ::1 ::2 5 6\r\n").unwrap().unwrap().source, Some("[::1]:5".parse().unwrap()));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().source, None);
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4").unwrap(), None);
        assert!(parse(b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.1\r\n").is_err());
    }

    #[test]
    fn v2_round_trip() {
        let src: SocketAddr = "10.1.2.3:4567".parse().unwrap();
        let enc = encode_v2(src, "10.0.0.1:443".parse().unwrap());
        let h = parse(&enc).unwrap().unwrap();
        assert_eq!((h.source, h.len), (Some(src), enc.len()));
        assert_eq!(parse(&enc[..20]).unwrap(), None);
        let src6: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        let enc6 = encode_v2(src6, "[2001:db8::2]:443".parse().unwrap());
        assert_eq!(parse(&enc6).unwrap().unwrap().source, Some(src6));
    }
}

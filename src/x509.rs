//! Just enough X.509 reading for operators: subject and issuer common names, serial number and
//! validity of a DER certificate. Used for metrics and the debug endpoint, never for trust.

/// What an operator wants to know about a certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CertSummary {
    pub subject_cn: String,
    pub issuer_cn: String,
    pub issuer_org: String,
    /// Hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// DNS names from the subjectAltName extension.
    pub dns_names: Vec<String>,
}

struct Der<'a> {
    buf: &'a [u8],
}

impl<'a> Der<'a> {
    /// Reads one TLV: (tag, contents).
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let tag = *self.buf.first()?;
        let first = *self.buf.get(1)? as usize;
        let (len, hdr) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *self.buf.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        let body = self.buf.get(hdr..hdr + len)?;
        self.buf = &self.buf[hdr + len..];
        Some((tag, body))
    }
}

fn digits(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Civil date (year, month, day) of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn time(tag: u8, s: &[u8]) -> Option<i64> {
    // UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ.
    let (year, rest) = match tag {
        0x17 => {
            let yy = digits(s.get(0..2)?)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, s.get(2..)?)
        }
        0x18 => (digits(s.get(0..4)?)?, s.get(4..)?),
        _ => return None,
    };
    let f = |i: usize| digits(rest.get(i..i + 2)?);
    let (mo, d, h, mi, se) = (f(0)?, f(2)?, f(4)?, f(6)?, f(8)?);
    Some(days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

/// (common name, organization) of a Name.
fn name_parts(name: &[u8]) -> (String, String) {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    let (mut cn, mut org) = (String::new(), String::new());
    let mut rdns = Der { buf: name };
    while let Some((_, set)) = rdns.next() {
        let mut set = Der { buf: set };
        while let Some((_, atv)) = set.next() {
            let mut atv = Der { buf: atv };
            let (Some((_, oid)), Some((_, value))) = (atv.next(), atv.next()) else { continue };
            let value = String::from_utf8_lossy(value).into_owned();
            if oid == CN {
                cn = value;
            } else if oid == O {
                org = value;
            }
        }
    }
    (cn, org)
}

/// Reads a DER certificate; `None` when it is not one.
pub fn summarize(der: &[u8]) -> Option<CertSummary> {
    let (_, cert) = Der { buf: der }.next()?;
    let (_, tbs) = Der { buf: cert }.next()?;
    let mut tbs = Der { buf: tbs };
    let mut field = tbs.next()?;
    if field.0 == 0xa0 {
        field = tbs.next()?; // explicit version
    }
    let serial = field.1.iter().skip_while(|b| **b == 0).map(|b| format!("{b:02X}")).collect::<String>();
    let _sig_alg = tbs.next()?;
    let (_, issuer) = tbs.next()?;
    let (_, validity) = tbs.next()?;
    let (_, subject) = tbs.next()?;
    let _spki = tbs.next()?;
    let mut v = Der { buf: validity };
    let (t1, nb) = v.next()?;
    let (t2, na) = v.next()?;
    let (issuer_cn, issuer_org) = name_parts(issuer);
    let (subject_cn, _) = name_parts(subject);
    let mut dns_names = Vec::new();
    // Extensions: [3] { SEQUENCE OF Extension }.
    while let Some((tag, body)) = tbs.next() {
        if tag != 0xa3 {
            continue;
        }
        let Some((_, exts)) = (Der { buf: body }).next() else { break };
        let mut exts = Der { buf: exts };
        while let Some((_, ext)) = exts.next() {
            let mut ext = Der { buf: ext };
            let Some((_, oid)) = ext.next() else { continue };
            if oid != [0x55, 0x1d, 0x11] {
                continue;
            }
            let mut value = ext.next();
            if value.is_some_and(|(t, _)| t == 0x01) {
                value = ext.next(); // critical flag
            }
            let Some((_, octets)) = value else { continue };
            let Some((_, names)) = (Der { buf: octets }).next() else { continue };
            let mut names = Der { buf: names };
            while let Some((t, n)) = names.next() {
                if t == 0x82 {
                    dns_names.push(String::from_utf8_lossy(n).into_owned());
                }
            }
        }
    }
    Some(CertSummary { subject_cn, issuer_cn, issuer_org, serial, not_before: time(t1, nb)?, not_after: time(t2, na)?, dns_names })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_generated_certificate() {
        let issued = crate::tls::issue_with_ca(&["a.example.com", "b.example.com"]).unwrap();
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let s = summarize(&der).unwrap();
        assert_eq!(s.subject_cn, "a.example.com");
        assert_eq!(s.issuer_cn, "Vestibule Demo CA");
        assert_eq!(s.dns_names, vec!["a.example.com", "b.example.com"]);
        assert!(s.not_after > s.not_before);
        assert!(!s.serial.is_empty());
        assert!(summarize(b"garbage").is_none());
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-1000, 0, 1, 365, 10957, 20000, 2932896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m as i64, d as i64), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
    }
}

/// Subject and issuer distinguished names of a DER certificate, as nginx's `$ssl_client_s_dn`
/// and `$ssl_client_i_dn` print them (RFC 2253: last RDN first, `,` between RDNs, `+` inside
/// one, OpenSSL's short attribute names, special characters escaped).
pub fn dns(der: &[u8]) -> Option<(String, String)> {
    let (_, cert) = Der { buf: der }.next()?;
    let (_, tbs) = Der { buf: cert }.next()?;
    let mut tbs = Der { buf: tbs };
    let mut field = tbs.next()?;
    if field.0 == 0xa0 {
        field = tbs.next()?;
    }
    let _serial = field;
    let _sig_alg = tbs.next()?;
    let (_, issuer) = tbs.next()?;
    let _validity = tbs.next()?;
    let (_, subject) = tbs.next()?;
    Some((rfc2253(subject)?, rfc2253(issuer)?))
}

fn rfc2253(name: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    let mut sets = Der { buf: name };
    while let Some((_, set)) = sets.next() {
        let mut atvs = Vec::new();
        let mut set = Der { buf: set };
        while let Some((_, atv)) = set.next() {
            let mut atv = Der { buf: atv };
            let (_, oid) = atv.next()?;
            let raw = atv.buf;
            let (tag, value) = atv.next()?;
            let label = attribute_name(oid);
            let value = match text(tag, value) {
                Some(t) => escape_2253(&t),
                None => format!("#{}", raw.iter().map(|b| format!("{b:02X}")).collect::<String>()),
            };
            atvs.push(format!("{label}={value}"));
        }
        rdns.push(atvs.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn attribute_name(oid: &[u8]) -> String {
    let short = match oid {
        [0x55, 0x04, n] => match n {
            3 => "CN",
            4 => "SN",
            5 => "serialNumber",
            6 => "C",
            7 => "L",
            8 => "ST",
            9 => "street",
            10 => "O",
            11 => "OU",
            12 => "title",
            17 => "postalCode",
            41 => "name",
            42 => "GN",
            43 => "initials",
            44 => "generationQualifier",
            46 => "dnQualifier",
            65 => "pseudonym",
            _ => "",
        },
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => "",
    };
    if short.is_empty() { dotted(oid) } else { short.to_string() }
}

fn dotted(oid: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for (i, b) in oid.iter().enumerate() {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() && i < oid.len() {
                let first = acc.min(80) / 40;
                parts.push(first);
                parts.push(acc - first * 40);
            } else {
                parts.push(acc);
            }
            acc = 0;
        }
    }
    parts.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

/// The text of a directory string; `None` for types printed as hex.
fn text(tag: u8, v: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 => std::str::from_utf8(v).ok().map(str::to_string),
        0x14 => Some(v.iter().map(|b| char::from(*b)).collect()),
        0x1e => char::decode_utf16(v.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]))).collect::<Result<String, _>>().ok(),
        _ => None,
    }
}

/// OpenSSL's RFC 2253 escaping: `,+"\<>;` always, `#` and space in front, space at the end,
/// control characters and every byte above 0x7f as `\XX`.
fn escape_2253(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::new();
    for (i, &b) in bytes.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == bytes.len();
        if b < 0x20 || b >= 0x7f {
            out.push_str(&format!("\\{b:02X}"));
        } else if matches!(b, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';') || (first && (b == b'#' || b == b' ')) || (last && b == b' ') {
            out.push('\\');
            out.push(char::from(b));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

#[cfg(test)]
mod dn_tests {
    use super::*;

    #[test]
    fn dns_print_like_nginx() {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CountryName, "DE");
        p.distinguished_name.push(rcgen::DnType::OrganizationName, "Acme, Inc.");
        p.distinguished_name.push(rcgen::DnType::CommonName, " client+1");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let (s, i) = dns(cert.der()).unwrap();
        assert_eq!(s, "CN=\\ client\\+1,O=Acme\\, Inc.,C=DE");
        assert_eq!(s, i);
        assert_eq!(dotted(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37]), "1.3.6.1.4.1.311");
        assert_eq!(escape_2253("é#"), "\\C3\\A9#");
    }
}

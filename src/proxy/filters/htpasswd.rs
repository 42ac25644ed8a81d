//! Verifies a password against an htpasswd hash: bcrypt (the `bcrypt` crate), Apache's MD5
//! (`$apr1$`), `{SHA}`, and crypt SHA-256/SHA-512 (`$5$`, `$6$`, as Drepper's published
//! specification defines them). Every comparison takes constant time.

use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

use crate::config::auth::PasswordHash;

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Whether `password` matches `hash`.
pub fn verify(password: &[u8], hash: &PasswordHash) -> bool {
    match hash {
        PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
        PasswordHash::Apr1(h) => apr1(password, h).is_some_and(|c| ct_eq(c.as_bytes(), h.as_bytes())),
        PasswordHash::Sha1(d) => {
            let got: [u8; 20] = sha1::Sha1::digest(password).into();
            ct_eq(&got, d)
        }
        PasswordHash::ShaCrypt(h) => sha_crypt(password, h).is_some_and(|c| ct_eq(c.as_bytes(), h.as_bytes())),
    }
}

/// Equal, in a time that depends only on the lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `n` characters of crypt's base 64 of `v`, least significant first.
fn to64(out: &mut String, mut v: u32, n: usize) {
    for _ in 0..n {
        out.push(ITOA64[(v & 0x3f) as usize] as char);
        v >>= 6;
    }
}

fn triple(out: &mut String, d: &[u8], a: usize, b: usize, c: usize, n: usize) {
    to64(out, (u32::from(d[a]) << 16) | (u32::from(d[b]) << 8) | u32::from(d[c]), n);
}

/// The `$apr1$` hash of `pw` with the salt of `setting` (`$apr1$SALT[$...]`).
pub fn apr1(pw: &[u8], setting: &str) -> Option<String> {
    let salt = setting.strip_prefix("$apr1$")?.split('$').next()?;
    let salt = &salt.as_bytes()[..salt.len().min(8)];
    let mut ctx = Md5::new();
    ctx.update(pw);
    ctx.update(b"$apr1$");
    ctx.update(salt);
    let alt = Md5::new().chain_update(pw).chain_update(salt).chain_update(pw).finalize();
    for chunk in (0..pw.len()).step_by(16) {
        ctx.update(&alt[..(pw.len() - chunk).min(16)]);
    }
    let mut i = pw.len();
    while i > 0 {
        if i & 1 == 1 { ctx.update([0u8]) } else { ctx.update(&pw[..1]) }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for i in 0..1000 {
        let mut c = Md5::new();
        if i & 1 == 1 { c.update(pw) } else { c.update(fin) }
        if i % 3 != 0 {
            c.update(salt);
        }
        if i % 7 != 0 {
            c.update(pw);
        }
        if i & 1 == 1 { c.update(fin) } else { c.update(pw) }
        fin = c.finalize();
    }
    let mut out = format!("$apr1${}$", std::str::from_utf8(salt).ok()?);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        triple(&mut out, &fin, a, b, c, 4);
    }
    to64(&mut out, u32::from(fin[11]), 2);
    Some(out)
}

/// `len` bytes of `block` repeated.
fn repeat(block: &[u8], len: usize) -> Vec<u8> {
    block.iter().copied().cycle().take(len).collect()
}

/// The crypt SHA-256 (`$5$`) or SHA-512 (`$6$`) hash of `pw` with the salt and rounds of
/// `setting`, in the same form.
pub fn sha_crypt(pw: &[u8], setting: &str) -> Option<String> {
    let (id, rest) = if let Some(r) = setting.strip_prefix("$5$") { (5, r) } else { (6, setting.strip_prefix("$6$")?) };
    let (rounds, rest) = match rest.strip_prefix("rounds=") {
        Some(r) => {
            let (n, rest) = r.split_once('$')?;
            (Some(n.parse::<u64>().ok()?.clamp(1000, 999_999_999)), rest)
        }
        None => (None, rest),
    };
    let salt = rest.split('$').next()?;
    let salt = &salt.as_bytes()[..salt.len().min(16)];
    let digest = if id == 5 { rounds_of::<Sha256>(pw, salt, rounds.unwrap_or(5000)) } else { rounds_of::<Sha512>(pw, salt, rounds.unwrap_or(5000)) };
    let mut out = format!("${id}$");
    if let Some(r) = rounds {
        out.push_str(&format!("rounds={r}$"));
    }
    out.push_str(std::str::from_utf8(salt).ok()?);
    out.push('$');
    if id == 5 {
        for i in 0..10 {
            let (a, b, c) = [(0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14), (15, 25, 5), (6, 16, 26), (27, 7, 17), (18, 28, 8), (9, 19, 29)][i];
            triple(&mut out, &digest, a, b, c, 4);
        }
        to64(&mut out, (u32::from(digest[31]) << 8) | u32::from(digest[30]), 3);
    } else {
        for i in 0..21 {
            let (a, b, c) = (i, i + 21, i + 42);
            // The spec's order rotates the three positions each group.
            let (a, b, c) = match i % 3 {
                0 => (a, b, c),
                1 => (b, c, a),
                _ => (c, a, b),
            };
            triple(&mut out, &digest, a, b, c, 4);
        }
        to64(&mut out, u32::from(digest[63]), 2);
    }
    Some(out)
}

fn rounds_of<D: Digest + Clone>(pw: &[u8], salt: &[u8], rounds: u64) -> Vec<u8> {
    let b = D::new().chain_update(pw).chain_update(salt).chain_update(pw).finalize().to_vec();
    let n = b.len();
    let mut a = D::new().chain_update(pw).chain_update(salt);
    a.update(repeat(&b, pw.len()));
    let mut l = pw.len();
    while l > 0 {
        if l & 1 == 1 { a.update(&b) } else { a.update(pw) }
        l >>= 1;
    }
    let a = a.finalize().to_vec();
    let mut dp = D::new();
    for _ in 0..pw.len() {
        dp.update(pw);
    }
    let p = repeat(&dp.finalize(), pw.len());
    let mut ds = D::new();
    for _ in 0..16 + usize::from(a[0]) {
        ds.update(salt);
    }
    let s = repeat(&ds.finalize(), salt.len());
    let mut c = a;
    for i in 0..rounds {
        let mut ctx = D::new();
        if i & 1 == 1 { ctx.update(&p) } else { ctx.update(&c) }
        if i % 3 != 0 {
            ctx.update(&s);
        }
        if i % 7 != 0 {
            ctx.update(&p);
        }
        if i & 1 == 1 { ctx.update(&c) } else { ctx.update(&p) }
        c = ctx.finalize().to_vec();
    }
    debug_assert_eq!(c.len(), n);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_sha_crypt_vectors() {
        // The examples of the SHA-crypt specification.
        assert_eq!(sha_crypt(b"Hello world!", "$5$saltstring").unwrap(), "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5");
        assert_eq!(sha_crypt(b"Hello world!", "$6$saltstring").unwrap(), "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1");
        assert_eq!(sha_crypt(b"Hello world!", "$5$rounds=10000$saltstringsaltstring").unwrap(), "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA");
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"ab", b"abc"));
    }
}

//! Client certificates (mutual TLS, `auth-tls-*`): the HTTPS handshake asks for one only when
//! SNI names a host with a policy, and each request to such a host is checked and told the
//! result (`ssl-client-verify`, `ssl-client-subject-dn`, `ssl-client-issuer-dn`,
//! `ssl-client-cert`), as ingress-nginx does.
//!
//! As nginx: a required certificate that is missing is answered 400 "No required SSL
//! certificate was sent", an untrusted one 400 "The SSL certificate error" (or a redirect to
//! `auth-tls-error-page`), a subject that `auth-tls-match-cn` does not match 403. A host whose
//! CA Secret is unusable refuses every request (403). A request whose Host has a different
//! policy than the one its connection was set up with (SNI) is answered 421.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use super::Shared;
use super::context::Ctx;
use super::respond::{self, RespBody};
use crate::config::client_auth::{ClientAuth, VerifyClient};
use crate::config::{Config, Target};

/// What the connection's handshake established, when SNI named a host with a policy.
#[derive(Debug)]
pub struct ClientCert {
    /// The SNI host (lowercase, no trailing dot).
    pub sni: String,
    /// The handshake asked for a client certificate.
    pub asked: bool,
    /// The chain the client presented (empty: none).
    pub chain: Vec<CertificateDer<'static>>,
    /// The policy in force at the handshake, and what it made of the chain.
    pub policy: Arc<ClientAuth>,
    pub verdict: Verdict,
}

/// A chain judged by a policy.
#[derive(Debug)]
pub struct Verdict {
    pub presented: bool,
    /// `SUCCESS`, `FAILED:reason` or `NONE`, as nginx's `$ssl_client_verify`.
    pub verify: String,
    pub subject_dn: String,
    pub issuer_dn: String,
    /// The leaf certificate as PEM, URL-encoded (nginx's `$ssl_client_escaped_cert`).
    pub escaped_pem: String,
}

impl Verdict {
    fn none() -> Self {
        Verdict { presented: false, verify: "NONE".into(), subject_dn: String::new(), issuer_dn: String::new(), escaped_pem: String::new() }
    }
}

/// The TLS handshake: the ClientHello is read, the SNI host's policy looked up in the live
/// configuration, and the handshake finished with the policy's configuration (which asks for a
/// client certificate) or the default one.
pub async fn accept<IO>(shared: &Arc<Shared>, default: &Arc<rustls::ServerConfig>, io: IO) -> std::io::Result<(TlsStream<IO>, Option<Arc<ClientCert>>)>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
    let sni = start.client_hello().server_name().map(|s| s.trim_end_matches('.').to_ascii_lowercase());
    let config = shared.config();
    let policy = sni.as_deref().and_then(|h| config.client_auth.get(h)).cloned();
    let asks = policy.as_ref().filter(|p| p.verify != VerifyClient::Off).and_then(|p| p.tls.as_ref());
    let cfg = match asks {
        Some(t) => {
            let mut c = (*t.server).clone();
            c.cert_resolver = default.cert_resolver.clone();
            Arc::new(c)
        }
        None => default.clone(),
    };
    let asked = asks.is_some();
    let tls = start.into_stream(cfg).await?;
    let (Some(policy), Some(sni)) = (policy, sni) else { return Ok((tls, None)) };
    let chain = tls.get_ref().1.peer_certificates().map(<[CertificateDer<'static>]>::to_vec).unwrap_or_default();
    let verdict = examine(&policy, &chain);
    Ok((tls, Some(Arc::new(ClientCert { sni, asked, chain, policy, verdict }))))
}

/// Verifies a presented chain against the policy's CA (roots, CRLs, depth).
fn examine(policy: &ClientAuth, chain: &[CertificateDer<'static>]) -> Verdict {
    let (Some(leaf), Some(tls)) = (chain.first(), policy.tls.as_ref()) else { return Verdict::none() };
    let intermediates = &chain[1..];
    let verify = match tls.verifier.verify_client_cert(leaf, intermediates, UnixTime::now()) {
        Err(e) => format!("FAILED:{}", reason(&e)),
        // Certificates above the client's that are not the CA itself count toward the depth.
        Ok(_) if intermediates.iter().filter(|c| !tls.cas.contains(c)).count() as u32 >= policy.depth => "FAILED:certificate chain too long".into(),
        Ok(_) => "SUCCESS".into(),
    };
    let (subject_dn, issuer_dn) = crate::x509::dns(leaf).unwrap_or_default();
    let pem = pem(leaf);
    Verdict { presented: true, verify, subject_dn, issuer_dn, escaped_pem: escape_component(&pem) }
}

/// OpenSSL's words for why a chain is not trusted, as `$ssl_client_verify` carries them.
fn reason(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "unable to get local issuer certificate",
            C::Revoked => "certificate revoked",
            C::Expired | C::ExpiredContext { .. } => "certificate has expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate is not yet valid",
            C::BadSignature => "certificate signature failure",
            C::UnknownRevocationStatus => "unable to get certificate CRL",
            C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => "CRL has expired",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "unsupported certificate purpose",
            _ => "certificate verify error",
        },
        _ => "certificate verify error",
    }
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// nginx's URI-component escaping: everything but letters, digits and `-._~!*'()` as `%XX`.
fn escape_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const HEADERS: [&str; 4] = ["ssl-client-verify", "ssl-client-subject-dn", "ssl-client-issuer-dn", "ssl-client-cert"];

/// Checks a request against its host's policy, and sets the `ssl-client-*` headers for the
/// backend; an answer ends the request.
pub fn on_request<B>(ctx: &Ctx<'_>, config: &Config, target: &Target<'_>, req: &mut Request<B>) -> Option<Response<RespBody>> {
    if config.client_auth.hosts.is_empty() {
        return None;
    }
    let policy = config.client_auth.get(ctx.host())?;
    if !ctx.conn.tls && target.ssl_redirect() {
        return None; // to HTTPS first
    }
    if policy.tls.is_none() {
        return Some(ctx.fail(StatusCode::FORBIDDEN));
    }
    let judged;
    let state = match &ctx.conn.client_cert {
        _ if policy.verify == VerifyClient::Off || !ctx.conn.tls => {
            judged = Verdict::none();
            &judged
        }
        // Set up for this policy (its SNI host has it in the live configuration, and a
        // certificate was asked for); judged again when a reload replaced the policy.
        Some(c) if c.asked && config.client_auth.get(&c.sni).is_some_and(|p| Arc::ptr_eq(p, policy)) => {
            if Arc::ptr_eq(&c.policy, policy) {
                &c.verdict
            } else {
                judged = examine(policy, &c.chain);
                &judged
            }
        }
        // Set up for another host's policy, or none (SNI differs from Host): as nginx, 421.
        _ => return Some(ctx.fail(StatusCode::MISDIRECTED_REQUEST)),
    };
    let trusted = state.verify == "SUCCESS";
    let failure = match policy.verify {
        VerifyClient::On if !state.presented => Some("No required SSL certificate was sent"),
        VerifyClient::On | VerifyClient::Optional if state.presented && !trusted => Some("The SSL certificate error"),
        _ => None,
    };
    if let Some(text) = failure {
        return Some(match &policy.error_page {
            Some(page) => respond::redirect(StatusCode::FOUND, page, &ctx.request_id),
            None => page(StatusCode::BAD_REQUEST, text, ctx),
        });
    }
    if let Some(re) = &policy.match_cn
        && !re.0.is_match(&state.subject_dn)
    {
        return Some(page(StatusCode::FORBIDDEN, "client certificate unauthorized", ctx));
    }
    let h = req.headers_mut();
    for name in HEADERS {
        h.remove(name);
    }
    let values = [(0, &state.verify), (1, &state.subject_dn), (2, &state.issuer_dn), (3, &state.escaped_pem)];
    for (i, v) in values {
        // nginx sends no header for an empty value; the certificate only when asked to.
        if v.is_empty() || (i == 3 && !policy.pass_cert) {
            continue;
        }
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(HeaderName::from_static(HEADERS[i]), v);
        }
    }
    None
}

/// An error page with nginx's title for the failure.
fn page(status: StatusCode, text: &str, ctx: &Ctx<'_>) -> Response<RespBody> {
    let code = status.as_u16();
    let body = format!("<html>\r\n<head><title>{code} {text}</title></head>\r\n<body>\r\n<center><h1>{code} {text}</h1></center>\r\n<hr><center>{}</center>\r\n</body>\r\n</html>\r\n", respond::SERVER_NAME);
    let mut resp = ctx.fail(status);
    let len = body.len();
    *resp.body_mut() = Full::new(Bytes::from(if ctx.head { String::new() } else { body })).map_err(|e: std::convert::Infallible| match e {}).boxed_unsync();
    resp.headers_mut().insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_is_escaped_as_a_uri_component() {
        assert_eq!(escape_component("-----BEGIN A+/=\n"), "-----BEGIN%20A%2B%2F%3D%0A");
        let p = pem(&[0u8; 60]);
        assert!(p.starts_with("-----BEGIN CERTIFICATE-----\nAAAA") && p.ends_with("-----END CERTIFICATE-----\n"));
    }
}

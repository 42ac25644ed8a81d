//! `vestibule check` and `vestibule explain`: the proxy's own reading of manifests, for people
//! and CI pipelines.

use std::io::Write;

use crate::cli::{CheckArgs, ExplainArgs};
use crate::compile::{self, Severity, explain};
use crate::source::files::FileSource;

/// Loads manifests the way `serve` does. Returns the source (for its errors) and the store.
fn load(paths: &[std::path::PathBuf], max_size: u64) -> (FileSource, crate::store::Store) {
    let mut source = FileSource::new(paths.to_vec(), max_size);
    let report = source.load();
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    let store = source.store();
    (source, store)
}

/// Prints every manifest error and diagnostic; the exit code is 1 when there are errors (or,
/// with `--strict`, warnings), else 0.
pub fn check(args: CheckArgs, out: &mut dyn Write) -> anyhow::Result<i32> {
    crate::tls::install_provider();
    let missing: Vec<_> = args.manifests.iter().filter(|p| !p.exists()).collect();
    if !missing.is_empty() {
        for p in &missing {
            writeln!(out, "error: {}: no such file or directory", p.display())?;
        }
        return Ok(2);
    }
    let (source, store) = load(&args.manifests, args.max_manifest_size);
    let (fallback, _, _) = crate::tls::self_signed(&["vestibule.invalid"])?;
    let settings = args.routing.settings(fallback);
    let compiled = compile::compile(&store, &settings);
    let diags = compiled.diagnostics;
    let errors = source.errors();
    for e in &errors {
        writeln!(out, "error: {e}")?;
    }
    let (mut n_err, mut n_warn) = (errors.len(), 0);
    for d in &diags {
        let level = match d.severity {
            Severity::Error => {
                n_err += 1;
                "error"
            }
            Severity::Warning => {
                n_warn += 1;
                "warning"
            }
            Severity::Info => "info",
        };
        writeln!(out, "{level}: {d}")?;
    }
    let mut report = compile::migration::Report::of(&store);
    for e in &errors {
        if let (Some(obj), Some(annotations)) = (&e.object, &e.annotations) {
            report.add(obj.clone(), annotations, true);
        }
    }
    for line in report.lines() {
        writeln!(out, "{line}")?;
    }
    for line in compile::gateway::report::lines(&compiled.status.gateway) {
        writeln!(out, "{line}")?;
    }
    writeln!(out, "{} objects, {} ingresses: {n_err} error(s), {n_warn} warning(s)", store.len(), store.ingresses.len())?;
    Ok(if n_err > 0 || (args.strict && n_warn > 0) { 1 } else { 0 })
}

/// Explains a URL against manifests or a running instance.
pub async fn explain(args: ExplainArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<i32> {
    crate::tls::install_provider();
    if let Some(server) = &args.server {
        let format = if args.json { "" } else { "&format=text" };
        let url = format!("{}/debug/explain?url={}{format}", server.trim_end_matches('/'), encode_query(&args.url));
        let (status, body) = http_get(&url).await?;
        out.write_all(body.as_bytes())?;
        return Ok(if status == 200 { 0 } else { 1 });
    }
    let (source, store) = load(&args.manifests, args.max_manifest_size);
    for e in source.errors() {
        writeln!(out, "manifest error: {e}")?;
    }
    let (fallback, _, _) = crate::tls::self_signed(&["vestibule.invalid"])?;
    let settings = args.routing.settings(fallback);
    if args.url.starts_with("tcp://") || args.url.starts_with("udp://") {
        let c = crate::compile::compile(&store, &settings);
        return match explain::explain_l4(&c.config, &c.diagnostics, &args.url).expect("an L4 URL") {
            Ok(text) => {
                out.write_all(text.as_bytes())?;
                Ok(if text.contains("-> no ") { 1 } else { 0 })
            }
            Err(e) => {
                writeln!(out, "error: {e}")?;
                Ok(2)
            }
        };
    }
    match explain::explain(&store, &settings, &args.url) {
        Err(e) => {
            writeln!(out, "error: {e}")?;
            Ok(2)
        }
        Ok(x) if args.json => {
            writeln!(out, "{}", serde_json::to_string_pretty(&x)?)?;
            Ok(0)
        }
        Ok(x) => {
            out.write_all(x.text().as_bytes())?;
            Ok(0)
        }
    }
}

fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.1 GET (the health port speaks plain HTTP).
async fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    use http_body_util::BodyExt;
    let uri: http::Uri = url.parse()?;
    if uri.scheme_str() != Some("http") {
        anyhow::bail!("{url}: --server takes an http:// address of the health port");
    }
    let authority = uri.authority().ok_or_else(|| anyhow::anyhow!("{url}: no host"))?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(http::header::HOST, authority.as_str())
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

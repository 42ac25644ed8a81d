//! Where a field is in a YAML document, and which field is at a line and column: errors name
//! both, from the document's own text.

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Idx(usize),
}

/// `spec.rules[0].http.paths[1].path` → segments. Keys in brackets (`data[tls.crt]`) are keys.
fn field_segments(field: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut rest = field;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            let inner = &r[..end];
            out.push(match inner.parse::<usize>() {
                Ok(i) => Seg::Idx(i),
                Err(_) => Seg::Key(inner.to_string()),
            });
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let rest2 = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest2.find(['.', '[']).unwrap_or(rest2.len());
            out.push(Seg::Key(rest2[..end].to_string()));
            rest = &rest2[end..];
        }
    }
    out
}

/// One node of a YAML document: its field path, where it starts (1-based), and whether it is
/// a mapping key (keys are where a field's line is reported).
struct Node {
    path: Vec<Seg>,
    line: usize,
    col: usize,
    key: bool,
}

/// Every key and value of a YAML document with its field path, in document order.
fn walk(doc: &str) -> Vec<Node> {
    use serde_saphyr::granit_parser::{Event, Parser};
    struct Frame {
        map: bool,
        idx: usize,
        key: Option<String>,
        awaiting_key: bool,
    }
    fn advance(stack: &mut [Frame]) {
        if let Some(top) = stack.last_mut() {
            if top.map {
                top.awaiting_key = true;
            } else {
                top.idx += 1;
            }
        }
    }
    let mut nodes = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut path: Vec<Seg> = Vec::new();
    for ev in Parser::new_from_str(doc) {
        let Ok((ev, span)) = ev else { break };
        let (line, col) = (span.start.line(), span.start.col() + 1);
        let is_start = matches!(ev, Event::MappingStart(..) | Event::SequenceStart(..));
        let is_node = is_start || matches!(ev, Event::Scalar(..) | Event::Alias(..));
        if is_node {
            if let Some(top) = stack.last_mut() {
                if top.map && top.awaiting_key {
                    if let Event::Scalar(k, ..) = &ev {
                        top.key = Some(k.to_string());
                        let mut p = path.clone();
                        p.push(Seg::Key(k.to_string()));
                        nodes.push(Node { path: p, line, col, key: true });
                    }
                    top.awaiting_key = false;
                    if is_start {
                        // A complex key: walk over it as a frame of its own.
                        stack.push(Frame { map: matches!(ev, Event::MappingStart(..)), idx: 0, key: None, awaiting_key: true });
                        path.push(Seg::Key(String::new()));
                    }
                    continue;
                }
            }
            let seg = match stack.last() {
                Some(f) if f.map => Some(Seg::Key(f.key.clone().unwrap_or_default())),
                Some(f) => Some(Seg::Idx(f.idx)),
                None => None,
            };
            if let Some(s) = seg.clone() {
                path.push(s);
            }
            nodes.push(Node { path: path.clone(), line, col, key: false });
            if is_start {
                stack.push(Frame { map: matches!(ev, Event::MappingStart(..)), idx: 0, key: None, awaiting_key: true });
            } else {
                if seg.is_some() {
                    path.pop();
                }
                advance(&mut stack);
            }
        } else if matches!(ev, Event::MappingEnd | Event::SequenceEnd) {
            stack.pop();
            if !stack.is_empty() {
                path.pop();
            }
            advance(&mut stack);
        }
    }
    nodes
}

fn field_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Idx(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Finds the line and column (1-based) of a field in a YAML document, or of its deepest
/// ancestor that exists.
pub fn locate(doc: &str, field: &str) -> Option<(usize, usize)> {
    let target = field_segments(field);
    let mut best: Option<(usize, (usize, usize))> = None;
    for n in walk(doc) {
        let p = &n.path;
        if p.len() <= target.len() && target[..p.len()] == *p && best.is_none_or(|(d, _)| p.len() > d) {
            best = Some((p.len(), (n.line, n.col)));
        }
    }
    best.map(|(_, at)| at)
}

/// The field at a line and column (1-based) of a YAML document: the deepest value starting
/// there, else the deepest field on that line.
pub fn field_at(doc: &str, line: usize, col: usize) -> Option<String> {
    let nodes = walk(doc);
    let exact = nodes.iter().filter(|n| !n.key && n.line == line && n.col == col).max_by_key(|n| n.path.len());
    let on_line = || nodes.iter().filter(|n| n.line == line).max_by_key(|n| n.path.len());
    exact.or_else(on_line).filter(|n| !n.path.is_empty()).map(|n| field_string(&n.path))
}

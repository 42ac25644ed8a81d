//! Gateway API `RequestHeaderModifier` and `ResponseHeaderModifier`: set (replace), add
//! (append to what is there, joined with a comma into one field as the spec's example shows;
//! `Set-Cookie` is the exception and gets a field of its own, as it cannot be joined), remove.

use http::header::{self, HeaderMap, HeaderValue};

use crate::config::filter::HeaderEdit;

pub fn apply(edit: &HeaderEdit, headers: &mut HeaderMap) {
    for (name, value) in &edit.set {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in &edit.add {
        if *name == header::SET_COOKIE || !headers.contains_key(name) {
            headers.append(name.clone(), value.clone());
            continue;
        }
        let mut joined = Vec::new();
        for v in headers.get_all(name) {
            joined.extend_from_slice(v.as_bytes());
            joined.push(b',');
        }
        joined.extend_from_slice(value.as_bytes());
        if let Ok(v) = HeaderValue::from_bytes(&joined) {
            headers.insert(name.clone(), v);
        }
    }
    for name in &edit.remove {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    fn h(n: &str, v: &str) -> (HeaderName, HeaderValue) {
        (HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap())
    }

    #[test]
    fn set_add_remove() {
        let edit = HeaderEdit {
            set: vec![h("x-set", "new")],
            add: vec![h("x-add", "b"), h("x-fresh", "1"), h("set-cookie", "b=2")],
            remove: vec![HeaderName::from_static("x-gone")],
        };
        let mut m = HeaderMap::new();
        m.append("X-Set", "old".parse().unwrap());
        m.append("x-set", "older".parse().unwrap());
        m.append("x-add", "a".parse().unwrap());
        m.append("x-add", "a2".parse().unwrap());
        m.append("set-cookie", "a=1".parse().unwrap());
        m.append("X-Gone", "1".parse().unwrap());
        apply(&edit, &mut m);
        let all = |n: &str| m.get_all(n).iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(all("x-set"), ["new"]);
        assert_eq!(all("x-add"), ["a,a2,b"]);
        assert_eq!(all("x-fresh"), ["1"]);
        assert_eq!(all("set-cookie"), ["a=1", "b=2"]);
        assert!(all("x-gone").is_empty());
    }
}

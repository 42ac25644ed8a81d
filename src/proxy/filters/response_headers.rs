//! `custom-headers`: headers set on every answer to the route (replacing any the backend sent
//! under the same name), with the values exactly as the ConfigMap wrote them.

use http::{HeaderName, HeaderValue, Response};

use super::super::respond::RespBody;

pub fn on_response(headers: &[(HeaderName, HeaderValue)], resp: &mut Response<RespBody>) {
    for (name, value) in headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
}

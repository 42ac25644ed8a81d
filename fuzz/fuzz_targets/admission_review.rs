//! AdmissionReview bodies as the webhook receives them: JSON → review against the fixed cluster
//! with one live Ingress → the answer, serialised. Never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vestibule::webhook::review::{AdmissionReview, review};

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = serde_json::from_slice::<AdmissionReview>(data) else { return };
    let mut store = common::base_store();
    common::add_text(&mut store, "ingress.json", &common::ingress_json("live", "app.example.com", &[]));
    let verdict = review(&r, &store, &common::SETTINGS, &[]);
    let uid = r.request.as_ref().map(|q| q.uid.clone()).unwrap_or_default();
    let _ = serde_json::to_vec(&verdict.answer(&uid)).expect("an answer serialises");
});

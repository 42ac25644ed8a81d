//! Sources of objects. They only observe, and fill the store.

pub mod files;
pub mod kube;
mod legacy;
mod locate;
pub mod parse;

//! Vestibule: a Kubernetes Ingress controller with its own in-process L7 proxy.
//!
//! One direction of flow: sources (files, the Kubernetes API) fill the `store`; `compile`
//! turns the store into a `config::Config` and diagnostics, with no I/O; the config is swapped
//! atomically into the `proxy`, whose requests each read the config they started with.

pub mod accesslog;
pub mod alloc_count;
pub mod admin;
pub mod cli;
pub mod compile;
pub mod config;
pub mod controller;
pub mod dashboard;
pub mod debug;
pub mod demo;
pub mod echo;
pub mod engine;
pub mod gateway_api;
pub mod metrics;
pub mod proxy;
pub mod serve;
pub mod source;
pub mod store;
pub mod tls;
pub mod tools;
pub mod units;
pub mod webhook;
pub mod x509;

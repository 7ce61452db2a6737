//! Integration tests of pi-server over real HTTP on 127.0.0.1:0.
#![allow(missing_docs, missing_debug_implementations)]

mod client;
mod doc_examples;
mod http;
mod https;
#[cfg(feature = "redis")]
mod redis;
mod signals;
mod snapshot;

pub use client::*;

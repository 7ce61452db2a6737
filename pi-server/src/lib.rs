//! The phone book server (work in progress).
#![forbid(unsafe_code)]

pub mod acme;
pub mod addr;
pub mod api;
pub mod bus;
pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod ratelimit;
pub mod server;
pub mod snapshot;
pub mod store;
pub mod table;
pub mod tls;
pub mod token;

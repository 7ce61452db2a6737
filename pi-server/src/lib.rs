//! The phone book server (work in progress).
#![forbid(unsafe_code)]

pub mod config;
pub mod addr;
pub mod http;
pub mod ratelimit;
pub mod table;
pub mod token;

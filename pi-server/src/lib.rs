//! The phone book server (work in progress).

pub mod cli;
pub mod config;
pub mod snapshot;

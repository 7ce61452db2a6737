//! The phone book server (work in progress).

pub mod config;

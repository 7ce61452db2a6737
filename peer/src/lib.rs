//! Peer library: finds players through the phone book and moves mod files directly between them.
#![forbid(unsafe_code)]

pub mod codec;
pub mod hash;
pub mod manifest;
pub mod sha1_chain;
pub mod transfer;
pub mod wire;

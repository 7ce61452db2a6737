//! Moving files: content hashes and manifests, the binary codec and wire messages on QUIC
//! streams, the download planner (sans I/O) and its driver, and the serving side.

pub mod codec;
pub mod download;
pub mod fetch;
pub mod hash;
pub mod manifest;
pub mod plan;
pub mod rate_limit;
pub mod records;
pub mod serve;
pub mod sha1_chain;
pub mod wire;

//! `pi-server` binary.
fn main() {}

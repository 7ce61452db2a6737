//! Tools around the phone book: a small blocking HTTP/1.1 client for smoke tests and the
//! `pb-client` command, the single-threaded load engine of `pb-load`, a latency histogram,
//! deterministic benchmark names and keys, and readers of `/proc` for CPU and memory figures.
//!
//! It is not a general HTTP library: it speaks the small HTTP/1.1 subset that the phone book
//! answers with (`Content-Length` bodies, keep-alive, no chunked encoding).
#![forbid(unsafe_code)]

pub mod hex;
pub mod hist;
pub mod http;
pub mod json;
pub mod load;
pub mod names;
pub mod procstat;
pub mod redis_server;

/// The current Unix time in milliseconds (what signed requests carry).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Raises the soft limit of open files to the hard limit; returns the new soft limit.
///
/// Holding 10,000 idle connections needs more than the usual soft limit of 1024.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

//! Lookups over plain HTTP or HTTPS, on keep-alive connections or one fresh connection per
//! request, for `tests/bench/https.sh`: N client threads, each with one request in flight,
//! `GET /api/lookup/{name}` of random prefilled names (`pb-load --scenario prefill`) with a
//! bearer token. Prints one JSON line: requests, seconds, requests/s, errors, latency p50/p99
//! (microseconds) and the client's own CPU seconds.
//!
//! Fresh HTTPS connections make a full handshake each (session resumption off) unless
//! `--resume`, which keeps one session cache per thread as a browser or a reconnecting peer
//! would. pb-load has no TLS, hence this; it is a blocking client (a thread per connection),
//! so compare the server's CPU per request (measured by the script), not the client's rate.
//!
//! Run with: `cargo run --release -p pb-tests --example https_load -- --url https://localhost:PORT
//! --ca ca.pem --token TOKEN [--entries 100000] [--connections 16] [--duration 10] [--fresh]
//! [--resume]`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pb_tests::names::{Space, name};
use rustls::pki_types::ServerName;

/// Largest answer read (a lookup answer is below 1 KiB).
const MAX_ANSWER: usize = 64 * 1024;

struct Args {
    url: String,
    ca: Option<String>,
    token: String,
    entries: u64,
    connections: usize,
    duration: Duration,
    fresh: bool,
    resume: bool,
}

fn parse() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut a = Args {
        url: String::new(),
        ca: None,
        token: String::new(),
        entries: 100_000,
        connections: 16,
        duration: Duration::from_secs(10),
        fresh: false,
        resume: false,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("url") => a.url = p.value()?.string()?,
            Long("ca") => a.ca = Some(p.value()?.string()?),
            Long("token") => a.token = p.value()?.string()?,
            Long("entries") => a.entries = p.value()?.parse()?,
            Long("connections") => a.connections = p.value()?.parse()?,
            Long("duration") => a.duration = Duration::from_secs_f64(p.value()?.parse()?),
            Long("fresh") => a.fresh = true,
            Long("resume") => a.resume = true,
            _ => return Err(arg.unexpected()),
        }
    }
    if a.url.is_empty() || a.entries == 0 || a.connections == 0 {
        return Err("--url, --entries >= 1 and --connections >= 1 are needed".into());
    }
    Ok(a)
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.as_mut(),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

struct Target {
    addr: String,
    host: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

fn connect(t: &Target) -> std::io::Result<Conn> {
    let s = TcpStream::connect(&t.addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(match &t.tls {
        None => Conn::Plain(s),
        Some(c) => {
            let name = ServerName::try_from(t.host.clone()).map_err(std::io::Error::other)?;
            let conn =
                rustls::ClientConnection::new(c.clone(), name).map_err(std::io::Error::other)?;
            Conn::Tls(Box::new(rustls::StreamOwned::new(conn, s)))
        }
    })
}

/// Sends one lookup and reads its answer; returns the status and whether the server keeps
/// the connection open.
fn exchange(c: &mut Conn, req: &[u8], buf: &mut Vec<u8>) -> std::io::Result<(u16, bool)> {
    let io = c.io();
    io.write_all(req)?;
    io.flush()?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = io.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 24];
        let mut r = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = r.parse(buf).map_err(std::io::Error::other)? {
            let mut len = 0;
            let mut keep = true;
            for h in r.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    len = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                } else if h.name.eq_ignore_ascii_case("connection") && h.value == b"close" {
                    keep = false;
                }
            }
            if buf.len() >= head + len {
                return Ok((r.code.unwrap_or(0), keep));
            }
        }
        if buf.len() > MAX_ANSWER {
            return Err(std::io::Error::other("answer too large"));
        }
    }
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) as f64 / 100.0
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("https_load: {e}");
            std::process::exit(2);
        }
    };
    let (https, rest) = match a.url.strip_prefix("https://") {
        Some(r) => (true, r),
        None => (
            false,
            a.url
                .strip_prefix("http://")
                .expect("http:// or https:// URL"),
        ),
    };
    let authority = rest.trim_end_matches('/');
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_owned();
    let tls = https.then(|| {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(a.ca.as_deref().expect("--ca for https")).expect("CA file");
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        for c in CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.expect("PEM")).expect("CA");
        }
        let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !a.resume {
            c.resumption = rustls::client::Resumption::disabled();
        }
        Arc::new(c)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let threads: Vec<_> = (0..a.connections)
        .map(|t| {
            let target = Target {
                addr: authority.to_owned(),
                host: host.clone(),
                // A session cache per thread (with --resume), as one client reconnecting has.
                tls: tls.as_ref().map(|c| {
                    let mut c = (**c).clone();
                    if a.resume {
                        c.resumption = rustls::client::Resumption::in_memory_sessions(4);
                    }
                    Arc::new(c)
                }),
            };
            let stop = stop.clone();
            let (token, entries, fresh) = (a.token.clone(), a.entries, a.fresh);
            std::thread::spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1).wrapping_mul(0xff51_afd7);
                let mut lat = Vec::with_capacity(1 << 16);
                let (mut ok, mut errors) = (0u64, 0u64);
                let mut conn: Option<Conn> = None;
                let mut buf = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let who = name(Space::Prefill, rng % entries).replace(' ', "%20");
                    let req = format!(
                        "GET /api/lookup/{who} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n{}\r\n",
                        target.host,
                        if fresh { "Connection: close\r\n" } else { "" }
                    );
                    let t0 = Instant::now();
                    let c = match conn.take() {
                        Some(c) => Ok(c),
                        None => connect(&target),
                    };
                    match c.and_then(|mut c| exchange(&mut c, req.as_bytes(), &mut buf).map(|r| (r, c))) {
                        Ok(((200, keep), c)) => {
                            ok += 1;
                            lat.push(t0.elapsed().as_micros() as u32);
                            if keep && !fresh {
                                conn = Some(c);
                            }
                        }
                        Ok(_) | Err(_) => errors += 1,
                    }
                }
                (ok, errors, lat)
            })
        })
        .collect();
    std::thread::sleep(a.duration);
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut errors, mut lat) = (0, 0, Vec::new());
    for t in threads {
        let (o, e, l) = t.join().expect("client thread");
        ok += o;
        errors += e;
        lat.extend(l);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{{\"requests\":{ok},\"errors\":{errors},\"seconds\":{secs:.3},\"requests_per_s\":{:.1},\"p50_us\":{},\"p99_us\":{},\"client_cpu_s\":{:.2}}}",
        ok as f64 / secs,
        q(0.50),
        q(0.99),
        cpu_seconds() - cpu0
    );
}

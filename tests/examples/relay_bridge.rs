//! What bridging a relay session between two phone-book instances over Redis costs (issue
//! 13), beside a session both of whose peers reached the same instance, in one run: the
//! requester always opens at instance A; the target listens at A (**local**) or at B
//! (**bridged**: the frames cross over Redis pub/sub). Rounds alternate the two so that drift
//! on a shared machine hits both alike; the report gives medians and the bridged/local ratios.
//!
//! Per row: round trips of a 100-byte datagram (requester -> target -> requester, one in
//! flight; median and p99 in microseconds), then throughput of 1,200-byte datagrams one way
//! with at most `WINDOW` unacknowledged (MB/s, and datagrams lost to full queues), and the CPU
//! of this process (both instances, both clients) plus redis-server, per MB carried.
//!
//! Starts its own redis-server on a free loopback port (apt-get install redis-server) and two
//! in-process instances with their relays; the relay's rate limits are lifted so the path,
//! not the limiter, is measured.
//!
//! Run with: `cargo run --release -p pb-tests --example relay_bridge -- [--rounds 3]
//! [--datagrams 20000] [--pings 2000]`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pb_tests::procstat;
use pb_tests::redis_server::Redis;
use peer::net::relay::RelayBook;
use peer::phonebook::PhoneBookConfig;
use peer::{Identity, PhoneBook, PlayerName, Visibility};
use phonebook_proto::LookupId;
use phonebook_proto::relay::Frame;
use pi_server::config::Config;
use pi_server::server::TestServer;

/// Datagrams in flight at most during the throughput run.
const WINDOW: u64 = 256;
/// The target acknowledges every this many datagrams.
const ACK_EVERY: u64 = 32;

struct Args {
    rounds: usize,
    datagrams: u64,
    pings: usize,
}

fn parse() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut a = Args {
        rounds: 3,
        datagrams: 20_000,
        pings: 2_000,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("rounds") => a.rounds = p.value()?.parse()?,
            Long("datagrams") => a.datagrams = p.value()?.parse()?,
            Long("pings") => a.pings = p.value()?.parse()?,
            Long("help") => {
                println!(
                    "relay_bridge [--rounds N] [--datagrams N] [--pings N]: a relay session \
                     local to one instance beside one bridged between two over Redis"
                );
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    if a.rounds == 0 || a.datagrams == 0 || a.pings == 0 {
        return Err("rounds, datagrams and pings must be at least 1".into());
    }
    Ok(a)
}

/// A blocking relay connection: TLS pinned to the relay's certificate, frames in and out.
struct Conn {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    fn open(relay: &RelayBook) -> Conn {
        let config = Arc::new(peer::net::relay::client::tls_config(relay.pin));
        let name = rustls::pki_types::ServerName::IpAddress(relay.addr.ip().into());
        let tcp = TcpStream::connect(relay.addr).expect("relay reachable");
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let tls = rustls::ClientConnection::new(config, name).expect("TLS client");
        let mut c = Conn {
            tls: rustls::StreamOwned::new(tls, tcp),
            buf: Vec::new(),
        };
        c.send(&Frame::Hello { token: relay.token });
        c.until(|f| matches!(f, Frame::Welcome { .. }).then_some(()))
            .expect("welcomed");
        c
    }

    fn send(&mut self, f: &Frame<'_>) {
        let mut out = Vec::new();
        f.encode(&mut out);
        self.tls.write_all(&out).expect("relay write");
    }

    /// Reads frames until `want` takes one (`None`: the read timed out or the relay closed).
    fn until<T>(&mut self, want: impl Fn(&Frame<'_>) -> Option<T>) -> Option<T> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            while let Ok(Some((f, used))) = Frame::decode(&self.buf) {
                let got = want(&f);
                self.buf.drain(..used);
                if got.is_some() {
                    return got;
                }
            }
            match self.tls.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

fn data(f: &Frame<'_>) -> Option<Vec<u8>> {
    match f {
        Frame::Data { payload, .. } => Some(payload.to_vec()),
        _ => None,
    }
}

fn instance(redis: &Redis) -> TestServer {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        capacity: 64,
        relay_listen: Some("127.0.0.1:0".parse().unwrap()),
        relay_rate: u32::MAX,
        relay_rate_total: u32::MAX,
        redis_url: Some(redis.url()),
        redis_prefix: "bench".to_owned(),
        ..Config::default()
    };
    TestServer::start(config).expect("instance starts")
}

fn player(url: &str, name: &str) -> (PhoneBook, RelayBook) {
    let identity = Arc::new(Identity::generate());
    let book = PhoneBook::new(
        &identity,
        PlayerName::parse(name).unwrap(),
        PhoneBookConfig {
            urls: vec![url.to_owned()],
            ..Default::default()
        },
    )
    .unwrap();
    smol::block_on(book.register(7000, Visibility::Public, &[])).expect("registered");
    let relay = book.relay_books().pop().expect("a relay");
    (book, relay)
}

#[derive(Clone, Copy, Default)]
struct Row {
    rtt_p50_us: f64,
    rtt_p99_us: f64,
    mb_s: f64,
    lost: u64,
    cpu_ms_per_mb: f64,
}

fn cpu_ticks(redis: &Redis) -> u64 {
    procstat::process_ticks(std::process::id()).unwrap_or(0)
        + procstat::process_ticks(redis.pid()).unwrap_or(0)
}

/// One session from `r` (at A) to the target `t_name` listening with `t`, measured.
fn session(mut r: Conn, mut t: Conn, t_name: &str, args: &Args, redis: &Redis) -> Row {
    t.send(&Frame::Listen);
    t.send(&Frame::Ping { nonce: [1; 8] });
    t.until(|f| matches!(f, Frame::Pong { .. }).then_some(()))
        .expect("listening");
    r.send(&Frame::Open {
        session: 1,
        target: LookupId::of(&PlayerName::parse(t_name).unwrap()),
    });
    let ticket = t
        .until(|f| match f {
            Frame::Incoming { ticket, .. } => Some(*ticket),
            _ => None,
        })
        .expect("the target is told");
    t.send(&Frame::Accept { session: 2, ticket });
    r.until(|f| matches!(f, Frame::Opened { .. }).then_some(()))
        .expect("opened");

    // Round trips, one in flight: the target echoes on its own thread.
    let pings = args.pings;
    let echo = std::thread::spawn(move || {
        for _ in 0..pings {
            let Some(p) = t.until(data) else { break };
            t.send(&Frame::Data {
                session: 2,
                payload: &p,
            });
        }
        t
    });
    let mut rtts = Vec::with_capacity(pings);
    for i in 0..pings {
        let payload = [i as u8; 100];
        let start = Instant::now();
        r.send(&Frame::Data {
            session: 1,
            payload: &payload,
        });
        r.until(data).expect("echo");
        rtts.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let mut t = echo.join().unwrap();
    rtts.sort_by(f64::total_cmp);

    // Throughput one way, windowed by the target's acknowledgements (a count, every
    // ACK_EVERY datagrams); a datagram dropped at a full queue is counted as lost when the
    // acknowledgements stop.
    let n = args.datagrams;
    let sink = std::thread::spawn(move || {
        let mut got = 0u64;
        while let Some(p) = t.until(data) {
            if p.len() == 8 {
                break; // the end marker
            }
            got += 1;
            if got.is_multiple_of(ACK_EVERY) {
                t.send(&Frame::Data {
                    session: 2,
                    payload: &got.to_be_bytes()[..],
                });
            }
        }
        got
    });
    let payload = [0x5a; 1200];
    let cpu0 = cpu_ticks(redis);
    let start = Instant::now();
    let (mut sent, mut acked) = (0u64, 0u64);
    r.tls
        .sock
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while sent < n {
        while sent < n && sent - acked < WINDOW {
            r.send(&Frame::Data {
                session: 1,
                payload: &payload,
            });
            sent += 1;
        }
        match r.until(data) {
            Some(a) if a.len() == 8 => acked = acked.max(u64::from_be_bytes(a.try_into().unwrap())),
            // No acknowledgement: what is in flight was lost.
            _ => acked = sent,
        }
    }
    r.send(&Frame::Data {
        session: 1,
        payload: &[0; 8],
    });
    let got = sink.join().unwrap();
    let secs = start.elapsed().as_secs_f64();
    let cpu_ms = (cpu_ticks(redis) - cpu0) as f64 * 1000.0 / procstat::ticks_per_second() as f64;
    let mb = (got * 1200) as f64 / 1e6;
    Row {
        rtt_p50_us: rtts[rtts.len() / 2],
        rtt_p99_us: rtts[rtts.len() * 99 / 100],
        mb_s: mb / secs,
        lost: n - got,
        cpu_ms_per_mb: cpu_ms / mb.max(1e-9),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("relay_bridge: {e} (try --help)");
            std::process::exit(2);
        }
    };
    let Some(redis) = Redis::start() else {
        std::process::exit(2);
    };
    let (a, b) = (instance(&redis), instance(&redis));
    let (url_a, url_b) = (
        format!("http://{}", a.addr()),
        format!("http://{}", b.addr()),
    );
    let (_rb, r_relay) = player(&url_a, "Bench Asker@World");
    let (_la, local_relay) = player(&url_a, "Bench Local@World");
    let (_bb, bridged_relay) = player(&url_b, "Bench Bridged@World");
    // Both instances know every record before the first open.
    std::thread::sleep(Duration::from_millis(500));
    let mut rows: [Vec<Row>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.rounds {
        for k in 0..2 {
            // Alternate which goes first.
            let i = (k + round) % 2;
            let (relay, name) = if i == 0 {
                (&local_relay, "Bench Local@World")
            } else {
                (&bridged_relay, "Bench Bridged@World")
            };
            let row = session(Conn::open(&r_relay), Conn::open(relay), name, &args, &redis);
            rows[i].push(row);
        }
    }
    let m = |i: usize, f: fn(&Row) -> f64| median(rows[i].iter().map(f).collect());
    println!(
        "relay session, requester at instance A; {} rounds, {} pings of 100 B, {} datagrams of 1200 B (window {WINDOW})\n",
        args.rounds, args.pings, args.datagrams
    );
    println!("| session | RTT p50 µs | RTT p99 µs | MB/s | lost | CPU ms/MB (process + Redis) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, label) in ["local (target at A)", "bridged (target at B, over Redis)"]
        .iter()
        .enumerate()
    {
        let lost: u64 = rows[i].iter().map(|r| r.lost).sum();
        println!(
            "| {label} | {:.0} | {:.0} | {:.1} | {lost} | {:.1} |",
            m(i, |r| r.rtt_p50_us),
            m(i, |r| r.rtt_p99_us),
            m(i, |r| r.mb_s),
            m(i, |r| r.cpu_ms_per_mb),
        );
    }
    println!(
        "\nbridged / local: RTT p50 x{:.2}, throughput x{:.2}, CPU per MB x{:.2}",
        m(1, |r| r.rtt_p50_us) / m(0, |r| r.rtt_p50_us),
        m(1, |r| r.mb_s) / m(0, |r| r.mb_s),
        m(1, |r| r.cpu_ms_per_mb) / m(0, |r| r.cpu_ms_per_mb),
    );
}

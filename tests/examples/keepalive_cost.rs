//! What keep-alives cost the phone book per 1,000 online players (issue 10): a real pi-server
//! (in this process) with N registered players, each keeping its mapping alive from its own UDP
//! socket; the server's own counters (`/metrics`: UDP datagrams and payload bytes in and out)
//! give the bytes per keep-alive, and the table gives the rate at each keep-alive interval, with
//! 28 bytes of IPv4 and UDP headers per datagram added (48 for IPv6).
//!
//! Run with: `cargo run --profile bench-fast -p pb-tests --example keepalive_cost [PLAYERS] [ROUNDS]`

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use peer::phonebook::PhoneBookConfig;
use peer::{Identity, PhoneBook, PlayerName, Visibility};
use phonebook_proto::udp::{Message, TokenParts};
use pi_server::config::Config;
use pi_server::server::TestServer;

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn metrics(http: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(http).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let players: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        capacity: players as u32 + 16,
        max_records_per_address: players as u32 + 16,
        rate_ip: 0,
        udp_rate: 0,
        ..Config::default()
    };
    let pb = TestServer::start(config).expect("pi-server starts");
    let url = format!("http://{}", pb.addr());
    eprintln!("registering {players} players...");
    let mut keys: Vec<(UdpSocket, TokenParts, SocketAddr)> = Vec::with_capacity(players);
    smol::block_on(async {
        for i in 0..players {
            let id = Identity::generate();
            let name = PlayerName::parse(&format!("Player Number{}@World", letters(i))).unwrap();
            let book = PhoneBook::new(
                &id,
                name,
                PhoneBookConfig {
                    urls: vec![url.clone()],
                    ..Default::default()
                },
            )
            .unwrap();
            book.register(7000, Visibility::Public, &[]).await.unwrap();
            let udp = book
                .udp_books()
                .pop()
                .expect("the phone book has a UDP service");
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            keys.push((sock, udp.token, udp.addr));
        }
    });
    let before = metrics(pb.addr());
    let started = Instant::now();
    let mut answered = 0u64;
    let mut buf = [0u8; 256];
    // Sent in batches of 100, each answered before the next: a real population spreads its
    // keep-alives over the interval, and 1,000 datagrams at once overflow the server's default
    // socket receive buffer on loopback.
    for round in 1..=rounds {
        for batch in keys.chunks(100) {
            for (sock, token, to) in batch {
                let ka = Message::KeepAlive {
                    auth: token.auth,
                    counter: round,
                }
                .encode(&token.key);
                sock.send_to(&ka, to).unwrap();
            }
            for (sock, _, _) in batch {
                if sock.recv_from(&mut buf).is_ok() {
                    answered += 1;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let after = metrics(pb.addr());
    let d = |name: &str| metric(&after, name) - metric(&before, name);
    let (pin, bin) = (
        d("phonebook_udp_packets_total{direction=\"in\"} "),
        d("phonebook_udp_bytes_total{direction=\"in\"} "),
    );
    let (pout, bout) = (
        d("phonebook_udp_packets_total{direction=\"out\"} "),
        d("phonebook_udp_bytes_total{direction=\"out\"} "),
    );
    let sent = players as u64 * rounds;
    println!(
        "{sent} keep-alives sent, {answered} answered in {:.2} s; server counted {pin} in ({bin} payload bytes), {pout} out ({bout} payload bytes)",
        elapsed.as_secs_f64()
    );
    let per_in = bin as f64 / pin.max(1) as f64;
    let per_out = bout as f64 / pout.max(1) as f64;
    println!(
        "per keep-alive: {per_in:.0} B in + {per_out:.0} B out of UDP payload; with IPv4+UDP headers {:.0} + {:.0} = {:.0} B",
        per_in + 28.0,
        per_out + 28.0,
        per_in + per_out + 56.0
    );
    println!(
        "\n| interval | keep-alives/s per 1,000 players | bytes/s in | bytes/s out | total (plan: ~1,000 B/s) |"
    );
    println!("|---|---|---|---|---|");
    for secs in [25.0f64, 60.0, 110.0] {
        let rate = 1000.0 / secs;
        let i = rate * (per_in + 28.0);
        let o = rate * (per_out + 28.0);
        println!(
            "| {secs:.0} s | {rate:.1} | {i:.0} | {o:.0} | {:.0} |",
            i + o
        );
    }
}

fn letters(mut i: usize) -> String {
    let mut s = String::new();
    for _ in 0..6 {
        s.push(char::from(b'a' + (i % 26) as u8));
        i /= 26;
    }
    s
}

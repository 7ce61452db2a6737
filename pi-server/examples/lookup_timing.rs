//! Does a lookup of a hidden player take as long as a lookup of an absent one?
//!
//! Drives the sans-IO `App` (HTTP parsing, token check, rate limits, table, answer) with three
//! requests from one stranger: a lookup id nobody registered (absent), the id of a friends-only
//! player who does not list the stranger (hidden), and the id of a public player (visible, for
//! scale). Rounds alternate the order of the three; each reports nanoseconds per request, and
//! the medians and the hidden/absent ratio are printed. The answers of absent and hidden are
//! compared byte for byte.
//!
//! `cargo run --release -p pi-server --example lookup_timing [ROUNDS] [PER_ROUND]`

use phonebook_proto::{Keypair, LookupId, PlayerName, Register, RegisterAnswer};
use pi_server::api::{App, Now};
use pi_server::config::Config;
use pi_server::http::parse_head;
use std::net::IpAddr;
use std::time::Instant;

const T0: u64 = 1_764_000_000_000;

fn send_from(app: &mut App, now: Now, from: IpAddr, req: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let head = parse_head(req, 8192).expect("request parses");
    app.handle(&head, &req[head.len..], from, now, out);
}

fn send(app: &mut App, now: Now, req: &[u8], out: &mut Vec<u8>) {
    send_from(app, now, "198.51.100.10".parse().unwrap(), req, out);
}

/// Registers `r` from an address of its own (per-address quotas would stop one address).
fn register(app: &mut App, now: Now, r: &Register) -> String {
    let body = r.to_json();
    let req = format!(
        "POST /api/register HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut out = Vec::new();
    let n = u32::from_be_bytes(r.key.as_bytes()[..4].try_into().unwrap()) ^ r.timestamp as u32;
    let from = IpAddr::from([10, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
    send_from(app, now, from, req.as_bytes(), &mut out);
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    RegisterAnswer::from_json(&out[split..])
        .expect("registered")
        .token
}

fn name(i: u32) -> PlayerName {
    let mut s = String::new();
    let mut n = i;
    for _ in 0..4 {
        s.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    PlayerName::parse(&format!("Pl{s} Filler@Gilgamesh")).unwrap()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(31);
    let per: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let config = Config {
        capacity: 20_000,
        rate_ip: 1_000_000_000,
        rate_ip_burst: 1_000_000_000,
        rate_key: 1_000_000_000,
        rate_key_burst: 1_000_000_000,
        ..Config::default()
    };
    let mut app = App::new(config, [3; 32]);
    let now = Now {
        mono_ms: 5_000,
        wall_ms: T0,
    };
    // A table that is not empty: 10,000 public players.
    for i in 0..10_000u32 {
        let mut seed = [1u8; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        let k = Keypair::from_seed(&seed);
        let r = Register::sign_public(&k, name(i), 5000, T0 + u64::from(i));
        register(&mut app, now, &r);
    }
    let alice = PlayerName::parse("Alice Smith@Gilgamesh").unwrap();
    let friend = Keypair::from_seed(&[200; 32]).public();
    let hidden = Register::sign_friends(
        &Keypair::from_seed(&[201; 32]),
        alice.clone(),
        5000,
        vec![friend],
        [9; 32],
        T0,
    );
    register(&mut app, now, &hidden);
    // Two strangers, so that each first answer carries the first step of the miss back-off.
    let mut tokens = Vec::new();
    for (seed, who) in [(202u8, "Eve Evil@Gilgamesh"), (203, "Mal Lory@Gilgamesh")] {
        tokens.push(register(
            &mut app,
            now,
            &Register::sign_friends(
                &Keypair::from_seed(&[seed; 32]),
                PlayerName::parse(who).unwrap(),
                5000,
                vec![],
                [8; 32],
                T0,
            ),
        ));
    }
    let ask = |id: LookupId, token: &str| {
        format!("GET /api/lookup/{id} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n")
            .into_bytes()
    };
    let absent_id = LookupId::of(&PlayerName::parse("Nobody Here@Gilgamesh").unwrap());
    let mut out = Vec::with_capacity(1024);
    send(&mut app, now, &ask(absent_id, &tokens[1]), &mut out);
    let absent_answer = out.clone();
    send(
        &mut app,
        now,
        &ask(LookupId::of(&alice), &tokens[0]),
        &mut out,
    );
    let same = absent_answer == out;
    println!(
        "absent and hidden answers identical: {same} ({} bytes)",
        absent_answer.len()
    );
    let kinds = [
        ("absent", ask(absent_id, &tokens[0])),
        ("hidden", ask(LookupId::of(&alice), &tokens[0])),
        ("visible", ask(LookupId::of(&name(77)), &tokens[0])),
    ];
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    for round in 0..rounds {
        for j in 0..kinds.len() {
            let k = (round + j) % kinds.len();
            let start = Instant::now();
            for _ in 0..per {
                send(&mut app, now, &kinds[k].1, &mut out);
            }
            ns[k].push(start.elapsed().as_nanos() as f64 / per as f64);
        }
    }
    let med: Vec<f64> = ns.iter_mut().map(|v| median(v)).collect();
    for (i, (label, _)) in kinds.iter().enumerate() {
        println!(
            "{label:>8}: median {:.0} ns per lookup over {rounds} rounds of {per}",
            med[i]
        );
    }
    println!("hidden / absent = {:.3}", med[1] / med[0]);
    if !same {
        std::process::exit(1);
    }
}

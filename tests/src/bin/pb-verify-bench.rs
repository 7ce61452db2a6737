//! `pb-verify-bench`: how many Ed25519 verifications per second one core does with
//! `PublicKey::verify` (strict, with the key decompressed each time, as a server does for a
//! registration). This is the ceiling for signed registrations/s on that core.
//! Run with: `taskset -c 0 cargo run --release -p pb-tests --bin pb-verify-bench -- --seconds 3`

use phonebook_proto::{Keypair, PlayerName, PublicKey, Register};
use std::hint::black_box;
use std::time::{Duration, Instant};

const HELP: &str = "\
pb-verify-bench: Ed25519 verifications per second on the current core

USAGE:
    pb-verify-bench [--seconds S] [--keys N] [--batch N] [--json]

Verifies real registration messages (as `pb-load --scenario register` sends) signed by N
different keys, round robin, for S seconds after a short warm-up. Pin it with taskset to the
core the server uses.

OPTIONS:
    --seconds S   time to measure [default: 3]
    --keys N      distinct signers [default: 256]
    --batch N     verify N signatures at a time with PublicKey::verify_batch (as pi-server
                  does when several registrations wait); 1 = one by one [default: 1]
    --json        one JSON object instead of text
";

fn main() {
    use lexopt::prelude::*;
    let mut seconds = 3.0f64;
    let mut keys = 256usize;
    let mut json = false;
    let mut batch = 1usize;
    let mut p = lexopt::Parser::from_env();
    let fail = |m: String| -> ! {
        eprintln!("pb-verify-bench: {m}\n(try --help)");
        std::process::exit(64)
    };
    while let Some(arg) = p.next().unwrap_or_else(|e| fail(e.to_string())) {
        match arg {
            Long("seconds") => {
                seconds = p
                    .value()
                    .ok()
                    .and_then(|v| v.parse_with(|s| s.parse::<f64>()).ok())
                    .filter(|s| *s > 0.0)
                    .unwrap_or_else(|| fail("--seconds needs a positive number".into()))
            }
            Long("keys") => {
                keys = p
                    .value()
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| fail("--keys needs a positive integer".into()))
            }
            Long("batch") => {
                batch = p
                    .value()
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|n| (1..=4096).contains(n))
                    .unwrap_or_else(|| fail("--batch needs an integer from 1 to 4096".into()))
            }
            Long("json") => json = true,
            Short('h') | Long("help") => {
                print!("{HELP}");
                return;
            }
            other => fail(other.unexpected().to_string()),
        }
    }
    let reqs: Vec<Register> = (0..keys as u64)
        .map(|i| {
            let kp = Keypair::from_seed(&pb_tests::names::seed(pb_tests::names::Space::Prefill, i));
            let name =
                PlayerName::parse(&pb_tests::names::name(pb_tests::names::Space::Prefill, i))
                    .expect("valid name");
            Register::sign_public(&kp, name, 55000, 1_764_000_000_000 + i)
        })
        .collect();
    // Messages and signatures prepared outside the loop: only the verification is timed.
    let prepared: Vec<_> = reqs
        .iter()
        .map(|r| (r.key, r.fields().message(), r.signature))
        .collect();
    let run = |d: Duration| -> (u64, Duration) {
        let start = Instant::now();
        let mut n = 0u64;
        loop {
            if batch == 1 {
                for (k, m, s) in &prepared {
                    black_box(k.verify(black_box(m), s)).expect("valid signature");
                }
            } else {
                for group in prepared.chunks(batch) {
                    let items: Vec<_> = group.iter().map(|(k, m, s)| (k, &m[..], s)).collect();
                    black_box(PublicKey::verify_batch(black_box(&items))).expect("valid batch");
                }
            }
            n += prepared.len() as u64;
            let e = start.elapsed();
            if e >= d {
                return (n, e);
            }
        }
    };
    run(Duration::from_millis(300));
    let (n, e) = run(Duration::from_secs_f64(seconds));
    let per_s = n as f64 / e.as_secs_f64();
    let us = 1e6 / per_s;
    if json {
        println!(
            "{}",
            pb_tests::json::Obj::new()
                .str("bench", "ed25519-verify")
                .int("batch", batch as u64)
                .int("verifies", n)
                .num("seconds", e.as_secs_f64())
                .num("verifies_per_s", per_s)
                .num("us_per_verify", us)
                .finish()
        );
    } else {
        println!(
            "{n} verifications (batches of {batch}) in {:.2} s: {per_s:.0}/s, {us:.2} us each",
            e.as_secs_f64()
        );
    }
}

//! `pb-load`: the load generator of the phone book. One thread (pin it to a core with taskset),
//! keep-alive HTTP/1.1 connections, one request in flight per connection, closed loop (like
//! wrk). Signed requests are made with the protocol crate, before the timed phase.
//! Run with: `cargo run --release -p pb-tests --bin pb-load -- --help`

use pb_tests::hist::Histogram;
use pb_tests::http::{Client, Url};
use pb_tests::json::{Obj, find_u64, push_str};
use pb_tests::load::{self, Phase, Plan, Stats, Workload};
use pb_tests::names::{self, Space};
use pb_tests::procstat::{self, Snapshot};
use pb_tests::{now_ms, raise_nofile_limit};
use phonebook_proto::name::encode_path_name;
use phonebook_proto::{
    FriendKey, Keypair, LookupRecord, MAX_FRIENDS, PlayerName, PublicKey, Register, RegisterAnswer,
    Visibility, b64, friends_digest, paths,
};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const HELP: &str = "\
pb-load: load generator for the FFXIV P2P phone book (pi-server, the reference Node server, or
nginx answering a fixed health response as a ceiling)

USAGE:
    pb-load [OPTIONS]

One thread and one epoll set drive keep-alive HTTP/1.1 connections with one request in flight
each. By default a closed loop, like wrk: each connection sends its next request when the
previous answer is complete (latency is service time at that concurrency: on average
connections / throughput). With --rate an open loop, like wrk2. Pin it to the core the server
does not use: `taskset -c 1 pb-load ...` with the server under `taskset -c 0`.

SCENARIOS (--scenario):
    lookup         prefill --entries players, then GET /api/lookup/{name} of random existing
                   names; on pi-server with `Authorization: Bearer` tokens (one registered
                   requester per connection). On the reference (no auth) same as lookup-unauth.
    lookup-unauth  the same lookups without a token (the reference server's shape)
    register       fresh registrations (new names, new keys); on pi-server signed beforehand
                   (see --pool), so the generator's signing cost is not in the timed phase
    mix            prefill, then 90 % lookups / 10 % re-registrations of prefilled names
                   (see --lookup-percent)
    lookup-batch   POST /api/lookup with --batch random existing names per request
                   (pi-server only: the reference has no batch lookup)
    health         GET /api/health
    idle           lookup (lookup-unauth on the reference) while holding --idle connections
                   (default 10000) open and silent; checks at the end that they still answer
    prefill        only register --entries players (for memory figures) and report

OPTIONS:
    --url URL                server [default: http://127.0.0.1:3000]
    --target T               pi-server | reference | nginx [default: pi-server]; nginx (a
                             fixed answer to GET /api/health) allows only --scenario health
    --scenario S             see above [default: lookup]
    --connections N          busy connections [default: 64]
    --duration D             timed phase, e.g. 10, 10s, 500ms, 1m [default: 10s]
    --warmup D               time before the counters start [default: 2s]
    --entries N              players in the table for lookup/mix/prefill [default: 100000]
    --prefill M              auto (skip if health reports >= N active) | always | never
                             [default: auto]
    --prefill-connections N  connections used to prefill [default: 64]
    --idle N                 extra idle keep-alive connections held during the run [default: 0]
    --pool N                 pre-signed registrations prepared for register/mix
                             [default: sized for the duration; the run ends early if used up]
    --lookup-percent P       share of lookups in mix [default: 90]
    --batch N                names per request in lookup-batch (at most 64) [default: 32]
    --friends N              lookup/prefill on pi-server: prefilled players register with
                             visibility friends and N friend keys (1..=64): N-1 fixed keys,
                             then last the key of requester (entry mod --connections), so
                             connection c looks up only entries it may see (keep --connections
                             and --entries the same between the prefill and the runs; a check
                             before the timed phase says when the table does not match)
    --not-friend             with --friends: connection c looks up only entries whose list does
                             not hold its key; every answer must be 404, the same as an absent
                             name, and 404s count as expected (needs --connections >= 2)
    --rate R                 open loop (like wrk2): R requests/s in total, latency counted from
                             when each request was due; the generator's core busy-polls
                             [default: closed loop]
    --server-pid PID         report the server's CPU per request (utime+stime from
                             /proc/PID/stat over the timed phase) and its VmRSS
    --requester-base N       first requester index (several generators against phone books
                             that share records must not renew each other's requesters)
                             [default: 0]
    --json                   one JSON object on stdout instead of text
    -h, --help               this text

Every run also reports the CPU used by all other processes during the timed phase (from
/proc/*/stat), to tell a quiet run from a disturbed one, and raises its open-files limit to the
hard limit (the server needs `ulimit -n` raised too for thousands of connections).
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    PiServer,
    Reference,
    /// nginx with a fixed answer to `GET /api/health`: the ceiling of one HTTP/1.1 request.
    Nginx,
}

impl Target {
    fn as_str(self) -> &'static str {
        match self {
            Target::PiServer => "pi-server",
            Target::Reference => "reference",
            Target::Nginx => "nginx",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Lookup,
    LookupUnauth,
    LookupBatch,
    Register,
    Mix,
    Health,
    Idle,
    Prefill,
}

impl Scenario {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "lookup" => Scenario::Lookup,
            "lookup-unauth" => Scenario::LookupUnauth,
            "lookup-batch" => Scenario::LookupBatch,
            "register" => Scenario::Register,
            "mix" => Scenario::Mix,
            "health" => Scenario::Health,
            "idle" => Scenario::Idle,
            "prefill" => Scenario::Prefill,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Scenario::Lookup => "lookup",
            Scenario::LookupUnauth => "lookup-unauth",
            Scenario::LookupBatch => "lookup-batch",
            Scenario::Register => "register",
            Scenario::Mix => "mix",
            Scenario::Health => "health",
            Scenario::Idle => "idle",
            Scenario::Prefill => "prefill",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrefillMode {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone)]
struct Opts {
    url: Url,
    target: Target,
    scenario: Scenario,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    entries: u64,
    prefill: PrefillMode,
    prefill_connections: usize,
    idle: Option<usize>,
    pool: Option<usize>,
    lookup_percent: u64,
    batch: usize,
    rate: Option<f64>,
    server_pid: Option<u32>,
    json: bool,
    requester_base: u64,
    /// Friend keys per prefilled player (`None`: public players).
    friends: Option<usize>,
    /// Look up only entries whose friend list does not hold the requester's key.
    not_friend: bool,
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("pb-load: {msg}");
    std::process::exit(1)
}

fn usage(msg: impl std::fmt::Display) -> ! {
    eprintln!("pb-load: {msg}\n(try `pb-load --help`)");
    std::process::exit(64)
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().ok()?;
    (v >= 0.0 && v.is_finite()).then(|| Duration::from_secs_f64(v * scale))
}

/// What the command line asks for.
#[derive(Debug)]
enum Cli {
    Help,
    Run(Box<Opts>),
}

fn parse_opts() -> Opts {
    match parse_args(std::env::args_os().skip(1)) {
        Ok(Cli::Help) => {
            print!("{HELP}");
            std::process::exit(0);
        }
        Ok(Cli::Run(o)) => *o,
        Err(e) => usage(e),
    }
}

/// Parses the arguments (without the program name) and checks that they fit together.
fn parse_args<I>(args: I) -> Result<Cli, String>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::prelude::*;
    let mut o = Opts {
        url: Url::parse("http://127.0.0.1:3000").expect("default URL"),
        target: Target::PiServer,
        scenario: Scenario::Lookup,
        connections: 64,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        entries: 100_000,
        prefill: PrefillMode::Auto,
        prefill_connections: 64,
        idle: None,
        pool: None,
        lookup_percent: 90,
        batch: 32,
        rate: None,
        server_pid: None,
        requester_base: 0,
        json: false,
        friends: None,
        not_friend: false,
    };
    let mut p = lexopt::Parser::from_args(args);
    fn val(p: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
        p.value()
            .ok()
            .and_then(|v| v.into_string().ok())
            .ok_or_else(|| format!("{flag} needs a value"))
    }
    fn num<T: std::str::FromStr>(p: &mut lexopt::Parser, flag: &str) -> Result<T, String> {
        let v = val(p, flag)?;
        v.parse()
            .map_err(|_| format!("{flag}: {v:?} is not a valid number"))
    }
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Cli::Help),
            Long("url") => {
                let v = val(&mut p, "--url")?;
                o.url = Url::parse(&v).map_err(|e| format!("--url {v:?}: {e}"))?;
            }
            Long("target") => {
                o.target = match val(&mut p, "--target")?.as_str() {
                    "pi-server" => Target::PiServer,
                    "reference" => Target::Reference,
                    "nginx" => Target::Nginx,
                    _ => return Err("--target must be pi-server, reference or nginx".into()),
                }
            }
            Long("scenario") => {
                let v = val(&mut p, "--scenario")?;
                o.scenario =
                    Scenario::parse(&v).ok_or_else(|| format!("unknown scenario {v:?}"))?;
            }
            Long("connections") => o.connections = num(&mut p, "--connections")?,
            Long("duration") | Long("warmup") => {
                let flag = if matches!(arg, Long("duration")) {
                    "--duration"
                } else {
                    "--warmup"
                };
                let v = val(&mut p, flag)?;
                let d =
                    parse_duration(&v).ok_or_else(|| format!("{flag}: {v:?} is not a duration"))?;
                if flag == "--duration" {
                    o.duration = d;
                } else {
                    o.warmup = d;
                }
            }
            Long("entries") => o.entries = num(&mut p, "--entries")?,
            Long("prefill") => {
                o.prefill = match val(&mut p, "--prefill")?.as_str() {
                    "auto" => PrefillMode::Auto,
                    "always" => PrefillMode::Always,
                    "never" => PrefillMode::Never,
                    _ => return Err("--prefill must be auto, always or never".into()),
                }
            }
            Long("prefill-connections") => {
                o.prefill_connections = num(&mut p, "--prefill-connections")?
            }
            Long("idle") => o.idle = Some(num(&mut p, "--idle")?),
            Long("pool") => o.pool = Some(num(&mut p, "--pool")?),
            Long("lookup-percent") => {
                o.lookup_percent = num(&mut p, "--lookup-percent")?;
                if o.lookup_percent > 100 {
                    return Err("--lookup-percent must be 0..=100".into());
                }
            }
            Long("batch") => {
                o.batch = num(&mut p, "--batch")?;
                if !(1..=phonebook_proto::MAX_BATCH).contains(&o.batch) {
                    return Err(format!(
                        "--batch must be 1..={}",
                        phonebook_proto::MAX_BATCH
                    ));
                }
            }
            Long("friends") => {
                let n: usize = num(&mut p, "--friends")?;
                if !(1..=MAX_FRIENDS).contains(&n) {
                    return Err(format!(
                        "--friends must be 1..={MAX_FRIENDS} (the most keys a registration may list)"
                    ));
                }
                o.friends = Some(n);
            }
            Long("not-friend") => o.not_friend = true,
            Long("rate") => {
                let r: f64 = num(&mut p, "--rate")?;
                if !(r > 0.0 && r.is_finite()) {
                    return Err("--rate must be a positive number of requests per second".into());
                }
                o.rate = Some(r);
            }
            Long("server-pid") => o.server_pid = Some(num(&mut p, "--server-pid")?),
            Long("requester-base") => o.requester_base = num(&mut p, "--requester-base")?,
            Long("json") => o.json = true,
            other => return Err(other.unexpected().to_string()),
        }
    }
    check_opts(&o)?;
    Ok(Cli::Run(Box::new(o)))
}

/// Combinations of options that cannot work.
fn check_opts(o: &Opts) -> Result<(), String> {
    if o.connections == 0 || o.prefill_connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if o.duration.is_zero() {
        return Err("--duration must be positive".into());
    }
    if o.target == Target::Nginx && o.scenario != Scenario::Health {
        return Err(
            "--target nginx answers only GET /api/health: use --scenario health with it".into(),
        );
    }
    if o.scenario == Scenario::LookupBatch && o.target == Target::Reference {
        return Err("the reference server has no batch lookup".into());
    }
    if o.not_friend && o.friends.is_none() {
        return Err("--not-friend needs --friends N".into());
    }
    if o.friends.is_some() {
        if o.target != Target::PiServer {
            return Err(
                "--friends needs --target pi-server (the others have no visibility)".into(),
            );
        }
        if !matches!(o.scenario, Scenario::Lookup | Scenario::Prefill) {
            return Err("--friends works with --scenario lookup or prefill".into());
        }
        if o.entries < o.connections as u64 {
            return Err(format!(
                "--friends needs --entries >= --connections (each connection looks up the entries \
                 that list its key): {} < {}",
                o.entries, o.connections
            ));
        }
        if o.not_friend && o.connections < 2 {
            return Err(
                "--not-friend needs --connections >= 2 (each entry lists the key of one \
                        requester; the others look it up)"
                    .into(),
            );
        }
    }
    Ok(())
}

/// A fast, small PRNG (wyrand); quality is ample for picking names.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        Rng(getrandom::u64().unwrap_or(0x1234_5678_9abc_def0))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) as u64) ^ (t as u64)
    }

    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

/// Friend lists of the prefilled players (`--friends N`): entry `j` lists `n - 1` fixed keys,
/// then, last, the key of requester `j % requesters.len()` (the requester of connection
/// `j % connections`). pi-server keeps lists sorted, so where the requester's key sits in the
/// list sent does not change its work; last is the worst case for a server that scans.
#[derive(Debug, Clone)]
struct FriendPlan {
    n: usize,
    fillers: Vec<PublicKey>,
    requesters: Vec<PublicKey>,
}

impl FriendPlan {
    fn new(n: usize, requesters: usize) -> Self {
        let key = |space, i| Keypair::from_seed(&names::seed(space, i)).public();
        FriendPlan {
            n,
            fillers: (0..n.saturating_sub(1) as u64)
                .map(|i| key(Space::Friend, i))
                .collect(),
            requesters: (0..requesters as u64)
                .map(|i| key(Space::Requester, i))
                .collect(),
        }
    }

    /// The requester whose key entry `j` lists.
    fn requester_of(&self, j: u64) -> usize {
        (j % self.requesters.len() as u64) as usize
    }

    /// The friend list of entry `j`.
    fn list(&self, j: u64) -> Vec<PublicKey> {
        let mut v = self.fillers.clone();
        v.push(self.requesters[self.requester_of(j)]);
        v
    }
}

/// The entry connection `conn` of `conns` looks up, from a random `x`: with `allowed`, one of
/// the entries below `entries` that list its key (`j % conns == conn`); otherwise one that does
/// not (needs `conns >= 2`). Needs `entries >= conns`.
fn friends_pick(entries: u64, conns: u64, conn: u64, allowed: bool, x: u64) -> u64 {
    let below = |n: u64| ((x as u128 * n as u128) >> 64) as u64;
    if allowed {
        // Entries conn, conn + conns, ... below `entries`.
        let count = (entries - conn).div_ceil(conns);
        conn + conns * below(count)
    } else {
        let j = below(entries);
        if j % conns != conn {
            j
        } else if j + 1 < entries {
            j + 1
        } else {
            j - 1
        }
    }
}

/// Request bytes of a registration of entry `i` of `space`, signed now (pi-server) or in the
/// reference server's unsigned shape (same name and port; a well-formed key, not checked there).
/// With `friends`, a friends-only registration with the list of entry `i`.
/// The `friendsSalt` of entry `i`: derived from its name so that the check after a run can
/// recompute the digest. Only a load generator may do this; a real client draws a fresh random
/// salt for each registration (docs/PROTOCOL.md).
fn load_salt(space: Space, i: u64) -> phonebook_proto::FriendsSalt {
    let mut salt = names::seed(space, i);
    salt[31] ^= 0xa5;
    salt
}

fn register_request(
    target: Target,
    host: &str,
    space: Space,
    i: u64,
    friends: Option<&FriendPlan>,
    out: &mut Vec<u8>,
) {
    let name = names::name(space, i);
    let seed = names::seed(space, i);
    let body = match target {
        Target::PiServer => {
            let kp = Keypair::from_seed(&seed);
            let n = PlayerName::parse(&name).expect("benchmark names are valid");
            let port = names::port(i);
            match friends {
                Some(f) => {
                    let salt = load_salt(space, i);
                    Register::sign_friends(&kp, n, port, f.list(i), salt, now_ms())
                }
                None => Register::sign_public(&kp, n, port, now_ms()),
            }
            .to_json()
        }
        Target::Reference | Target::Nginx => {
            let mut s = String::with_capacity(128);
            s.push_str("{\"playerName\":");
            push_str(&mut s, &name);
            let _ = write!(
                s,
                ",\"port\":{},\"publicKey\":\"{}\"}}",
                names::port(i),
                b64::encode(&seed)
            );
            s
        }
    };
    pb_tests::http::write_request(
        out,
        "POST",
        paths::REGISTER,
        host,
        &[],
        Some(body.as_bytes()),
    );
}

/// Registrations of entries `next..end`, made as they are sent (for the prefill).
struct Prefill {
    target: Target,
    host: String,
    next: u64,
    end: u64,
    friends: Option<FriendPlan>,
}

impl Workload for Prefill {
    fn next(&mut self, _conn: usize, out: &mut Vec<u8>) -> Option<usize> {
        if self.next >= self.end {
            return None;
        }
        register_request(
            self.target,
            &self.host,
            Space::Prefill,
            self.next,
            self.friends.as_ref(),
            out,
        );
        self.next += 1;
        Some(0)
    }
}

/// Where registrations of the timed phase come from.
enum Regs {
    /// No registrations.
    None,
    /// Requests prepared (signed) before the run, sent in order.
    Pool(Vec<Vec<u8>>, usize),
    /// Unsigned requests made as they go (the reference server: nothing to sign).
    Lazy { space: Space, walk: Walk },
}

/// Which entry the next registration is for.
#[derive(Debug, Clone, Copy)]
enum Walk {
    /// 0, 1, 2, ... (fresh names).
    Sequential(u64),
    /// A fixed permutation of 0..n (re-registrations: each name again only after all others).
    Stride { at: u64, step: u64, n: u64 },
}

impl Walk {
    fn stride(n: u64, rng: &mut Rng) -> Walk {
        // A step coprime with n visits every entry once per n steps.
        let mut step = (n / 2 + rng.below(n / 2 + 1)).max(1) | 1;
        while gcd(step, n) != 1 {
            step += 2;
        }
        Walk::Stride {
            at: rng.below(n.max(1)),
            step,
            n,
        }
    }

    fn next(&mut self) -> u64 {
        match self {
            Walk::Sequential(i) => {
                *i += 1;
                *i - 1
            }
            Walk::Stride { at, step, n } => {
                let v = *at;
                *at = (*at + *step) % *n;
                v
            }
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The timed phase: lookups, registrations, or a fixed request.
struct Work {
    target: Target,
    host: String,
    /// `GET` request heads up to the `Host` line, per entry.
    paths: Vec<String>,
    /// Per connection: the `Authorization` line, or empty.
    auth: Vec<String>,
    rng: Rng,
    lookup_percent: u64,
    regs: Regs,
    /// The kind index of registrations (0 when they are the only kind).
    reg_kind: usize,
    fixed: Option<Vec<u8>>,
    /// Names per batch lookup (0: single lookups), and the names to pick from.
    batch: usize,
    names: Vec<String>,
    /// `--friends`: lookups pick entries by connection (see [`friends_pick`]); whether the
    /// picked entries list the connection's key.
    friends_allowed: Option<bool>,
}

impl Workload for Work {
    fn next(&mut self, conn: usize, out: &mut Vec<u8>) -> Option<usize> {
        if let Some(f) = &self.fixed {
            out.extend_from_slice(f);
            return Some(0);
        }
        if self.batch > 0 {
            let mut body = String::with_capacity(16 + 32 * self.batch);
            body.push_str("{\"names\":[");
            for k in 0..self.batch {
                if k > 0 {
                    body.push(',');
                }
                let n = &self.names[self.rng.below(self.names.len() as u64) as usize];
                push_str(&mut body, n);
            }
            body.push_str("]}");
            let auth = self.auth.get(conn).map(|a| a.as_str()).unwrap_or("");
            out.extend_from_slice(b"POST ");
            out.extend_from_slice(paths::LOOKUP.as_bytes());
            out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
            out.extend_from_slice(self.host.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(auth.as_bytes());
            let _ = write!(
                body_head(out),
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            out.extend_from_slice(body.as_bytes());
            return Some(0);
        }
        let lookup = self.lookup_percent >= 100
            || (self.lookup_percent > 0 && self.rng.below(100) < self.lookup_percent);
        if lookup {
            let n = self.paths.len() as u64;
            let j = match self.friends_allowed {
                Some(allowed) => friends_pick(
                    n,
                    self.auth.len() as u64,
                    conn as u64,
                    allowed,
                    self.rng.next(),
                ),
                None => self.rng.below(n),
            };
            let p = &self.paths[j as usize];
            out.extend_from_slice(b"GET ");
            out.extend_from_slice(p.as_bytes());
            out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
            out.extend_from_slice(self.host.as_bytes());
            out.extend_from_slice(b"\r\n");
            if let Some(a) = self.auth.get(conn) {
                out.extend_from_slice(a.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            return Some(0);
        }
        match &mut self.regs {
            Regs::None => None,
            Regs::Pool(items, at) => {
                let item = items.get(*at)?;
                out.extend_from_slice(item);
                *at += 1;
                Some(self.reg_kind)
            }
            Regs::Lazy { space, walk } => {
                register_request(self.target, &self.host, *space, walk.next(), None, out);
                Some(self.reg_kind)
            }
        }
    }
}

/// A `fmt::Write` view of a byte buffer.
fn body_head(out: &mut Vec<u8>) -> impl std::fmt::Write + '_ {
    struct W<'a>(&'a mut Vec<u8>);
    impl std::fmt::Write for W<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.extend_from_slice(s.as_bytes());
            Ok(())
        }
    }
    W(out)
}

/// Measurements around the timed phase.
#[derive(Debug, Default)]
struct Probe {
    server_pid: Option<u32>,
    server_ticks: [u64; 2],
    self_ticks: [u64; 2],
    snaps: [Snapshot; 2],
}

impl Probe {
    fn mark(&mut self, k: usize) {
        if let Some(pid) = self.server_pid {
            self.server_ticks[k] = procstat::process_ticks(pid).unwrap_or(0);
        }
        self.self_ticks[k] = procstat::process_ticks(std::process::id()).unwrap_or(0);
        self.snaps[k] = Snapshot::take();
    }
}

/// Before a `--friends` lookup run: the table holds the lists this run expects. The last entry
/// must answer the requester it lists with a friends-only record carrying the digest of the
/// list, and another requester with 404.
fn check_friend_table(
    c: &mut Client,
    plan: &FriendPlan,
    entries: u64,
    tokens: &[String],
) -> Result<(), String> {
    let j = entries - 1;
    let name = PlayerName::parse(&names::name(Space::Prefill, j)).expect("valid");
    let path = format!("{}/{}", paths::LOOKUP, encode_path_name(&name));
    let mut get = |who: usize| {
        let auth = format!("Bearer {}", tokens[who]);
        c.request("GET", &path, &[("Authorization", &auth)], None)
            .map_err(|e| e.to_string())
    };
    let friend = plan.requester_of(j);
    let r = get(friend)?;
    if r.status != 200 {
        return Err(format!(
            "{name} answered {} to requester {friend}, which its friend list should hold: {}",
            r.status,
            r.text()
        ));
    }
    let rec = LookupRecord::from_json_verified(&r.body, &name)
        .map_err(|e| format!("{name}: answer to its friend: {e}"))?;
    let listed: Vec<FriendKey> = plan.list(j).into_iter().map(FriendKey::from).collect();
    let digest = friends_digest(&load_salt(Space::Prefill, j), &listed);
    if rec.visibility != Visibility::Friends || rec.friends_digest != digest {
        return Err(format!(
            "{name} is not registered friends-only with the friend list of this run"
        ));
    }
    let stranger = (friend + 1) % tokens.len();
    if stranger != friend {
        let r = get(stranger)?;
        if r.status != 404 {
            return Err(format!(
                "{name} answered {} to requester {stranger}, which its list does not hold (expected 404)",
                r.status
            ));
        }
    }
    Ok(())
}

fn health_active(c: &mut Client) -> u64 {
    match c.request("GET", paths::HEALTH, &[], None) {
        Ok(r) if r.status == 200 => find_u64(&r.body, "activeUsers").unwrap_or(0),
        Ok(r) => die(format!("health answered {}: {}", r.status, r.text())),
        Err(e) => die(e),
    }
}

fn rss(pid: Option<u32>) -> Option<u64> {
    pid.and_then(|p| procstat::rss_kib(p).ok())
}

fn status_json(st: &std::collections::BTreeMap<u16, u64>) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in st.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "\"{k}\":{v}");
    }
    s.push('}');
    s
}

fn lat_json(h: &Histogram) -> String {
    let us = |v: u64| v as f64 / 1000.0;
    Obj::new()
        .int("count", h.count())
        .num("mean_us", h.mean() / 1000.0)
        .num("p50_us", us(h.quantile(0.50)))
        .num("p90_us", us(h.quantile(0.90)))
        .num("p99_us", us(h.quantile(0.99)))
        .num("p999_us", us(h.quantile(0.999)))
        .num("max_us", us(h.max()))
        .finish()
}

fn main() {
    let o = parse_opts();
    let nofile = raise_nofile_limit();
    let addr: SocketAddr = o.url.resolve().unwrap_or_else(|e| die(e));
    let host = o.url.host_header();
    let hz = procstat::ticks_per_second() as f64;
    let mut scenario = o.scenario;
    if o.target == Target::Reference && scenario == Scenario::Lookup {
        // The reference has no authentication: the same lookups, without a token.
        scenario = Scenario::LookupUnauth;
    }
    let idle_n = o.idle.unwrap_or(if scenario == Scenario::Idle {
        10_000
    } else {
        0
    });
    if idle_n + o.connections + 64 > nofile as usize {
        die(format!(
            "open-files limit {nofile} is too low for {} connections: raise `ulimit -Hn`",
            idle_n + o.connections
        ));
    }
    let mut ctl = Client::connect(&o.url, Duration::from_secs(10)).unwrap_or_else(|e| die(e));
    let rss_start = rss(o.server_pid);
    let needs_table = matches!(
        scenario,
        Scenario::Lookup
            | Scenario::LookupUnauth
            | Scenario::LookupBatch
            | Scenario::Mix
            | Scenario::Idle
            | Scenario::Prefill
    );
    let log = |m: String| {
        if !o.json {
            eprintln!("{m}");
        }
    };

    // 1. Prefill.
    let friend_plan = o.friends.map(|n| FriendPlan::new(n, o.connections));
    let mut prefill_json = String::from("null");
    if needs_table && o.entries > 0 {
        let active = health_active(&mut ctl);
        let skip = match o.prefill {
            PrefillMode::Never => true,
            PrefillMode::Always => false,
            PrefillMode::Auto => active >= o.entries,
        };
        if skip {
            log(format!(
                "prefill skipped: server reports {active} active entries"
            ));
            prefill_json = Obj::new()
                .bool("skipped", true)
                .int("active", active)
                .finish();
        } else {
            log(format!(
                "prefilling {} entries over {} connections...",
                o.entries, o.prefill_connections
            ));
            let plan = Plan {
                addr,
                connections: o.prefill_connections.min(o.entries as usize),
                warmup: Duration::ZERO,
                duration: None,
                kinds: 1,
                rate: None,
            };
            let mut w = Prefill {
                target: o.target,
                host: host.clone(),
                next: 0,
                end: o.entries,
                friends: friend_plan.clone(),
            };
            let st = load::run(&plan, &mut w, &mut |_| {}).unwrap_or_else(|e| die(e));
            let ok = st.ok();
            let secs = st.elapsed.as_secs_f64();
            log(format!(
                "prefilled {ok} of {} in {secs:.1} s ({:.0}/s, signing included)",
                o.entries,
                ok as f64 / secs
            ));
            if ok < o.entries {
                die(format!(
                    "prefill failed: {} of {} registered; errors {:?}; first failure {:?}",
                    ok, o.entries, st.errors, st.first_failure
                ));
            }
            prefill_json = Obj::new()
                .bool("skipped", false)
                .int("registered", ok)
                .num("seconds", secs)
                .num("per_s", ok as f64 / secs)
                .finish();
        }
    }
    let rss_filled = rss(o.server_pid);

    let mut report = Obj::new()
        .str("target", o.target.as_str())
        .str("scenario", scenario.as_str())
        .int("entries", if needs_table { o.entries } else { 0 })
        .int("friends", o.friends.unwrap_or(0) as u64)
        .bool("not_friend", o.not_friend)
        .raw("prefill", &prefill_json);
    if let Some(k) = rss_start {
        report = report.int("server_rss_start_kib", k);
    }
    if let Some(k) = rss_filled {
        report = report.int("server_rss_filled_kib", k);
    }
    if scenario == Scenario::Prefill {
        if !o.json {
            if let (Some(a), Some(b)) = (rss_start, rss_filled) {
                println!(
                    "server RSS: {a} KiB before, {b} KiB after {} entries",
                    o.entries
                );
            }
        } else {
            println!("{}", report.finish());
        }
        return;
    }

    // 2. Requesters (pi-server lookups need a token per connection).
    let authed = o.target == Target::PiServer
        && matches!(
            scenario,
            Scenario::Lookup | Scenario::LookupBatch | Scenario::Mix | Scenario::Idle
        );
    let mut auth = Vec::new();
    let mut tokens = Vec::new();
    if authed {
        for i in o.requester_base..o.requester_base + o.connections as u64 {
            let kp = Keypair::from_seed(&names::seed(Space::Requester, i));
            let n = PlayerName::parse(&names::name(Space::Requester, i)).expect("valid");
            let body = Register::sign_public(&kp, n, names::port(i), now_ms()).to_json();
            let r = ctl
                .request("POST", paths::REGISTER, &[], Some(body.as_bytes()))
                .unwrap_or_else(|e| die(e));
            if r.status != 200 {
                die(format!(
                    "requester registration answered {}: {}",
                    r.status,
                    r.text()
                ));
            }
            let a = RegisterAnswer::from_json(&r.body)
                .unwrap_or_else(|e| die(format!("register answer: {e}")));
            auth.push(format!("Authorization: Bearer {}\r\n", a.token));
            tokens.push(a.token);
        }
    }
    if let Some(plan) = &friend_plan
        && scenario == Scenario::Lookup
    {
        check_friend_table(&mut ctl, plan, o.entries, &tokens)
            .unwrap_or_else(|e| die(format!("{e}; prefill with the same --friends, --entries and --connections (--prefill always, or a fresh server)")));
        log(format!(
            "friend lists checked: entries list {} keys, the last one a requester's",
            plan.n
        ));
    }

    // 3. Requests of the timed phase.
    let mut rng = Rng::new();
    let paths: Vec<String> = if needs_table {
        (0..o.entries)
            .map(|i| {
                let n = PlayerName::parse(&names::name(Space::Prefill, i)).expect("valid");
                format!("{}/{}", paths::LOOKUP, encode_path_name(&n))
            })
            .collect()
    } else {
        Vec::new()
    };
    let span = (o.warmup + o.duration).as_secs_f64();
    let (lookup_percent, reg_space, walk, rate_guess) = match scenario {
        Scenario::Register => (
            0,
            Space::Fresh(rng.next() as u32 % 11_881_376),
            Walk::Sequential(0),
            30_000.0,
        ),
        Scenario::Mix => (
            o.lookup_percent,
            Space::Prefill,
            Walk::stride(o.entries.max(1), &mut rng),
            (100 - o.lookup_percent) as f64 / 100.0 * 120_000.0,
        ),
        _ => (100, Space::Prefill, Walk::Sequential(0), 0.0),
    };
    let mut regs = Regs::None;
    let mut pool_n = 0usize;
    if matches!(scenario, Scenario::Register | Scenario::Mix) {
        match o.target {
            Target::PiServer => {
                pool_n = o.pool.unwrap_or((rate_guess * span) as usize).max(1);
                let t = Instant::now();
                let mut walk = walk;
                let items: Vec<Vec<u8>> = (0..pool_n)
                    .map(|_| {
                        let mut v = Vec::with_capacity(520);
                        register_request(o.target, &host, reg_space, walk.next(), None, &mut v);
                        v
                    })
                    .collect();
                log(format!(
                    "signed {pool_n} registrations in {:.1} s before the timed phase",
                    t.elapsed().as_secs_f64()
                ));
                regs = Regs::Pool(items, 0);
            }
            Target::Reference | Target::Nginx => {
                regs = Regs::Lazy {
                    space: reg_space,
                    walk,
                }
            }
        }
    }
    let fixed = (scenario == Scenario::Health).then(|| {
        let mut v = Vec::new();
        pb_tests::http::write_request(&mut v, "GET", paths::HEALTH, &host, &[], None);
        v
    });
    let mut work = Work {
        target: o.target,
        host: host.clone(),
        paths,
        auth,
        rng,
        lookup_percent,
        regs,
        reg_kind: usize::from(scenario == Scenario::Mix),
        batch: if scenario == Scenario::LookupBatch {
            o.batch
        } else {
            0
        },
        names: if scenario == Scenario::LookupBatch {
            (0..o.entries)
                .map(|i| names::name(Space::Prefill, i))
                .collect()
        } else {
            Vec::new()
        },
        fixed,
        friends_allowed: o.friends.map(|_| !o.not_friend),
    };
    let kinds: &[&str] = match scenario {
        Scenario::Register => &["register"],
        Scenario::Mix => &["lookup", "register"],
        Scenario::Health => &["health"],
        _ => &["lookup"],
    };

    // 4. Idle connections.
    let mut idle = if idle_n > 0 {
        log(format!("opening {idle_n} idle connections..."));
        load::open_idle(addr, idle_n)
            .unwrap_or_else(|e| die(format!("opening idle connections: {e}")))
    } else {
        Vec::new()
    };
    drop(ctl);

    // 5. The run.
    log(format!(
        "{} on {} connections: warm-up {:?}, measuring {:?}...",
        scenario.as_str(),
        o.connections,
        o.warmup,
        o.duration
    ));
    let plan = Plan {
        addr,
        connections: o.connections,
        warmup: o.warmup,
        duration: Some(o.duration),
        kinds: kinds.len(),
        rate: o.rate,
    };
    let mut probe = Probe {
        server_pid: o.server_pid,
        ..Probe::default()
    };
    let st: Stats = load::run(&plan, &mut work, &mut |ph| {
        probe.mark(if ph == Phase::Start { 0 } else { 1 })
    })
    .unwrap_or_else(|e| die(e));
    let idle_check = (!idle.is_empty()).then(|| load::check_idle(&mut idle, &host));
    drop(idle);
    let rss_end = rss(o.server_pid);

    // 6. Report.
    let secs = st.elapsed.as_secs_f64();
    let n = st.answers();
    let lat = st.latency();
    let server_cpu = (probe.server_ticks[1] - probe.server_ticks[0]) as f64 / hz;
    let self_cpu = (probe.self_ticks[1] - probe.self_ticks[0]) as f64 / hz;
    let mut exclude = vec![std::process::id()];
    exclude.extend(o.server_pid);
    let others = procstat::others(&probe.snaps[0], &probe.snaps[1], &exclude);
    let others_cpu = others.ticks as f64 / hz;
    let mut top = String::from("[");
    for (i, (c, pid, t)) in others.top.iter().enumerate() {
        if i > 0 {
            top.push(',');
        }
        top.push_str(
            &Obj::new()
                .str("comm", c)
                .int("pid", *pid as u64)
                .num("cpu_s", *t as f64 / hz)
                .finish(),
        );
    }
    top.push(']');
    let mut errors = String::from("{");
    for (i, (k, v)) in st.errors.iter().enumerate() {
        if i > 0 {
            errors.push(',');
        }
        let _ = write!(errors, "\"{k}\":{v}");
    }
    errors.push('}');
    let mut per_kind = String::from("{");
    for (i, (name, ks)) in kinds.iter().zip(&st.kinds).enumerate() {
        if i > 0 {
            per_kind.push(',');
        }
        push_str(&mut per_kind, name);
        per_kind.push(':');
        per_kind.push_str(
            &Obj::new()
                .num("per_s", ks.latency.count() as f64 / secs)
                .raw("status", &status_json(&ks.status))
                .raw("latency", &lat_json(&ks.latency))
                .finish(),
        );
    }
    per_kind.push('}');
    let mut status_all = std::collections::BTreeMap::new();
    for ks in &st.kinds {
        for (k, v) in &ks.status {
            *status_all.entry(*k).or_insert(0u64) += v;
        }
    }
    // With --not-friend every answer should be the 404 of an absent name.
    let expected_status: u16 = if o.not_friend { 404 } else { 200 };
    let ok = if o.not_friend {
        status_all.get(&404).copied().unwrap_or(0)
    } else {
        st.ok()
    };
    let mut report = report
        .str("loop", if o.rate.is_some() { "open" } else { "closed" })
        .num("rate_target", o.rate.unwrap_or(0.0))
        .int("max_backlog", st.max_backlog as u64)
        .int(
            "batch",
            if scenario == Scenario::LookupBatch {
                o.batch as u64
            } else {
                0
            },
        )
        .int("connections", o.connections as u64)
        .int("idle_connections", idle_n as u64)
        .num("warmup_s", o.warmup.as_secs_f64())
        .num("seconds", secs)
        .int("requests", n)
        .int("ok", ok)
        .int("expected_status", expected_status as u64)
        .int("unexpected", n - ok)
        .num("requests_per_s", n as f64 / secs)
        .raw("latency", &lat_json(&lat))
        .raw("status", &status_json(&status_all))
        .raw("errors", &errors)
        .int("reconnects", st.reconnects)
        .raw("kinds", &per_kind)
        .bool("ran_out", st.ran_out)
        .int("pool", pool_n as u64)
        .num("loadgen_cpu_s", self_cpu)
        .num("loadgen_util", self_cpu / secs)
        .num("others_cpu_s", others_cpu)
        .raw("others_top", &top)
        .num("machine_busy_s", others.machine_busy as f64 / hz)
        // Whole-machine busy time less the server and the generator: also catches processes
        // that started and ended within the run (missed by the per-process sum), plus
        // interrupts.
        .num(
            "others_machine_s",
            (others.machine_busy as f64 / hz - server_cpu - self_cpu).max(0.0),
        );
    if o.server_pid.is_some() {
        report = report
            .num("server_cpu_s", server_cpu)
            .num("server_util", server_cpu / secs)
            .num(
                "server_cpu_us_per_req",
                if n > 0 {
                    server_cpu * 1e6 / n as f64
                } else {
                    0.0
                },
            );
        if let Some(k) = rss_end {
            report = report.int("server_rss_kib", k);
        }
    }
    if let Some(ic) = idle_check {
        report = report.raw(
            "idle",
            &Obj::new()
                .int("held", ic.held as u64)
                .int("open", ic.open as u64)
                .int("answered", ic.answered as u64)
                .finish(),
        );
    }
    // The first answer other than 2xx, unless that is the 404 expected with --not-friend.
    let first_failure = st
        .first_failure
        .as_ref()
        .filter(|(s, _)| !(o.not_friend && *s == 404));
    if let Some((s, b)) = first_failure {
        report = report.raw(
            "first_failure",
            &Obj::new().int("status", *s as u64).str("body", b).finish(),
        );
    }
    if o.json {
        println!("{}", report.finish());
        return;
    }
    let us = |v: u64| v as f64 / 1000.0;
    println!(
        "{} {} x{}: {n} requests in {secs:.2} s = {:.0}/s; latency p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us",
        o.target.as_str(),
        scenario.as_str(),
        o.connections,
        n as f64 / secs,
        us(lat.quantile(0.5)),
        us(lat.quantile(0.99)),
        us(lat.quantile(0.999)),
        us(lat.max())
    );
    if kinds.len() > 1 {
        for (name, ks) in kinds.iter().zip(&st.kinds) {
            println!(
                "  {name}: {:.0}/s, p50 {:.0} us, p99 {:.0} us",
                ks.latency.count() as f64 / secs,
                us(ks.latency.quantile(0.5)),
                us(ks.latency.quantile(0.99))
            );
        }
    }
    println!(
        "  status {status_all:?}; errors {:?}; reconnects {}",
        st.errors, st.reconnects
    );
    if let Some(r) = o.rate {
        println!(
            "  open loop at {r:.0}/s: latency from the time each request was due; at most {} requests waited for a free connection",
            st.max_backlog
        );
    }
    if st.ran_out {
        println!("  the pre-signed pool ({pool_n}) ran out: the timed phase ended early");
    }
    if o.not_friend {
        println!("  --not-friend: {ok} of {n} answers were the expected 404");
    }
    if let Some((s, b)) = first_failure {
        println!("  first failure: {s} {b}");
    }
    if o.server_pid.is_some() {
        println!(
            "  server CPU {server_cpu:.2} s ({:.0} % of a core) = {:.2} us per request; RSS {} KiB",
            100.0 * server_cpu / secs,
            if n > 0 {
                server_cpu * 1e6 / n as f64
            } else {
                0.0
            },
            rss_end.unwrap_or(0)
        );
    }
    println!(
        "  load generator CPU {:.0} % of a core; other processes {others_cpu:.2} s CPU {:?}",
        100.0 * self_cpu / secs,
        others
            .top
            .iter()
            .map(|(c, p, t)| format!("{c}[{p}] {:.2}s", *t as f64 / hz))
            .collect::<Vec<_>>()
    );
    if let Some(ic) = idle_check {
        println!(
            "  idle connections: {} held, {} still open, {} answered a health request",
            ic.held, ic.open, ic.answered
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Opts, String> {
        match parse_args(args.iter().copied())? {
            Cli::Run(o) => Ok(*o),
            Cli::Help => Err("help".into()),
        }
    }

    fn err(args: &[&str]) -> String {
        parse(args).expect_err("should be refused")
    }

    #[test]
    fn defaults_and_help() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.target, Target::PiServer);
        assert_eq!(o.friends, None);
        assert!(!o.not_friend);
        assert!(matches!(parse_args(["--help"]), Ok(Cli::Help)));
        assert!(err(&["--bogus"]).contains("--bogus"));
    }

    #[test]
    fn nginx_target_serves_only_health() {
        let o = parse(&["--target", "nginx", "--scenario", "health"]).unwrap();
        assert_eq!(o.target, Target::Nginx);
        assert_eq!(o.target.as_str(), "nginx");
        assert!(err(&["--target", "nginx"]).contains("--scenario health"));
        assert!(err(&["--target", "nginx", "--scenario", "register"]).contains("health"));
        assert!(err(&["--target", "apache"]).contains("pi-server, reference or nginx"));
    }

    #[test]
    fn friends_options() {
        let o = parse(&["--friends", "64", "--not-friend"]).unwrap();
        assert_eq!(o.friends, Some(64));
        assert!(o.not_friend);
        let o = parse(&["--friends", "1", "--scenario", "prefill"]).unwrap();
        assert_eq!(o.friends, Some(1));
        for bad in ["0", "65", "-1", "x", ""] {
            assert!(err(&["--friends", bad]).contains("--friends"), "{bad}");
        }
        assert!(err(&["--friends"]).contains("needs a value"));
        assert!(err(&["--not-friend"]).contains("needs --friends"));
        assert!(err(&["--friends", "8", "--target", "reference"]).contains("pi-server"));
        assert!(err(&["--friends", "8", "--scenario", "mix"]).contains("lookup or prefill"));
        assert!(
            err(&["--friends", "8", "--entries", "10", "--connections", "64"])
                .contains("--entries >= --connections")
        );
        assert!(
            err(&[
                "--friends",
                "8",
                "--not-friend",
                "--connections",
                "1",
                "--entries",
                "5"
            ])
            .contains("--connections >= 2")
        );
    }

    #[test]
    fn friend_lists_end_with_the_requester() {
        let plan = FriendPlan::new(16, 3);
        for j in 0..7 {
            let l = plan.list(j);
            assert_eq!(l.len(), 16);
            assert_eq!(*l.last().unwrap(), plan.requesters[(j % 3) as usize]);
            let mut sorted: Vec<_> = l.iter().map(|k| *k.as_bytes()).collect();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 16, "no duplicate keys");
            // A registration with it is valid.
            let kp = Keypair::from_seed(&names::seed(Space::Prefill, j));
            let name = PlayerName::parse(&names::name(Space::Prefill, j)).unwrap();
            let body = Register::sign_friends(&kp, name, 5000, l, load_salt(Space::Prefill, j), 1)
                .to_json();
            Register::from_json(body.as_bytes())
                .unwrap()
                .verify()
                .unwrap();
        }
        let one = FriendPlan::new(1, 2);
        assert_eq!(one.list(5), vec![one.requesters[1]]);
        assert_eq!(FriendPlan::new(MAX_FRIENDS, 1).list(0).len(), MAX_FRIENDS);
    }

    #[test]
    fn friends_pick_stays_on_the_right_side() {
        let mut rng = Rng(42);
        for (entries, conns) in [(10u64, 10u64), (11, 10), (100_000, 64), (7, 2), (1000, 512)] {
            for conn in 0..conns {
                let mut draws: Vec<u64> = (0..200).map(|_| rng.next()).collect();
                draws.extend([0, u64::MAX, u64::MAX / 2]);
                for x in draws {
                    let j = friends_pick(entries, conns, conn, true, x);
                    assert!(
                        j < entries && j % conns == conn,
                        "{entries} {conns} {conn} {j}"
                    );
                    let j = friends_pick(entries, conns, conn, false, x);
                    assert!(
                        j < entries && j % conns != conn,
                        "{entries} {conns} {conn} {j}"
                    );
                }
            }
        }
        // Allowed picks reach the last entry of the connection.
        assert_eq!(friends_pick(11, 10, 0, true, u64::MAX), 10);
    }
}

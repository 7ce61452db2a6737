//! `pb-client`: a small blocking command-line client of the phone book, for smoke tests and
//! humans. Run with: `cargo run -p pb-tests --bin pb-client -- --help`

/// Prints a line to stdout; a closed pipe (`pb-client keygen | head -1`) ends the program
/// quietly instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

use pb_tests::http::{Client, HttpError, Response, Url};
use pb_tests::{hex, now_ms};
use phonebook_proto::{
    ErrorBody, Health, Keypair, LookupId, LookupRecord, PlayerName, PublicKey, Register,
    RegisterAnswer, Unregister, Visibility, paths,
};
use std::process::ExitCode;
use std::time::Duration;

const HELP: &str = "\
pb-client: talk to an FFXIV P2P phone book (pi-server) from the command line

USAGE:
    pb-client [--url http(s)://HOST:PORT] [--ca FILE] <COMMAND> [OPTIONS]

COMMANDS:
    health                      GET /api/health and print the answer
    keygen     [--seed-file PATH]
                                make a new random secret seed: written to PATH (created
                                with mode 0600) and only its public key printed; if PATH
                                exists, its seed is kept and its public key printed;
                                without --seed-file the seed is printed too
    register   --name NAME SEED --port N [--visibility public|friends]
               [--friend BASE64_KEY]... [--ip ADDR]
                                sign and send a registration; prints the answer (with the
                                bearer token for lookups)
    lookup     --name NAME SEED [--as NAME] [--port N]
                                register the requester (its key from SEED, name from --as,
                                default derived from the secret key) hidden, visible to no other
                                key, to get a token; look NAME up, check the owner's
                                signature and print the record; then unregister the
                                requester (an interrupted lookup leaves a hidden record that
                                expires with the TTL)
    unregister --name NAME SEED
                                sign and send an unregistration

SEED (the secret key; never on the command line, where shell history and `ps` show it):
    --seed-file PATH            a file holding the seed as 64 hex digits, with no
                                permission for group or others (e.g. mode 0600; refused
                                otherwise)
    $PB_SEED_FILE               the same, from the environment
    $PB_SEED                    the 64 hex digits themselves, from the environment
    (--seed HEX still works for old scripts but is deprecated: it warns on stderr)

OPTIONS:
    --url URL      phone book base URL, http:// or https:// [default: $PB_URL or
                   http://127.0.0.1:3000]
    --ca FILE      https://: also trust the CA certificates in this PEM file (a private or
                   test CA; the web's roots are always trusted) [default: $PB_CA]
    -h, --help     this text

NAME is 'Forename Surname@World', e.g. \"Alice Smith@Gilgamesh\" (quote the space).
A seed is a 32-byte Ed25519 secret seed as 64 hex digits (see `pb-client keygen`).
Timestamps are the current Unix time in milliseconds.

EXIT STATUS:
    0  success (HTTP 200)
    1  the server refused (its error code and message are printed) or a network error
    2  lookup: no such player, or not visible to you (404)
    64 usage error (bad flag, name, hex or URL)

EXAMPLES:
    pb-client keygen --seed-file alice.seed
    pb-client register --name \"Alice Smith@Gilgamesh\" --seed-file alice.seed --port 55000
    pb-client keygen --seed-file bob.seed
    pb-client lookup --name \"Alice Smith@Gilgamesh\" --seed-file bob.seed
";

/// Exit status of a usage error (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;

#[derive(Debug, Default)]
struct Args {
    url: Option<String>,
    ca: Option<String>,
    command: Option<String>,
    name: Option<String>,
    seed: Option<String>,
    seed_file: Option<String>,
    port: Option<u16>,
    visibility: Option<String>,
    friends: Vec<String>,
    ip: Option<String>,
    as_name: Option<String>,
}

/// A failure and the exit status it maps to.
#[derive(Debug)]
struct Fail(u8, String);

fn usage(msg: impl Into<String>) -> Fail {
    Fail(
        EXIT_USAGE,
        format!("{}\n(try `pb-client --help`)", msg.into()),
    )
}

fn net(e: HttpError) -> Fail {
    Fail(1, e.to_string())
}

fn parse_args() -> Result<Args, Fail> {
    use lexopt::prelude::*;
    let mut a = Args::default();
    let mut p = lexopt::Parser::from_env();
    let val = |p: &mut lexopt::Parser| -> Result<String, Fail> {
        p.value()
            .map_err(|e| usage(e.to_string()))?
            .into_string()
            .map_err(|_| usage("argument is not valid UTF-8"))
    };
    while let Some(arg) = p.next().map_err(|e| usage(e.to_string()))? {
        match arg {
            Short('h') | Long("help") => {
                out!("{}", HELP.trim_end());
                std::process::exit(0);
            }
            Long("url") => a.url = Some(val(&mut p)?),
            Long("ca") => a.ca = Some(val(&mut p)?),
            Long("name") => a.name = Some(val(&mut p)?),
            Long("seed") => a.seed = Some(val(&mut p)?),
            Long("seed-file") => a.seed_file = Some(val(&mut p)?),
            Long("port") => {
                let v = val(&mut p)?;
                a.port = Some(
                    v.parse::<u16>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| usage(format!("--port: {v:?} is not a port 1..65535")))?,
                );
            }
            Long("visibility") => a.visibility = Some(val(&mut p)?),
            Long("friend") => a.friends.push(val(&mut p)?),
            Long("ip") => a.ip = Some(val(&mut p)?),
            Long("as") => a.as_name = Some(val(&mut p)?),
            Value(v) if a.command.is_none() => {
                a.command = Some(
                    v.into_string()
                        .map_err(|_| usage("command is not valid UTF-8"))?,
                )
            }
            other => return Err(usage(other.unexpected().to_string())),
        }
    }
    Ok(a)
}

fn name_arg(v: &Option<String>, flag: &str) -> Result<PlayerName, Fail> {
    let s = v
        .as_deref()
        .ok_or_else(|| usage(format!("{flag} NAME is required")))?;
    PlayerName::parse(s).map_err(|e| usage(format!("{flag} {s:?}: {e}")))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The secret seed, from `--seed-file`, `$PB_SEED_FILE`, `$PB_SEED` or (deprecated) `--seed`.
fn keypair_arg(a: &Args) -> Result<Keypair, Fail> {
    let (text, from) = match (&a.seed_file, &a.seed) {
        (Some(_), Some(_)) => return Err(usage("give --seed-file or --seed, not both")),
        (Some(path), None) => (read_seed_file(path)?, "--seed-file"),
        (None, Some(hex)) => {
            eprintln!(
                "pb-client: warning: --seed puts the secret seed in shell history and `ps`; \
                 use --seed-file PATH or $PB_SEED instead (--seed is deprecated)"
            );
            (hex.clone(), "--seed")
        }
        (None, None) => match (env("PB_SEED_FILE"), env("PB_SEED")) {
            (Some(path), _) => (read_seed_file(&path)?, "$PB_SEED_FILE"),
            (None, Some(hex)) => (hex, "$PB_SEED"),
            (None, None) => {
                return Err(usage(
                    "a seed is required: --seed-file PATH (make one with \
                     `pb-client keygen --seed-file PATH`) or $PB_SEED",
                ));
            }
        },
    };
    let seed = hex::decode::<32>(text.trim()).map_err(|e| usage(format!("{from}: {e}")))?;
    Ok(Keypair::from_seed(&seed))
}

/// Reads a seed file, refusing one that others may read.
fn read_seed_file(path: &str) -> Result<String, Fail> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|e| usage(format!("seed file {path}: {e}")))?;
    if !meta.is_file() {
        return Err(usage(format!("seed file {path}: not a regular file")));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(usage(format!(
            "seed file {path} has mode {mode:03o}: others may read the secret; \
             make it private with `chmod 600 {path}`"
        )));
    }
    // A seed is 64 hex digits and a newline; read a little more to say "too long" clearly.
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| std::io::Read::read_to_string(&mut std::io::Read::take(f, 256), &mut text))
        .map_err(|e| usage(format!("seed file {path}: {e}")))?;
    if text.len() >= 256 {
        return Err(usage(format!(
            "seed file {path}: too long for a seed (64 hex digits expected)"
        )));
    }
    Ok(text)
}

/// Writes a new seed to `path` (mode 0600, never over an existing file).
fn write_seed_file(path: &str, seed: &[u8; 32]) -> Result<(), Fail> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Fail(1, format!("cannot create {path}: {e}")))?;
    f.write_all(format!("{}\n", hex::encode(seed)).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Fail(1, format!("cannot write {path}: {e}")))
}

/// Prints the server's error code and message and maps the status to an exit code.
fn refused(r: &Response) -> Fail {
    let text = match ErrorBody::from_json(&r.body) {
        Ok(b) => {
            let mut s = format!("server refused: {} {}: {}", r.status, b.error, b.message);
            if let Some(n) = b.retry_after {
                s.push_str(&format!(" (retry after {n} s)"));
            }
            if let Some(t) = b.server_time {
                s.push_str(&format!(" (server time {t}, ours {})", now_ms()));
            }
            s
        }
        Err(_) => format!("server answered {}: {}", r.status, r.text().trim()),
    };
    Fail(if r.status == 404 { 2 } else { 1 }, text)
}

/// A signing timestamp: now in Unix ms, strictly above every earlier one of this process. A
/// lookup registers its requester and unregisters it within the same millisecond on a fast
/// machine; an equal timestamp would be refused as `replayed` (docs/PROTOCOL.md: use the
/// previous timestamp plus 1) and leave the requester live.
fn signing_ts() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_ms();
    let prev = LAST.fetch_max(now, Ordering::Relaxed);
    if prev >= now {
        LAST.fetch_add(1, Ordering::Relaxed) + 1
    } else {
        now
    }
}

fn register(
    c: &mut Client,
    kp: &Keypair,
    name: PlayerName,
    port: u16,
    vis: Visibility,
    friends: Vec<PublicKey>,
    ip: Option<std::net::IpAddr>,
) -> Result<(Response, RegisterAnswer), Fail> {
    let mut req = match vis {
        Visibility::Public => Register::sign_public(kp, name, port, signing_ts()),
        Visibility::Friends => {
            // A fresh random salt for each registration (docs/PROTOCOL.md).
            let mut salt = [0u8; 32];
            getrandom::fill(&mut salt).map_err(|e| Fail(1, format!("no randomness: {e}")))?;
            Register::sign_friends(kp, name, port, friends, salt, signing_ts())
        }
    };
    req.ip = ip;
    let body = req.to_json();
    let r = c
        .request("POST", paths::REGISTER, &[], Some(body.as_bytes()))
        .map_err(net)?;
    if r.status != 200 {
        return Err(refused(&r));
    }
    let a = RegisterAnswer::from_json(&r.body)
        .map_err(|e| Fail(1, format!("unexpected register answer: {e}: {}", r.text())))?;
    Ok((r, a))
}

/// A requester name derived from the secret key: `Req<12 letters> Pbc@Lookup<10 letters>` (22
/// letters, about 103 bits: two keys do not meet on one name), taken from the key's
/// deterministic Ed25519 signature of a fixed label (its first half is a hash of the secret and
/// the label). Derived from the public key, anyone who knows the key could register the name
/// first and lock the lookups out with `key_conflict` for a day.
fn derived_name(kp: &Keypair) -> PlayerName {
    let sig = kp.sign(b"phonebook pb-client requester name v1");
    let letters: Vec<char> = sig.as_bytes()[..22]
        .iter()
        .map(|b| (b'a' + b % 26) as char)
        .collect();
    let forename: String = letters[..12].iter().collect();
    let world: String = letters[12..].iter().collect();
    PlayerName::parse(&format!("Req{forename} Pbc@Lookup{world}")).expect("derived name is valid")
}

fn run(a: Args) -> Result<(), Fail> {
    let command = a.command.clone().ok_or_else(|| usage("no command given"))?;
    if command == "keygen" {
        if let Some(path) = a
            .seed_file
            .as_deref()
            .filter(|p| std::path::Path::new(p).exists())
        {
            // Never overwritten: keygen twice (a pasted quick start) keeps the first seed.
            let kp = keypair_arg(&a)?;
            eprintln!("{path} exists: kept its seed (keygen never overwrites one)");
            out!("publicKey: {}", kp.public());
            return Ok(());
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Fail(1, format!("no randomness: {e}")))?;
        let kp = Keypair::from_seed(&seed);
        match &a.seed_file {
            Some(path) => {
                write_seed_file(path, &seed)?;
                eprintln!("secret seed written to {path} (mode 0600)");
            }
            None => out!("seed:      {}", hex::encode(&seed)),
        }
        out!("publicKey: {}", kp.public());
        return Ok(());
    }
    let url_text = a
        .url
        .clone()
        .or_else(|| std::env::var("PB_URL").ok())
        .unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let url = Url::parse(&url_text).map_err(|e| usage(format!("--url {url_text:?}: {e}")))?;
    let ca = a.ca.clone().or_else(|| std::env::var("PB_CA").ok());
    if ca.is_some() && !url.tls {
        return Err(usage("--ca is for https:// URLs"));
    }
    let ca = ca.map(std::path::PathBuf::from);
    let connect =
        || Client::connect_with_ca(&url, Duration::from_secs(10), ca.as_deref()).map_err(net);
    match command.as_str() {
        "health" => {
            let mut c = connect()?;
            let r = c.request("GET", paths::HEALTH, &[], None).map_err(net)?;
            if r.status != 200 {
                return Err(refused(&r));
            }
            if let Ok(h) = Health::from_json(&r.body) {
                eprintln!(
                    "ok: {} active of {} capacity, ttl {} s, up {} s, version {}",
                    h.active_users, h.capacity, h.ttl, h.uptime, h.version
                );
            }
            out!("{}", r.text());
            Ok(())
        }
        "register" => {
            let name = name_arg(&a.name, "--name")?;
            let kp = keypair_arg(&a)?;
            let port = a.port.ok_or_else(|| usage("--port N is required"))?;
            let vis = match a.visibility.as_deref() {
                None if a.friends.is_empty() => Visibility::Public,
                None => Visibility::Friends,
                Some(v) => Visibility::parse(v)
                    .ok_or_else(|| usage("--visibility must be public or friends"))?,
            };
            let friends = a
                .friends
                .iter()
                .map(|f| {
                    PublicKey::from_base64(f).map_err(|e| usage(format!("--friend {f:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if vis == Visibility::Public && !friends.is_empty() {
                return Err(usage("--friend needs --visibility friends"));
            }
            let ip =
                a.ip.as_deref()
                    .map(|s| {
                        s.parse()
                            .map_err(|_| usage(format!("--ip {s:?}: not an IPv4 or IPv6 address")))
                    })
                    .transpose()?;
            let mut c = connect()?;
            let (r, _) = register(&mut c, &kp, name, port, vis, friends, ip)?;
            out!("{}", r.text());
            Ok(())
        }
        "lookup" => {
            let target = name_arg(&a.name, "--name")?;
            let kp = keypair_arg(&a)?;
            let me = match &a.as_name {
                Some(_) => name_arg(&a.as_name, "--as")?,
                None => derived_name(&kp),
            };
            let mut c = connect()?;
            // Visible to nobody: the requester registers only to obtain a token.
            let (_, ans) = register(
                &mut c,
                &kp,
                me.clone(),
                a.port.unwrap_or(9),
                Visibility::Friends,
                vec![],
                None,
            )?;
            eprintln!("registered requester {me} (visible to nobody) to get a token");
            let path = format!("{}/{}", paths::LOOKUP, LookupId::of(&target));
            let auth = format!("Bearer {}", ans.token);
            let looked = c.request("GET", &path, &[("Authorization", &auth)], None);
            // Whatever the answer, the requester's name must not stay live.
            let body = Unregister::sign(&kp, me.clone(), signing_ts()).to_json();
            let gone = match c.request("DELETE", paths::UNREGISTER, &[], Some(body.as_bytes())) {
                Err(_) => connect().and_then(|mut c| {
                    c.request("DELETE", paths::UNREGISTER, &[], Some(body.as_bytes()))
                        .map_err(net)
                }),
                ok => ok.map_err(net),
            };
            match gone {
                Ok(g) if g.status == 200 => eprintln!("unregistered requester {me}"),
                Ok(g) => eprintln!("unregistering requester {me} failed: {}", refused(&g).1),
                Err(Fail(_, e)) => eprintln!("unregistering requester {me} failed: {e}"),
            }
            let r = looked.map_err(net)?;
            if r.status != 200 {
                return Err(refused(&r));
            }
            let rec = LookupRecord::from_json_verified(&r.body, &target)
                .map_err(|e| Fail(1, format!("refusing the answer: {e}")))?;
            eprintln!(
                "verified: {} is signed by {} (port {}, {}, signed at {}); pin this key",
                target,
                rec.key,
                rec.port,
                rec.visibility.as_str(),
                rec.timestamp
            );
            out!("{}", r.text());
            Ok(())
        }
        "unregister" => {
            let name = name_arg(&a.name, "--name")?;
            let kp = keypair_arg(&a)?;
            let body = Unregister::sign(&kp, name, signing_ts()).to_json();
            let mut c = connect()?;
            let r = c
                .request("DELETE", paths::UNREGISTER, &[], Some(body.as_bytes()))
                .map_err(net)?;
            if r.status != 200 {
                let mut f = refused(&r);
                f.0 = 1;
                return Err(f);
            }
            out!("{}", r.text());
            Ok(())
        }
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("pb-client: {msg}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Register then unregister within one millisecond must still sign increasing timestamps
    /// (`now_ms()` alone repeats within a millisecond: the lookup test saw a requester left
    /// live on a fast machine because its unregistration was refused as `replayed`).
    #[test]
    fn signing_timestamps_strictly_increase() {
        let mut prev = signing_ts();
        for _ in 0..10_000 {
            let t = signing_ts();
            assert!(t > prev, "{t} after {prev}");
            prev = t;
        }
        assert!(prev.abs_diff(now_ms()) < 60_000, "stays near the clock");
    }
}

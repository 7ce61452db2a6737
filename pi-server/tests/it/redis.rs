//! Several phone books over one real Redis (issue 13). Each test starts its own
//! `redis-server` on a free loopback port with a temporary directory and kills it at the end.
//! Without `redis-server` installed the tests say why and skip, unless `PB_REQUIRE_REDIS=1`
//! (CI, `.ci/redis-test.sh`), where they fail instead.

use crate::*;
use phonebook_proto::{Health, PlayerName, Register, RegisterAnswer, Unregister};
use pi_server::config::Config;
use pi_server::server::TestServer;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest wait for something another process or instance does (replication, a restart).
const WAIT: Duration = Duration::from_secs(15);

/// Polls `f` until it gives `Some`, for at most [`WAIT`]; panics naming `what` otherwise.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `redis-server` child with append-only persistence, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

static PREFIX: AtomicU32 = AtomicU32::new(0);

/// The server binary the tests start: `PB_REDIS_SERVER` (e.g. a valkey-server), else
/// `redis-server`.
pub fn server_bin() -> String {
    std::env::var("PB_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

impl RedisServer {
    /// Starts one, or returns `None` (after saying why) when `redis-server` is missing.
    pub fn start() -> Option<RedisServer> {
        let found = Command::new(server_bin())
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
        if !found {
            assert!(
                std::env::var_os("PB_REQUIRE_REDIS").is_none(),
                "PB_REQUIRE_REDIS is set but redis-server is not installed"
            );
            eprintln!("skipping: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!(
            "pb-redis-{}-{}-{}",
            std::process::id(),
            port,
            now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = RedisServer {
            child: None,
            port,
            dir,
        };
        r.spawn();
        Some(r)
    }

    fn spawn(&mut self) {
        let child = Command::new(server_bin())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let addr = self.addr();
        wait_for("redis-server to answer PING", || {
            let mut s = TcpStream::connect(addr).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
            std::io::Write::write_all(&mut s, b"PING\r\n").ok()?;
            let mut b = [0u8; 7];
            std::io::Read::read_exact(&mut s, &mut b).ok()?;
            (&b == b"+PONG\r\n").then_some(())
        });
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Sends one command (RESP array of bulk strings) and returns the first reply line.
    pub fn command(&self, args: &[&[u8]]) -> String {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        let mut s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::io::Write::write_all(&mut s, &req).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }

    /// SIGKILL: what is not in the append-only file is lost.
    pub fn kill_9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port from the same append-only file.
    pub fn restart(&mut self) {
        self.kill_9();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill_9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh key prefix, so tests sharing one Redis never see each other's records.
pub fn fresh_prefix() -> String {
    format!(
        "t{}-{}-{}",
        std::process::id(),
        now_ms(),
        PREFIX.fetch_add(1, Ordering::Relaxed)
    )
}

fn config(url: &str, prefix: &str) -> Config {
    let mut c = test_config();
    c.capacity = 20_000;
    c.rate_ip = 0;
    c.rate_key = 0;
    c.max_records_per_address = 20_000;
    c.redis_url = Some(url.to_owned());
    c.redis_prefix = prefix.to_owned();
    c
}

pub fn health(addr: SocketAddr) -> Health {
    let mut c = Conn::open(addr);
    Health::from_json(&c.request("GET", "/api/health", "", "").body).unwrap()
}

/// Waits until the instance has read Redis and takes writes.
pub fn wait_up(addr: SocketAddr) {
    wait_for("the instance to read Redis", || {
        (health(addr).redis.as_deref() == Some("up")).then_some(())
    });
}

fn instance(url: &str, prefix: &str) -> TestServer {
    let s = TestServer::start(config(url, prefix)).expect("server starts");
    wait_up(s.addr());
    s
}

fn post(addr: SocketAddr, r: &Register) -> Reply {
    Conn::open(addr).request("POST", "/api/register", &r.to_json(), "")
}

fn public(k: u8, name: &str, ts: u64) -> Register {
    Register::sign_public(&kp(k), PlayerName::parse(name).unwrap(), 4000, ts)
}

fn lookup(addr: SocketAddr, token: &str, name: &str) -> Reply {
    let auth = format!("Authorization: Bearer {token}\r\n");
    let path = format!("/api/lookup/{}", name.replace(' ', "%20"));
    Conn::open(addr).request("GET", &path, "", &auth)
}

#[test]
fn register_on_one_lookup_on_the_other_with_its_token() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let p = fresh_prefix();
    let (a, b) = (instance(&redis.url(), &p), instance(&redis.url(), &p));
    let rep = post(a.addr(), &public(1, "Alice Smith@Gilgamesh", now_ms()));
    assert_eq!(rep.status, 200, "{}", rep.text());
    let token = RegisterAnswer::from_json(&rep.body).unwrap().token;
    // B learns of Alice through the stream, and takes the token A minted.
    let found = wait_for("B to serve Alice", || {
        let r = lookup(b.addr(), &token, "Alice Smith@Gilgamesh");
        (r.status == 200).then_some(r)
    });
    assert!(found.text().contains("Alice Smith@Gilgamesh"));
    // A third instance started later reads it all from Redis.
    let c = instance(&redis.url(), &p);
    assert_eq!(
        lookup(c.addr(), &token, "Alice Smith@Gilgamesh").status,
        200
    );
    assert_eq!(health(c.addr()).active_users, 1);
    // A token from another prefix's secret does not check.
    let other = instance(&redis.url(), &fresh_prefix());
    let r2 = post(other.addr(), &public(1, "Alice Smith@Gilgamesh", now_ms()));
    assert_eq!(r2.status, 200);
    assert_eq!(
        lookup(other.addr(), &token, "Alice Smith@Gilgamesh").status,
        401
    );
}

#[test]
fn unregister_on_one_then_an_older_registration_on_the_other_is_replayed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let p = fresh_prefix();
    let (a, b) = (instance(&redis.url(), &p), instance(&redis.url(), &p));
    let t = now_ms();
    let name = "Alice Smith@Gilgamesh";
    assert_eq!(post(a.addr(), &public(1, name, t)).status, 200);
    let token =
        RegisterAnswer::from_json(&post(b.addr(), &public(9, "Bob Jones@Gilgamesh", t)).body)
            .unwrap()
            .token;
    wait_for("B to serve Alice", || {
        (lookup(b.addr(), &token, name).status == 200).then_some(())
    });
    let u = Unregister::sign(&kp(1), PlayerName::parse(name).unwrap(), t + 3);
    let r = Conn::open(b.addr()).request("DELETE", "/api/unregister", &u.to_json(), "");
    assert_eq!(r.status, 200, "{}", r.text());
    // Signed before the unregistration but newer than what A accepted: A must refuse it,
    // whether or not the stream has reached it yet (the compare-and-set sees Redis's).
    let r = post(a.addr(), &public(1, name, t + 2));
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("replayed"), "{}", r.text());
    // And the old registration itself, replayed on A.
    let r = post(a.addr(), &public(1, name, t));
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        lookup(a.addr(), &token, name).status == 404
            || lookup(a.addr(), &token, name).status == 401
    );
}

#[test]
fn a_name_is_bound_across_instances() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let p = fresh_prefix();
    let (a, b) = (instance(&redis.url(), &p), instance(&redis.url(), &p));
    let name = "Alice Smith@Gilgamesh";
    assert_eq!(post(a.addr(), &public(1, name, now_ms())).status, 200);
    // At once, before B may have seen it: the compare-and-set finds A's record.
    let r = post(b.addr(), &public(2, name, now_ms() + 1));
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("key_conflict"), "{}", r.text());
    // The owner renews on B.
    let r = post(b.addr(), &public(1, name, now_ms() + 2));
    assert_eq!(r.status, 200, "{}", r.text());
    let m = Conn::open(b.addr()).request("GET", "/metrics", "", "");
    assert!(m.text().contains("phonebook_redis_up 1"), "{}", m.text());
}

#[test]
fn malformed_records_in_redis_are_skipped_and_counted() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let p = fresh_prefix();
    let a = instance(&redis.url(), &p);
    let token = RegisterAnswer::from_json(
        &post(a.addr(), &public(1, "Alice Smith@Gilgamesh", now_ms())).body,
    )
    .unwrap()
    .token;
    // Junk where a record should be, and in the change stream.
    let key = format!("{{{p}}}:r:junk");
    assert_eq!(
        redis.command(&[b"HSET", key.as_bytes(), b"v", b"\x00garbage"]),
        ":1"
    );
    let log = format!("{{{p}}}:log");
    assert!(
        redis
            .command(&[b"XADD", log.as_bytes(), b"*", b"v", b"junk"])
            .starts_with('$')
    );
    // A field that is not a record at all.
    let other = format!("{{{p}}}:r:other");
    assert_eq!(redis.command(&[b"SET", other.as_bytes(), b"x"]), "+OK");
    // The running instance skips the streamed junk; a new one skips the stored junk.
    let bad = |addr| {
        let m = Conn::open(addr).request("GET", "/metrics", "", "");
        m.text()
            .lines()
            .find_map(|l| {
                l.strip_prefix("phonebook_redis_bad_records_total ")
                    .map(|v| v.parse::<u64>().unwrap())
            })
            .unwrap()
    };
    wait_for("A to count the streamed junk", || {
        (bad(a.addr()) >= 1).then_some(())
    });
    let b = instance(&redis.url(), &p);
    assert!(bad(b.addr()) >= 1);
    assert_eq!(health(b.addr()).status, "ok");
    assert_eq!(
        lookup(b.addr(), &token, "Alice Smith@Gilgamesh").status,
        200
    );
    // Writes still work on both.
    assert_eq!(
        post(b.addr(), &public(2, "Bob Jones@Gilgamesh", now_ms())).status,
        200
    );
}

#[test]
fn a_bad_or_unreachable_redis_url_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_pi-server"))
        .args(["--redis-url", "http://example.org"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("redis-url") && err.contains("redis://"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // Nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_pi-server"))
        .args(["--listen", "127.0.0.1:0", "--redis-url"])
        .arg(format!("redis://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot use Redis"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Registers distinct names on `addr` from `threads` threads until `stop`, recording each
/// name whose registration was acknowledged (200) and counting 503s with `Retry-After`.
struct Load {
    acked: Arc<Mutex<Vec<String>>>,
    unavailable: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, tag: char) -> Load {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let unavailable = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for t in 0..2u8 {
            let (acked, unavailable, stop) = (acked.clone(), unavailable.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut conn: Option<Conn> = None;
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("Load P{}@World{tag}", letters(u32::from(t) << 24 | i));
                    let r = public(100 + t, &name, now_ms());
                    if conn.is_none() {
                        conn = Conn::try_open(addr);
                    }
                    let Some(c) = conn.as_mut() else {
                        return; // the instance is gone
                    };
                    let req = r.to_json();
                    let msg = format!(
                        "POST /api/register HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{req}",
                        req.len()
                    );
                    if std::io::Write::write_all(&mut c.s, msg.as_bytes()).is_err() {
                        conn = None;
                        continue;
                    }
                    match c.read_reply() {
                        Some(rep) if rep.status == 200 => {
                            acked.lock().unwrap().push(name);
                            i += 1;
                        }
                        Some(rep) if rep.status == 503 => {
                            assert!(rep.header("retry-after").is_some());
                            assert!(rep.text().contains("store_unavailable"), "{}", rep.text());
                            unavailable.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Some(rep) => panic!("{} {}", rep.status, rep.text()),
                        None => conn = None,
                    }
                }
            }));
        }
        Load {
            acked,
            unavailable,
            stop,
            threads,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn finish(self) -> (Vec<String>, u32) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let v = self.acked.lock().unwrap().clone();
        (v, self.unavailable.load(Ordering::Relaxed))
    }
}

/// `n` in letters (a name may hold no digits).
fn letters(mut n: u32) -> String {
    let mut s = String::new();
    loop {
        s.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
        if n == 0 {
            return s;
        }
    }
}

/// Every name in `names` is served by `addr` (looked up with `token`).
fn all_found(addr: SocketAddr, token: &str, names: &[String]) {
    let mut c = Conn::open(addr);
    for n in names {
        let auth = format!("Authorization: Bearer {token}\r\n");
        let path = format!("/api/lookup/{}", n.replace(' ', "%20"));
        let r = c.request("GET", &path, "", &auth);
        assert_eq!(
            r.status,
            200,
            "{n} acknowledged but not found: {}",
            r.text()
        );
    }
}

/// A child process killed when dropped, so a failed assertion never leaves it running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_instance(url: &str, prefix: &str) -> (KillOnDrop, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pi-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--rate-ip",
            "0",
            "--rate-key",
            "0",
            "--capacity",
            "20000",
            "--max-records-per-address",
            "20000",
            "--redis-url",
            url,
            "--redis-prefix",
            prefix,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let child = KillOnDrop(child);
    let addr = loop {
        let line = lines.next().expect("server log").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        assert!(!line.contains("ERROR"), "{line}");
    };
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if std::env::var_os("PB_SHOW_LOG").is_some() {
                eprintln!("{l}");
            }
        }
    });
    (child, addr)
}

#[test]
fn kill_9_of_an_instance_under_load_loses_nothing_acknowledged() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let p = fresh_prefix();
    let (mut child, a) = spawn_instance(&redis.url(), &p);
    wait_up(a);
    let b = instance(&redis.url(), &p);
    let token =
        RegisterAnswer::from_json(&post(b.addr(), &public(9, "Looker Onn@World", now_ms())).body)
            .unwrap()
            .token;
    let load = Load::start(a, 'k');
    wait_for("some registrations on A", || {
        (load.acked() >= 200).then_some(())
    });
    child.0.kill().unwrap(); // SIGKILL, mid-load
    child.0.wait().unwrap();
    let (acked, _) = load.finish();
    assert!(acked.len() >= 200);
    wait_for("B to have every acknowledged name", || {
        (health(b.addr()).active_users as usize > acked.len()).then_some(())
    });
    all_found(b.addr(), &token, &acked);
}

#[test]
fn kill_9_of_redis_under_load_degrades_then_loses_nothing_acknowledged() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let p = fresh_prefix();
    let a = instance(&redis.url(), &p);
    let token =
        RegisterAnswer::from_json(&post(a.addr(), &public(9, "Looker Onn@World", now_ms())).body)
            .unwrap()
            .token;
    let load = Load::start(a.addr(), 'r');
    wait_for("some registrations", || (load.acked() >= 200).then_some(()));
    redis.kill_9();
    // Degraded: health says so, writes get 503 with Retry-After, lookups are still served.
    wait_for("health to say degraded", || {
        let h = health(a.addr());
        (h.status == "degraded" && h.redis.as_deref() == Some("down")).then_some(())
    });
    let during = load.acked();
    wait_for("writes to be refused", || {
        (load.unavailable.load(Ordering::Relaxed) >= 3).then_some(())
    });
    assert_eq!(lookup(a.addr(), &token, "Looker Onn@World").status, 200);
    redis.restart();
    wait_up(a.addr());
    wait_for("writes to be taken again", || {
        (load.acked() >= during + 50).then_some(())
    });
    let (acked, unavailable) = load.finish();
    assert!(unavailable >= 3);
    // A fresh instance reads everything from the restarted Redis.
    let c = instance(&redis.url(), &p);
    assert!(health(c.addr()).active_users as usize > acked.len());
    all_found(c.addr(), &token, &acked);
    let m = Conn::open(a.addr()).request("GET", "/metrics", "", "");
    let reconnects = m
        .text()
        .lines()
        .find_map(|l| {
            l.strip_prefix("phonebook_redis_reconnects_total ")
                .map(|v| v.parse::<u64>().unwrap())
        })
        .unwrap();
    assert!(reconnects >= 1, "{}", m.text());
}

/// Records are per (lookup id, key) across instances too: friends-only records of two keys
/// under one name, written at once on two instances, both stand (no conflict tells anyone the
/// other exists); a public record binds the name at every instance, through Redis, even before
/// the stream delivers it; when the public record goes friends-only, the binding is released.
#[test]
fn records_of_several_keys_under_one_name_across_instances() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let p = fresh_prefix();
    let (a, b) = (instance(&redis.url(), &p), instance(&redis.url(), &p));
    let name = "Alice Smith@Gilgamesh";
    let friends = |k: u8, ts: u64| {
        Register::sign_friends(
            &kp(k),
            PlayerName::parse(name).unwrap(),
            4000 + u16::from(k),
            vec![kp(9).public()],
            [k; 32],
            ts,
        )
    };
    let t = now_ms();
    assert_eq!(post(a.addr(), &friends(1, t)).status, 200);
    assert_eq!(post(b.addr(), &friends(2, t)).status, 200);
    // The friend (key 9) finds one of them at each instance, once both are there.
    let token =
        RegisterAnswer::from_json(&post(b.addr(), &public(9, "Bob Jones@Gilgamesh", t)).body)
            .unwrap()
            .token;
    for at in [a.addr(), b.addr()] {
        wait_for("both records at both instances", || {
            (health(at).active_users == 3).then_some(())
        });
        assert_eq!(lookup(at, &token, name).status, 200);
    }
    // Key 3 goes public on A; key 4's public registration on B at once is refused by Redis's
    // binding, whatever B has seen.
    assert_eq!(post(a.addr(), &public(3, name, t + 1)).status, 200);
    let r = post(b.addr(), &public(4, name, t + 1));
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("key_conflict"), "{}", r.text());
    // Key 3 turns friends-only: the binding is released, and key 4 may go public on B.
    assert_eq!(post(a.addr(), &friends(3, t + 2)).status, 200);
    let r = wait_for("B to accept key 4 publicly", || {
        let r = post(b.addr(), &public(4, name, now_ms()));
        (r.status == 200).then_some(r)
    });
    assert_eq!(r.status, 200);
}

/// A `redis-server` that speaks only TLS (`rediss://`), with a certificate of a test CA.
struct TlsRedis {
    child: Child,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn redis_over_tls_with_a_private_ca() {
    // Checks that redis-server is there (and says why the test is skipped if not).
    if RedisServer::start().is_none() {
        return;
    }
    if std::env::var_os("PB_REDIS_NO_TLS").is_some() {
        eprintln!(
            "skipping: PB_REDIS_NO_TLS says {} was built without TLS",
            server_bin()
        );
        return;
    }
    let ca = crate::https::Ca::new("redis");
    let (cert, key, _) = ca.leaf("redis");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(server_bin())
        .args(["--port", "0", "--bind", "127.0.0.1", "--save", ""])
        .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--dir")
        .arg(&ca.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let _redis = TlsRedis { child };
    wait_for("redis-server to listen with TLS", || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let url = format!("rediss://127.0.0.1:{port}/");
    let p = fresh_prefix();
    let tls_config = |ca_file: Option<PathBuf>| {
        let mut c = config(&url, &p);
        c.redis_ca = ca_file;
        c
    };
    let ca_file = Some(ca.dir.join("ca.pem"));
    let a = TestServer::start(tls_config(ca_file.clone())).expect("starts over TLS");
    wait_up(a.addr());
    let b = TestServer::start(tls_config(ca_file)).expect("starts over TLS");
    wait_up(b.addr());
    let rep = post(a.addr(), &public(1, "Tess Tls@Gilgamesh", now_ms()));
    assert_eq!(rep.status, 200, "{}", rep.text());
    let token = RegisterAnswer::from_json(&rep.body).unwrap().token;
    wait_for("B to serve the record written through TLS", || {
        (lookup(b.addr(), &token, "Tess Tls@Gilgamesh").status == 200).then_some(())
    });
    // Without the CA (only the web roots), the certificate is refused at start, clearly.
    let err = TestServer::start(tls_config(None)).expect_err("the test CA is not trusted");
    let text = err.to_string();
    assert!(
        text.contains("cannot use Redis") && text.to_lowercase().contains("certificate"),
        "{text}"
    );
    // A CA file with plain redis:// is a mistake, said at start.
    let mut plain = config(&format!("redis://127.0.0.1:{port}/"), &p);
    plain.redis_ca = Some(ca.dir.join("ca.pem"));
    let err = TestServer::start(plain).expect_err("redis-ca needs rediss://");
    assert!(err.to_string().contains("rediss://"), "{err}");
    // A CA file that is not PEM.
    let mut junk = config(&url, &p);
    let junk_file = ca.dir.join("junk.pem");
    std::fs::write(&junk_file, "not a certificate").unwrap();
    junk.redis_ca = Some(junk_file);
    let err = TestServer::start(junk).expect_err("junk CA");
    assert!(err.to_string().contains("redis-ca"), "{err}");
}

/// An instance that falls further behind than the change stream keeps (here: stopped while
/// more than `STREAM_MAX_LEN` entries are added) notices the entries trimmed away unread and
/// reads every record again, instead of missing them until its next reconnection.
#[test]
fn an_instance_that_falls_behind_the_trimmed_stream_reads_everything_again() {
    use rustix::process::{Pid, Signal, kill_process};
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let p = fresh_prefix();
    let a = instance(&redis.url(), &p);
    let (b, b_addr) = spawn_instance(&redis.url(), &p);
    wait_up(b_addr);
    let metric = |name: &str| {
        let m = Conn::open(b_addr).request("GET", "/metrics", "", "");
        m.text()
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .map(|v| v.trim().parse::<u64>().unwrap())
            })
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    let pid = Pid::from_raw(b.0.id() as i32).unwrap();
    kill_process(pid, Signal::STOP).unwrap();
    let log = format!("{{{p}}}:log");
    // B sleeps in a blocking XREAD: this first entry ends it (the answer waits in B's socket).
    assert!(
        redis
            .command(&[b"XADD", log.as_bytes(), b"*", b"x", b"filler"])
            .starts_with('$')
    );
    // Then a registration at A, and enough other entries that the stream trims it away (one
    // script, so nobody reads in between).
    let rep = post(a.addr(), &public(1, "Lena Late@Gilgamesh", now_ms()));
    assert_eq!(rep.status, 200, "{}", rep.text());
    let token = RegisterAnswer::from_json(&rep.body).unwrap().token;
    let n = (pi_server::store::STREAM_MAX_LEN + 20_000).to_string();
    let max = pi_server::store::STREAM_MAX_LEN.to_string();
    let script = b"for i = 1, tonumber(ARGV[1]) do redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'x', 'filler') end return 1";
    assert_eq!(
        redis.command(&[
            b"EVAL",
            script,
            b"1",
            log.as_bytes(),
            n.as_bytes(),
            max.as_bytes()
        ]),
        ":1"
    );
    kill_process(pid, Signal::CONT).unwrap();
    wait_for("B to find the record trimmed from the stream", || {
        (lookup(b_addr, &token, "Lena Late@Gilgamesh").status == 200).then_some(())
    });
    assert_eq!(metric("phonebook_redis_resyncs_total "), 1);
    assert_eq!(
        metric("phonebook_redis_reconnects_total "),
        0,
        "found by noticing the gap, not by a reconnection"
    );
}

/// A registration decided again after another instance wrote first, or refused because the
/// write could not be made, does not cost its key twice (the per-key token is given back
/// with the rollback).
#[test]
fn a_conflict_with_redis_costs_the_key_one_token_not_two() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let p = fresh_prefix();
    let mut c = config(&redis.url(), &p);
    c.rate_key = 1;
    c.rate_key_burst = 2;
    let a = TestServer::start(c).expect("starts");
    wait_up(a.addr());
    let t1 = now_ms();
    assert_eq!(
        post(a.addr(), &public(1, "Cora Conflict@Gilgamesh", t1)).status,
        200
    );
    // Redis now holds another timestamp than A's table (as if another instance wrote and A
    // had not heard yet, for ever): every compare-and-set of this record fails.
    let keys = Command::new("redis-cli")
        .args([
            "-p",
            &redis.addr().port().to_string(),
            "--scan",
            "--pattern",
        ])
        .arg(format!("{{{p}}}:r:*"))
        .output()
        .expect("redis-cli");
    let key = String::from_utf8(keys.stdout).unwrap();
    let key = key.trim();
    assert!(
        !key.is_empty() && !key.contains('\n'),
        "one record: {key:?}"
    );
    let t1_text = t1.to_string();
    assert_eq!(redis.command(&[b"HSET", key.as_bytes(), b"t", b"1"]), ":0");
    let r = post(a.addr(), &public(1, "Cora Conflict@Gilgamesh", t1 + 1));
    assert_eq!(
        r.status,
        503,
        "decided twice, conflicting both times: {}",
        r.text()
    );
    // Redis agrees again: the next registration goes through on the one token left (with
    // both conflicts charged, the bucket would be empty: 429).
    assert_eq!(
        redis.command(&[b"HSET", key.as_bytes(), b"t", t1_text.as_bytes()]),
        ":0"
    );
    let r = post(a.addr(), &public(1, "Cora Conflict@Gilgamesh", t1 + 2));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A `redis-ca` file that cannot be read is refused at start, naming the setting and the file,
/// before any connection to Redis (none listens here).
#[test]
fn a_missing_redis_ca_file_is_a_clear_error() {
    let mut c = config("rediss://127.0.0.1:1/", "missing-ca");
    let path = std::env::temp_dir().join(format!("pb-no-such-ca-{}.pem", std::process::id()));
    c.redis_ca = Some(path.clone());
    let err = TestServer::start(c).expect_err("no CA file");
    let text = err.to_string();
    assert!(
        text.contains("redis-ca") && text.contains(&*path.to_string_lossy()),
        "{text}"
    );
}

//! A tiny blocking HTTP/1.1 client for the tests.

use phonebook_proto::{Keypair, PlayerName, Register, RegisterAnswer, Visibility};
use pi_server::config::Config;
use pi_server::server::TestServer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub fn test_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        capacity: 64,
        ..Config::default()
    }
}

/// Starts a server with the test settings changed by `f`. With `PB_TEST_REDIS_URL` set
/// (`.ci/redis-test.sh`), every server so started shares records through that Redis, under
/// a key prefix of its own: the protocol tests then run against the Redis store.
pub fn start(f: impl FnOnce(&mut Config)) -> TestServer {
    let mut c = test_config();
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("PB_TEST_REDIS_URL") {
        c.redis_url = Some(url);
        c.redis_prefix = crate::redis::fresh_prefix();
    }
    f(&mut c);
    // With Redis, the server has read it before it listens.
    TestServer::start(c).expect("server starts")
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Conn {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn { s, buf: Vec::new() }
    }

    /// Like [`Conn::open`], `None` when the connection is refused.
    pub fn try_open(addr: SocketAddr) -> Option<Conn> {
        let s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        Some(Conn { s, buf: Vec::new() })
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write");
    }

    /// Reads one response; None on EOF before a complete one.
    pub fn read_reply(&mut self) -> Option<Reply> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&self.buf) {
                let hs: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let len: usize = hs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                if self.buf.len() >= n + len {
                    let status = r.code.unwrap();
                    let body = self.buf[n..n + len].to_vec();
                    self.buf.drain(..n + len);
                    return Some(Reply {
                        status,
                        headers: hs,
                        body,
                    });
                }
            }
            let mut chunk = [0u8; 8192];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
    }

    pub fn request(&mut self, method: &str, path: &str, body: &str, extra: &str) -> Reply {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{extra}\r\n{body}",
            body.len()
        );
        self.send_raw(req.as_bytes());
        self.read_reply().expect("a reply")
    }

    /// True if the server closed the connection (EOF).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }
}

pub fn kp(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

pub fn reg(
    k: &Keypair,
    name: &str,
    vis: Visibility,
    friends: Vec<phonebook_proto::PublicKey>,
) -> Register {
    let name = PlayerName::parse(name).unwrap();
    match vis {
        Visibility::Public => Register::sign_public(k, name, 4000, now_ms()),
        Visibility::Friends => {
            let mut salt = [0u8; 32];
            getrandom::fill(&mut salt).unwrap();
            Register::sign_friends(k, name, 4000, friends, salt, now_ms())
        }
    }
}

/// Registers and returns the lookup token.
pub fn register(c: &mut Conn, r: &Register) -> String {
    let rep = c.request("POST", "/api/register", &r.to_json(), "");
    assert_eq!(rep.status, 200, "{}", rep.text());
    RegisterAnswer::from_json(&rep.body).unwrap().token
}

impl Conn {
    /// Reads a HEAD answer: headers only, Content-Length describes the GET body.
    pub fn read_reply_head_only(&mut self) -> u16 {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&self.buf) {
                let code = r.code.unwrap();
                self.buf.drain(..n);
                return code;
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return 0,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
    }
}

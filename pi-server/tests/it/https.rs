//! HTTPS on the phone book's own listener: a CA made here signs the server's certificate, a
//! rustls client trusts only that CA.

use crate::*;
use pi_server::server::TestServer;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A test CA and a folder for the files it signs.
pub struct Ca {
    pub dir: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub cert: CertificateDer<'static>,
}

impl Ca {
    pub fn new(tag: &str) -> Ca {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        let dir =
            std::env::temp_dir().join(format!("pb-https-{tag}-{:016x}", u64::from_le_bytes(b)));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pi-server test CA");
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Ca {
            dir,
            issuer: rcgen::Issuer::new(params, key),
            cert: cert.der().clone(),
        }
    }

    /// A leaf for localhost and 127.0.0.1 written as `name.pem` and `name.key`; returns the
    /// paths and the certificate.
    pub fn leaf(&self, name: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.der().clone())
    }

    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut c = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn start_https(
    cert: &Path,
    key: &Path,
    f: impl FnOnce(&mut pi_server::config::Config),
) -> TestServer {
    start(|c| {
        c.tls_cert = Some(cert.into());
        c.tls_key = Some(key.into());
        f(c);
    })
}

/// A blocking TLS connection with the same reply reader as [`Conn`].
pub struct TlsConn {
    s: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsConn {
    pub fn open(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> std::io::Result<TlsConn> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let conn =
            rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap())
                .map_err(std::io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(TlsConn { s, buf: Vec::new() })
    }

    pub fn peer_cert(&self) -> CertificateDer<'static> {
        self.s.conn.peer_certificates().unwrap()[0]
            .clone()
            .into_owned()
    }

    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.s.conn.alpn_protocol().map(<[u8]>::to_vec)
    }

    pub fn version(&self) -> Option<rustls::ProtocolVersion> {
        self.s.conn.protocol_version()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
        self.s.flush().unwrap();
    }

    pub fn read_reply(&mut self) -> Option<Reply> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&self.buf) {
                let len: usize = r
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                    .unwrap_or(0);
                if self.buf.len() >= n + len {
                    let reply = Reply {
                        status: r.code.unwrap(),
                        headers: Vec::new(),
                        body: self.buf[n..n + len].to_vec(),
                    };
                    self.buf.drain(..n + len);
                    return Some(reply);
                }
            }
            let mut chunk = [0u8; 8192];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
    }

    pub fn get(&mut self, path: &str) -> Reply {
        self.send_raw(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
        self.read_reply().expect("a reply")
    }
}

#[test]
fn https_keep_alive_pipelining_tls12_and_metrics() {
    let ca = Ca::new("serve");
    let (cert, key, leaf) = ca.leaf("a");
    let srv = start_https(&cert, &key, |_| {});
    let mut c = TlsConn::open(srv.addr(), ca.client_config(&[b"http/1.1"])).unwrap();
    assert_eq!(c.peer_cert(), leaf);
    assert_eq!(c.alpn().as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(c.version(), Some(rustls::ProtocolVersion::TLSv1_3));
    // Keep-alive: several requests on one connection, two of them pipelined.
    assert_eq!(c.get("/api/health").status, 200);
    c.send_raw(b"GET /api/health HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n");
    assert_eq!(c.read_reply().unwrap().status, 200);
    assert_eq!(c.read_reply().unwrap().status, 404);
    // Signed requests (which wait for the batch verifier) work over TLS too.
    let r = reg(
        &kp(1),
        "Alice Smith@Gilgamesh",
        phonebook_proto::Visibility::Public,
        vec![],
    );
    let body = r.to_json();
    c.send_raw(
        format!(
            "POST /api/register HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_reply().unwrap().status, 200);
    let m = c.get("/metrics").text();
    assert!(m.contains("phonebook_tls_certificate_expiry_days "), "{m}");
    assert!(
        m.contains("phonebook_tls_handshakes_total{outcome=\"ok\"} 1"),
        "{m}"
    );

    // TLS 1.2 and no ALPN at all are accepted.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.clone()).unwrap();
    let tls12 = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut c12 = TlsConn::open(srv.addr(), Arc::new(tls12)).unwrap();
    assert_eq!(c12.version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(c12.alpn(), None);
    assert_eq!(c12.get("/api/health").status, 200);

    // Plain HTTP to the HTTPS port gets no HTTP answer: the connection just closes.
    let mut plain = Conn::open(srv.addr());
    plain.send_raw(b"GET /api/health HTTP/1.1\r\n\r\n");
    assert!(plain.read_reply().is_none());

    // ACME's validation protocol without a pending challenge: the handshake fails.
    assert!(TlsConn::open(srv.addr(), ca.client_config(&[b"acme-tls/1"])).is_err());
    // A client that trusts another CA refuses the server.
    let other = Ca::new("other");
    assert!(TlsConn::open(srv.addr(), other.client_config(&[])).is_err());
    srv.stop().unwrap();
}

#[test]
fn certificate_swaps_without_restart() {
    let ca = Ca::new("swap");
    let (cert, key, first) = ca.leaf("live");
    let srv = start_https(&cert, &key, |_| {});
    let config = ca.client_config(&[]);
    let mut old = TlsConn::open(srv.addr(), config.clone()).unwrap();
    assert_eq!(old.peer_cert(), first);

    // A broken renewal (key missing) keeps the old certificate.
    std::fs::write(&key, b"").unwrap();
    srv.tls_reload().unwrap().request();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !old
        .get("/metrics")
        .text()
        .contains("phonebook_tls_certificate_reload_failures_total 1")
    {
        assert!(Instant::now() < deadline, "reload not attempted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        TlsConn::open(srv.addr(), config.clone())
            .unwrap()
            .peer_cert(),
        first
    );
    // Renewed files: the next handshakes get the new certificate.
    let (c2, k2, second) = ca.leaf("next");
    std::fs::rename(&k2, &key).unwrap();
    std::fs::rename(&c2, &cert).unwrap();
    srv.tls_reload().unwrap().request();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = TlsConn::open(srv.addr(), config.clone()).unwrap();
        if c.peer_cert() == second {
            break;
        }
        assert!(Instant::now() < deadline, "certificate not swapped");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A connection made before the swap keeps working.
    assert_eq!(old.get("/api/health").status, 200);
    let m = TlsConn::open(srv.addr(), config)
        .unwrap()
        .get("/metrics")
        .text();
    assert!(
        m.contains("phonebook_tls_certificate_reloads_total 1"),
        "{m}"
    );
    assert!(
        m.contains("phonebook_tls_certificate_reload_failures_total 1"),
        "{m}"
    );
    srv.stop().unwrap();
}

#[test]
fn bad_certificate_settings_refuse_to_start() {
    let ca = Ca::new("bad");
    let (cert, key, _) = ca.leaf("a");
    let (_, other_key, _) = ca.leaf("b");
    let garbage = ca.dir.join("garbage.pem");
    std::fs::write(&garbage, b"not a certificate\n").unwrap();
    let missing = ca.dir.join("missing.pem");
    let err = |f: &dyn Fn(&mut pi_server::config::Config)| {
        let mut c = test_config();
        f(&mut c);
        TestServer::start(c).unwrap_err().to_string()
    };
    let set = |c: &Path, k: &Path| {
        let (c, k) = (c.to_path_buf(), k.to_path_buf());
        move |cfg: &mut pi_server::config::Config| {
            cfg.tls_cert = Some(c.clone());
            cfg.tls_key = Some(k.clone());
        }
    };
    let e = err(&set(&missing, &key));
    assert!(e.contains("tls-cert") && e.contains("missing.pem"), "{e}");
    let e = err(&set(&garbage, &key));
    assert!(e.contains("no PEM certificate"), "{e}");
    let e = err(&set(&cert, &garbage));
    assert!(e.contains("no PEM private key"), "{e}");
    let e = err(&set(&cert, &other_key));
    assert!(e.contains("cannot be used with the certificate"), "{e}");
    let e = err(&|c| c.tls_cert = Some(cert.clone()));
    assert!(e.contains("tls-cert needs tls-key"), "{e}");
    let e = err(&|c| {
        set(&cert, &key)(c);
        c.acme_domain = Some("pb.example.org".into());
    });
    assert!(e.contains("exclude each other"), "{e}");
}

#[test]
fn handshake_timeout_and_connection_limit_hold_for_tls() {
    let ca = Ca::new("limits");
    let (cert, key, _) = ca.leaf("a");
    let srv = start_https(&cert, &key, |c| {
        c.tls_handshake_timeout = 1;
        c.max_connections = 2;
    });
    // Two clients that never say hello hold both slots...
    let silent: Vec<TcpStream> = (0..2)
        .map(|_| {
            let s = TcpStream::connect(srv.addr()).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // ... so a third is closed at once (no plain-text error written into a TLS stream).
    let mut third = TcpStream::connect(srv.addr()).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 16];
    assert!(matches!(third.read(&mut b), Ok(0) | Err(_)));
    // The silent ones are closed within the handshake timeout plus a sweep.
    let t = Instant::now();
    for mut s in silent {
        assert!(matches!(s.read(&mut b), Ok(0) | Err(_)));
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Then a real client gets in, once the server has counted the closed ones out (the
    // client may see their end of file a moment before the server's tasks finish).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut c = loop {
        match TlsConn::open(srv.addr(), ca.client_config(&[])) {
            Ok(c) => break c,
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(c.get("/api/health").status, 200);
    srv.stop().unwrap();
}

/// A flood of TLS connections from one address: each costs `TLS_HANDSHAKE_COST` of the
/// address's `rate-ip` bucket before the handshake, so past burst / cost the server closes them
/// at once, and one that waited for the bucket to refill gets through.
#[test]
fn tls_handshakes_from_one_address_are_rate_limited() {
    use pi_server::api::TLS_HANDSHAKE_COST;
    let ca = Ca::new("handshake-rate");
    let (cert, key, _) = ca.leaf("a");
    let srv = start_https(&cert, &key, |c| {
        c.rate_ip = 10;
        c.rate_ip_burst = 30;
    });
    let allowed = 30 / TLS_HANDSHAKE_COST;
    let mut ok = 0;
    let mut refused = 0;
    for _ in 0..allowed + 3 {
        match TlsConn::open(srv.addr(), ca.client_config(&[])) {
            Ok(_) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    assert_eq!((ok, refused), (allowed, 3));
    // 10 tokens a second: a handshake's worth after about a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        if TlsConn::open(srv.addr(), ca.client_config(&[])).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the bucket never refilled");
    }
    srv.stop().unwrap();
}

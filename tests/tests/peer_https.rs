//! The peer's phone-book client over HTTPS against a real pi-server: a CA made here signs the
//! server's certificate; the client trusts it through `PhoneBookConfig::ca_file`. Also: the
//! certificate swapped while clients hold keep-alive connections, and the client refusing a
//! server its roots do not vouch for.

use std::path::PathBuf;
use std::time::Duration;

use peer::phonebook::{PhoneBookConfig, PhoneBookError};
use peer::{Identity, PhoneBook, PlayerName, Visibility};
use pi_server::config::Config;
use pi_server::server::TestServer;

struct Pki {
    dir: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(tag: &str) -> Self {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "pb-peer-https-{tag}-{:016x}",
            u64::from_le_bytes(b)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "peer test CA");
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Pki {
            dir,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Writes a leaf for localhost as cert.pem / cert.key (replacing what was there).
    fn leaf(&self) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let (c, k) = (self.dir.join("cert.pem"), self.dir.join("cert.key"));
        let (tc, tk) = (self.dir.join("cert.pem.tmp"), self.dir.join("cert.key.tmp"));
        std::fs::write(&tc, cert.pem()).unwrap();
        std::fs::write(&tk, key.serialize_pem()).unwrap();
        std::fs::rename(tk, &k).unwrap();
        std::fs::rename(tc, &c).unwrap();
        (c, k)
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pi-server on loopback serving HTTPS with a leaf of `pki`, and its `https://localhost` URL.
fn https_server(pki: &Pki) -> (TestServer, String) {
    let (cert, key) = pki.leaf();
    let srv = TestServer::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        capacity: 64,
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Config::default()
    })
    .unwrap();
    let url = format!("https://localhost:{}", srv.addr().port());
    (srv, url)
}

fn book(url: &str, name: &str, ca: Option<PathBuf>) -> Result<PhoneBook, PhoneBookError> {
    let config = PhoneBookConfig {
        urls: vec![url.to_owned()],
        ca_file: ca,
        max_attempts: 1,
        request_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    PhoneBook::new(
        &Identity::generate(),
        PlayerName::parse(name).unwrap(),
        config,
    )
}

#[test]
fn register_and_lookup_over_https_across_a_certificate_swap() {
    let pki = Pki::new("e2e");
    let (srv, url) = https_server(&pki);
    let alice = book(&url, "Alice Smith@Gilgamesh", Some(pki.ca())).unwrap();
    let bob = book(&url, "Bob Smith@Gilgamesh", Some(pki.ca())).unwrap();
    smol::block_on(async {
        alice
            .register(55_000, Visibility::Public, &[])
            .await
            .unwrap();
        bob.register(55_001, Visibility::Public, &[]).await.unwrap();
        let found = bob
            .lookup(&PlayerName::parse("Alice Smith@Gilgamesh").unwrap())
            .await
            .unwrap();
        assert_eq!(found.addr.port(), 55_000);

        // A new certificate from the same CA: kept-alive connections go on, new ones verify.
        pki.leaf();
        srv.tls_reload().unwrap().request();
        let found = bob
            .lookup(&PlayerName::parse("Alice Smith@Gilgamesh").unwrap())
            .await
            .unwrap();
        assert_eq!(found.addr.port(), 55_000);
        let carol = book(&url, "Carol Smith@Gilgamesh", Some(pki.ca())).unwrap();
        carol
            .register(55_002, Visibility::Public, &[])
            .await
            .unwrap();
        alice.unregister().await.unwrap();
    });

    // Only the bundled web roots: our test CA is not among them, so the client refuses.
    let stranger = book(&url, "Dan Smith@Gilgamesh", None).unwrap();
    let e = smol::block_on(stranger.register(55_003, Visibility::Public, &[])).unwrap_err();
    assert!(matches!(e, PhoneBookError::Unreachable(_)), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    srv.stop().unwrap();
}

#[test]
fn bad_ca_files_and_urls_are_clear_errors() {
    let pki = Pki::new("bad");
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, b"hello").unwrap();
    let e = book(
        "https://localhost:1",
        "Alice Smith@Gilgamesh",
        Some(garbage),
    )
    .unwrap_err();
    assert!(
        matches!(e, PhoneBookError::BadCaFile(_)) && e.to_string().contains("garbage.pem"),
        "{e}"
    );
    let e = book(
        "https://localhost:1",
        "Alice Smith@Gilgamesh",
        Some(pki.dir.join("missing.pem")),
    )
    .unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
    let e = book("ftp://localhost:1", "Alice Smith@Gilgamesh", None).unwrap_err();
    assert!(matches!(e, PhoneBookError::BadUrl(_)), "{e}");
    // http:// keeps working without any CA.
    assert!(book("http://localhost:1", "Alice Smith@Gilgamesh", None).is_ok());
}

/// A `peer::Node` (what plugins use) reaches an `https://` phone book through
/// `NodeConfig::phonebook_ca`, and without it reports the certificate as the reason it retries.
#[test]
fn a_node_registers_over_https_with_its_ca_file() {
    use peer::{Event, Node, NodeConfig, Registration};
    let pki = Pki::new("node");
    let (srv, url) = https_server(&pki);
    let start = |tag: &str, ca: Option<PathBuf>| {
        let root = pki.dir.join(tag);
        let mut c = NodeConfig::new(root.join("id.key"), root.join("data"));
        c.phonebooks = vec![url.clone()];
        c.name = Some("Node Https@Gilgamesh".into());
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.portmap = false;
        c.phonebook_ca = ca;
        Node::start(c).unwrap()
    };
    let wait = |node: &Node| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            while let Some(e) = node.poll_event() {
                if let Event::Registration(r) = e {
                    return Some(r);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    };
    let trusted = start("trusted", Some(pki.ca()));
    assert!(
        matches!(wait(&trusted), Some(Registration::Registered { .. })),
        "the node with the CA file registers"
    );
    drop(trusted);
    let untrusted = start("untrusted", None);
    match wait(&untrusted) {
        Some(Registration::Retrying { reason, .. }) => {
            assert!(reason.to_lowercase().contains("certificate"), "{reason}")
        }
        other => panic!("want a retry naming the certificate, got {other:?}"),
    }
    drop(untrusted);
    srv.stop().unwrap();
}

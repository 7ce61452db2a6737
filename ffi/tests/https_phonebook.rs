//! `ffxp_node_create_ex` with a CA file, end to end: a pi-server serving HTTPS with a
//! certificate of a CA made here. With the CA file (and a second phone book that is down) the
//! node registers; without it, the same phone book's certificate is refused and the node
//! reports its registration retrying.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ffxiv_p2p_peer_v1::{
    FfxpEvent, FfxpEventKind, FfxpNodeOptions, FfxpStatus, ffxp_last_error, ffxp_node_create_ex,
    ffxp_node_poll_event, ffxp_node_shutdown,
};
use pi_server::config::Config;
use pi_server::server::TestServer;

/// A CA and a leaf for `localhost` signed by it, as PEM files in a fresh folder.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ffxp-https-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "ffxp test CA");
        std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("cert.key"), key.serialize_pem()).unwrap();
        Pki { dir }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn last_error() -> String {
    let mut buf = vec![0u8; 1024];
    let mut len = 0usize;
    // SAFETY: `buf` holds `buf.len()` writable bytes; `len` is a local.
    let s = unsafe { ffxp_last_error(buf.as_mut_ptr(), buf.len(), &mut len) };
    assert_eq!(s, FfxpStatus::Ok);
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// `ffxp_node_create_ex` with these strings; the CA in the options if given.
fn create(dir: &std::path::Path, books: &str, name: &str, ca: Option<&str>) -> u64 {
    let id = dir.join("id.key");
    let (id, data) = (id.to_str().unwrap(), dir.to_str().unwrap());
    let listen = "127.0.0.1:0";
    let ca = ca.unwrap_or("");
    let options = FfxpNodeOptions {
        struct_size: size_of::<FfxpNodeOptions>(),
        phonebook_ca: if ca.is_empty() {
            std::ptr::null()
        } else {
            ca.as_ptr()
        },
        phonebook_ca_len: ca.len(),
    };
    let mut h = 0;
    // SAFETY: every pointer + length comes from a live &str; `options` and `h` are locals.
    let s = unsafe {
        ffxp_node_create_ex(
            id.as_ptr(),
            id.len(),
            data.as_ptr(),
            data.len(),
            books.as_ptr(),
            books.len(),
            name.as_ptr(),
            name.len(),
            listen.as_ptr(),
            listen.len(),
            &options,
            &mut h,
        )
    };
    assert_eq!(s, FfxpStatus::Ok, "{}", last_error());
    h
}

/// Polls `h` until an event of `kind` arrives (within `limit`); returns its message. Every
/// registration event on the way is collected into `seen`.
fn wait(
    h: u64,
    kind: FfxpEventKind,
    limit: Duration,
    seen: &mut Vec<FfxpEventKind>,
) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let mut e = std::mem::MaybeUninit::<FfxpEvent>::uninit();
        // SAFETY: `e` is a local with room for an FfxpEvent.
        match unsafe { ffxp_node_poll_event(h, e.as_mut_ptr()) } {
            FfxpStatus::Ok => {
                // SAFETY: on Ok the library wrote a whole FfxpEvent.
                let e = unsafe { e.assume_init() };
                seen.push(e.kind);
                if e.kind == kind {
                    let n = (e.message_len as usize).min(e.message.len());
                    return Some(String::from_utf8_lossy(&e.message[..n]).into_owned());
                }
            }
            FfxpStatus::NoEvent => std::thread::sleep(Duration::from_millis(10)),
            other => panic!("poll: {other:?}: {}", last_error()),
        }
    }
    None
}

#[test]
fn https_phone_book_with_a_private_ca() {
    let pki = Pki::new();
    let srv = TestServer::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        capacity: 64,
        tls_cert: Some(pki.dir.join("cert.pem")),
        tls_key: Some(pki.dir.join("cert.key")),
        ..Config::default()
    })
    .unwrap();
    let url = format!("https://localhost:{}", srv.addr().port());
    let ca = pki.dir.join("ca.pem");

    // Trusting the CA, with a second phone book that is down: registered.
    let books = format!("http://127.0.0.1:1\n{url}");
    let a = create(
        &pki.dir.join("a"),
        &books,
        "Tls Trusting@Lich",
        Some(ca.to_str().unwrap()),
    );
    let mut seen = Vec::new();
    let registered = wait(
        a,
        FfxpEventKind::Registered,
        Duration::from_secs(20),
        &mut seen,
    );
    assert!(
        registered.is_some(),
        "not registered over HTTPS with the CA file: {seen:?}"
    );
    assert_eq!(ffxp_node_shutdown(a), FfxpStatus::Ok);

    // The same phone book without the CA file: its certificate is refused.
    let b = create(&pki.dir.join("b"), &url, "Tls Untrusting@Lich", None);
    let mut seen = Vec::new();
    let why = wait(
        b,
        FfxpEventKind::RegistrationRetrying,
        Duration::from_secs(20),
        &mut seen,
    );
    println!("without the CA file: {why:?}");
    assert!(
        why.is_some(),
        "no RegistrationRetrying without the CA file: {seen:?}"
    );
    assert!(!seen.contains(&FfxpEventKind::Registered), "{seen:?}");
    assert_eq!(ffxp_node_shutdown(b), FfxpStatus::Ok);
}

//! `pb-client` as a user runs it, against a real pi-server on 127.0.0.1:0: the seed comes from
//! a private file or the environment, never the command line, and a lookup leaves no live
//! requester behind.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pi_server::config::Config;
use pi_server::server::TestServer;

fn phone_book() -> TestServer {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        capacity: 64,
        ..Config::default()
    };
    TestServer::start(config).expect("pi-server starts")
}

fn client(pb: &TestServer) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pb-client"));
    c.env_remove("PB_SEED")
        .env_remove("PB_SEED_FILE")
        .args(["--url", &format!("http://{}", pb.addr())]);
    c
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pb-client-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(c: &mut Command) -> Output {
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn keygen(pb: &TestServer, path: &Path) -> Output {
    run(client(pb).arg("keygen").arg("--seed-file").arg(path))
}

fn active_users(pb: &TestServer) -> String {
    let o = run(client(pb).arg("health"));
    assert!(o.status.success(), "{}", text(&o));
    let body = String::from_utf8_lossy(&o.stdout).into_owned();
    let at = body.find("\"activeUsers\":").unwrap() + "\"activeUsers\":".len();
    body[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

#[test]
fn the_seed_comes_from_a_private_file_or_the_environment() {
    let pb = phone_book();
    let dir = temp_dir("seed");
    let alice = dir.join("alice.seed");

    let o = keygen(&pb, &alice);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.starts_with("publicKey: ") && !stdout.contains("seed:"),
        "{stdout}"
    );
    let mode = std::fs::metadata(&alice).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let seed = std::fs::read_to_string(&alice).unwrap();
    assert_eq!(seed.trim().len(), 64);
    // Never overwritten: a second keygen keeps the seed and prints the same key.
    let again = keygen(&pb, &alice);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(again.stdout, o.stdout);
    assert_eq!(std::fs::read_to_string(&alice).unwrap(), seed);

    let register = |seed_args: &[&str], env: Option<&str>| {
        let mut c = client(&pb);
        c.args([
            "register",
            "--name",
            "Alice Smith@Gilgamesh",
            "--port",
            "55000",
        ])
        .args(seed_args);
        if let Some(hex) = env {
            c.env("PB_SEED", hex);
        }
        run(&mut c)
    };
    let path = alice.to_str().unwrap();
    let o = register(&["--seed-file", path], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("warning"), "{}", text(&o));

    let o = register(&[], Some(seed.trim()));
    assert!(o.status.success(), "$PB_SEED: {}", text(&o));

    // Old scripts (.ci/image-test.sh) keep working, with a warning.
    let o = register(&["--seed", seed.trim()], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--seed is deprecated"),
        "{}",
        text(&o)
    );

    // A huge private file is refused with a clear error instead of being read whole, and so is
    // something that is not a regular file (a FIFO would block forever).
    let huge = dir.join("huge.seed");
    std::fs::write(&huge, vec![b'a'; 1 << 20]).unwrap();
    std::fs::set_permissions(&huge, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = register(&["--seed-file", huge.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("too long"), "{}", text(&o));
    let o = register(&["--seed-file", dir.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("not a regular file"), "{}", text(&o));

    // A seed file others may read is refused.
    std::fs::set_permissions(&alice, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = register(&["--seed-file", path], None);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("chmod 600"), "{}", text(&o));

    let o = register(&[], None);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("--seed-file"), "{}", text(&o));
}

#[test]
fn a_lookup_leaves_no_live_requester() {
    let pb = phone_book();
    // Seeds as 64 hex digits through the deprecated --seed, which old versions also take, so
    // that this test shows the old behaviour (a live requester) rather than an unknown flag.
    let (alice, bob) = ("11".repeat(32), "22".repeat(32));
    let o = run(client(&pb)
        .args([
            "register",
            "--name",
            "Alice Smith@Gilgamesh",
            "--port",
            "55000",
        ])
        .args(["--seed", &alice]));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(active_users(&pb), "1");

    let lookup = |target: &str| {
        run(client(&pb)
            .args(["lookup", "--name", target])
            .args(["--as", "Bob Jones@Gilgamesh"])
            .args(["--seed", &bob]))
    };
    let o = lookup("Alice Smith@Gilgamesh");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"port\":55000"),
        "{}",
        text(&o)
    );
    assert_eq!(active_users(&pb), "1", "the requester is not live after");

    // A failed lookup unregisters the requester too.
    let o = lookup("Nobody Here@Gilgamesh");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(active_users(&pb), "1");

    // Without --as, under a name derived from the secret key.
    let o = run(client(&pb)
        .args(["lookup", "--name", "Alice Smith@Gilgamesh"])
        .args(["--seed", &bob]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Pbc@Lookup"), "{}", text(&o));
    assert_eq!(active_users(&pb), "1");
}

/// The requester name pb-client derived from the public key alone, which anyone can compute.
fn name_from_public_key(seed_hex: &str) -> String {
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&seed_hex[2 * i..2 * i + 2], 16).unwrap();
    }
    let key = phonebook_proto::Keypair::from_seed(&seed).public();
    let l: String = key.as_bytes()[..22]
        .iter()
        .map(|b| char::from(b'a' + b % 26))
        .collect();
    format!("Req{} Pbc@Lookup{}", &l[..12], &l[12..])
}

#[test]
fn a_stranger_cannot_squat_the_derived_requester_name() {
    let pb = phone_book();
    let (alice, bob, mallory) = ("11".repeat(32), "22".repeat(32), "33".repeat(32));
    let register = |name: &str, seed: &str| {
        run(client(&pb)
            .args(["register", "--name", name, "--port", "55000"])
            .args(["--seed", seed]))
    };
    let o = register("Alice Smith@Gilgamesh", &alice);
    assert!(o.status.success(), "{}", text(&o));
    // Mallory knows Bob's public key only, and takes the name derivable from it.
    let o = register(&name_from_public_key(&bob), &mallory);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(client(&pb)
        .args(["lookup", "--name", "Alice Smith@Gilgamesh"])
        .args(["--seed", &bob]));
    assert!(
        o.status.success(),
        "a squatted requester name locked the lookup out: {}",
        text(&o)
    );
}

/// `pb-client --url https://...`: verified against the web's roots plus `--ca`; without the
/// test CA the certificate is refused with a message that says so; `--ca` with http:// is a
/// usage error.
#[test]
fn https_phone_books_are_verified() {
    let dir = temp_dir("https");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (ca, cert, priv_key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&priv_key, key.serialize_pem()).unwrap();
    let pb = TestServer::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        capacity: 64,
        tls_cert: Some(cert),
        tls_key: Some(priv_key),
        ..Config::default()
    })
    .unwrap();
    let url = format!("https://localhost:{}", pb.addr().port());
    let pb_client = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pb-client"));
        c.env_remove("PB_CA").args(args);
        run(&mut c)
    };
    let ok = pb_client(&["--url", &url, "--ca", ca.to_str().unwrap(), "health"]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("activeUsers"), "{}", text(&ok));
    let refused = pb_client(&["--url", &url, "health"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).to_lowercase().contains("certificate"),
        "{}",
        text(&refused)
    );
    let plain = format!("http://{}", pb.addr());
    let misuse = pb_client(&["--url", &plain, "--ca", ca.to_str().unwrap(), "health"]);
    assert_eq!(misuse.status.code(), Some(64), "{}", text(&misuse));
    pb.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

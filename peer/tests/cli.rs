//! The `peer` command line as a user runs it: a child process per command, real QUIC on
//! loopback and a real phone book (pi-server) on 127.0.0.1:0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use peer::phonebook::{PhoneBookConfig, PhoneBookError, requester_name};
use peer::transfer::manifest::DEFAULT_CHUNK_SIZE;
use peer::{FileHash, Identity, PeerId, PhoneBook, PlayerName, Visibility};
use phonebook_proto::Health;

use crate::common::*;

fn peer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_peer"));
    c.env_remove("PEER_IDENTITY")
        .env_remove("PEER_PINS")
        .env_remove("PEER_PHONEBOOK")
        .env_remove("PEER_NAME")
        .env_remove("PEER_LISTEN")
        .env("RUST_LOG", "warn");
    c
}

/// A new identity saved in `dir`: its file and key.
fn identity(dir: &Path, who: &str) -> (PathBuf, PeerId) {
    let path = dir.join(format!("{who}.key"));
    let id = Identity::generate();
    id.save(&path).unwrap();
    (path, id.id())
}

/// Kills the child when dropped (a failed assertion must not leave a server running).
struct Running(Option<Child>);

impl Running {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `peer serve DIR` with `extra` flags; returns the process, the first file's hash and the
/// `ADDR,KEY` to fetch from.
fn serve(dir: &Path, owner: &Path, extra: &[&str]) -> (Running, String, String) {
    let child = peer()
        .arg("serve")
        .arg(dir)
        .arg("--identity")
        .arg(owner)
        .args(["--listen", "127.0.0.1:0", "--visibility", "public"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(Some(child));
    let stdout = running.child().stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    let hash = first.split(' ').next().unwrap().to_owned();
    let listening = lines
        .map(Result::unwrap)
        .find(|l| l.starts_with("listening on port"))
        .expect("peer serve says where it listens");
    // "listening on port N key K"
    let words: Vec<&str> = listening.split(' ').collect();
    let source = format!("127.0.0.1:{},{}", words[3], words[5]);
    (running, hash, source)
}

fn fetch(hash: &str, source: &str, identity: &Path, out: &Path) -> Output {
    peer()
        .args(["fetch", hash, "--quiet", "--peer", source])
        .arg("--identity")
        .arg(identity)
        .arg("--pins")
        .arg(identity.with_extension("pins"))
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// Signals the process with kill(1): Unix only.
#[cfg(unix)]
#[test]
fn serve_with_friends_visibility_serves_friends_and_refuses_strangers() {
    let dir = temp_dir("cli-friends");
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let data = content(3 * DEFAULT_CHUNK_SIZE as usize + 5, 9);
    std::fs::write(files.join("mod.bin"), &data).unwrap();
    let (owner, _) = identity(&dir, "owner");
    let (friend, friend_key) = identity(&dir, "friend");
    let (stranger, _) = identity(&dir, "stranger");
    let friend_key = friend_key.to_string();
    let (mut server, hash, source) = serve(
        &files,
        &owner,
        &["--visibility", "friends", "--friend", &friend_key],
    );

    let got = fetch(&hash, &source, &friend, &dir.join("friend.bin"));
    assert!(got.status.success(), "a friend is served: {}", stderr(&got));
    assert_eq!(std::fs::read(dir.join("friend.bin")).unwrap(), data);
    // The owner's own key (another device of the same player) is served too.
    let got = fetch(&hash, &source, &owner, &dir.join("owner.bin"));
    assert!(
        got.status.success(),
        "the owner is served: {}",
        stderr(&got)
    );

    let got = fetch(&hash, &source, &stranger, &dir.join("stranger.bin"));
    let text = stderr(&got);
    assert!(!got.status.success(), "a stranger must be refused: {text}");
    assert!(
        text.contains("refused our key") && !text.contains("connection lost"),
        "the stranger is told why: {text}"
    );
    assert!(!dir.join("stranger.bin").exists());

    // Ctrl-C: a human message, not `received Int`.
    let pid = server.child().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = server.0.take().unwrap().wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("interrupted (Ctrl-C), shutting down"),
        "{text}"
    );
}

#[test]
fn public_serve_still_serves_any_key() {
    let dir = temp_dir("cli-public");
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("a.bin"), b"a public mod").unwrap();
    let (owner, _) = identity(&dir, "owner");
    let (anyone, _) = identity(&dir, "anyone");
    let (_server, hash, source) = serve(&files, &owner, &[]);
    let got = fetch(&hash, &source, &anyone, &dir.join("a.bin"));
    assert!(got.status.success(), "{}", stderr(&got));
    assert_eq!(std::fs::read(dir.join("a.bin")).unwrap(), b"a public mod");
}

/// `GET /api/health` of the phone book at `addr`.
fn health(addr: std::net::SocketAddr) -> Health {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /api/health HTTP/1.1\r\nHost: pb\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let at = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    Health::from_json(&answer[at + 4..]).unwrap()
}

fn phone_book() -> pi_server::server::TestServer {
    let config = pi_server::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        capacity: 64,
        ..Default::default()
    };
    pi_server::server::TestServer::start(config).unwrap()
}

fn book(url: &str, name: &str) -> PhoneBook {
    let config = PhoneBookConfig {
        urls: vec![url.to_owned()],
        ..Default::default()
    };
    PhoneBook::new(
        &Identity::generate(),
        PlayerName::parse(name).unwrap(),
        config,
    )
    .unwrap()
}

#[test]
fn lookup_publishes_nobody_and_leaves_no_live_name() {
    let pb = phone_book();
    let url = format!("http://{}", pb.addr());
    let dir = temp_dir("cli-lookup");
    let (requester, _) = identity(&dir, "requester");
    let target = book(&url, "Thancred Waters@Gilgamesh");
    let third = book(&url, "Estinien Wyrmblood@Gilgamesh");
    smol::block_on(async {
        target
            .register(5000, Visibility::Public, &[])
            .await
            .unwrap();
        third.register(5001, Visibility::Public, &[]).await.unwrap();
    });
    assert_eq!(health(pb.addr()).active_users, 2);

    let got = peer()
        .args(["lookup", "Thancred Waters@Gilgamesh", "--phonebook", &url])
        // The player's own name (what older versions registered publicly for a lookup).
        .args(["--name", "Minfilia Warde@Gilgamesh"])
        .args(["--listen", "127.0.0.1:0"])
        .arg("--identity")
        .arg(&requester)
        .output()
        .unwrap();
    assert!(got.status.success(), "{}", stderr(&got));
    let line = String::from_utf8_lossy(&got.stdout);
    assert!(
        line.starts_with("Thancred Waters@Gilgamesh 127.0.0.1:5000 "),
        "{line}"
    );

    assert_eq!(
        health(pb.addr()).active_users,
        2,
        "the lookup left no live name behind"
    );
    smol::block_on(async {
        for name in [
            PlayerName::parse("Minfilia Warde@Gilgamesh").unwrap(),
            requester_name(&Identity::load_or_create(&requester).unwrap()),
        ] {
            let seen = third.lookup(&name).await;
            assert!(
                matches!(seen, Err(PhoneBookError::NotFound { .. })),
                "a third party must not find the requester {name}: {seen:?}"
            );
        }
    });
}

#[test]
fn a_hidden_requester_is_invisible_to_others_while_it_looks() {
    let pb = phone_book();
    let url = format!("http://{}", pb.addr());
    let dir = temp_dir("cli-hidden");
    let (requester_file, _) = identity(&dir, "r");
    let requester_id = Identity::load_or_create(&requester_file).unwrap();
    let requester = PhoneBook::new(
        &requester_id,
        requester_name(&requester_id),
        PhoneBookConfig {
            urls: vec![url.clone()],
            ..Default::default()
        },
    )
    .unwrap();
    let third = book(&url, "Estinien Wyrmblood@Gilgamesh");
    smol::block_on(async {
        third.register(5001, Visibility::Public, &[]).await.unwrap();
        requester.register_hidden(5002).await.unwrap();
        // The token works...
        let found = requester.lookup(third.name()).await.unwrap();
        assert_eq!(found.addr.port(), 5001);
        // ...but nobody else sees the requester.
        let seen = third.lookup(requester.name()).await;
        assert!(
            matches!(seen, Err(PhoneBookError::NotFound { .. })),
            "{seen:?}"
        );
        requester.unregister().await.unwrap();
    });
    assert_eq!(health(pb.addr()).active_users, 1);
}

/// The requester name the 0.x `peer` derived from the public key alone: anyone who knows a
/// player's key (every lookup record shows it) can compute it.
fn name_from_public_key(key: &PeerId) -> String {
    let l: String = key.as_bytes()[..22]
        .iter()
        .map(|b| char::from(b'a' + b % 26))
        .collect();
    format!("Req{} Peer@Lookup{}", &l[..12], &l[12..])
}

#[test]
fn a_stranger_cannot_squat_the_requester_name_of_a_known_key() {
    let pb = phone_book();
    let url = format!("http://{}", pb.addr());
    let dir = temp_dir("cli-squat");
    let (victim, victim_key) = identity(&dir, "v");
    let target = book(&url, "Y'shtola Rhul@Gilgamesh");
    // The stranger knows only the victim's public key and holds every name derivable from it.
    let squatter = book(&url, &name_from_public_key(&victim_key));
    smol::block_on(async {
        target
            .register(5003, Visibility::Public, &[])
            .await
            .unwrap();
        squatter.register_hidden(5004).await.unwrap();
    });
    let got = peer()
        .args(["lookup", "Y'shtola Rhul@Gilgamesh", "--phonebook", &url])
        .args(["--listen", "127.0.0.1:0"])
        .arg("--identity")
        .arg(&victim)
        .output()
        .unwrap();
    assert!(
        got.status.success(),
        "a name squatted from the public key locked the lookup out: {}",
        stderr(&got)
    );
    let line = String::from_utf8_lossy(&got.stdout);
    assert!(
        line.starts_with("Y'shtola Rhul@Gilgamesh 127.0.0.1:5003 "),
        "{line}"
    );
}

/// A pipe whose reading end is already closed: writing to it fails with EPIPE.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

#[test]
fn a_closed_stdout_ends_the_program_quietly() {
    let dir = temp_dir("cli-epipe");
    let (me, _) = identity(&dir, "me");
    let got = peer()
        .arg("id")
        .arg("--identity")
        .arg(&me)
        .stdout(closed_pipe())
        .output()
        .unwrap();
    assert!(got.status.success(), "{}", stderr(&got));
    assert!(!stderr(&got).contains("panicked"), "{}", stderr(&got));

    // `peer fetch ... | head -1` after the reader went away.
    let data = content(2 * DEFAULT_CHUNK_SIZE as usize + 1, 4);
    let seeder = memory_seeder(std::slice::from_ref(&data), DEFAULT_CHUNK_SIZE);
    let hash = FileHash::Sha1(peer::transfer::sha1_chain::sha1(&data)).to_string();
    let source = format!("{},{}", seeder.addr(), seeder.endpoint.identity().id());
    let out = dir.join("got.bin");
    let got = peer()
        .args(["fetch", &hash, "--quiet", "--peer", &source])
        .arg("--identity")
        .arg(&me)
        .arg("--pins")
        .arg(dir.join("pins"))
        .arg("--out")
        .arg(&out)
        .stdout(closed_pipe())
        .output()
        .unwrap();
    let text = stderr(&got);
    assert!(got.status.success(), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert_eq!(std::fs::read(&out).unwrap(), data);
}

#[test]
fn a_name_held_by_another_key_is_a_key_conflict_with_a_real_phone_book() {
    let pb = phone_book();
    let url = format!("http://{}", pb.addr());
    let holder = book(&url, "Lyse Hext@Gilgamesh");
    // The same name with another key: what a player who lost the identity file meets.
    let newcomer = book(&url, "Lyse Hext@Gilgamesh");
    smol::block_on(async {
        holder
            .register(5000, Visibility::Public, &[])
            .await
            .unwrap();
        let err = newcomer
            .register(5001, Visibility::Public, &[])
            .await
            .unwrap_err();
        match &err {
            PhoneBookError::KeyConflict { name, .. } => {
                assert_eq!(name.as_str(), "Lyse Hext@Gilgamesh")
            }
            other => panic!("expected a key conflict, got {other:?}"),
        }
        assert!(err.to_string().contains("frees up"), "{err}");
        // Unregistered, the name stays bound to the holder's key for the retention.
        holder.unregister().await.unwrap();
        let err = newcomer
            .register(5001, Visibility::Public, &[])
            .await
            .unwrap_err();
        assert!(matches!(err, PhoneBookError::KeyConflict { .. }), "{err}");
    });
}

/// A phone book that accepts registrations and unregistrations but never answers a lookup;
/// sends each request line on `seen`.
#[cfg(unix)]
fn stalling_phone_book(seen: std::sync::mpsc::Sender<String>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in listener.incoming().flatten().take(16) {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = vec![0u8; 16384];
                let mut have = 0;
                loop {
                    let n = s.read(&mut buf[have..]).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    have += n;
                    let text = String::from_utf8_lossy(&buf[..have]).into_owned();
                    let Some(head) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = text[..head]
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if have < head + 4 + len {
                        continue;
                    }
                    have = 0;
                    let line = text.lines().next().unwrap().to_owned();
                    let _ = seen.send(line.clone());
                    let body = if line.starts_with("POST") {
                        r#"{"success":true,"ip":"127.0.0.1","port":5000,"expiresIn":3600,"reregisterIn":3000,"token":"t"}"#
                    } else if line.starts_with("DELETE") {
                        r#"{"success":true}"#
                    } else {
                        continue; // a lookup: never answered
                    };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(reply.as_bytes());
                }
            });
        }
    });
    url
}

// Signals the process with kill(1): Unix only.
#[cfg(unix)]
#[test]
fn ctrl_c_during_a_lookup_unregisters_the_requester() {
    let (tx, seen) = std::sync::mpsc::channel();
    let url = stalling_phone_book(tx);
    let dir = temp_dir("cli-ctrl-c");
    let (me, _) = identity(&dir, "me");
    let child = peer()
        .args(["lookup", "Thancred Waters@Gilgamesh", "--phonebook", &url])
        .args(["--name", "Minfilia Warde@Gilgamesh"])
        .args(["--listen", "127.0.0.1:0"])
        .arg("--identity")
        .arg(&me)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(Some(child));
    let wait = std::time::Duration::from_secs(30);
    assert!(
        seen.recv_timeout(wait)
            .unwrap()
            .starts_with("POST /api/register")
    );
    assert!(
        seen.recv_timeout(wait)
            .unwrap()
            .starts_with("GET /api/lookup/")
    );
    let pid = running.child().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let line = seen
        .recv_timeout(wait)
        .expect("an unregistration after Ctrl-C");
    assert!(line.starts_with("DELETE /api/unregister"), "{line}");
    let out = running.0.take().unwrap().wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("interrupted (Ctrl-C), shutting down"),
        "{text}"
    );
}

#[test]
fn a_friend_listed_twice_does_not_break_the_registration() {
    let pb = phone_book();
    let url = format!("http://{}", pb.addr());
    let me = book(&url, "Alisaie Leveilleur@Gilgamesh");
    let friend = Identity::generate().id();
    smol::block_on(async {
        let got = me
            .register(5006, Visibility::Friends, &[friend, friend])
            .await;
        assert!(got.is_ok(), "`--friend K --friend K` is refused: {got:?}");
    });
}

#[test]
fn serve_relays_for_its_friends_and_publishes_the_relay_in_its_record() {
    let pb = phone_book();
    let url = format!("http://{}", pb.addr());
    let dir = temp_dir("cli-peer-relay");
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("mod.bin"), b"some mod").unwrap();
    let (owner, _) = identity(&dir, "owner");
    let friend = Identity::generate().id().to_string();
    // A TCP port that was free a moment ago: --relay-public needs it before the start.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = format!("127.0.0.1:{port}");
    let (_server, _, _) = serve(
        &files,
        &owner,
        &[
            "--phonebook",
            &url,
            "--name",
            "Urianger Augurelt@Gilgamesh",
            "--no-portmap",
            "--friend",
            &friend,
            "--relay-listen",
            &relay,
            "--relay-public",
            &relay,
        ],
    );
    let asker = book(&url, "Thancred Waters@Gilgamesh");
    let name = PlayerName::parse("Urianger Augurelt@Gilgamesh").unwrap();
    let published = smol::block_on(async {
        asker.register(5007, Visibility::Public, &[]).await.unwrap();
        for _ in 0..300 {
            if let Ok(found) = asker.lookup(&name).await
                && let Some(c) = found
                    .record
                    .candidates
                    .iter()
                    .find(|c| c.kind == phonebook_proto::CandidateKind::Relay)
            {
                return Some(c.addr);
            }
            smol::Timer::after(std::time::Duration::from_millis(100)).await;
        }
        None
    });
    assert_eq!(published.map(|a| a.to_string()), Some(relay.clone()));
    assert!(TcpStream::connect(&relay).is_ok(), "the relay listens");
}

#[test]
fn a_relay_without_friends_or_a_bad_relay_via_name_is_refused_with_a_reason() {
    let dir = temp_dir("cli-peer-relay-bad");
    let (owner, _) = identity(&dir, "owner");
    let run = |extra: &[&str]| {
        peer()
            .args(["serve"])
            .arg(&dir)
            .arg("--identity")
            .arg(&owner)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--phonebook",
                "http://127.0.0.1:9",
            ])
            .args(["--name", "Krile Baldesion@Gilgamesh"])
            .args(extra)
            .output()
            .unwrap()
    };
    let got = run(&["--relay-listen", "127.0.0.1:0"]);
    assert!(!got.status.success());
    assert!(stderr(&got).contains("--friend KEY"), "{}", stderr(&got));
    let got = run(&["--relay-via", "not a name"]);
    assert!(!got.status.success());
    assert!(stderr(&got).contains("--relay-via"), "{}", stderr(&got));
}

//! Restarts from the snapshot, and kill -9 while snapshots are written.

use crate::*;
use phonebook_proto::{Health, LookupRecord, PlayerName, Visibility};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pi-server-{tag}-{}-{}",
        std::process::id(),
        now_ms()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn restart_keeps_records_bindings_and_tokens() {
    let dir = temp_dir("restart");
    let snap = dir.join("snap.bin");
    let srv = start(|c| c.snapshot = Some(snap.clone()));
    let mut c = Conn::open(srv.addr());
    let friend = kp(2);
    register(
        &mut c,
        &reg(
            &kp(1),
            "Alice Smith@Gilgamesh",
            Visibility::Friends,
            vec![friend.public()],
        ),
    );
    let token = register(
        &mut c,
        &reg(&friend, "Bob Jones@Gilgamesh", Visibility::Public, vec![]),
    );
    let stranger = register(
        &mut c,
        &reg(&kp(3), "Eve Evil@Gilgamesh", Visibility::Public, vec![]),
    );
    drop(c);
    srv.stop().unwrap();
    assert!(snap.exists());

    let srv = start(|c| c.snapshot = Some(snap.clone()));
    let mut c = Conn::open(srv.addr());
    let h = Health::from_json(&c.request("GET", "/api/health", "", "").body).unwrap();
    assert_eq!(h.active_users, 3);
    // The token from before the restart still works, visibility still applies.
    let auth = format!("Authorization: Bearer {token}\r\n");
    let r = c.request("GET", "/api/lookup/Alice%20Smith@Gilgamesh", "", &auth);
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = LookupRecord::from_json_verified(
        &r.body,
        &PlayerName::parse("Alice Smith@Gilgamesh").unwrap(),
    )
    .unwrap();
    assert!(rec.expires_in > 3500 && rec.expires_in <= 3600);
    let r = c.request(
        "GET",
        "/api/lookup/Alice%20Smith@Gilgamesh",
        "",
        &format!("Authorization: Bearer {stranger}\r\n"),
    );
    assert_eq!(r.status, 404);
    // The public binding survived: another key still cannot take Eve's name publicly.
    let r = c.request(
        "POST",
        "/api/register",
        &reg(&kp(9), "Eve Evil@Gilgamesh", Visibility::Public, vec![]).to_json(),
        "",
    );
    assert_eq!(r.status, 409);
    // The snapshot holds no name.
    let bytes = std::fs::read(&snap).unwrap();
    let text = String::from_utf8_lossy(&bytes).to_lowercase();
    assert!(!text.contains("gilgamesh") && !text.contains("alice"));
    drop(c);
    srv.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn corrupt_snapshot_is_quarantined_and_the_server_starts() {
    let dir = temp_dir("corrupt");
    let snap = dir.join("snap.bin");
    std::fs::write(&snap, b"PBSNAP\r\n\0\0\0\x01truncated").unwrap();
    let srv = start(|c| c.snapshot = Some(snap.clone()));
    let mut c = Conn::open(srv.addr());
    let h = Health::from_json(&c.request("GET", "/api/health", "", "").body).unwrap();
    assert_eq!(h.active_users, 0);
    let moved = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
    assert!(moved, "the bad file is kept aside for inspection");
    drop(c);
    srv.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Starts the real binary; returns the child and its address (read from its log).
fn spawn_binary(snap: &std::path::Path) -> (Killed, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pi-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--snapshot-interval",
            "1",
            "--rate-ip",
            "0",
            "--rate-key",
            "0",
            "--capacity",
            "20000",
            // Every registration comes from 127.0.0.1 with one key.
            "--max-records-per-address",
            "20000",
        ])
        .arg("--snapshot")
        .arg(snap)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server log").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        assert!(!line.contains("ERROR"), "{line}");
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), addr)
}

/// The server child, killed with SIGKILL when dropped, so that a failing
/// assertion never leaves it running (holding the test's output pipe open).
struct Killed(Child);

impl Killed {
    fn kill_9(&mut self) {
        self.0.kill().unwrap(); // SIGKILL
        self.0.wait().unwrap();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Registrations per round of the kill -9 test: well under the capacity that
/// `spawn_binary` sets over all rounds, whatever the speed of the machine.
const PER_ROUND: u32 = 2_000;

#[test]
fn kill_9_during_snapshots_never_loses_the_file() {
    let dir = temp_dir("kill9");
    let snap = dir.join("snap.bin");
    let mut registered = 0u32;
    for round in 0..5u32 {
        let (mut child, addr) = spawn_binary(&snap);
        let mut c = Conn::open(addr);
        let h = Health::from_json(&c.request("GET", "/api/health", "", "").body).unwrap();
        // Whatever was saved loads: never more than registered, never a corrupt start.
        assert!(h.active_users as u32 <= registered, "round {round}");
        if round > 1 {
            assert!(
                h.active_users > 0,
                "round {round}: an earlier snapshot must have survived"
            );
        }
        // Keep registering while snapshots run every second, then kill -9 at a varying moment.
        let deadline = std::time::Instant::now()
            + std::time::Duration::from_millis(1200 + 350 * u64::from(round));
        let mut n = 0u32;
        while std::time::Instant::now() < deadline {
            // After PER_ROUND new names, renew the same ones: the table keeps
            // changing (so snapshots keep being written) without filling up.
            let name = format!(
                "Pl{} Ayer@World",
                name_part(round * PER_ROUND + n % PER_ROUND)
            );
            let r = reg(&kp(7), &name, Visibility::Public, vec![]);
            let rep = c.request("POST", "/api/register", &r.to_json(), "");
            assert_eq!(rep.status, 200, "{}", rep.text());
            if n < PER_ROUND {
                registered += 1;
            }
            n += 1;
        }
        assert!(n > 0);
        child.kill_9();
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert!(
            !leftovers
                .iter()
                .any(|n| n.to_string_lossy().contains(".corrupt-")),
            "{leftovers:?}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Distinct letters-only name parts for numbers.
fn name_part(mut n: u32) -> String {
    let mut s = String::new();
    for _ in 0..4 {
        s.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    s
}

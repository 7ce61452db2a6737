//! Interoperability: `tests/interop/client.mjs`, a dependency-free Node.js client written from
//! `docs/PROTOCOL.md` alone, against a real pi-server on 127.0.0.1:0. It checks the document's
//! test vectors, then registers, looks up (single and batch, verifying the owners' signatures),
//! triggers the documented error answers and unregisters. Skipped, with a note, without `node`.

use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

use pi_server::config::Config;
use pi_server::server::TestServer;

/// Lines the client prints, one per check; each must appear in its output.
const EXPECTED: &[&str] = &[
    "ok vector publicKey",
    "ok vector friendPublicKey",
    "ok vector friendsDigest",
    "ok vector emptyDigest",
    "ok vector registerMessage",
    "ok vector registerSignature",
    "ok vector registerBody",
    "ok vector unregisterMessage",
    "ok vector unregisterSignature",
    "ok strict verify refuses tampered, small-order and non-canonical signatures",
    "ok health",
    "ok register public",
    "ok register friends-only with a friend list",
    "ok register friends-only with an empty friend list",
    "ok lookup friends-only record as a friend (",
    "ok lookup with raw apostrophe and @",
    "ok lookup own friends-only record",
    "ok lookup public record as a stranger",
    "ok lookup hidden friends-only player == lookup absent name",
    "ok batch lookup (order kept, absent and hidden left out, signatures verified)",
    "ok batch lookup with nothing visible",
    "ok lookup without token -> 401 unauthorized",
    "ok bad signature -> 401",
    "ok signature over the name as spelled (not lowercased) -> 401 bad_signature",
    "ok renewal returns a new token and invalidates the previous one",
    "ok replayed timestamp (same and older) -> 409 replayed",
    "ok clock skew (past and future) -> 400 clock_skew with serverTime",
    "ok another key registering a public name -> 409 key_conflict; unregistering it -> 404",
    "ok registering a friends-only player's name -> 200, as for a free name (no oracle)",
    "ok vector lookupId",
    "ok unknown request field -> 400 bad_request",
    "ok friendsSalt missing on friends-only, or present on public -> 400 bad_request",
    "ok small-order public key -> 400 bad_request",
    "ok unregister -> 200, then lookup 404 not_found, then unregister 404",
    "ok health counts the unregistration",
    "ok binding kept after unregister (other key 409, owner 200)",
];

#[test]
fn node_client_written_from_the_protocol_document() {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!("skipped: `node --version` failed ({})", out.status);
            return;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!("skipped: `node` is not installed (CI installs the nodejs package)");
            return;
        }
        Err(e) => {
            eprintln!("skipped: cannot run `node`: {e}");
            return;
        }
    }

    let server = TestServer::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        capacity: 64,
        ..Config::default()
    })
    .expect("pi-server starts");

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("interop/client.mjs");
    let protocol = root.join("../docs/PROTOCOL.md");
    let out = Command::new("node")
        .arg(&script)
        .arg(format!("http://{}", server.addr()))
        .arg("--protocol")
        .arg(&protocol)
        .output()
        .expect("node runs the client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client.mjs failed ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}",
        out.status
    );
    for line in EXPECTED {
        assert!(
            stdout.lines().any(|l| l.starts_with(line)),
            "client.mjs output lacks {line:?}:\n{stdout}"
        );
    }
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("all ") && last.ends_with(" checks passed"),
        "client.mjs did not finish: last line {last:?}"
    );
    server.stop().expect("pi-server stops cleanly");
}

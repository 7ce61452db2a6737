//! SIGINT and SIGTERM stop the server with a line a person can read.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Starts the binary, sends `signal` once it listens, returns its whole log.
fn log_after(signal: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pi-server"))
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening on") {
            break;
        }
    }
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    assert!(child.wait().unwrap().success(), "{log}");
    log
}

#[test]
fn signals_are_named_for_people() {
    let log = log_after("-INT");
    assert!(
        log.contains("interrupted (Ctrl-C, SIGINT), shutting down") && !log.contains("received"),
        "{log}"
    );
    let log = log_after("-TERM");
    assert!(log.contains("terminated (SIGTERM), shutting down"), "{log}");
}

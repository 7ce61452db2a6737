//! Helpers shared by the benchmark examples (included with `#[path]`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// CPU seconds (utime + stime) used so far by every process except those in `exclude`.
pub fn other_cpu_seconds(exclude: &[u32]) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if exclude.contains(&pid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 of stat are at 11 and 12 after the command name.
        if f.len() > 12 {
            total += f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        }
    }
    total as f64 / ticks
}

/// Spawns this example again in another role (pinned to CPU `cpu` with taskset if present)
/// and waits for its `READY ...` line.
// The child is returned to the caller, which kills and waits for it.
#[allow(clippy::zombie_processes)]
pub fn spawn_role(cpu: Option<u32>, args: &[&str]) -> (Child, Vec<String>) {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = match cpu {
        Some(c) if Command::new("taskset").arg("--version").output().is_ok() => {
            let mut c2 = Command::new("taskset");
            c2.arg("-c").arg(c.to_string()).arg(&exe);
            c2
        }
        _ => Command::new(&exe),
    };
    let mut child = cmd
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn role");
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).expect("read child") == 0 {
            let status = child.wait();
            panic!("role {args:?} exited before READY: {status:?}");
        }
        if let Some(rest) = line.strip_prefix("READY ") {
            let words = rest.split_whitespace().map(str::to_owned).collect();
            std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
            return (child, words);
        }
    }
}

/// Resident set size of a process, bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Deterministic, poorly compressible bytes.
pub fn fill(buf: &mut [u8], seed: u64) {
    let mut x = seed | 1;
    for c in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
}

/// CPU seconds (utime + stime) one process has used.
pub fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    if f.len() <= 12 {
        return 0.0;
    }
    (f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)) as f64 / 100.0
}

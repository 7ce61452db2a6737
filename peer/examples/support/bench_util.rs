//! Helpers shared by the benchmark examples (included with `#[path]`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// CPU seconds (user, nice and system time of all CPUs, from /proc/stat) used so far by the
/// machine, less what the processes in `exclude` used. Differences of two readings count
/// processes that started and ended in between too (a scan of /proc would miss them).
/// Interrupt and softirq time is included (a process's own time may or may not include the
/// softirq work of its packets, so small negative or positive values are noise).
pub fn other_cpu_seconds(exclude: &[u32]) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let busy: u64 = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(7)
                .enumerate()
                // user nice system [idle iowait] irq softirq
                .filter(|(i, _)| ![3, 4].contains(i))
                .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    busy as f64 / ticks - exclude.iter().map(|&p| cpu_seconds_of(p)).sum::<f64>()
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

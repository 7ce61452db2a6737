//! CPU and memory figures from `/proc`: a server's CPU time and resident memory, and the CPU
//! that every other process used during a run (to tell a quiet run from a disturbed one).

use std::collections::HashMap;
use std::fs;
use std::io;

/// Clock ticks per second of the `/proc` CPU counters (`USER_HZ`).
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// Parses a `/proc/PID/stat` line into (command, utime + stime in ticks).
fn parse_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let mut f = text.get(close + 1..)?.split_ascii_whitespace();
    // After the command: state (field 3) ... utime is field 14, stime field 15.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

/// CPU time (user + system, all threads) of process `pid`, in ticks.
pub fn process_ticks(pid: u32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text)
        .map(|(_, t)| t)
        .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))
}

/// Resident memory (`VmRSS`) of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
}

/// Busy ticks of the whole machine (all cores), from the first line of `/proc/stat`.
pub fn machine_busy_ticks() -> u64 {
    let Ok(text) = fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(line) = text.lines().next() else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    total - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0)
}

/// CPU ticks of every process at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    procs: HashMap<u32, (String, u64)>,
    machine_busy: u64,
}

impl Snapshot {
    /// Reads `/proc/*/stat` of every process.
    pub fn take() -> Snapshot {
        let mut procs = HashMap::new();
        if let Ok(dir) = fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/stat"))
                    && let Some(p) = parse_stat(&text)
                {
                    procs.insert(pid, p);
                }
            }
        }
        Snapshot {
            procs,
            machine_busy: machine_busy_ticks(),
        }
    }
}

/// What other processes did between two snapshots.
#[derive(Debug, Clone, Default)]
pub struct Others {
    /// Ticks used by processes other than the excluded ones (a process that appeared during
    /// the run counts with all its ticks; one that started and ended in between is missed).
    pub ticks: u64,
    /// The largest users: (command, pid, ticks), most first, at most five.
    pub top: Vec<(String, u32, u64)>,
    /// Busy ticks of the whole machine (includes the excluded processes and interrupts).
    pub machine_busy: u64,
}

/// CPU used between `before` and `after` by every process not in `exclude`.
pub fn others(before: &Snapshot, after: &Snapshot, exclude: &[u32]) -> Others {
    let mut top = Vec::new();
    let mut ticks = 0;
    for (pid, (comm, t)) in &after.procs {
        if exclude.contains(pid) {
            continue;
        }
        let was = before.procs.get(pid).map_or(0, |p| p.1);
        let d = t.saturating_sub(was);
        if d > 0 {
            ticks += d;
            top.push((comm.clone(), *pid, d));
        }
    }
    top.sort_by_key(|b| std::cmp::Reverse(b.2));
    top.truncate(5);
    Others {
        ticks,
        top,
        machine_busy: after.machine_busy.saturating_sub(before.machine_busy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command() {
        let line = "123 (a b) c) S 1 1 1 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_stat(line), Some(("a b) c".into(), 280)));
        let me = std::process::id();
        assert!(process_ticks(me).is_ok());
        assert!(rss_kib(me).unwrap() > 0);
        assert!(ticks_per_second() > 0);
        let a = Snapshot::take();
        let b = Snapshot::take();
        let _ = others(&a, &b, &[me]);
    }
}

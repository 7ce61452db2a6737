//! The load engine of `pb-load`: one thread, one epoll set, keep-alive HTTP/1.1 connections with
//! one request in flight each.
//!
//! By default it is a **closed loop**, like wrk: each connection sends its next request as soon as
//! the previous answer is complete, so the offered load adapts to the server, and latency is the
//! service time at that concurrency (by Little's law, connections / throughput on average).
//! With [`Plan::rate`] it is an **open loop**, like wrk2: requests are due at a fixed rate, each
//! goes out on a free connection (or waits for one), and latency counts from the time the request
//! was due, so a server (or generator) that falls behind shows it (no coordinated omission). The
//! open loop polls without sleeping when the next request is due within a millisecond, so the
//! generator's core is busy by design. Level-triggered epoll with one `read` per readiness and one `write` per
//! request keeps the generator near two system calls per request, so that one core can offer
//! as much as wrk's single thread does.
//!
//! The driving loop: [`run`] connects, calls [`Workload::next`] for the first request of every
//! connection, then waits for readiness; each complete answer goes to [`Workload::answer`] and the
//! connection's next request is sent at once. After the warm-up the counters are reset and
//! `on_phase(Phase::Start)` runs; at the end of the timed phase `on_phase(Phase::End)` runs and
//! requests still in flight are abandoned.

use crate::hist::Histogram;
use rustix::event::{Timespec, epoll};
use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// Initial read buffer per connection; the phone book's answers are below 1 KiB.
const READ_BUF: usize = 4 * 1024;
/// Largest answer accepted.
const MAX_ANSWER: usize = 256 * 1024;
/// Most headers parsed per answer.
const MAX_HEADERS: usize = 24;
/// A run with requests in flight and no answer for this long is stopped as stalled.
const STALL: Duration = Duration::from_secs(10);
/// Most readiness events taken per wait.
const EVENTS: usize = 1024;

/// What to send: the scenario of a run.
pub trait Workload {
    /// Writes the next request of connection `conn` into `out` (which is empty) and returns its
    /// kind (an index below [`Plan::kinds`]), or `None` when this connection has no more work.
    fn next(&mut self, conn: usize, out: &mut Vec<u8>) -> Option<usize>;

    /// Sees each complete answer.
    fn answer(&mut self, _conn: usize, _kind: usize, _status: u16, _body: &[u8]) {}
}

/// Moments of a run, for measurements taken outside the engine (server CPU, other processes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The timed phase starts (after the warm-up).
    Start,
    /// The timed phase ends.
    End,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The server.
    pub addr: SocketAddr,
    /// Keep-alive connections, each with one request in flight.
    pub connections: usize,
    /// Time before the counters start.
    pub warmup: Duration,
    /// Length of the timed phase; `None` runs until the workload has no more requests.
    pub duration: Option<Duration>,
    /// Number of request kinds the workload uses.
    pub kinds: usize,
    /// Requests per second for an open loop; `None` is a closed loop.
    pub rate: Option<f64>,
}

/// Counters of one request kind.
#[derive(Debug, Clone, Default)]
pub struct KindStats {
    /// Latency from sending the request to the end of its answer, in nanoseconds.
    pub latency: Histogram,
    /// Answers by HTTP status.
    pub status: BTreeMap<u16, u64>,
}

/// What a run measured (the timed phase only).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Length of the timed phase.
    pub elapsed: Duration,
    /// Per request kind.
    pub kinds: Vec<KindStats>,
    /// Transport errors by kind (`closed`, `read`, `write`, `parse`, `connect`, `stalled`).
    pub errors: BTreeMap<&'static str, u64>,
    /// Connections opened again after the server closed them.
    pub reconnects: u64,
    /// Whether the workload ran out of requests before the end.
    pub ran_out: bool,
    /// The first non-2xx answer seen (status and body), for diagnosis.
    pub first_failure: Option<(u16, String)>,
    /// Open loop: most requests that were due while every connection was busy.
    pub max_backlog: usize,
}

impl Stats {
    fn new(kinds: usize) -> Self {
        Stats {
            elapsed: Duration::ZERO,
            kinds: vec![KindStats::default(); kinds],
            errors: BTreeMap::new(),
            reconnects: 0,
            ran_out: false,
            first_failure: None,
            max_backlog: 0,
        }
    }

    /// Answers of every kind.
    pub fn answers(&self) -> u64 {
        self.kinds.iter().map(|k| k.latency.count()).sum()
    }

    /// Answers with a 2xx status.
    pub fn ok(&self) -> u64 {
        self.kinds
            .iter()
            .flat_map(|k| k.status.iter())
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    /// All latencies together.
    pub fn latency(&self) -> Histogram {
        let mut h = Histogram::new();
        for k in &self.kinds {
            h.merge(&k.latency);
        }
        h
    }
}

struct Conn {
    stream: Option<TcpStream>,
    out: Vec<u8>,
    sent: usize,
    buf: Vec<u8>,
    len: usize,
    kind: usize,
    since: Instant,
    busy: bool,
    want_write: bool,
}

struct Engine<'a> {
    addr: SocketAddr,
    epoll: OwnedFd,
    conns: Vec<Conn>,
    stats: Stats,
    work: &'a mut dyn Workload,
    stopping: bool,
    active: usize,
    last_answer: Instant,
    /// Open loop: idle connections, and due times of requests waiting for one.
    open_loop: bool,
    free: Vec<usize>,
    backlog: std::collections::VecDeque<Instant>,
}

/// Opens a blocking connection and makes it non-blocking, without Nagle.
fn open(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl Engine<'_> {
    fn error(&mut self, what: &'static str) {
        *self.stats.errors.entry(what).or_insert(0) += 1;
    }

    fn attach(&mut self, i: usize) -> io::Result<()> {
        let s = open(self.addr)?;
        epoll::add(
            &self.epoll,
            &s,
            epoll::EventData::new_u64(i as u64),
            epoll::EventFlags::IN,
        )?;
        let c = &mut self.conns[i];
        c.stream = Some(s);
        c.len = 0;
        c.want_write = false;
        Ok(())
    }

    /// The connection failed or was closed by the server: drop it and, unless the run is
    /// ending, open a new one and go on.
    fn fail(&mut self, i: usize, what: &'static str, now: Instant) {
        self.error(what);
        self.conns[i].stream = None;
        if !self.conns[i].busy {
            return;
        }
        if self.stopping {
            self.conns[i].busy = false;
            self.active -= 1;
            return;
        }
        match self.attach(i) {
            Ok(()) => {
                self.stats.reconnects += 1;
                self.conns[i].busy = false;
                self.active -= 1;
                self.continue_with(i, now);
            }
            Err(_) => {
                self.error("connect");
                self.conns[i].busy = false;
                self.active -= 1;
            }
        }
    }

    /// Connection `i` is free: closed loop, send its next request now; open loop, send the
    /// oldest overdue request, or wait in the free list.
    fn continue_with(&mut self, i: usize, now: Instant) {
        if !self.open_loop {
            self.start_next(i, now);
        } else if let Some(due) = self.backlog.pop_front() {
            self.start_next(i, due);
        } else {
            self.free.push(i);
        }
    }

    /// Sends the next request on connection `i`, counting its latency from `since`.
    fn start_next(&mut self, i: usize, since: Instant) {
        if self.stopping {
            return;
        }
        let c = &mut self.conns[i];
        c.out.clear();
        match self.work.next(i, &mut c.out) {
            None => {
                self.stats.ran_out = true;
            }
            Some(k) => {
                if self.active == 0 {
                    // Nothing was in flight: the stall clock starts now.
                    self.last_answer = Instant::now();
                }
                let c = &mut self.conns[i];
                c.kind = k;
                c.since = since;
                c.sent = 0;
                c.busy = true;
                self.active += 1;
                self.flush(i, Instant::now());
            }
        }
    }

    fn flush(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        let Some(s) = c.stream.as_mut() else { return };
        while c.sent < c.out.len() {
            match s.write(&c.out[c.sent..]) {
                Ok(0) => return self.fail(i, "write", now),
                Ok(n) => c.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if !c.want_write {
                        c.want_write = true;
                        let flags = epoll::EventFlags::IN | epoll::EventFlags::OUT;
                        let _ = epoll::modify(
                            &self.epoll,
                            &*s,
                            epoll::EventData::new_u64(i as u64),
                            flags,
                        );
                    }
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.fail(i, "write", now),
            }
        }
        if c.want_write {
            c.want_write = false;
            let _ = epoll::modify(
                &self.epoll,
                &*s,
                epoll::EventData::new_u64(i as u64),
                epoll::EventFlags::IN,
            );
        }
    }

    fn readable(&mut self, i: usize, measuring: bool) {
        let c = &mut self.conns[i];
        let Some(s) = c.stream.as_mut() else { return };
        if c.len == c.buf.len() {
            if c.buf.len() >= MAX_ANSWER {
                return self.fail(i, "parse", Instant::now());
            }
            let n = c.buf.len() * 2;
            c.buf.resize(n, 0);
        }
        match s.read(&mut c.buf[c.len..]) {
            Ok(0) => return self.fail(i, "closed", Instant::now()),
            Ok(n) => c.len += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => return,
            Err(_) => return self.fail(i, "read", Instant::now()),
        }
        if !c.busy {
            // Bytes nobody asked for.
            return self.fail(i, "parse", Instant::now());
        }
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut hs);
        let head = match r.parse(&c.buf[..c.len]) {
            Ok(httparse::Status::Complete(h)) => h,
            Ok(httparse::Status::Partial) => return,
            Err(_) => return self.fail(i, "parse", Instant::now()),
        };
        let status = r.code.unwrap_or(0);
        let mut body_len = 0usize;
        let mut close = false;
        for h in r.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                match std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                {
                    Some(n) => body_len = n,
                    None => return self.fail(i, "parse", Instant::now()),
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                close = h.value.eq_ignore_ascii_case(b"close");
            }
        }
        let end = head + body_len;
        if end > MAX_ANSWER {
            return self.fail(i, "parse", Instant::now());
        }
        if c.len < end {
            if end > c.buf.len() {
                c.buf.resize(end, 0);
            }
            return;
        }
        let now = Instant::now();
        self.last_answer = now;
        let kind = c.kind;
        let leftover = c.len > end;
        c.len = 0;
        c.busy = false;
        self.active -= 1;
        if measuring {
            let ks = &mut self.stats.kinds[kind];
            ks.latency
                .record(now.duration_since(c.since).as_nanos() as u64);
            *ks.status.entry(status).or_insert(0) += 1;
            if !(200..300).contains(&status) && self.stats.first_failure.is_none() {
                let body = String::from_utf8_lossy(&c.buf[head..end]).into_owned();
                self.stats.first_failure = Some((status, body));
            }
        }
        self.work.answer(i, kind, status, &c.buf[head..end]);
        if leftover || close {
            // The server closed (or will close) this connection, or sent more than one answer.
            if leftover {
                self.error("parse");
            }
            self.conns[i].stream = None;
            if self.stopping {
                return;
            }
            if self.attach(i).is_err() {
                self.error("connect");
                return;
            }
            self.stats.reconnects += 1;
        }
        self.continue_with(i, now);
    }
}

/// Runs `work` according to `plan`; `on_phase` is called at the start and end of the timed
/// phase (from the engine's thread, between two waits).
pub fn run(
    plan: &Plan,
    work: &mut dyn Workload,
    on_phase: &mut dyn FnMut(Phase),
) -> io::Result<Stats> {
    let mut e = Engine {
        addr: plan.addr,
        epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
        conns: Vec::with_capacity(plan.connections),
        stats: Stats::new(plan.kinds),
        work,
        stopping: false,
        active: 0,
        last_answer: Instant::now(),
        open_loop: plan.rate.is_some(),
        free: Vec::with_capacity(plan.connections),
        backlog: std::collections::VecDeque::new(),
    };
    let now = Instant::now();
    for i in 0..plan.connections {
        e.conns.push(Conn {
            stream: None,
            out: Vec::with_capacity(512),
            sent: 0,
            buf: vec![0; READ_BUF],
            len: 0,
            kind: 0,
            since: now,
            busy: false,
            want_write: false,
        });
        e.attach(i)?;
    }
    let start = Instant::now();
    let mut measuring = plan.warmup.is_zero();
    let mut t0 = start;
    if measuring {
        on_phase(Phase::Start);
        t0 = Instant::now();
    }
    if e.open_loop {
        e.free.extend((0..plan.connections).rev());
    } else {
        for i in 0..plan.connections {
            e.start_next(i, Instant::now());
        }
    }
    e.last_answer = Instant::now();
    // Open loop: request k is due at start + k / rate.
    let interval = plan.rate.map(|r| 1.0 / r.max(1e-3));
    let mut due_k: u64 = 0;
    let mut next_due = start;
    let mut events = vec![
        epoll::Event {
            flags: epoll::EventFlags::empty(),
            data: epoll::EventData::new_u64(0),
        };
        EVENTS
    ];
    loop {
        let now = Instant::now();
        if !measuring && now >= start + plan.warmup {
            e.stats = Stats::new(plan.kinds);
            on_phase(Phase::Start);
            measuring = true;
            t0 = Instant::now();
        }
        if measuring && plan.duration.is_some_and(|d| now >= t0 + d) {
            break;
        }
        let mut wait = Duration::from_millis(20);
        if let Some(iv) = interval {
            while next_due <= now && !e.stats.ran_out {
                match e.free.pop() {
                    Some(i) => e.start_next(i, next_due),
                    None => e.backlog.push_back(next_due),
                }
                due_k += 1;
                next_due = start + Duration::from_secs_f64(due_k as f64 * iv);
            }
            e.stats.max_backlog = e.stats.max_backlog.max(e.backlog.len());
            let until = next_due.saturating_duration_since(Instant::now());
            // epoll waits in whole milliseconds: poll when the next request is due sooner.
            wait = if until < Duration::from_millis(1) {
                Duration::ZERO
            } else {
                until.min(wait) - Duration::from_millis(1)
            };
        }
        if e.active == 0 && (!e.open_loop || e.stats.ran_out) {
            break;
        }
        if e.active > 0 && now.duration_since(e.last_answer) > STALL {
            e.error("stalled");
            break;
        }
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: wait.as_nanos() as i64,
        };
        let n = match epoll::wait(&e.epoll, &mut events[..], Some(&timeout)) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => 0,
            Err(err) => return Err(err.into()),
        };
        for ev in &events[..n] {
            let i = ev.data.u64() as usize;
            let flags = ev.flags;
            if flags.contains(epoll::EventFlags::OUT) {
                e.flush(i, Instant::now());
            }
            if flags
                .intersects(epoll::EventFlags::IN | epoll::EventFlags::HUP | epoll::EventFlags::ERR)
            {
                e.readable(i, measuring);
            }
        }
    }
    let t1 = Instant::now();
    e.stopping = true;
    if measuring {
        on_phase(Phase::End);
    }
    let mut stats = e.stats;
    stats.elapsed = t1.duration_since(t0);
    Ok(stats)
}

/// Opens `n` connections and leaves them idle (keep-alive, no request).
pub fn open_idle(addr: SocketAddr, n: usize) -> io::Result<Vec<TcpStream>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        v.push(s);
    }
    Ok(v)
}

/// What became of idle connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdleCheck {
    /// Connections held.
    pub held: usize,
    /// Still open at the end (no end-of-stream or error pending).
    pub open: usize,
    /// Of those, answered a health request with 200 on the same connection.
    pub answered: usize,
}

/// Checks that idle connections are still open, then that each still answers a request.
pub fn check_idle(conns: &mut [TcpStream], host: &str) -> IdleCheck {
    let mut r = IdleCheck {
        held: conns.len(),
        ..IdleCheck::default()
    };
    let mut req = Vec::new();
    crate::http::write_request(
        &mut req,
        "GET",
        phonebook_proto::paths::HEALTH,
        host,
        &[],
        None,
    );
    let mut byte = [0u8; 1];
    let mut alive = Vec::new();
    for (i, s) in conns.iter_mut().enumerate() {
        let _ = s.set_nonblocking(true);
        match s.read(&mut byte) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                r.open += 1;
                alive.push(i);
            }
            _ => {}
        }
        let _ = s.set_nonblocking(false);
    }
    let mut buf = Vec::new();
    for i in alive {
        let s = &mut conns[i];
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        buf.clear();
        if s.write_all(&req).is_ok()
            && let Ok(a) = crate::http::read_response(s, &mut buf)
            && a.status == 200
        {
            r.answered += 1;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead as _;
    use std::net::TcpListener;

    /// A stub HTTP server: answers every request with `200 ok`, and closes the connection
    /// (with `Connection: close`) after every `close_every` answers.
    fn stub(close_every: usize) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                std::thread::spawn(move || {
                    let mut w = s.try_clone().unwrap();
                    let mut r = std::io::BufReader::new(s);
                    let mut n = 0;
                    loop {
                        let mut line = String::new();
                        // Request line and headers, up to the blank line (no bodies here).
                        loop {
                            line.clear();
                            match r.read_line(&mut line) {
                                Ok(0) | Err(_) => return,
                                Ok(_) if line == "\r\n" => break,
                                Ok(_) => {}
                            }
                        }
                        n += 1;
                        let close = n % close_every == 0;
                        let head = if close { "Connection: close\r\n" } else { "" };
                        let a = format!("HTTP/1.1 200 OK\r\n{head}Content-Length: 2\r\n\r\nok");
                        if w.write_all(a.as_bytes()).is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    struct Fixed {
        left: Option<u64>,
    }

    impl Workload for Fixed {
        fn next(&mut self, _conn: usize, out: &mut Vec<u8>) -> Option<usize> {
            if let Some(n) = &mut self.left {
                if *n == 0 {
                    return None;
                }
                *n -= 1;
            }
            out.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            Some(0)
        }
    }

    fn plan(addr: SocketAddr, duration: Option<Duration>, rate: Option<f64>) -> Plan {
        Plan {
            addr,
            connections: 4,
            warmup: Duration::ZERO,
            duration,
            kinds: 1,
            rate,
        }
    }

    #[test]
    fn closed_loop_runs_out_and_reconnects() {
        let addr = stub(7);
        let mut phases = Vec::new();
        let st = run(
            &plan(addr, None, None),
            &mut Fixed { left: Some(100) },
            &mut |p| phases.push(p),
        )
        .unwrap();
        assert_eq!(st.answers(), 100);
        assert_eq!(st.ok(), 100);
        assert!(st.ran_out);
        assert!(st.reconnects >= 10, "{st:?}");
        assert!(st.errors.is_empty(), "{:?}", st.errors);
        assert_eq!(phases, [Phase::Start, Phase::End]);
    }

    #[test]
    fn open_loop_keeps_the_rate() {
        let addr = stub(1000);
        let d = Duration::from_millis(500);
        let st = run(
            &plan(addr, Some(d), Some(2000.0)),
            &mut Fixed { left: None },
            &mut |_| {},
        )
        .unwrap();
        let n = st.answers() as f64;
        assert!(
            (800.0..=1100.0).contains(&n),
            "{n} answers at 2000/s in 0.5 s"
        );
        assert!(st.errors.is_empty(), "{:?}", st.errors);
    }

    #[test]
    fn idle_connections_are_checked() {
        let addr = stub(1000);
        let mut idle = open_idle(addr, 3).unwrap();
        let host = "x";
        assert_eq!(
            check_idle(&mut idle, host),
            IdleCheck {
                held: 3,
                open: 3,
                answered: 3
            }
        );
    }
}

//! One peer to one peer on loopback: the peer protocol (manifest, verified chunks, session
//! AEAD, writes to a file) against a bare quinn stream of the same size, alternating, in one run.
//! Two more bare runs show what verification alone costs: the receiver also SHA-1s every byte
//! (`bare+sha1`), and also writes whole chunks to a file (`bare+sha1+write`). Every run uses
//! the library's endpoint (same transport settings and runtime) on one thread per process.
//!
//! Run with: `cargo run --profile bench-fast -p peer --example bench_loopback -- [--size-mib 1024] [--runs 3] [--dir /dev/shm]`
//! (tests/bench/peer-loopback.sh runs it pinned, one core per side).

#[path = "support/bench_util.rs"]
mod bench_util;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_util::*;
use peer::net::session::Cipher;
use peer::transfer::download::{DownloadConfig, VerifyOn};
use peer::{
    Endpoint, EndpointConfig, FileHash, FolderStore, Identity, PeerId, PinStore, Pool, PoolConfig,
    ServeConfig, Server, Source, Spawner, download,
};

/// The endpoint both sides of every run use. Environment knobs for experiments:
/// `PEER_BENCH_{STREAM,RECEIVE,SEND}_WINDOW`, `PEER_BENCH_UDP_BUFFER` (bytes).
fn loopback() -> EndpointConfig {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let d = EndpointConfig::default();
    EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        stream_window: env("PEER_BENCH_STREAM_WINDOW").map_or(d.stream_window, |v| v as u32),
        receive_window: env("PEER_BENCH_RECEIVE_WINDOW").map_or(d.receive_window, |v| v),
        send_window: env("PEER_BENCH_SEND_WINDOW").map_or(d.send_window, |v| v),
        udp_buffer: env("PEER_BENCH_UDP_BUFFER").map_or(d.udp_buffer, |v| v as usize),
        ..d
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    match arg("--role").as_deref() {
        Some("bare-server") => return bare_server(),
        Some("peer-server") => {
            let cipher = (arg("--cipher").as_deref() == Some("aes")).then_some(Cipher::Aes256Gcm);
            return peer_server(Path::new(&arg("--file").unwrap()), cipher);
        }
        _ => {}
    }
    let size_mib: u64 = arg("--size-mib").map_or(1024, |s| s.parse().unwrap());
    let runs: usize = arg("--runs").map_or(3, |s| s.parse().unwrap());
    // `--only bare|sha1|sink|peer` runs one kind (for profiling).
    let only = arg("--only");
    let want = |k: &str| only.as_deref().is_none_or(|o| o == k);
    let dir = PathBuf::from(arg("--dir").unwrap_or_else(|| {
        if Path::new("/dev/shm").is_dir() {
            "/dev/shm".into()
        } else {
            std::env::temp_dir().display().to_string()
        }
    }));
    let size = size_mib << 20;
    let src = dir.join(format!("peer-bench-{size_mib}.bin"));
    if std::fs::metadata(&src).map(|m| m.len()).ok() != Some(size) {
        let mut f = std::fs::File::create(&src).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        for i in 0..size_mib {
            fill(&mut buf, i + 1);
            f.write_all(&buf).unwrap();
        }
    }
    println!("loopback bulk transfer, {size_mib} MiB, {runs} runs each, alternating");
    let sink_path = dir.join("peer-bench-bare-out.bin");
    let kinds = [
        (Kind::Bare, "bare quinn", "bare"),
        (Kind::Sha1, "bare+sha1", "sha1"),
        (Kind::Sha1Write, "bare+sha1+write", "sink"),
        (Kind::Peer, "peer protocol", "peer"),
        (Kind::PeerAes, "peer, AES layer", "peer-aes"),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    for run in 0..runs {
        for (i, (kind, label, short)) in kinds.iter().enumerate() {
            if !want(short) {
                continue;
            }
            let (secs, other) = match kind {
                Kind::Peer => peer_run(&src, &dir, size, None),
                Kind::PeerAes => peer_run(&src, &dir, size, Some(Cipher::Aes256Gcm)),
                _ => bare_run(size, *kind, &sink_path),
            };
            println!(
                "run {run}: {label:<17} {:7.1} MB/s  ({secs:.2} s, other processes used {other:.2} CPU s)",
                size as f64 / secs / 1e6
            );
            rates[i].push(size as f64 / secs);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let m: Vec<f64> = rates.iter_mut().map(median).collect();
    let (b, p) = (m[0], m[3]);
    for (i, (_, label, _)) in kinds.iter().enumerate().take(3) {
        println!(
            "median: {label:<17} {:7.1} MB/s; peer protocol = {:.1}% of it",
            m[i] / 1e6,
            100.0 * p / m[i]
        );
    }
    println!(
        "median: bare quinn {:.1} MB/s, peer protocol {:.1} MB/s, ratio {:.1}% (target >= 90%)",
        b / 1e6,
        p / 1e6,
        100.0 * p / b
    );
    println!(
        "median: peer with the AES-256-GCM record layer {:.1} MB/s; without it (QUIC only, the default) {:.1} MB/s = {:.1}% of with",
        m[4] / 1e6,
        p / 1e6,
        100.0 * p / m[4]
    );
}

/// What a bare run's receiver does with the bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Nothing (the reference).
    Bare,
    /// SHA-1 over every byte.
    Sha1,
    /// SHA-1 and a write to a file: the least any verified download to disk does.
    Sha1Write,
    /// Not a bare run: the peer protocol (its default: QUIC's encryption only).
    Peer,
    /// The peer protocol with the per-session AES-256-GCM record layer on both sides.
    PeerAes,
}

/// Runs `f` with an executor on this thread that also runs every task of the endpoints made
/// with the spawner it gets: one thread per process does all the work, as a plugin would with
/// `Endpoint::bind_on`. `PEER_BENCH_GLOBAL=1` uses smol's global executor instead.
fn run<T, F: std::future::Future<Output = T>>(f: impl FnOnce(Spawner) -> F) -> T {
    if std::env::var("PEER_BENCH_GLOBAL").as_deref() == Ok("1") {
        return smol::block_on(f(Spawner::Global));
    }
    let ex = Arc::new(smol::Executor::new());
    smol::block_on(ex.run(f(Spawner::Executor(ex.clone()))))
}

fn endpoint(spawner: Spawner) -> Arc<Endpoint> {
    endpoint_with(spawner, None)
}

/// An endpoint offering `cipher` first (`None`: the default).
fn endpoint_with(spawner: Spawner, cipher: Option<Cipher>) -> Arc<Endpoint> {
    let config = EndpointConfig {
        cipher,
        ..loopback()
    };
    Arc::new(Endpoint::bind_on(Arc::new(Identity::generate()), &config, spawner).unwrap())
}

fn bare_server() {
    run(|spawner| async move {
        let ep = endpoint(spawner);
        println!(
            "READY {} {}",
            ep.local_addr().unwrap().port(),
            ep.identity().id()
        );
        let block = bytes::Bytes::from(vec![0x5au8; 1 << 20]);
        while let Some(incoming) = ep.quinn().accept().await {
            let block = block.clone();
            let conn = incoming.await.unwrap();
            let (mut send, mut recv) = conn.accept_bi().await.unwrap();
            let mut size = [0u8; 8];
            recv.read_exact(&mut size).await.unwrap();
            let mut left = u64::from_be_bytes(size);
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                send.write_chunk(block.slice(..n)).await.unwrap();
                left -= n as u64;
            }
            send.finish().unwrap();
            let _ = send.stopped().await;
            let p = conn.stats().path;
            eprintln!(
                "  (bare sender: {} packets sent, {} lost, {} congestion events, cwnd {} B, rtt {:?}, mtu {})",
                p.sent_packets, p.lost_packets, p.congestion_events, p.cwnd, p.rtt, p.current_mtu
            );
            let _ = conn.closed().await;
        }
    });
}

fn peer_server(file: &Path, cipher: Option<Cipher>) {
    run(|spawner| async move {
        let store = Arc::new(FolderStore::default());
        store.add_file(file).unwrap();
        let ep = endpoint_with(spawner, cipher);
        let _server = Server::spawn(ep.clone(), store, ServeConfig::default(), None);
        println!(
            "READY {} {}",
            ep.local_addr().unwrap().port(),
            ep.identity().id()
        );
        smol::future::pending::<()>().await;
    });
}

/// Bytes the bare+sha1+write receiver gathers per write (the peer protocol's chunk size).
const WRITE_SIZE: usize = 1 << 20;
/// The serving side's CPU: 1 (the script pins this process to 0), or none with
/// `PEER_BENCH_UNPINNED=1` (run the example without taskset too: both sides then share both
/// cores, and `PEER_BENCH_VERIFY=inline|thread` shows what verifying on another thread buys).
fn server_cpu() -> Option<u32> {
    (std::env::var("PEER_BENCH_UNPINNED").as_deref() != Ok("1")).then_some(1)
}

/// Returns (seconds, CPU seconds used by other processes meanwhile).
/// A bare quinn stream; with `sink`, the receiver also does what any verified download must:
/// SHA-1 over the bytes and writing them to a file.
fn bare_run(size: u64, kind: Kind, sink_path: &Path) -> (f64, f64) {
    let sink_path = (kind == Kind::Sha1Write).then(|| sink_path.to_owned());
    let sink = sink_path.as_ref().map(|p| {
        let _ = std::fs::remove_file(p);
        std::fs::File::create(p).unwrap()
    });
    let label = match kind {
        Kind::Bare => "bare",
        Kind::Sha1 => "bare+sha1",
        _ => "bare+sha1+write",
    };
    let (mut child, ready) = spawn_role(server_cpu(), &["--role", "bare-server"]);
    let port: u16 = ready[0].parse().unwrap();
    let key: PeerId = ready[1].parse().unwrap();
    let exclude = [std::process::id(), child.id()];
    let cpu0 = other_cpu_seconds(&exclude);
    let (me0, srv0) = (cpu_seconds_of(exclude[0]), cpu_seconds_of(exclude[1]));
    let secs = run(|spawner| async move {
        let ep = endpoint(spawner);
        let start = Instant::now();
        let conn = ep
            .connect(([127, 0, 0, 1], port).into(), key)
            .await
            .unwrap();
        let (mut send, mut recv) = conn.quinn().open_bi().await.unwrap();
        send.write_all(&size.to_be_bytes()).await.unwrap();
        let mut got = 0u64;
        let mut sha = sha1::Sha1::default();
        // Gathered into chunk-sized writes, as a downloader that verifies whole chunks does
        // (one pwrite per chunk; writev of the received pieces measured slower on tmpfs).
        let mut chunk_buf = Vec::with_capacity(WRITE_SIZE);
        let mut written = 0u64;
        while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.unwrap() {
            if kind != Kind::Bare {
                use sha1::Digest as _;
                sha.update(&chunk.bytes);
            }
            got += chunk.bytes.len() as u64;
            if let Some(f) = &sink {
                use std::os::unix::fs::FileExt as _;
                let mut rest = &chunk.bytes[..];
                while !rest.is_empty() {
                    let n = rest.len().min(WRITE_SIZE - chunk_buf.len());
                    chunk_buf.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    if chunk_buf.len() == WRITE_SIZE || got == size {
                        f.write_all_at(&chunk_buf, written).unwrap();
                        written += chunk_buf.len() as u64;
                        chunk_buf.clear();
                    }
                }
            }
        }
        std::hint::black_box(sha);
        assert_eq!(got, size);
        let secs = start.elapsed().as_secs_f64();
        let st = conn.quinn().stats();
        println!(
            "  ({label}: received {} datagrams in {} reads ({} B each on average), sent {} datagrams)",
            st.udp_rx.datagrams,
            st.udp_rx.ios,
            st.udp_rx.bytes / st.udp_rx.datagrams.max(1),
            st.udp_tx.datagrams
        );
        conn.close(0, b"done");
        secs
    });
    let other = other_cpu_seconds(&exclude) - cpu0;
    let (me1, srv1) = (cpu_seconds_of(exclude[0]), cpu_seconds_of(exclude[1]));
    println!(
        "  ({label}: receiver CPU {:.0}%, sender CPU {:.0}% of the wall time)",
        100.0 * (me1 - me0) / secs,
        100.0 * (srv1 - srv0) / secs
    );
    let _ = child.kill();
    let _ = child.wait();
    if let Some(p) = sink_path {
        let _ = std::fs::remove_file(p);
    }
    (secs, other)
}

fn peer_run(src: &Path, dir: &Path, size: u64, cipher: Option<Cipher>) -> (f64, f64) {
    let aes = cipher == Some(Cipher::Aes256Gcm);
    let (mut child, ready) = spawn_role(
        server_cpu(),
        &[
            "--role",
            "peer-server",
            "--file",
            src.to_str().unwrap(),
            "--cipher",
            if aes { "aes" } else { "default" },
        ],
    );
    let port: u16 = ready[0].parse().unwrap();
    let key: PeerId = ready[1].parse().unwrap();
    let hash = FileHash::Sha1(sha1_of(src));
    let exclude = [std::process::id(), child.id()];
    let cpu0 = other_cpu_seconds(&exclude);
    let (me0, srv0) = (cpu_seconds_of(exclude[0]), cpu_seconds_of(exclude[1]));
    let dest = dir.join("peer-bench-out.bin");
    let _ = std::fs::remove_file(&dest);
    let source = Source {
        name: None,
        addr: ([127, 0, 0, 1], port).into(),
        key,
        candidates: vec![],
    };
    let verify_on = match std::env::var("PEER_BENCH_VERIFY").as_deref() {
        Ok("inline") => VerifyOn::Inline,
        Ok("thread") => VerifyOn::BlockingThread,
        _ => VerifyOn::Auto,
    };
    let report = run(|spawner| {
        let dest = dest.clone();
        let pool = Arc::new(Pool::new(
            endpoint_with(spawner, cipher),
            PinStore::in_memory(),
            PoolConfig::default(),
        ));
        async move {
            download(
                &pool,
                hash,
                &[source],
                &dest,
                DownloadConfig {
                    verify_on,
                    ..Default::default()
                },
                None,
            )
            .await
        }
    })
    .unwrap();
    let other = other_cpu_seconds(&exclude) - cpu0;
    let (me1, srv1) = (cpu_seconds_of(exclude[0]), cpu_seconds_of(exclude[1]));
    let secs = report.elapsed.as_secs_f64();
    println!(
        "  (peer: receiver CPU {:.0}%, sender CPU {:.0}% of the wall time)",
        100.0 * (me1 - me0) / secs,
        100.0 * (srv1 - srv0) / secs
    );
    assert_eq!(report.bytes, size);
    let _ = std::fs::remove_file(&dest);
    let _ = child.kill();
    let _ = child.wait();
    (
        report
            .elapsed
            .as_secs_f64()
            .max(Duration::from_micros(1).as_secs_f64()),
        other,
    )
}

fn sha1_of(path: &Path) -> [u8; 20] {
    let m = peer::Manifest::build(
        std::io::BufReader::new(std::fs::File::open(path).unwrap()),
        peer::transfer::manifest::DEFAULT_CHUNK_SIZE,
    )
    .unwrap();
    let FileHash::Sha1(h) = m.hash() else {
        unreachable!()
    };
    h
}

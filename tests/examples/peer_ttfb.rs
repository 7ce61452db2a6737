//! Time to first byte of the peer library in round trips: a pi-server phone book and a seeder,
//! each behind a proxy on loopback that delays every packet by 20 ms each way (RTT 40 ms), so
//! that round trips dominate the timings. Cold: lookup, QUIC handshake, manifest exchange (which
//! carries the file's last chunk). Pooled: the manifest exchange on the kept connection.
//!
//! Run with: `cargo run --profile bench-fast -p pb-tests --example peer_ttfb`

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peer::phonebook::PhoneBookConfig;
use peer::transfer::download::DownloadConfig;
use peer::{
    Endpoint, EndpointConfig, FileHash, Identity, MemoryStore, PhoneBook, PinStore, PlayerName,
    Pool, PoolConfig, ServeConfig, Server, Source, Visibility, download,
};
use pi_server::config::Config;
use pi_server::server::TestServer;

const DELAY: Duration = Duration::from_millis(20);

/// A datagram waiting in the proxy: when it is due, a tie-breaking sequence number, where it
/// goes and its bytes.
type Delayed = (Instant, u64, SocketAddr, Vec<u8>);

/// Forwards UDP between one client and `target`, delaying each datagram by DELAY.
fn udp_delay_proxy(target: SocketAddr) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut client: Option<SocketAddr> = None;
        let mut queue: BinaryHeap<Reverse<Delayed>> = BinaryHeap::new();
        let mut seq = 0u64;
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            while queue.peek().is_some_and(|Reverse((t, ..))| *t <= now) {
                let Reverse((_, _, to, data)) = queue.pop().unwrap();
                let _ = sock.send_to(&data, to);
            }
            let wait = queue
                .peek()
                .map_or(Duration::from_millis(100), |Reverse((t, ..))| {
                    t.saturating_duration_since(now)
                });
            sock.set_read_timeout(Some(wait.max(Duration::from_micros(100))))
                .unwrap();
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let to = if from == target {
                    match client {
                        Some(c) => c,
                        None => continue,
                    }
                } else {
                    client = Some(from);
                    target
                };
                seq += 1;
                queue.push(Reverse((
                    Instant::now() + DELAY,
                    seq,
                    to,
                    buf[..n].to_vec(),
                )));
            }
        }
    });
    addr
}

/// Forwards TCP connections to `target`, delaying every byte by DELAY in each direction.
fn tcp_delay_proxy(target: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for inbound in listener.incoming().flatten() {
            let outbound = TcpStream::connect(target).unwrap();
            for (mut from, mut to) in [
                (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                (outbound, inbound),
            ] {
                let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0
                            || tx
                                .send((Instant::now() + DELAY, buf[..n].to_vec()))
                                .is_err()
                        {
                            break;
                        }
                    }
                });
                std::thread::spawn(move || {
                    while let Ok((due, data)) = rx.recv() {
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                        if to.write_all(&data).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    addr
}

/// Time from the call to the first verified chunk on disk (its progress event), before the
/// final fsync and rename.
async fn first_byte(
    pool: Arc<Pool>,
    hash: FileHash,
    source: Source,
    dest: std::path::PathBuf,
) -> Duration {
    let start = Instant::now();
    let (tx, rx) = smol::channel::unbounded();
    let dl = smol::spawn(async move {
        download(
            &pool,
            hash,
            &[source],
            &dest,
            DownloadConfig::default(),
            Some(tx),
        )
        .await
    });
    let mut at = None;
    while let Ok(p) = rx.recv().await {
        if p.bytes_done > 0 && at.is_none() {
            at = Some(start.elapsed());
        }
    }
    dl.await.unwrap();
    at.expect("a progress event with data")
}

fn main() {
    let pb = TestServer::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    })
    .unwrap();
    let pb_url = format!("http://{}", tcp_delay_proxy(pb.addr()));
    let rtt_ms = 2.0 * DELAY.as_secs_f64() * 1000.0;
    smol::block_on(smol::spawn(async move {
        let local = EndpointConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        // The seeder, reachable only through the delaying proxy, registers the proxy's port.
        let seed_id = Arc::new(Identity::generate());
        let seed_ep = Arc::new(Endpoint::bind(seed_id.clone(), &local).unwrap());
        let store = Arc::new(MemoryStore::default());
        let hash: FileHash = store.add(
            vec![42u8; 1000],
            peer::transfer::manifest::DEFAULT_CHUNK_SIZE,
        );
        let _server = Server::spawn(seed_ep.clone(), store, ServeConfig::default(), None);
        let proxy = udp_delay_proxy(seed_ep.local_addr().unwrap());
        let seed_name = PlayerName::parse("Seed One@Gilgamesh").unwrap();
        let config = PhoneBookConfig {
            urls: vec![pb_url.clone()],
            ..Default::default()
        };
        let seed_book = PhoneBook::new(&seed_id, seed_name.clone(), config.clone()).unwrap();
        seed_book
            .register(proxy.port(), Visibility::Public, &[])
            .await
            .unwrap();

        let me = Arc::new(Identity::generate());
        let endpoint = Arc::new(Endpoint::bind(me.clone(), &local).unwrap());
        let book = PhoneBook::new(
            &me,
            PlayerName::parse("Down Loader@Gilgamesh").unwrap(),
            config,
        )
        .unwrap();
        book.register(
            endpoint.local_addr().unwrap().port(),
            Visibility::Public,
            &[],
        )
        .await
        .unwrap();
        let pool = Arc::new(Pool::new(
            endpoint,
            PinStore::in_memory(),
            PoolConfig::default(),
        ));
        let dir = std::env::temp_dir();
        let rt = |t: Instant| t.elapsed().as_secs_f64() * 1000.0 / rtt_ms;

        let t0 = Instant::now();
        let found = book.lookup(&seed_name).await.unwrap();
        let lookup = rt(t0);
        let source = Source {
            name: Some(seed_name.as_str().to_owned()),
            addr: found.addr,
            key: found.key,
            candidates: vec![],
        };
        let dest = dir.join(format!("peer-ttfb-{}", std::process::id()));
        let _ = std::fs::remove_file(&dest);
        let first = first_byte(pool.clone(), hash, source.clone(), dest.clone()).await;
        let fetch = first.as_secs_f64() * 1000.0 / rtt_ms;
        let cold = lookup + fetch;
        let _ = std::fs::remove_file(&dest);
        let pooled = first_byte(pool.clone(), hash, source, dest.clone())
            .await
            .as_secs_f64()
            * 1000.0
            / rtt_ms;
        let _ = std::fs::remove_file(&dest);
        // The two exchanges alone, on the pooled connection.
        let conn = pool
            .connect(Some(seed_name.as_str()), found.addr, found.key)
            .await
            .unwrap();
        let t3 = Instant::now();
        let m = conn.fetch_manifest(hash).await.unwrap();
        let manifest_rt = rt(t3);
        let t4 = Instant::now();
        let mut buf = Vec::new();
        conn.fetch_chunk(&m, 0, true, &mut buf).await.unwrap();
        let chunk_rt = rt(t4);
        println!(
            "time to first byte, in round trips of a {rtt_ms} ms path (1000-byte file, one chunk):"
        );
        println!(
            "  cold:   {cold:.2} RTT = phone-book lookup {lookup:.2} (kept-alive HTTP connection) + QUIC handshake and the manifest exchange carrying the chunk {fetch:.2}"
        );
        println!(
            "  pooled: {pooled:.2} RTT (the manifest exchange carrying the chunk, on the kept connection)"
        );
        println!(
            "  the two exchanges alone on the pooled connection: manifest {manifest_rt:.2} RTT, chunk {chunk_rt:.2} RTT"
        );
        println!(
            "  (QUIC's own smoothed RTT on this path: {:.1} ms, i.e. {:.2} nominal RTT)",
            conn.quinn().rtt().as_secs_f64() * 1000.0,
            conn.quinn().rtt().as_secs_f64() * 1000.0 / rtt_ms
        );
    }));
    pb.stop().unwrap();
}

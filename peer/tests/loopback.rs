//! Transfers between peers on loopback.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use peer::net::endpoint::{CLOSE_REFUSED, ConnectError};
use peer::transfer::download::{DownloadConfig, DownloadError, VerifyOn};
use peer::transfer::manifest::DEFAULT_CHUNK_SIZE;
use peer::transfer::plan::Dropped;
use peer::{
    FileHash, Identity, Manifest, MemoryStore, PinStore, Pool, PoolConfig, ServeConfig, Server,
    Store, download,
};

use crate::common::*;

fn sha1(data: &[u8]) -> FileHash {
    FileHash::Sha1(peer::transfer::sha1_chain::sha1(data))
}

#[test]
fn boundary_sizes_arrive_intact_from_two_seeders() {
    smol::block_on(async {
        let cs = DEFAULT_CHUNK_SIZE as usize;
        let files: Vec<Vec<u8>> = [0, 1, cs - 1, cs + 1, 3 * cs + 17]
            .iter()
            .map(|&n| content(n, n as u64))
            .collect();
        let seeders = [
            memory_seeder(&files, DEFAULT_CHUNK_SIZE),
            memory_seeder(&files, DEFAULT_CHUNK_SIZE),
        ];
        let pool = downloader();
        let dir = temp_dir("sizes");
        let sources: Vec<_> = seeders.iter().map(Seeder::source).collect();
        for verify_on in [VerifyOn::Inline, VerifyOn::BlockingThread] {
            for f in &files {
                let dest = dir.join(format!("{}-{verify_on:?}.bin", f.len()));
                let config = DownloadConfig {
                    verify_on,
                    ..Default::default()
                };
                let report = download(&pool, sha1(f), &sources, &dest, config, None)
                    .await
                    .unwrap();
                assert_eq!(report.bytes, f.len() as u64);
                assert_eq!(&std::fs::read(&dest).unwrap(), f, "size {}", f.len());
                assert!(!dest.with_extension("bin.part").exists());
            }
        }
        assert_eq!(
            pool.len(),
            2,
            "one pooled connection per seeder, reused for every file"
        );
        assert_eq!(
            seeders[0]
                .server
                .stats()
                .connections
                .load(Ordering::Relaxed),
            1
        );
    });
}

#[test]
fn large_file_256_mib() {
    if std::env::var("PB_SLOW_TESTS").as_deref() == Ok("0") {
        println!(
            "skipped: PB_SLOW_TESTS=0 (the 256 MiB transfer takes tens of seconds in a debug build)"
        );
        return;
    }
    smol::block_on(async {
        let data = content(256 << 20, 256);
        let hash = sha1(&data);
        let dir = temp_dir("large");
        let src = dir.join("src.bin");
        std::fs::write(&src, &data).unwrap();
        drop(data);
        let store = Arc::new(peer::FolderStore::index(&dir).unwrap());
        let seeder = seeder(store, ServeConfig::default());
        let pool = downloader();
        let dest = dir.join("out.bin");
        let report = fetch(&pool, hash, &[seeder.source()], &dest).await.unwrap();
        assert_eq!(report.bytes, 256 << 20);
        let got = std::fs::read(&dest).unwrap();
        assert_eq!(sha1(&got), hash);
    });
}

/// Serves the right manifest but flips a byte in every chunk it sends.
struct CorruptStore(MemoryStore);

impl Store for CorruptStore {
    fn manifest(&self, hash: &FileHash) -> Option<Arc<Manifest>> {
        self.0.manifest(hash)
    }
    fn read_at(&self, hash: &FileHash, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_at(hash, offset, buf)?;
        buf[0] ^= 0xff;
        Ok(())
    }
}

#[test]
fn corrupt_peer_is_caught_penalized_and_the_file_completes_from_the_others() {
    smol::block_on(async {
        let data = content(20 * DEFAULT_CHUNK_SIZE as usize + 5, 7);
        let bad_store = MemoryStore::default();
        let hash = bad_store.add(data.clone(), DEFAULT_CHUNK_SIZE);
        let bad = seeder(Arc::new(CorruptStore(bad_store)), ServeConfig::default());
        let good = [
            memory_seeder(std::slice::from_ref(&data), DEFAULT_CHUNK_SIZE),
            memory_seeder(std::slice::from_ref(&data), DEFAULT_CHUNK_SIZE),
        ];
        let pool = downloader();
        let dest = temp_dir("corrupt").join("f");
        let sources = [bad.source(), good[0].source(), good[1].source()];
        let report = fetch(&pool, hash, &sources, &dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        let bad_outcome = report
            .sources
            .iter()
            .find(|s| s.peer == bad.source().key)
            .unwrap();
        assert_eq!(bad_outcome.tally.dropped, Some(Dropped::Corrupt));
        assert_eq!(bad_outcome.tally.chunks_ok, 0);
        assert!(pool.peer_record(&bad.source().key).corrupt_chunks >= 1);
        // Penalized: the next download does not use it at all.
        let dest2 = temp_dir("corrupt2").join("f");
        let report = fetch(&pool, hash, &sources, &dest2).await.unwrap();
        assert!(report.sources.iter().all(|s| s.peer != bad.source().key));
    });
}

/// Lies about a file: for `real` it serves the manifest of other bytes under `real`'s hash,
/// and those bytes. Every chunk but the last verifies against that manifest; the last cannot.
struct LyingStore {
    real: FileHash,
    manifest: Arc<Manifest>,
    fake_hash: FileHash,
    fake: MemoryStore,
}

impl LyingStore {
    fn new(real: FileHash, fake_data: Vec<u8>) -> Self {
        let fake = MemoryStore::default();
        let fake_hash = fake.add(fake_data, DEFAULT_CHUNK_SIZE);
        let mut encoded = fake.manifest(&fake_hash).unwrap().encode();
        encoded[2..22].copy_from_slice(real.as_bytes());
        let manifest = Arc::new(Manifest::decode(&encoded).unwrap());
        Self {
            real,
            manifest,
            fake_hash,
            fake,
        }
    }
}

impl Store for LyingStore {
    fn manifest(&self, hash: &FileHash) -> Option<Arc<Manifest>> {
        (*hash == self.real).then(|| self.manifest.clone())
    }
    fn read_at(&self, _hash: &FileHash, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.fake.read_at(&self.fake_hash, offset, buf)
    }
}

#[test]
fn a_false_manifest_sent_by_most_sources_gives_way_to_the_next_one() {
    smol::block_on(async {
        let data = content(5 * DEFAULT_CHUNK_SIZE as usize + 9, 11);
        let hash = sha1(&data);
        let fake = content(data.len(), 12);
        let liars = [
            seeder(
                Arc::new(LyingStore::new(hash, fake.clone())),
                ServeConfig::default(),
            ),
            seeder(
                Arc::new(LyingStore::new(hash, fake)),
                ServeConfig::default(),
            ),
        ];
        let honest = memory_seeder(std::slice::from_ref(&data), DEFAULT_CHUNK_SIZE);
        let pool = downloader();
        let dest = temp_dir("lying-majority").join("f");
        let sources = [liars[0].source(), honest.source(), liars[1].source()];
        let report = fetch(&pool, hash, &sources, &dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert!(!dest.with_file_name("f.manifest").exists());
        let honest_outcome = report
            .sources
            .iter()
            .find(|s| s.peer == honest.source().key)
            .unwrap();
        assert_eq!(
            honest_outcome.tally.chunks_ok, 6,
            "every chunk from the honest source"
        );
        for liar in &liars {
            assert!(pool.peer_record(&liar.source().key).corrupt_chunks >= 1);
        }
    });
}

#[test]
fn interrupted_transfer_resumes_without_fetching_verified_chunks_again() {
    smol::block_on(async {
        let data = content(16 * DEFAULT_CHUNK_SIZE as usize, 9);
        let slow_store = MemoryStore::default();
        let hash = slow_store.add(data.clone(), DEFAULT_CHUNK_SIZE);
        // 4 MiB/s: slow enough to interrupt half way, driven by progress events (no sleeping).
        let slow = seeder(
            Arc::new(slow_store),
            ServeConfig {
                upload_rate: Some(4 << 20),
                ..Default::default()
            },
        );
        let pool = downloader();
        let dest = temp_dir("resume").join("f");
        let (tx, rx) = smol::channel::bounded(1024);
        let task = smol::spawn({
            let (pool, dest, source) = (pool.clone(), dest.clone(), slow.source());
            async move {
                download(
                    &pool,
                    hash,
                    &[source],
                    &dest,
                    DownloadConfig::default(),
                    Some(tx),
                )
                .await
            }
        });
        while let Ok(p) = rx.recv().await {
            if p.bytes_done >= 4 * u64::from(DEFAULT_CHUNK_SIZE) {
                break;
            }
        }
        drop(task); // interrupted
        assert!(!dest.exists());
        let fast = memory_seeder(std::slice::from_ref(&data), DEFAULT_CHUNK_SIZE);
        let report = fetch(&pool, hash, &[fast.source()], &dest).await.unwrap();
        assert!(
            report.resumed_bytes >= 4 * u64::from(DEFAULT_CHUNK_SIZE),
            "resumed {}",
            report.resumed_bytes
        );
        let fetched: u64 = report.sources.iter().map(|s| s.tally.bytes_ok).sum();
        assert_eq!(
            fetched + report.resumed_bytes,
            data.len() as u64,
            "no verified chunk fetched twice"
        );
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    });
}

#[test]
fn wrong_key_is_refused_with_the_key_that_answered() {
    smol::block_on(async {
        let s = memory_seeder(&[], DEFAULT_CHUNK_SIZE);
        let pool = downloader();
        let impostor_expected = Identity::generate().id();
        match pool.connect(None, s.addr(), impostor_expected).await {
            Err(ConnectError::WrongKey { expected, found }) => {
                assert_eq!(expected, impostor_expected);
                assert_eq!(found, Some(s.source().key));
            }
            other => panic!("expected WrongKey, got {other:?}"),
        }
        assert!(pool.is_empty());
    });
}

#[test]
fn changed_key_of_a_known_player_is_refused_by_the_pin_store() {
    smol::block_on(async {
        let (a, b) = (
            memory_seeder(&[], DEFAULT_CHUNK_SIZE),
            memory_seeder(&[], DEFAULT_CHUNK_SIZE),
        );
        let pool = downloader();
        pool.connect(Some("Cid Garlond@Balmung"), a.addr(), a.source().key)
            .await
            .unwrap();
        let err = pool
            .connect(Some("cid garlond@balmung"), b.addr(), b.source().key)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ConnectError::Pin(peer::storage::pins::PinError::KeyChanged { .. })
            ),
            "{err}"
        );
    });
}

#[test]
fn refused_requester_gets_a_clear_close_code() {
    smol::block_on(async {
        let endpoint =
            Arc::new(peer::Endpoint::bind(Arc::new(Identity::generate()), &loopback()).unwrap());
        let _server = Server::spawn(
            endpoint.clone(),
            Arc::new(MemoryStore::default()),
            ServeConfig::default(),
            Some(Arc::new(|_: &peer::PeerId| false)),
        );
        let addr =
            std::net::SocketAddr::from(([127, 0, 0, 1], endpoint.local_addr().unwrap().port()));
        let pool = Arc::new(Pool::new(
            Arc::new(peer::Endpoint::bind(Arc::new(Identity::generate()), &loopback()).unwrap()),
            PinStore::in_memory(),
            PoolConfig::default(),
        ));
        let conn = pool
            .connect(None, addr, endpoint.identity().id())
            .await
            .unwrap();
        let err = conn
            .fetch_manifest(FileHash::Sha1([0; 20]))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                peer::transfer::fetch::FetchError::Refused(CLOSE_REFUSED)
            ),
            "expected a typed refusal, got {err}"
        );
        assert!(err.to_string().contains("refused our key"), "{err}");
    });
}

#[test]
fn a_friends_only_seeder_serves_its_friends_and_refuses_others_with_a_typed_error() {
    smol::block_on(async {
        let data = content(DEFAULT_CHUNK_SIZE as usize + 3, 77);
        let store = MemoryStore::default();
        let hash = store.add(data.clone(), DEFAULT_CHUNK_SIZE);
        let owner = Arc::new(Identity::generate());
        let endpoint = Arc::new(peer::Endpoint::bind(owner.clone(), &loopback()).unwrap());
        let (friend, stranger) = (downloader(), downloader());
        let policy = peer::transfer::serve::visibility_policy(
            owner.id(),
            peer::Visibility::Friends,
            &[friend.endpoint().identity().id()],
        );
        let _server = Server::spawn(
            endpoint.clone(),
            Arc::new(store),
            ServeConfig::default(),
            policy,
        );
        let source = peer::Source {
            name: None,
            addr: std::net::SocketAddr::from((
                [127, 0, 0, 1],
                endpoint.local_addr().unwrap().port(),
            )),
            key: owner.id(),
            candidates: vec![],
        };
        let dir = temp_dir("friends-policy");
        fetch(
            &friend,
            hash,
            std::slice::from_ref(&source),
            &dir.join("friend"),
        )
        .await
        .expect("a friend is served");
        assert_eq!(std::fs::read(dir.join("friend")).unwrap(), data);
        let err = fetch(&stranger, hash, &[source], &dir.join("stranger"))
            .await
            .unwrap_err();
        match &err {
            DownloadError::Refused(r) => {
                assert_eq!(r.len(), 1);
                assert!(matches!(
                    r[0].1,
                    peer::transfer::fetch::FetchError::Refused(CLOSE_REFUSED)
                ));
            }
            other => panic!("expected a refusal, got {other}"),
        }
        assert!(
            peer::transfer::serve::visibility_policy(owner.id(), peer::Visibility::Public, &[])
                .is_none(),
            "public serves everyone"
        );
    });
}

#[test]
fn unknown_file_and_unreachable_sources_are_reported() {
    smol::block_on(async {
        let s = memory_seeder(&[], DEFAULT_CHUNK_SIZE);
        let pool = downloader();
        let dest = temp_dir("missing").join("f");
        let err = fetch(&pool, FileHash::Sha1([1; 20]), &[s.source()], &dest)
            .await
            .unwrap_err();
        assert!(matches!(err, DownloadError::NoManifest), "{err}");
    });
}

#[test]
fn one_upload_slot_still_serves_a_pipelined_download() {
    smol::block_on(async {
        let data = content(8 * DEFAULT_CHUNK_SIZE as usize, 11);
        let store = MemoryStore::default();
        let hash = store.add(data.clone(), DEFAULT_CHUNK_SIZE);
        let s = seeder(
            Arc::new(store),
            ServeConfig {
                max_concurrent_uploads: 1,
                ..Default::default()
            },
        );
        let pool = downloader();
        let dest = temp_dir("slots").join("f");
        fetch(&pool, hash, &[s.source()], &dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    });
}

#[test]
fn compressible_data_is_sent_compressed_and_arrives_intact() {
    smol::block_on(async {
        let data: Vec<u8> = (0..4 * DEFAULT_CHUNK_SIZE as usize)
            .map(|i| (i / 1024) as u8)
            .collect();
        let store = MemoryStore::default();
        let hash = store.add(data.clone(), DEFAULT_CHUNK_SIZE);
        let s = seeder(
            Arc::new(store),
            ServeConfig {
                compress: peer::transfer::serve::Compression::Always,
                ..Default::default()
            },
        );
        let pool = downloader();
        let dest = temp_dir("lz4").join("f");
        fetch(&pool, hash, &[s.source()], &dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert!(s.server.stats().bytes_sent.load(Ordering::Relaxed) < data.len() as u64 / 4);
    });
}

#[test]
fn pool_holds_at_most_its_cap_and_closes_the_least_recently_used() {
    smol::block_on(async {
        let seeders: Vec<Seeder> = (0..3)
            .map(|_| memory_seeder(&[], DEFAULT_CHUNK_SIZE))
            .collect();
        let endpoint =
            Arc::new(peer::Endpoint::bind(Arc::new(Identity::generate()), &loopback()).unwrap());
        let pool = Pool::new(
            endpoint,
            PinStore::in_memory(),
            PoolConfig {
                max_connections: 2,
                ..Default::default()
            },
        );
        let first = pool
            .connect(None, seeders[0].addr(), seeders[0].source().key)
            .await
            .unwrap();
        pool.connect(None, seeders[1].addr(), seeders[1].source().key)
            .await
            .unwrap();
        pool.connect(None, seeders[2].addr(), seeders[2].source().key)
            .await
            .unwrap();
        assert_eq!(pool.len(), 2);
        assert!(
            first.is_closed(),
            "the least recently used connection was closed"
        );
        assert_eq!(pool.peer_record(&seeders[2].source().key).connects, 1);
    });
}

#[test]
fn a_full_server_closes_extra_connections_with_a_clear_code() {
    smol::block_on(async {
        let s = seeder(
            Arc::new(MemoryStore::default()),
            ServeConfig {
                max_connections: 1,
                ..Default::default()
            },
        );
        let (a, b) = (downloader(), downloader());
        let ca = a.connect(None, s.addr(), s.source().key).await.unwrap();
        assert!(matches!(
            ca.fetch_manifest(FileHash::Sha1([0; 20])).await,
            Err(peer::transfer::fetch::FetchError::Status(
                peer::transfer::wire::Status::NotFound
            ))
        ));
        let cb = b.connect(None, s.addr(), s.source().key).await.unwrap();
        let err = cb
            .fetch_manifest(FileHash::Sha1([0; 20]))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                peer::transfer::fetch::FetchError::Refused(peer::net::endpoint::CLOSE_FULL)
            ),
            "expected a typed refusal for a full server, got {err}"
        );
        assert!(err.to_string().contains("maximum of peers"), "{err}");
    });
}

#[test]
fn everything_can_run_on_one_application_owned_executor() {
    let ex = Arc::new(smol::Executor::new());
    let spawner = peer::Spawner::Executor(ex.clone());
    smol::block_on(ex.run(async {
        let data = content(3 * DEFAULT_CHUNK_SIZE as usize + 1, 21);
        let store = MemoryStore::default();
        let hash = store.add(data.clone(), DEFAULT_CHUNK_SIZE);
        let seeder_ep = Arc::new(
            peer::Endpoint::bind_on(Arc::new(Identity::generate()), &loopback(), spawner.clone())
                .unwrap(),
        );
        let _server = Server::spawn(
            seeder_ep.clone(),
            Arc::new(store),
            ServeConfig::default(),
            None,
        );
        let me = Arc::new(
            peer::Endpoint::bind_on(Arc::new(Identity::generate()), &loopback(), spawner.clone())
                .unwrap(),
        );
        let pool = Arc::new(Pool::new(me, PinStore::in_memory(), PoolConfig::default()));
        let source = peer::Source {
            name: None,
            addr: ([127, 0, 0, 1], seeder_ep.local_addr().unwrap().port()).into(),
            key: seeder_ep.identity().id(),
            candidates: vec![],
        };
        let dest = temp_dir("executor").join("f");
        fetch(&pool, hash, &[source], &dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    }));
}

#[test]
fn a_peer_that_accepts_but_never_answers_does_not_stall_the_download() {
    smol::block_on(async {
        // A "peer" that completes handshakes and accepts streams but never answers.
        let silent =
            Arc::new(peer::Endpoint::bind(Arc::new(Identity::generate()), &loopback()).unwrap());
        let quiet = silent.clone();
        let _hold = smol::spawn(async move {
            let mut held = Vec::new();
            while let Some(incoming) = quiet.quinn().accept().await {
                let Ok(conn) = incoming.await else { continue };
                while let Ok(streams) = conn.accept_bi().await {
                    held.push(streams);
                }
            }
        });
        let data = content(2 * DEFAULT_CHUNK_SIZE as usize + 3, 33);
        let good = memory_seeder(std::slice::from_ref(&data), DEFAULT_CHUNK_SIZE);
        let silent_source = peer::Source {
            name: None,
            addr: ([127, 0, 0, 1], silent.local_addr().unwrap().port()).into(),
            key: silent.identity().id(),
            candidates: vec![],
        };
        let pool = downloader();
        let dest = temp_dir("silent").join("f");
        let mut config = DownloadConfig::default();
        // Short enough to keep the test quick, long enough for a loaded debug build;
        // PB_TIMEOUT_SCALE stretches it under emulation (qemu-user runs it 10x slower).
        let scale: u64 = std::env::var("PB_TIMEOUT_SCALE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        config.transfer.request_timeout = std::time::Duration::from_secs(3 * scale.max(1));
        let hash = sha1(&data);
        let report = download(
            &pool,
            hash,
            &[silent_source, good.source()],
            &dest,
            config,
            None,
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        let silent_outcome = report
            .sources
            .iter()
            .find(|s| s.peer == silent.identity().id())
            .unwrap();
        assert!(
            !silent_outcome.used,
            "no manifest from it, so it is left out"
        );
    });
}

#[test]
fn the_manifest_exchange_can_carry_the_last_chunk() {
    smol::block_on(async {
        let data = content(2 * DEFAULT_CHUNK_SIZE as usize + 99, 44);
        let s = memory_seeder(std::slice::from_ref(&data), DEFAULT_CHUNK_SIZE);
        let pool = downloader();
        let conn = pool.connect(None, s.addr(), s.source().key).await.unwrap();
        let mut last = Vec::new();
        let (m, got) = conn
            .fetch_manifest_and_last_chunk(sha1(&data), true, &mut last)
            .await
            .unwrap();
        assert!(got);
        assert_eq!(&last[..], &data[2 * DEFAULT_CHUNK_SIZE as usize..]);
        assert!(m.verify_chunk(2, &last));
        let empty = memory_seeder(&[Vec::new()], DEFAULT_CHUNK_SIZE);
        let conn = pool
            .connect(None, empty.addr(), empty.source().key)
            .await
            .unwrap();
        let (m, got) = conn
            .fetch_manifest_and_last_chunk(sha1(b""), true, &mut last)
            .await
            .unwrap();
        assert!(!got && m.file_size() == 0);
    });
}

#[test]
fn packets_sent_from_the_endpoint_socket_leave_from_the_quic_port() {
    // What NAT traversal needs: its packets must come from the port peers know.
    let ep = peer::Endpoint::bind(Arc::new(Identity::generate()), &loopback()).unwrap();
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    ep.udp_socket()
        .send_to(b"punch", probe.local_addr().unwrap())
        .unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = probe.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"punch");
    assert_eq!(from.port(), ep.local_addr().unwrap().port());
}

/// The plain UDP path (chosen by itself where quinn-udp's socket options are refused, as under
/// Wine): a seeder and a downloader that both use it move a multi-chunk file intact.
#[test]
fn plain_udp_sockets_carry_a_transfer_intact() {
    smol::block_on(async {
        let plain = peer::EndpointConfig {
            plain_udp: true,
            ..loopback()
        };
        let data = content(5 * DEFAULT_CHUNK_SIZE as usize + 3, 77);
        let store = MemoryStore::default();
        store.add(data.clone(), DEFAULT_CHUNK_SIZE);
        let endpoint =
            Arc::new(peer::Endpoint::bind(Arc::new(Identity::generate()), &plain).unwrap());
        let server = Server::spawn(
            endpoint.clone(),
            Arc::new(store),
            ServeConfig::default(),
            None,
        );
        let seeder = Seeder { endpoint, server };
        let pool = Arc::new(Pool::new(
            Arc::new(peer::Endpoint::bind(Arc::new(Identity::generate()), &plain).unwrap()),
            PinStore::in_memory(),
            PoolConfig::default(),
        ));
        let dest = temp_dir("plain-udp").join("plain.bin");
        let report = fetch(&pool, sha1(&data), &[seeder.source()], &dest)
            .await
            .unwrap();
        assert_eq!(report.bytes, data.len() as u64);
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    });
}

//! Several phone books: two players registered with the same two phone books keep reaching each
//! other through the relay of either when the other one is down, also when the dead one's
//! relay port still accepts TCP and then stays silent (a host that vanished behind a port
//! forward), which would otherwise hold the attempt until its connect timeout.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use peer::net::traversal::PathKind;
use peer::phonebook::PhoneBookConfig;
use peer::transfer::manifest::DEFAULT_CHUNK_SIZE;
use peer::{
    DownloadConfig, Identity, PhoneBook, PinStore, PlayerName, Pool, PoolConfig, Source, Visibility,
};
use pi_server::server::TestServer;

mod common;

use common::player::Player;

fn phone_book() -> TestServer {
    common::relay_phone_book(|_| {})
}

#[test]
fn the_second_phone_books_relay_serves_when_the_first_is_down_and_silent() {
    let _ = env_logger::builder().is_test(true).try_init();
    let (pb1, pb2) = (phone_book(), phone_book());
    let urls = vec![
        format!("http://{}", pb1.addr()),
        format!("http://{}", pb2.addr()),
    ];
    let dir = std::env::temp_dir().join(format!("pb-books-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    smol::block_on(async {
        // A server without UDP: it waits at both relays.
        let target = Player::registered("Twice Listed@World", &urls).await;
        assert_eq!(target.traversal.listen_on_relays().await, 2);
        let data: Vec<u8> = (0..2 * DEFAULT_CHUNK_SIZE as usize + 5)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        let hash = target.store.add(data.clone(), DEFAULT_CHUNK_SIZE);
        let fetcher = Player::registered("Fetch Twice@World", &urls).await;
        assert_eq!(fetcher.book.relay_books().len(), 2);

        // The first phone book goes down; its relay port then accepts TCP and never answers.
        let first_relay = fetcher
            .traversal
            .relay_books()
            .into_iter()
            .find(|b| b.index == 0)
            .expect("the first phone book's relay")
            .addr;
        pb1.stop().expect("the first phone book stops");
        let _black_hole = TcpListener::bind(first_relay).expect("the dead relay port");

        let quiet = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let nowhere: SocketAddr = quiet.local_addr().unwrap();
        let pool = Arc::new(Pool::new(
            fetcher.endpoint.clone(),
            PinStore::in_memory(),
            PoolConfig::default(),
        ));
        pool.set_traversal(fetcher.traversal.clone());
        let source = Source {
            name: Some("Twice Listed@World".into()),
            addr: nowhere,
            key: target.endpoint.identity().id(),
            candidates: Vec::new(),
        };
        let dest = dir.join("twice.bin");
        peer::download(
            &pool,
            hash,
            &[source],
            &dest,
            DownloadConfig::default(),
            None,
        )
        .await
        .expect("downloaded through the second phone book's relay within the connect timeout");
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        let path = pool
            .path(&target.endpoint.identity().id())
            .expect("path recorded");
        assert_eq!(path.kind, PathKind::Relayed);
        drop(pb2);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Fails the test if `work` has not finished within `secs` (a hang detector, far above the
/// few seconds the work takes: a phone book that never answers costs each request its
/// timeout and retries, 10 s x 4 by default).
async fn within<T>(secs: u64, what: &str, work: impl std::future::Future<Output = T>) -> T {
    smol::future::or(work, async {
        smol::Timer::after(Duration::from_secs(secs)).await;
        panic!("{what} was held up by the silent phone book");
    })
    .await
}

#[test]
fn a_silent_first_phone_book_holds_up_neither_registration_nor_lookups_nor_unregistration() {
    let pb = phone_book();
    // The first phone book accepts TCP connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let urls = vec![
        format!("http://{}", silent.local_addr().unwrap()),
        format!("http://{}", pb.addr()),
    ];
    smol::block_on(async {
        let make = |name: &str| {
            let identity = Arc::new(Identity::generate());
            let book = PhoneBook::new(
                &identity,
                PlayerName::parse(name).unwrap(),
                PhoneBookConfig {
                    urls: urls.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
            (identity, Arc::new(book))
        };
        let (target_id, target) = make("Still Listed@World");
        let (_, asker) = make("Ask Er@World");
        let answer = within(
            30,
            "registration",
            target.register(7000, Visibility::Public, &[]),
        )
        .await
        .expect("registered with the phone book that answers");
        assert!(answer.reregister_in > 0);
        within(
            30,
            "registration",
            asker.register(7001, Visibility::Public, &[]),
        )
        .await
        .unwrap();
        let found = within(
            30,
            "the lookup",
            asker.lookup(&PlayerName::parse("Still Listed@World").unwrap()),
        )
        .await
        .expect("found through the second phone book");
        assert_eq!(found.key, target_id.id());
        within(30, "unregistration", target.unregister())
            .await
            .expect("unregistered from the phone book that answers");
        let gone = within(
            30,
            "the second lookup",
            asker.lookup(&PlayerName::parse("Still Listed@World").unwrap()),
        )
        .await;
        assert!(gone.is_err(), "unregistered: {gone:?}");
    });
}

#[test]
fn a_transfer_through_a_relay_that_dies_completes_through_the_other_one() {
    let _ = env_logger::builder().is_test(true).try_init();
    let (pb1, pb2) = (phone_book(), phone_book());
    let urls = vec![
        format!("http://{}", pb1.addr()),
        format!("http://{}", pb2.addr()),
    ];
    let dir = std::env::temp_dir().join(format!("pb-books-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    smol::block_on(async {
        let target = Player::registered("Long Haul@World", &urls).await;
        assert_eq!(target.traversal.listen_on_relays().await, 2);
        let data: Vec<u8> = (0..24 * DEFAULT_CHUNK_SIZE as usize)
            .map(|i| (i ^ (i >> 11) ^ (i >> 19)) as u8)
            .collect();
        let hash = target.store.add(data.clone(), DEFAULT_CHUNK_SIZE);
        let fetcher = Player::registered("Fetch Long@World", &urls).await;
        let pool = Arc::new(Pool::new(
            fetcher.endpoint.clone(),
            PinStore::in_memory(),
            PoolConfig::default(),
        ));
        pool.set_traversal(fetcher.traversal.clone());
        let quiet = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let source = Source {
            name: Some("Long Haul@World".into()),
            addr: quiet.local_addr().unwrap(),
            key: target.endpoint.identity().id(),
            candidates: Vec::new(),
        };
        let (tx, rx) = smol::channel::bounded(1024);
        let dest = dir.join("long.bin");
        let sources = [source];
        let work = peer::download(
            &pool,
            hash,
            &sources,
            &dest,
            DownloadConfig::default(),
            Some(tx),
        );
        // The first phone book's relay (tried first) dies once a few chunks arrived; the
        // connection through it is closed at once, the download connects again (through the
        // second relay: the target has no direct path) and resumes from what it verified.
        let killer = async {
            let total = data.len() as u64;
            while let Ok(p) = rx.recv().await {
                if p.bytes_done >= 2 * u64::from(DEFAULT_CHUNK_SIZE) && p.bytes_done < total {
                    pb1.stop().expect("the first phone book stops");
                    return true;
                }
            }
            false
        };
        let (report, killed) = within(60, "the download", smol::future::zip(work, killer)).await;
        assert!(killed, "the relay died in the middle of the transfer");
        report.expect("completed through the second relay");
        assert_eq!(std::fs::read(&dest).unwrap(), data, "complete and verified");
        let path = pool
            .path(&target.endpoint.identity().id())
            .expect("path recorded");
        assert_eq!(path.kind, PathKind::Relayed);
        assert_eq!(
            pool.peer_record(&target.endpoint.identity().id()).connects,
            2,
            "connected again after the relay died"
        );
        drop(pb2);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

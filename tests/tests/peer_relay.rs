//! The relay end to end on loopback with a real pi-server: a player no direct path reaches is
//! fetched from through the phone book's relay (on a connection it holds, or called to the
//! relay through its keep-alive mapping), a stranger learns nothing from the relay, and a
//! relayed connection moves to a direct path in the middle of a transfer without losing it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use peer::net::relay::RelayError;
use peer::net::traversal::PathKind;
use peer::transfer::manifest::DEFAULT_CHUNK_SIZE;
use peer::{DownloadConfig, Identity, PlayerName, Source, Visibility};
use phonebook_proto::relay::CloseReason;
use pi_server::server::TestServer;

mod common;

use common::player::{Player, silent};

fn phone_book() -> TestServer {
    common::relay_phone_book(|_| {})
}

fn relay_bytes_in(pb: &TestServer) -> u64 {
    common::metric(pb, "phonebook_relay_bytes_total{direction=\"in\"} ")
}

#[test]
fn a_player_without_a_direct_path_is_fetched_from_through_the_relay() {
    let pb = phone_book();
    let url = format!("http://{}", pb.addr());
    let dir = std::env::temp_dir().join(format!("pb-relay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    smol::block_on(async {
        // A server whose network lets no UDP through: it waits at the relay.
        let target = Player::new("Relay Target@World", &url, Duration::from_millis(200));
        target.register(Visibility::Public, &[]).await;
        assert_eq!(target.traversal.listen_on_relays().await, 1);
        let (hash, data) = target.share(3 * DEFAULT_CHUNK_SIZE as usize + 77, 5);

        let fetcher = Player::new("Fetch Er@World", &url, Duration::from_millis(200));
        fetcher.register(Visibility::Friends, &[]).await;
        let pool = fetcher.pool();
        let (_quiet, nowhere) = silent();
        let source = Source {
            name: Some("Relay Target@World".into()),
            addr: nowhere,
            key: target.id(),
            candidates: Vec::new(),
        };
        let before = relay_bytes_in(&pb);
        let dest = dir.join("relayed.bin");
        peer::download(
            &pool,
            hash,
            &[source],
            &dest,
            DownloadConfig::default(),
            None,
        )
        .await
        .expect("downloaded through the relay");
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        let path = pool.path(&target.id()).expect("path recorded");
        assert_eq!(path.kind, PathKind::Relayed);
        let carried = relay_bytes_in(&pb) - before;
        assert!(
            carried > data.len() as u64,
            "the relay carried the file (and the handshake): {carried} bytes"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_relay_call_through_the_keep_alive_mapping_brings_the_target_to_the_relay() {
    let pb = phone_book();
    let url = format!("http://{}", pb.addr());
    smol::block_on(async {
        let target = Player::new("Called Target@World", &url, Duration::from_secs(1));
        target.register(Visibility::Public, &[]).await;
        assert!(
            target.traversal.keep_alive_once().await.is_some(),
            "a mapping at the phone book"
        );
        let fetcher = Player::new("Call Er@World", &url, Duration::from_secs(1));
        fetcher.register(Visibility::Public, &[]).await;
        let relay = fetcher.traversal.relay_books().pop().unwrap();
        let name = PlayerName::parse("Called Target@World").unwrap();
        let vaddr = fetcher
            .traversal
            .relays()
            .open(&relay, &name)
            .await
            .expect("the target accepted after the call");
        let conn = fetcher
            .endpoint
            .connect(vaddr, target.id())
            .await
            .expect("QUIC through the relay");
        assert_eq!(conn.peer(), target.id());
        assert_eq!(
            target.traversal.stats().relay_calls.load(Ordering::Relaxed),
            1
        );
    });
}

#[test]
fn a_stranger_gets_the_answer_of_an_absent_player_from_the_relay() {
    let pb = phone_book();
    let url = format!("http://{}", pb.addr());
    smol::block_on(async {
        let friend = Identity::generate().id();
        let target = Player::new("Hidden Target@World", &url, Duration::from_secs(1));
        target.register(Visibility::Friends, &[friend]).await;
        assert_eq!(target.traversal.listen_on_relays().await, 1);
        assert!(target.traversal.keep_alive_once().await.is_some());

        let stranger = Player::new("Strange Er@World", &url, Duration::from_secs(1));
        stranger.register(Visibility::Public, &[]).await;
        let relay = stranger.traversal.relay_books().pop().unwrap();
        let relays = stranger.traversal.relays();
        let hidden = relays
            .open(&relay, &PlayerName::parse("Hidden Target@World").unwrap())
            .await
            .unwrap_err();
        let absent = relays
            .open(&relay, &PlayerName::parse("Nobody Here@World").unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(hidden, RelayError::Closed(CloseReason::Unknown)),
            "{hidden:?}"
        );
        assert!(
            matches!(absent, RelayError::Closed(CloseReason::Unknown)),
            "{absent:?}"
        );
        smol::Timer::after(Duration::from_millis(200)).await;
        assert_eq!(
            target.traversal.stats().relay_calls.load(Ordering::Relaxed),
            0
        );
        assert_eq!(
            target.endpoint.relay_paths().routes(),
            0,
            "no session reached the target"
        );
    });
}

#[test]
fn a_relayed_connection_moves_to_a_direct_path_without_losing_the_transfer() {
    let pb = phone_book();
    let url = format!("http://{}", pb.addr());
    let dir = std::env::temp_dir().join(format!("pb-relay-move-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    smol::block_on(async {
        let target = Player::new("Moving Target@World", &url, Duration::from_secs(1));
        target.register(Visibility::Public, &[]).await;
        assert_eq!(target.traversal.listen_on_relays().await, 1);
        let (hash, data) = target.share(64 * DEFAULT_CHUNK_SIZE as usize, 8);
        let fetcher = Player::new("Mov Er@World", &url, Duration::from_secs(1));
        fetcher.register(Visibility::Public, &[]).await;
        let relay = fetcher.traversal.relay_books().pop().unwrap();
        let vaddr = fetcher
            .traversal
            .relays()
            .open(&relay, &PlayerName::parse("Moving Target@World").unwrap())
            .await
            .unwrap();
        let pool = fetcher.pool();
        let source = Source {
            name: None,
            addr: vaddr,
            key: target.id(),
            candidates: Vec::new(),
        };
        let paths = fetcher.endpoint.relay_paths().clone();
        let direct = target.addr();
        // Half way (by time) through the download, the direct path takes over.
        let mover = smol::spawn(async move {
            smol::Timer::after(Duration::from_millis(30)).await;
            assert!(paths.set_direct(vaddr, direct));
        });
        let dest = dir.join("moved.bin");
        peer::download(
            &pool,
            hash,
            &[source],
            &dest,
            DownloadConfig::default(),
            None,
        )
        .await
        .expect("the transfer survives the move");
        mover.await;
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        // After the move nothing more goes through the relay.
        let after_move = relay_bytes_in(&pb);
        let (hash2, data2) = target.share(8 * DEFAULT_CHUNK_SIZE as usize, 9);
        let dest2 = dir.join("direct.bin");
        let source = Source {
            name: None,
            addr: vaddr,
            key: target.id(),
            candidates: Vec::new(),
        };
        peer::download(
            &pool,
            hash2,
            &[source],
            &dest2,
            DownloadConfig::default(),
            None,
        )
        .await
        .expect("second file over the moved connection");
        assert_eq!(std::fs::read(&dest2).unwrap(), data2);
        let grew = relay_bytes_in(&pb) - after_move;
        assert!(
            grew < data2.len() as u64 / 4,
            "the relay carried {grew} bytes after the move"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_relay_that_dies_after_the_move_to_a_direct_path_loses_nothing() {
    let pb = phone_book();
    let url = format!("http://{}", pb.addr());
    let dir = std::env::temp_dir().join(format!("pb-relay-dies-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    smol::block_on(async {
        let target = Player::new("Sturdy Target@World", &url, Duration::from_secs(1));
        target.register(Visibility::Public, &[]).await;
        assert_eq!(target.traversal.listen_on_relays().await, 1);
        let (hash, data) = target.share(24 * DEFAULT_CHUNK_SIZE as usize, 10);
        let fetcher = Player::new("Sturdy Er@World", &url, Duration::from_secs(1));
        fetcher.register(Visibility::Public, &[]).await;
        let relay = fetcher.traversal.relay_books().pop().unwrap();
        let vaddr = fetcher
            .traversal
            .relays()
            .open(&relay, &PlayerName::parse("Sturdy Target@World").unwrap())
            .await
            .unwrap();
        // Punching found the direct path: the connection moves there.
        assert!(
            fetcher
                .endpoint
                .relay_paths()
                .set_direct(vaddr, target.addr())
        );
        let pool = fetcher.pool();
        let source = Source {
            name: None,
            addr: vaddr,
            key: target.id(),
            candidates: Vec::new(),
        };
        let (tx, rx) = smol::channel::bounded(1024);
        let dest = dir.join("sturdy.bin");
        let sources = [source];
        let work = peer::download(
            &pool,
            hash,
            &sources,
            &dest,
            DownloadConfig::default(),
            Some(tx),
        );
        // The relay (and its phone book) restarts in the middle of the transfer.
        let killer = async {
            while let Ok(p) = rx.recv().await {
                if p.bytes_done >= 2 * u64::from(DEFAULT_CHUNK_SIZE) && p.bytes_done < p.bytes_total
                {
                    pb.stop().expect("the phone book stops");
                    return true;
                }
            }
            false
        };
        let (report, killed) = smol::future::zip(work, killer).await;
        assert!(killed, "the relay died in the middle of the transfer");
        report.expect("the direct path carried the transfer on");
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert_eq!(
            pool.peer_record(&target.id()).connects,
            1,
            "the connection on the direct path was never lost"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

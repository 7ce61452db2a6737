//! Peer relays (docs/PROTOCOL.md "Peer relays") end to end on loopback with a real pi-server
//! that runs no relay: a player relays for their friends, a friend no direct path reaches is
//! fetched from through it (the phone book carries no byte of the file), and the relay neither
//! lets a stranger in nor tells a friend whether a player who does not serve them is there.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use peer::net::relay::{PEER_RELAY_INDEX, PeerRelay, PeerRelayConfig, RelayBook, RelayError};
use peer::net::traversal::{PathKind, TraversalConfig};
use peer::transfer::manifest::DEFAULT_CHUNK_SIZE;
use peer::transfer::serve::visibility_policy;
use peer::{DownloadConfig, Identity, PeerId, PlayerName, Source, Visibility};
use phonebook_proto::CandidateKind;
use phonebook_proto::relay::{CloseReason, RefuseReason};

mod common;

use common::player::{Player, silent};

const RELAY_NAME: &str = "Relay Friend@World";

fn via(relay_after: Duration) -> TraversalConfig {
    TraversalConfig {
        relay_after,
        relay_via: vec![PlayerName::parse(RELAY_NAME).unwrap()],
        ..TraversalConfig::default()
    }
}

/// The relaying player: registered for `friends`, relaying for them, its relay published.
async fn relaying_friend(url: &str, friends: &[PeerId]) -> (Player, PeerRelay) {
    let owner = Player::with(
        RELAY_NAME,
        &[url.to_owned()],
        TraversalConfig::default(),
        None,
    );
    let allowed: std::collections::HashSet<PeerId> = friends.iter().copied().collect();
    let relay = PeerRelay::start(
        owner.endpoint.identity(),
        Arc::new(move |k: &PeerId| allowed.contains(k)),
        PeerRelayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            // Shorter than the client's 5 s, so the test sees the relay's own answer.
            accept_timeout: Duration::from_secs(2),
            ..PeerRelayConfig::default()
        },
        owner.endpoint.spawner(),
    )
    .unwrap();
    assert!(owner.book.set_relay_addr(Some(relay.local_addr())));
    owner.register_only(Visibility::Friends, friends).await;
    (owner, relay)
}

#[test]
fn a_friend_without_a_direct_path_is_fetched_from_through_a_friends_relay() {
    let _ = env_logger::builder().is_test(true).try_init();
    let pb = common::relay_phone_book(|c| c.relay_listen = None);
    let url = format!("http://{}", pb.addr());
    let dir = std::env::temp_dir().join(format!("pb-friend-relay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    smol::block_on(async {
        let fetcher = Player::with(
            "Fetch Friend@World",
            std::slice::from_ref(&url),
            via(Duration::from_millis(200)),
            None,
        );
        let target_name = "Friend Target@World";
        // The target serves the fetcher only (and itself).
        let target = Player::with(
            target_name,
            std::slice::from_ref(&url),
            via(Duration::from_secs(1)),
            None,
        );
        let policy = visibility_policy(target.id(), Visibility::Friends, &[fetcher.id()]);
        target.traversal.relays().set_policy(policy);
        let (owner, relay) = relaying_friend(&url, &[fetcher.id(), target.id()]).await;
        // Both see the relaying friend's record, and its relay candidate in it.
        target
            .register_only(Visibility::Friends, &[fetcher.id(), owner.id()])
            .await;
        fetcher
            .register_only(Visibility::Friends, &[owner.id()])
            .await;
        assert!(
            target.book.relay_books().is_empty(),
            "the phone book runs no relay"
        );
        let found = fetcher
            .book
            .lookup(&PlayerName::parse(RELAY_NAME).unwrap())
            .await
            .unwrap();
        assert!(
            found
                .record
                .candidates
                .iter()
                .any(|c| c.kind == CandidateKind::Relay && c.addr == relay.local_addr()),
            "the record announces the peer relay"
        );
        assert_eq!(target.traversal.listen_on_relays().await, 1);
        let (hash, data) = target.share(5 * DEFAULT_CHUNK_SIZE as usize + 3, 21);

        let pool = fetcher.pool();
        let (_quiet, nowhere) = silent();
        let source = Source {
            name: Some(target_name.into()),
            addr: nowhere,
            key: target.id(),
            candidates: Vec::new(),
        };
        let dest = dir.join("via-friend.bin");
        peer::download(
            &pool,
            hash,
            &[source],
            &dest,
            DownloadConfig::default(),
            None,
        )
        .await
        .expect("downloaded through the friend's relay");
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert_eq!(pool.path(&target.id()).unwrap().kind, PathKind::Relayed);
        let stats = relay.stats();
        assert_eq!(stats.sessions_total.load(Ordering::Relaxed), 1);
        let carried = stats.bytes_in.load(Ordering::Relaxed);
        assert!(
            carried > data.len() as u64,
            "the friend's relay carried the file: {carried} bytes"
        );
        drop(owner);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_peer_relay_admits_only_friends_and_tells_them_nothing_of_others() {
    let _ = env_logger::builder().is_test(true).try_init();
    let pb = common::relay_phone_book(|c| c.relay_listen = None);
    let url = format!("http://{}", pb.addr());
    smol::block_on(async {
        let target = Player::with(
            "Picky Target@World",
            std::slice::from_ref(&url),
            via(Duration::from_secs(1)),
            None,
        );
        // A friend of the relay whom the target does not serve, and a stranger.
        let friend = Player::with(
            "Other Friend@World",
            std::slice::from_ref(&url),
            TraversalConfig::default(),
            None,
        );
        let stranger = Arc::new(Identity::generate());
        let (owner, relay) = relaying_friend(&url, &[target.id(), friend.id()]).await;
        let policy = visibility_policy(target.id(), Visibility::Friends, &[owner.id()]);
        target.traversal.relays().set_policy(policy);
        target
            .register_only(Visibility::Friends, &[owner.id()])
            .await;
        assert_eq!(target.traversal.listen_on_relays().await, 1);

        let book = |identity: Arc<Identity>| {
            RelayBook::peer(PEER_RELAY_INDEX, relay.local_addr(), owner.id(), identity)
        };
        // The stranger proves a key the relay does not serve: refused.
        let refused = friend
            .traversal
            .relays()
            .open_key(&book(stranger), &target.id())
            .await
            .unwrap_err();
        assert!(
            matches!(refused, RelayError::Refused(RefuseReason::Unauthenticated)),
            "{refused:?}"
        );
        assert_eq!(
            relay
                .stats()
                .refused_unauthenticated
                .load(Ordering::Relaxed),
            1
        );
        // A relay that proves another key than its owner's is not spoken to.
        let impostor = RelayBook::peer(
            PEER_RELAY_INDEX + 1,
            relay.local_addr(),
            Identity::generate().id(),
            friend.endpoint.identity().clone(),
        );
        let wrong = friend
            .traversal
            .relays()
            .open_key(&impostor, &target.id())
            .await
            .unwrap_err();
        assert!(matches!(wrong, RelayError::Tls(_)), "{wrong:?}");

        // The friend asks for the target (listening, but not serving it) and for a key nobody
        // holds: the same answer after the same time, and the target saw no session.
        let mine = book(friend.endpoint.identity().clone());
        let relays = friend.traversal.relays();
        let absent_key = Identity::generate().id();
        let (declined, absent) = smol::future::zip(
            relays.open_key(&mine, &target.id()),
            relays.open_key(&mine, &absent_key),
        )
        .await;
        for (what, r) in [("declined", &declined), ("absent", &absent)] {
            assert!(
                matches!(r, Err(RelayError::Closed(CloseReason::Timeout))),
                "{what}: {r:?}"
            );
        }
        assert_eq!(target.endpoint.relay_paths().routes(), 0);
        assert_eq!(relay.stats().sessions_total.load(Ordering::Relaxed), 0);
    });
}

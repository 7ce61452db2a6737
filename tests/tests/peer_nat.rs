//! NAT traversal end to end on loopback with a real pi-server and its UDP service: discovery,
//! signed candidates, keep-alives, punch requests forwarded through the target's mapping, and
//! the privacy rule (a stranger's request reaches nobody and gets the answer of an absent
//! player). The NAT types themselves are exercised by `tests/natlab/run.sh` (root only).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use peer::net::traversal::{MappingBehaviour, PathKind, Traversal, TraversalConfig};
use peer::phonebook::PhoneBookConfig;
use peer::{
    ConnectError, Endpoint, EndpointConfig, Identity, MemoryStore, PeerId, PhoneBook, PinStore,
    PlayerName, Pool, PoolConfig, ServeConfig, Server, Visibility,
};
use phonebook_proto::CandidateKind;
use pi_server::config::Config;
use pi_server::server::TestServer;

fn phone_book() -> TestServer {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        capacity: 64,
        ..Config::default()
    };
    TestServer::start(config).expect("pi-server starts")
}

struct Player {
    endpoint: Arc<Endpoint>,
    book: Arc<PhoneBook>,
    traversal: Arc<Traversal>,
    _server: Server,
}

impl Player {
    fn new(name: &str, url: &str, timeout: Duration) -> Self {
        let identity = Arc::new(Identity::generate());
        let config = EndpointConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            connect_timeout: timeout,
            ..Default::default()
        };
        let endpoint = Arc::new(Endpoint::bind(identity.clone(), &config).unwrap());
        let book_config = PhoneBookConfig {
            urls: vec![url.to_owned()],
            ..Default::default()
        };
        let book = Arc::new(
            PhoneBook::new(&identity, PlayerName::parse(name).unwrap(), book_config).unwrap(),
        );
        let traversal = Traversal::start(
            endpoint.clone(),
            Some(book.clone()),
            TraversalConfig::default(),
        )
        .unwrap();
        let store = Arc::new(MemoryStore::default());
        let _server = Server::spawn(endpoint.clone(), store, ServeConfig::default(), None);
        Self {
            endpoint,
            book,
            traversal,
            _server,
        }
    }

    fn id(&self) -> PeerId {
        self.endpoint.identity().id()
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.endpoint.local_addr().unwrap().port()))
    }

    async fn register(&self, visibility: Visibility, friends: &[PeerId]) {
        let port = self.endpoint.local_addr().unwrap().port();
        self.book
            .register(port, visibility, friends)
            .await
            .expect("registered");
    }

    fn pool(&self) -> Pool {
        let pool = Pool::new(
            self.endpoint.clone(),
            PinStore::in_memory(),
            PoolConfig::default(),
        );
        pool.set_traversal(self.traversal.clone());
        pool
    }
}

#[test]
fn a_punch_request_reaches_the_target_through_its_keep_alive_mapping() {
    let pb = phone_book();
    let url = format!("http://{}", pb.addr());
    smol::block_on(async {
        let target = Player::new("Serve Target@World", &url, Duration::from_secs(5));
        target.register(Visibility::Public, &[]).await;
        let (discovery, list) = target
            .traversal
            .publish_candidates(None, Duration::from_secs(5))
            .await;
        assert_eq!(
            discovery.reflexive,
            Some(target.addr()),
            "what the phone book saw"
        );
        assert_eq!(
            discovery.mapping,
            MappingBehaviour::EndpointIndependent,
            "no NAT on loopback: both ports see one address"
        );
        assert!(
            list.iter()
                .any(|c| c.kind == CandidateKind::Reflexive && c.addr == target.addr()),
            "{list:?}"
        );
        // The candidates are signed into the record that others look up.
        target.register(Visibility::Public, &[]).await;
        assert_eq!(
            target.traversal.keep_alive_once().await,
            Some(target.addr())
        );

        let fetcher = Player::new("Fetch Er@World", &url, Duration::from_secs(5));
        fetcher.register(Visibility::Friends, &[]).await;
        let found = fetcher
            .book
            .lookup(&PlayerName::parse("Serve Target@World").unwrap())
            .await
            .expect("found");
        assert_eq!(
            found.record.candidates, list,
            "signed candidates round trip"
        );
        let pool = fetcher.pool();
        let conn = pool
            .connect_with(
                Some("Serve Target@World"),
                found.addr,
                found.key,
                &found.record.candidates,
            )
            .await
            .expect("connected");
        assert_eq!(conn.peer(), target.id());
        let path = pool.path(&target.id()).expect("path recorded");
        assert_eq!(path.addr, target.addr());
        assert!(matches!(
            path.kind,
            PathKind::Candidate(CandidateKind::Reflexive)
        ));
        // The phone book told the target, through the mapping its keep-alive holds.
        for _ in 0..50 {
            if target.traversal.stats().forwards.load(Ordering::Relaxed) > 0 {
                break;
            }
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        assert_eq!(target.traversal.stats().forwards.load(Ordering::Relaxed), 1);
        assert!(
            target
                .traversal
                .reachable_by_phonebook(target.book.name(), Duration::from_secs(2))
                .await,
            "netcheck's reachability probe"
        );
    });
}

#[test]
fn a_stranger_learns_nothing_and_reaches_nobody() {
    let pb = phone_book();
    let url = format!("http://{}", pb.addr());
    smol::block_on(async {
        let friend = Identity::generate().id();
        let target = Player::new("Hidden Target@World", &url, Duration::from_secs(5));
        target.register(Visibility::Friends, &[friend]).await;
        target
            .traversal
            .publish_candidates(None, Duration::from_secs(5))
            .await;
        assert!(target.traversal.keep_alive_once().await.is_some());

        let stranger = Player::new("Strange Er@World", &url, Duration::from_millis(1500));
        stranger.register(Visibility::Friends, &[]).await;
        let pool = stranger.pool();
        // The stranger guesses the key and an address (a silent socket: traffic stays on
        // loopback): the phone book forwards nothing, and answers as for an absent player.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let guess = silent.local_addr().unwrap();
        let hidden = pool
            .connect_with(Some("Hidden Target@World"), guess, target.id(), &[])
            .await
            .unwrap_err();
        let absent = pool
            .connect_with(
                Some("Nobody Here@World"),
                guess,
                Identity::generate().id(),
                &[],
            )
            .await
            .unwrap_err();
        assert!(matches!(hidden, ConnectError::Offline), "{hidden:?}");
        assert!(matches!(absent, ConnectError::Offline), "{absent:?}");
        assert_eq!(target.traversal.stats().forwards.load(Ordering::Relaxed), 0);
    });
}

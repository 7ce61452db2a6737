//! A player of the end-to-end tests: an endpoint on 127.0.0.1, a phone-book client for some
//! phone books, NAT traversal and a server over a store in memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use peer::net::traversal::{Traversal, TraversalConfig};
use peer::phonebook::PhoneBookConfig;
use peer::transfer::manifest::DEFAULT_CHUNK_SIZE;
use peer::{
    Endpoint, EndpointConfig, FileHash, Identity, MemoryStore, PeerId, PhoneBook, PinStore,
    PlayerName, Pool, PoolConfig, ServeConfig, Server, Visibility,
};

pub struct Player {
    pub endpoint: Arc<Endpoint>,
    pub book: Arc<PhoneBook>,
    pub traversal: Arc<Traversal>,
    pub store: Arc<MemoryStore>,
    pub _server: Server,
}

impl Player {
    /// A player of `urls`' phone books, with a connect timeout of 5 s and `traversal`'s
    /// settings; its server serves the keys `policy` allows (`None`: all).
    pub fn with(
        name: &str,
        urls: &[String],
        traversal: TraversalConfig,
        policy: Option<peer::transfer::serve::Policy>,
    ) -> Self {
        let identity = Arc::new(Identity::generate());
        let config = EndpointConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            connect_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let endpoint = Arc::new(Endpoint::bind(identity.clone(), &config).unwrap());
        let book_config = PhoneBookConfig {
            urls: urls.to_vec(),
            ..Default::default()
        };
        let book = Arc::new(
            PhoneBook::new(&identity, PlayerName::parse(name).unwrap(), book_config).unwrap(),
        );
        let traversal = Traversal::start(endpoint.clone(), Some(book.clone()), traversal).unwrap();
        let store = Arc::new(MemoryStore::default());
        let _server = Server::spawn(
            endpoint.clone(),
            store.clone(),
            ServeConfig::default(),
            policy,
        );
        Self {
            endpoint,
            book,
            traversal,
            store,
            _server,
        }
    }

    /// A player of one phone book that tries relays after `relay_after`.
    pub fn new(name: &str, url: &str, relay_after: Duration) -> Self {
        Self::with(
            name,
            &[url.to_owned()],
            TraversalConfig {
                relay_after,
                ..TraversalConfig::default()
            },
            None,
        )
    }

    /// Registered with every phone book of `urls` (public); each announced its relay.
    pub async fn registered(name: &str, urls: &[String]) -> Self {
        let p = Self::with(name, urls, TraversalConfig::default(), None);
        p.register_only(Visibility::Public, &[]).await;
        assert_eq!(
            p.book.relay_books().len(),
            urls.len(),
            "every phone book announced its relay"
        );
        p
    }

    pub fn id(&self) -> PeerId {
        self.endpoint.identity().id()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.endpoint.local_addr().unwrap().port()))
    }

    /// Registers; no check of what the phone books announced.
    pub async fn register_only(&self, visibility: Visibility, friends: &[PeerId]) {
        let port = self.endpoint.local_addr().unwrap().port();
        self.book
            .register(port, visibility, friends)
            .await
            .expect("registered");
    }

    /// Registers with the one phone book, which announces its relay.
    pub async fn register(&self, visibility: Visibility, friends: &[PeerId]) {
        self.register_only(visibility, friends).await;
        assert_eq!(
            self.book.relay_books().len(),
            1,
            "the answer announces the relay"
        );
    }

    pub fn pool(&self) -> Arc<Pool> {
        let pool = Pool::new(
            self.endpoint.clone(),
            PinStore::in_memory(),
            PoolConfig::default(),
        );
        pool.set_traversal(self.traversal.clone());
        Arc::new(pool)
    }

    pub fn share(&self, len: usize, seed: u64) -> (FileHash, Vec<u8>) {
        let data = content(len, seed);
        let hash = self.store.add(data.clone(), DEFAULT_CHUNK_SIZE);
        (hash, data)
    }
}

/// `len` pseudo-random bytes from `seed`.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An address where nothing answers (its socket stays open and silent).
pub fn silent() -> (std::net::UdpSocket, SocketAddr) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

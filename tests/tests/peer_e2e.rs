//! End to end: a real pi-server on 127.0.0.1:0 and several peers that register, look each other
//! up, check the owners' signatures, connect with pinned keys and transfer files.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use peer::phonebook::{PhoneBookConfig, PhoneBookError};
use peer::transfer::download::DownloadConfig;
use peer::transfer::manifest::DEFAULT_CHUNK_SIZE;
use peer::{
    Endpoint, EndpointConfig, FileHash, Identity, MemoryStore, PeerId, PhoneBook, PinStore,
    PlayerName, Pool, PoolConfig, ServeConfig, Server, Source, Visibility, download,
};
use phonebook_proto::{Keypair, LookupRecord, Register, public_digest};
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

/// A player: identity, QUIC endpoint, phone-book client, a store it serves.
struct Player {
    identity: Arc<Identity>,
    endpoint: Arc<Endpoint>,
    book: Arc<PhoneBook>,
    store: Arc<MemoryStore>,
    _server: Server,
}

impl Player {
    fn new(name: &str, urls: &[String]) -> Self {
        let identity = Arc::new(Identity::generate());
        let config = EndpointConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
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
        let store = Arc::new(MemoryStore::default());
        let server = Server::spawn(
            endpoint.clone(),
            store.clone(),
            ServeConfig::default(),
            None,
        );
        Self {
            identity,
            endpoint,
            book,
            store,
            _server: server,
        }
    }

    fn port(&self) -> u16 {
        self.endpoint.local_addr().unwrap().port()
    }

    async fn register(&self, visibility: Visibility, friends: &[PeerId]) {
        self.book
            .register(self.port(), visibility, friends)
            .await
            .expect("registered");
    }

    fn pool(&self) -> Arc<Pool> {
        Arc::new(Pool::new(
            self.endpoint.clone(),
            PinStore::in_memory(),
            PoolConfig::default(),
        ))
    }
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(151).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("peer-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn players_register_look_up_connect_and_transfer() {
    let pb = phone_book();
    let urls = vec![format!("http://{}", pb.addr())];
    smol::block_on(async {
        let cs = DEFAULT_CHUNK_SIZE as usize;
        let files: Vec<Vec<u8>> = [0, 1, cs - 1, cs + 1]
            .iter()
            .map(|&n| content(n, n as u8))
            .collect();
        let seeders = [
            Player::new("Alisaie Leveilleur@Ragnarok", &urls),
            Player::new("Alphinaud Leveilleur@Ragnarok", &urls),
        ];
        for s in &seeders {
            for f in &files {
                s.store.add(f.clone(), DEFAULT_CHUNK_SIZE);
            }
            s.register(Visibility::Public, &[]).await;
        }
        let me = Player::new("Thancred Waters@Ragnarok", &urls);
        me.register(Visibility::Public, &[]).await;
        let mut sources = Vec::new();
        for s in &seeders {
            let found = me.book.lookup(s.book.name()).await.expect("found");
            assert_eq!(found.key, s.identity.id(), "the key the owner signed");
            assert_eq!(found.addr.port(), s.port());
            sources.push(Source {
                name: Some(s.book.name().as_str().to_owned()),
                addr: found.addr,
                key: found.key,
                candidates: vec![],
            });
        }
        let pool = me.pool();
        let dir = temp_dir("e2e");
        for f in &files {
            let hash = FileHash::Sha1(peer::transfer::sha1_chain::sha1(f));
            let dest = dir.join(format!("{}", f.len()));
            download(
                &pool,
                hash,
                &sources,
                &dest,
                DownloadConfig::default(),
                None,
            )
            .await
            .expect("downloaded");
            assert_eq!(&std::fs::read(&dest).unwrap(), f);
        }
        for s in &seeders {
            s.book.unregister().await.expect("unregistered");
        }
        let gone = me.book.lookup(seeders[0].book.name()).await;
        assert!(
            matches!(gone, Err(PhoneBookError::NotFound { .. })),
            "{gone:?}"
        );
    });
    pb.stop().unwrap();
}

#[test]
fn friends_only_player_is_invisible_to_strangers() {
    let pb = phone_book();
    let urls = vec![format!("http://{}", pb.addr())];
    smol::block_on(async {
        let (owner, friend, stranger) = (
            Player::new("Yshtola Rhul@Gilgamesh", &urls),
            Player::new("Urianger Augurelt@Gilgamesh", &urls),
            Player::new("Nero Scaeva@Gilgamesh", &urls),
        );
        owner
            .register(Visibility::Friends, &[friend.identity.id()])
            .await;
        friend.register(Visibility::Public, &[]).await;
        stranger.register(Visibility::Public, &[]).await;
        let seen = stranger.book.lookup(owner.book.name()).await;
        assert!(
            matches!(seen, Err(PhoneBookError::NotFound { .. })),
            "a stranger must not see the owner: {seen:?}"
        );
        let absent = stranger
            .book
            .lookup(&PlayerName::parse("Nobody Here@Gilgamesh").unwrap())
            .await;
        assert_eq!(
            format!("{seen:?}").split('{').next(),
            format!("{absent:?}").split('{').next(),
            "hidden looks like absent"
        );
        let found = friend
            .book
            .lookup(owner.book.name())
            .await
            .expect("a friend sees the owner");
        assert_eq!(found.key, owner.identity.id());
        // Each registration draws a fresh friendsSalt: the same list renewed shows another
        // digest, so a friend cannot tell whether the list changed, nor test a guessed one.
        owner
            .register(Visibility::Friends, &[friend.identity.id()])
            .await;
        let again = friend.book.lookup(owner.book.name()).await.unwrap();
        assert_ne!(again.record.friends_digest, found.record.friends_digest);
        assert_ne!(again.record.friends_digest, public_digest());
    });
    pb.stop().unwrap();
}

/// A phone book that answers every lookup with `record` (and accepts any registration).
fn lying_phone_book(record: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut s) = stream else { continue };
            let record = record.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                let mut have = 0;
                while let Ok(n) = s.read(&mut buf[have..]) {
                    if n == 0 {
                        return;
                    }
                    have += n;
                    let mut headers = [httparse::EMPTY_HEADER; 32];
                    let mut req = httparse::Request::new(&mut headers);
                    let Ok(httparse::Status::Complete(head)) = req.parse(&buf[..have]) else {
                        continue;
                    };
                    let len: usize = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .map_or(0, |h| {
                            std::str::from_utf8(h.value).unwrap().parse().unwrap()
                        });
                    if have < head + len {
                        continue;
                    }
                    let body = if req.method == Some("POST") {
                        r#"{"success":true,"ip":"127.0.0.1","port":1,"expiresIn":3600,"reregisterIn":3000,"token":"t"}"#.to_owned()
                    } else {
                        record.clone()
                    };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                    buf.copy_within(head + len..have, 0);
                    have -= head + len;
                }
            });
        }
    });
    addr
}

#[test]
fn a_lying_phone_book_is_caught_and_the_next_one_is_asked() {
    let pb = phone_book();
    smol::block_on(async {
        let real = format!("http://{}", pb.addr());
        let target = Player::new("Estinien Varlineau@Ragnarok", std::slice::from_ref(&real));
        target.register(Visibility::Public, &[]).await;
        // The liar serves the target's genuine signed record with another port (and key
        // material it cannot re-sign).
        let kp = Keypair::from_seed(&target.identity.phonebook_keypair().seed());
        let genuine = Register::sign_public(
            &kp,
            target.book.name().clone(),
            target.port(),
            1_764_000_000_000,
        );
        let forged = LookupRecord {
            id: genuine.id,
            name: None,
            ip: "127.0.0.1".parse().unwrap(),
            port: target.port().wrapping_add(1).max(1),
            key: genuine.key,
            visibility: genuine.visibility,
            friends_digest: public_digest(),
            candidates: genuine.candidates.clone(),
            timestamp: genuine.timestamp,
            signature: genuine.signature,
            expires_in: 100,
        };
        let liar = format!("http://{}", lying_phone_book(forged.to_json()));
        let me = Player::new("Lucia Goe@Ragnarok", &[liar.clone(), real.clone()]);
        me.register(Visibility::Public, &[]).await;
        let found = me
            .book
            .lookup(target.book.name())
            .await
            .expect("the honest phone book answers");
        assert_eq!(found.addr.port(), target.port());
        let only_liar = Player::new("Aymeric Borel@Ragnarok", &[liar]);
        only_liar.register(Visibility::Public, &[]).await;
        let err = only_liar.book.lookup(target.book.name()).await.unwrap_err();
        assert!(matches!(err, PhoneBookError::Lying(_)), "{err}");
    });
    pb.stop().unwrap();
}

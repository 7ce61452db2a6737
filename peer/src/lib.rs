//! Peer library: finds players through the phone book and moves mod files directly between them
//! over mutually authenticated QUIC, verified chunk by chunk, resumable, from several peers at once.
//!
//! **Start here:** [`Node`] (module [`node`]) owns a player's endpoint, pool, pins, server and
//! phone-book registration, and reports registration state and transfers as [`Event`]s that a
//! caller polls without blocking. The other modules are the advanced door: the pieces a `Node`
//! is built from, for programs that need to assemble them differently (the example below).
//!
//! It does not relay, punch holes through NATs or run the phone book: those are other crates
//! and later issues (the endpoint exposes its UDP socket for them).
//!
//! ```
//! use std::sync::Arc;
//! use peer::{download, DownloadConfig, Endpoint, EndpointConfig, Identity, MemoryStore, PinStore,
//!            Pool, PoolConfig, ServeConfig, Server, Source};
//!
//! smol::block_on(async {
//!     let local = EndpointConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
//!     // A player who has a mod file serves it...
//!     let store = Arc::new(MemoryStore::default());
//!     let hash = store.add(b"a texture".to_vec(), peer::transfer::manifest::DEFAULT_CHUNK_SIZE);
//!     let seeder = Arc::new(Endpoint::bind(Arc::new(Identity::generate()), &local).unwrap());
//!     let _server = Server::spawn(seeder.clone(), store, ServeConfig::default(), None);
//!     // ...and another fetches it by hash from that player, proven by key.
//!     let me = Arc::new(Endpoint::bind(Arc::new(Identity::generate()), &local).unwrap());
//!     let pool = Arc::new(Pool::new(me, PinStore::in_memory(), PoolConfig::default()));
//!     let source = Source {
//!         name: None,
//!         addr: ([127, 0, 0, 1], seeder.local_addr().unwrap().port()).into(),
//!         key: seeder.identity().id(),
//!         candidates: vec![],
//!     };
//!     let dest = std::env::temp_dir().join(format!("peer-doc-{}", std::process::id()));
//!     download(&pool, hash, &[source], &dest, DownloadConfig::default(), None).await.unwrap();
//!     assert_eq!(std::fs::read(&dest).unwrap(), b"a texture");
//!     # std::fs::remove_file(&dest).unwrap();
//! });
//! ```
#![forbid(unsafe_code)]

pub mod identity;
pub mod net;
pub mod node;
pub mod phonebook;
pub mod storage;
pub mod transfer;

pub use identity::{Identity, PeerId};
pub use net::endpoint::{ConnectError, Endpoint, EndpointConfig, PeerConnection};
pub use net::pool::{Pool, PoolConfig};
pub use net::runtime::Spawner;
pub use node::{Event, Node, NodeConfig, OpId, Registration};
pub use phonebook::{Found, PhoneBook, PhoneBookConfig, PhoneBookError};
pub use phonebook_proto::{MAX_FRIENDS, PlayerName, Visibility};
pub use storage::pins::PinStore;
pub use storage::store::{FolderStore, MemoryStore, Store};
pub use transfer::download::{
    DownloadConfig, DownloadError, DownloadReport, Progress, Source, download,
};
pub use transfer::hash::FileHash;
pub use transfer::manifest::Manifest;
pub use transfer::serve::{ServeConfig, Server};

/// A fresh, empty directory for a unit test.
#[cfg(test)]
pub(crate) fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("peer-unit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

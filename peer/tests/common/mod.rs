//! Shared helpers: peers on 127.0.0.1:0, temp folders, deterministic file contents.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use peer::transfer::download::{DownloadConfig, DownloadError, DownloadReport};
use peer::{
    Endpoint, EndpointConfig, FileHash, Identity, MemoryStore, PinStore, Pool, PoolConfig,
    ServeConfig, Server, Source, Store,
};

/// A serving peer.
pub struct Seeder {
    pub endpoint: Arc<Endpoint>,
    pub server: Server,
}

impl Seeder {
    pub fn source(&self) -> Source {
        Source {
            name: None,
            addr: self.addr(),
            key: self.endpoint.identity().id(),
            candidates: vec![],
        }
    }

    pub fn addr(&self) -> SocketAddr {
        let port = self.endpoint.local_addr().unwrap().port();
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

pub fn loopback() -> EndpointConfig {
    EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    }
}

pub fn seeder(store: Arc<dyn Store>, config: ServeConfig) -> Seeder {
    let endpoint = Arc::new(Endpoint::bind(Arc::new(Identity::generate()), &loopback()).unwrap());
    let server = Server::spawn(endpoint.clone(), store, config, None);
    Seeder { endpoint, server }
}

pub fn memory_seeder(files: &[Vec<u8>], chunk_size: u32) -> Seeder {
    let store = MemoryStore::default();
    for f in files {
        store.add(f.clone(), chunk_size);
    }
    seeder(Arc::new(store), ServeConfig::default())
}

pub fn downloader() -> Arc<Pool> {
    let endpoint = Arc::new(Endpoint::bind(Arc::new(Identity::generate()), &loopback()).unwrap());
    Arc::new(Pool::new(
        endpoint,
        PinStore::in_memory(),
        PoolConfig::default(),
    ))
}

/// Downloads `hash` from `sources` to `dest` with the default configuration and no progress.
pub async fn fetch(
    pool: &Arc<Pool>,
    hash: FileHash,
    sources: &[Source],
    dest: &Path,
) -> Result<DownloadReport, DownloadError> {
    peer::download(pool, hash, sources, dest, DownloadConfig::default(), None).await
}

/// Bytes that differ at every offset and between seeds, cheap to make.
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

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("peer-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

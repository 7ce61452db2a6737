//! What the serving side reads from: the application's files, named by hash.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, RwLock};

pub use crate::storage::folder::{FolderStore, MAX_FOLDER_FILES};
use crate::transfer::hash::FileHash;
use crate::transfer::manifest::Manifest;

/// Files the serving side can send. Implemented by the application (a mod cache) or by
/// [`FolderStore`]. `read_at` is called from async tasks: it should be a quick local read.
pub trait Store: Send + Sync + 'static {
    /// The manifest of a file this store has.
    fn manifest(&self, hash: &FileHash) -> Option<Arc<Manifest>>;
    /// Fills `buf` with the file's bytes at `offset`.
    fn read_at(&self, hash: &FileHash, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// A file held in memory: its manifest and bytes.
type MemoryFile = (Arc<Manifest>, Arc<[u8]>);

/// A store of byte buffers in memory (tests, examples).
#[derive(Debug, Default)]
pub struct MemoryStore {
    files: RwLock<HashMap<FileHash, MemoryFile>>,
}

impl MemoryStore {
    /// Adds `data` with the given chunk size; returns its hash.
    pub fn add(&self, data: Vec<u8>, chunk_size: u32) -> FileHash {
        let m = Arc::new(Manifest::from_bytes(&data, chunk_size));
        let h = m.hash();
        self.files
            .write()
            .expect("not poisoned")
            .insert(h, (m, data.into()));
        h
    }
}

impl Store for MemoryStore {
    fn manifest(&self, hash: &FileHash) -> Option<Arc<Manifest>> {
        self.files
            .read()
            .expect("not poisoned")
            .get(hash)
            .map(|(m, _)| m.clone())
    }

    fn read_at(&self, hash: &FileHash, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let files = self.files.read().expect("not poisoned");
        let (_, data) = files
            .get(hash)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let start =
            usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let src = data
            .get(start..start + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

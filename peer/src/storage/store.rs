//! What the serving side reads from: the application's files, named by hash.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::storage::fs_util::read_exact_at;
use crate::transfer::hash::FileHash;
use crate::transfer::manifest::{DEFAULT_CHUNK_SIZE, Manifest};

/// Files the serving side can send. Implemented by the application (a mod cache) or by
/// [`FolderStore`]. `read_at` is called from async tasks: it should be a quick local read.
pub trait Store: Send + Sync + 'static {
    /// The manifest of a file this store has.
    fn manifest(&self, hash: &FileHash) -> Option<Arc<Manifest>>;
    /// Fills `buf` with the file's bytes at `offset`.
    fn read_at(&self, hash: &FileHash, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// Most files a [`FolderStore`] indexes.
pub const MAX_FOLDER_FILES: usize = 100_000;

#[derive(Debug)]
struct Entry {
    path: PathBuf,
    manifest: Arc<Manifest>,
    file: File,
}

/// Serves every regular file under a folder (recursively), indexed by SHA-1 when added.
#[derive(Debug, Default)]
pub struct FolderStore {
    files: RwLock<HashMap<FileHash, Entry>>,
}

impl FolderStore {
    /// Indexes `dir` (reads every file once to build its manifest).
    pub fn index(dir: &Path) -> io::Result<Self> {
        let store = Self::default();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    stack.push(entry.path());
                } else if kind.is_file() {
                    store.add_file(&entry.path())?;
                }
            }
        }
        Ok(store)
    }

    /// Adds one file; returns its hash.
    pub fn add_file(&self, path: &Path) -> io::Result<FileHash> {
        let file = File::open(path)?;
        let manifest = Arc::new(Manifest::build(
            io::BufReader::with_capacity(1 << 20, &file),
            DEFAULT_CHUNK_SIZE,
        )?);
        let hash = manifest.hash();
        let mut files = self.files.write().expect("not poisoned");
        if files.len() >= MAX_FOLDER_FILES && !files.contains_key(&hash) {
            return Err(io::Error::other("folder store full"));
        }
        files.insert(
            hash,
            Entry {
                path: path.to_owned(),
                manifest,
                file,
            },
        );
        Ok(hash)
    }

    /// The indexed files: hash, size and path.
    pub fn list(&self) -> Vec<(FileHash, u64, PathBuf)> {
        let files = self.files.read().expect("not poisoned");
        files
            .iter()
            .map(|(h, e)| (*h, e.manifest.file_size(), e.path.clone()))
            .collect()
    }
}

impl Store for FolderStore {
    fn manifest(&self, hash: &FileHash) -> Option<Arc<Manifest>> {
        self.files
            .read()
            .expect("not poisoned")
            .get(hash)
            .map(|e| e.manifest.clone())
    }

    fn read_at(&self, hash: &FileHash, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let files = self.files.read().expect("not poisoned");
        let e = files
            .get(hash)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        read_exact_at(&e.file, buf, offset)
    }
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

//! [`FolderStore`]: serves every regular file under a folder (a Penumbra mod folder holds tens
//! of thousands), with a bounded number of open files and a hash index on disk so a restart
//! re-hashes only what changed.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::UNIX_EPOCH;

use crate::storage::folder_index::{self, IndexEntry};
use crate::storage::fs_util::{read_exact_at, write_durable};
use crate::storage::store::Store;
use crate::transfer::hash::FileHash;
use crate::transfer::manifest::{DEFAULT_CHUNK_SIZE, Manifest};

/// Most files a [`FolderStore`] indexes.
pub const MAX_FOLDER_FILES: usize = 100_000;
/// Default of [`FolderStoreConfig::max_open_files`].
pub const DEFAULT_MAX_OPEN_FILES: usize = 64;

/// How a [`FolderStore`] opens and remembers files.
#[derive(Debug, Clone)]
pub struct FolderStoreConfig {
    /// Most files held open at once for serving (least recently used closed first). A
    /// process has about 1,024 descriptors on Linux by default, sockets included.
    pub max_open_files: usize,
    /// Where the hash index is kept (`None`: hash every file at every start). It is read at
    /// start and written after indexing, durably.
    pub index: Option<PathBuf>,
}

impl Default for FolderStoreConfig {
    fn default() -> Self {
        Self {
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            index: None,
        }
    }
}

/// What indexing a folder did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Files indexed.
    pub files: usize,
    /// Of those, hashed now (new or changed since the index on disk).
    pub hashed: usize,
    /// Of those, taken from the index on disk (same path, size and modification time).
    pub reused: usize,
    /// Files left out: unreadable, or beyond [`MAX_FOLDER_FILES`].
    pub skipped: usize,
    /// Whether an index file existed but could not be used (damaged, another folder's).
    pub index_refused: bool,
}

#[derive(Debug)]
struct Entry {
    path: PathBuf,
    size: u64,
    mtime_ns: Option<u64>,
    manifest: Arc<Manifest>,
}

/// Files held open, least recently used closed first.
#[derive(Debug, Default)]
struct OpenFiles {
    files: HashMap<FileHash, (Arc<File>, u64)>,
    tick: u64,
}

/// Serves every regular file under a folder (recursively), indexed by SHA-1. Files are
/// opened on demand, at most [`FolderStoreConfig::max_open_files`] at once; a file whose size
/// or modification time changed since it was hashed is no longer served.
#[derive(Debug)]
pub struct FolderStore {
    files: RwLock<HashMap<FileHash, Entry>>,
    open: Mutex<OpenFiles>,
    max_open: usize,
}

impl Default for FolderStore {
    fn default() -> Self {
        Self::empty(&FolderStoreConfig::default())
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> Option<u64> {
    let d = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(d.as_nanos()).ok()
}

/// `path` relative to `root`, `/`-separated, if it is valid UTF-8.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

impl FolderStore {
    fn empty(config: &FolderStoreConfig) -> Self {
        Self {
            files: RwLock::default(),
            open: Mutex::default(),
            max_open: config.max_open_files.max(1),
        }
    }

    /// Indexes `dir`, hashing every file (the defaults of [`FolderStoreConfig`]: no index on
    /// disk).
    pub fn index(dir: &Path) -> io::Result<Self> {
        Ok(Self::open(dir, &FolderStoreConfig::default())?.0)
    }

    /// Indexes `dir`: files whose path, size and modification time match the index on disk
    /// are taken from it, the others hashed; then the index is written back. An unreadable
    /// file is skipped, not fatal; a missing or damaged index only means hashing again.
    pub fn open(dir: &Path, config: &FolderStoreConfig) -> io::Result<(Self, IndexStats)> {
        let store = Self::empty(config);
        let root = dir.canonicalize()?;
        let root_name = root.to_string_lossy().into_owned();
        let mut stats = IndexStats::default();
        let mut known: HashMap<String, IndexEntry> = HashMap::new();
        if let Some(index) = &config.index {
            match std::fs::read(index) {
                Ok(bytes) => match folder_index::decode(&bytes) {
                    Ok((folder, entries)) if folder == root_name => {
                        known = entries.into_iter().map(|e| (e.path.clone(), e)).collect();
                    }
                    Ok(_) => {
                        log::info!("the hash index at {} is another folder's", index.display());
                        stats.index_refused = true;
                    }
                    Err(e) => {
                        log::warn!(
                            "hash index {} unusable ({e}): hashing again",
                            index.display()
                        );
                        stats.index_refused = true;
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("hash index {} unreadable: {e}", index.display()),
            }
        }
        let skip = config.index.as_ref().and_then(|p| p.canonicalize().ok());
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                let path = entry.path();
                if kind.is_dir() {
                    stack.push(path);
                    continue;
                }
                if !kind.is_file() || skip.as_deref() == Some(path.as_path()) {
                    continue;
                }
                let reuse = relative(&root, &path).and_then(|rel| {
                    let meta = entry.metadata().ok()?;
                    let old = known.get(&rel)?;
                    (old.size == meta.len() && Some(old.mtime_ns) == mtime_ns(&meta))
                        .then(|| old.manifest.clone())
                });
                let added = match reuse {
                    Some(m) => store.insert(&path, m).map(|_| false),
                    None => store.add_file(&path).map(|_| true),
                };
                match added {
                    Ok(true) => stats.hashed += 1,
                    Ok(false) => stats.reused += 1,
                    Err(e) => {
                        log::debug!("not serving {}: {e}", path.display());
                        stats.skipped += 1;
                    }
                }
            }
        }
        stats.files = stats.hashed + stats.reused;
        if let Some(index) = &config.index {
            let entries = store.index_entries(&root);
            let bytes = folder_index::encode(&root_name, &entries);
            if let Err(e) = write_durable(index, &bytes, 0o644) {
                log::warn!("could not write the hash index {}: {e}", index.display());
            }
        }
        Ok((store, stats))
    }

    fn index_entries(&self, root: &Path) -> Vec<IndexEntry> {
        let files = self.files.read().expect("not poisoned");
        files
            .values()
            .filter_map(|e| {
                Some(IndexEntry {
                    path: relative(root, &e.path)?,
                    size: e.size,
                    mtime_ns: e.mtime_ns?,
                    manifest: e.manifest.clone(),
                })
            })
            .collect()
    }

    /// Adds one file, hashing it; returns its hash.
    pub fn add_file(&self, path: &Path) -> io::Result<FileHash> {
        let file = File::open(path)?;
        let manifest = Arc::new(Manifest::build(
            io::BufReader::with_capacity(1 << 20, &file),
            DEFAULT_CHUNK_SIZE,
        )?);
        self.insert(path, manifest)
    }

    /// Adds a file whose manifest is known; its size and modification time are read now.
    fn insert(&self, path: &Path, manifest: Arc<Manifest>) -> io::Result<FileHash> {
        let meta = std::fs::metadata(path)?;
        if meta.len() != manifest.file_size() {
            return Err(io::Error::other("file changed while it was hashed"));
        }
        let hash = manifest.hash();
        let mut files = self.files.write().expect("not poisoned");
        if files.len() >= MAX_FOLDER_FILES && !files.contains_key(&hash) {
            return Err(io::Error::other("folder store full"));
        }
        files.insert(
            hash,
            Entry {
                path: path.to_owned(),
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
                manifest,
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

    /// Files held open now (at most [`FolderStoreConfig::max_open_files`]).
    pub fn open_files(&self) -> usize {
        self.open.lock().expect("not poisoned").files.len()
    }

    /// The open file of `hash`, opening it (and closing the least recently used one) if
    /// needed. A file that changed since it was hashed is dropped from the store.
    fn file(&self, hash: &FileHash) -> io::Result<Arc<File>> {
        let mut open = self.open.lock().expect("not poisoned");
        open.tick += 1;
        let tick = open.tick;
        if let Some((f, used)) = open.files.get_mut(hash) {
            *used = tick;
            return Ok(f.clone());
        }
        let (path, size, mtime) = {
            let files = self.files.read().expect("not poisoned");
            let e = files
                .get(hash)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            (e.path.clone(), e.size, e.mtime_ns)
        };
        let file = File::open(&path)?;
        let meta = file.metadata()?;
        if meta.len() != size || mtime_ns(&meta) != mtime {
            self.files.write().expect("not poisoned").remove(hash);
            log::info!(
                "{} changed since it was hashed: no longer served",
                path.display()
            );
            return Err(io::Error::other("file changed since it was hashed"));
        }
        if open.files.len() >= self.max_open
            && let Some(oldest) = open
                .files
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(h, _)| *h)
        {
            open.files.remove(&oldest);
        }
        let file = Arc::new(file);
        open.files.insert(*hash, (file.clone(), tick));
        Ok(file)
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
        let file = self.file(hash)?;
        read_exact_at(&file, buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str, files: usize) -> PathBuf {
        let dir = crate::test_dir(name);
        for i in 0..files {
            let sub = dir.join(format!("d{}", i % 7));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(
                sub.join(format!("f{i}.bin")),
                format!("file {i} ").repeat(i + 1),
            )
            .unwrap();
        }
        dir
    }

    #[test]
    fn serves_many_files_with_few_descriptors() {
        let dir = folder("folder-fds", 40);
        let config = FolderStoreConfig {
            max_open_files: 4,
            index: None,
        };
        let (store, stats) = FolderStore::open(&dir, &config).unwrap();
        assert_eq!(stats.files, 40);
        for round in 0..2 {
            for (hash, size, path) in store.list() {
                let mut buf = vec![0u8; size as usize];
                store.read_at(&hash, 0, &mut buf).unwrap();
                assert_eq!(buf, std::fs::read(&path).unwrap(), "round {round}");
                assert!(store.open_files() <= 4);
            }
        }
        assert_eq!(store.open_files(), 4);
    }

    #[test]
    fn the_index_spares_unchanged_files_and_catches_changed_ones() {
        let dir = folder("folder-index", 12);
        let index = dir.with_extension("index");
        let config = FolderStoreConfig {
            max_open_files: 8,
            index: Some(index.clone()),
        };
        let (_, first) = FolderStore::open(&dir, &config).unwrap();
        assert_eq!((first.files, first.hashed, first.reused), (12, 12, 0));
        let (_, second) = FolderStore::open(&dir, &config).unwrap();
        assert_eq!((second.files, second.hashed, second.reused), (12, 0, 12));
        // One file changes (size), one is added: only those two are hashed.
        std::fs::write(dir.join("d0/f0.bin"), b"changed, longer than before").unwrap();
        std::fs::write(dir.join("new.bin"), b"new").unwrap();
        let (store, third) = FolderStore::open(&dir, &config).unwrap();
        assert_eq!((third.files, third.hashed, third.reused), (13, 2, 11));
        let changed = store
            .list()
            .into_iter()
            .find(|(_, _, p)| p.ends_with("d0/f0.bin"))
            .unwrap();
        let mut buf = vec![0u8; changed.1 as usize];
        store.read_at(&changed.0, 0, &mut buf).unwrap();
        assert_eq!(buf, b"changed, longer than before");
        // A damaged index is refused as a whole: everything is hashed again, nothing fails.
        let mut bytes = std::fs::read(&index).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&index, bytes).unwrap();
        let (_, fourth) = FolderStore::open(&dir, &config).unwrap();
        assert!(fourth.index_refused);
        assert_eq!((fourth.files, fourth.hashed), (13, 13));
    }

    #[test]
    fn a_file_changed_after_indexing_is_no_longer_served() {
        let dir = folder("folder-changed", 3);
        let store = FolderStore::index(&dir).unwrap();
        let (hash, size, path) = store.list().into_iter().next().unwrap();
        std::fs::write(&path, vec![b'x'; size as usize + 10]).unwrap();
        let mut buf = vec![0u8; size as usize];
        assert!(store.read_at(&hash, 0, &mut buf).is_err());
        assert!(store.manifest(&hash).is_none(), "dropped from the store");
    }
}

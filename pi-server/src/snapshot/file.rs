//! The edge that touches files: the durable writer, start-up loading and quarantine.

use super::{SnapshotError, SnapshotHeader, SnapshotReader, SnapshotRecord};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Most quarantined (`<path>.corrupt-<unix secs>`) files kept beside the snapshot; older ones
/// are deleted when a new one is made.
pub const MAX_QUARANTINED: usize = 3;
/// Write buffer of [`SnapshotWriter`], in bytes.
pub const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// Tells apart the temporary files of writers in one process.
static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn file_name(path: &Path) -> io::Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "snapshot path has no file name",
            )
        })
}

fn temp_prefix(name: &str) -> String {
    format!("{name}.tmp-")
}

fn quarantine_prefix(name: &str) -> String {
    format!("{name}.corrupt-")
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes a snapshot so that, whatever happens (power loss, `kill -9`), the target path holds
/// either the previous complete snapshot or the new complete one.
///
/// The bytes go to `<path>.tmp-<pid>-<n>` in the same directory (created new, mode 0600: the
/// header holds the token secret). [`SnapshotWriter::finish`] appends the SHA-256 trailer,
/// `sync_all`s the file, renames it over `path` and fsyncs the directory. Dropping the writer
/// without `finish` (or after `finish` failed) removes the temporary file. A temporary file left
/// by a crash is removed by [`remove_stale_temp_files`] at the next start.
///
/// ```no_run
/// # use pi_server::snapshot::*;
/// # fn rows() -> Vec<SnapshotRecord> { vec![] }
/// # fn main() -> std::io::Result<()> {
/// let rows = rows();
/// let mut w = SnapshotWriter::create("/var/lib/pi-server/snapshot.bin".as_ref())?;
/// let mut buf = Vec::new();
/// let header = SnapshotHeader { saved_wall_ms: 0, token_secret: [0; 32], record_count: rows.len() as u64 };
/// encode_header(&header, &mut buf);
/// for row in &rows {
///     encode_record(row, &mut buf);
///     if buf.len() > 64 * 1024 {
///         w.write_chunk(&buf)?;
///         buf.clear();
///     }
/// }
/// w.write_chunk(&buf)?;
/// let bytes = w.finish()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SnapshotWriter {
    file: Option<BufWriter<File>>,
    temp: PathBuf,
    target: PathBuf,
    hasher: Sha256,
    written: u64,
    renamed: bool,
}

impl SnapshotWriter {
    /// Creates the temporary file beside `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        let name = file_name(path)?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir_of(path).join(format!("{}{}-{n}", temp_prefix(&name), std::process::id()));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&temp)?;
        Ok(SnapshotWriter {
            file: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
            temp,
            target: path.to_path_buf(),
            hasher: Sha256::new(),
            written: 0,
            renamed: false,
        })
    }

    /// Appends encoded bytes ([`super::encode_header`] first, then records).
    pub fn write_chunk(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("snapshot writer already failed"))?;
        file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Appends the trailer, makes the file durable and puts it in place; returns the file's
    /// size in bytes.
    pub fn finish(mut self) -> io::Result<u64> {
        let digest: [u8; super::TRAILER_LEN] = self.hasher.clone().finalize().into();
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("snapshot writer already failed"))?;
        file.write_all(&digest)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.temp, &self.target)?;
        self.renamed = true;
        sync_dir(dir_of(&self.target))?;
        Ok(self.written + digest.len() as u64)
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.renamed {
            drop(self.file.take());
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Removes temporary files that writers of the snapshot at `path` left behind when the process
/// died (`<path>.tmp-*`); returns how many. Call it at start, before any writer exists.
pub fn remove_stale_temp_files(path: &Path) -> io::Result<usize> {
    let prefix = temp_prefix(&file_name(path)?);
    let mut removed = 0;
    for entry in fs::read_dir(dir_of(path))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// What [`load_or_quarantine`] did.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadOutcome {
    /// No snapshot file: start with an empty table.
    Missing,
    /// Every record was read and the checksum matched.
    Loaded {
        /// The header (token secret, informative save time).
        header: SnapshotHeader,
        /// Records inserted.
        records: u64,
    },
    /// The file is truncated or corrupt. It was renamed to `moved_to` (`None` if even that
    /// failed) and the server starts with an empty table: clear the records already inserted.
    Quarantined {
        /// What was wrong.
        error: SnapshotError,
        /// Where the file went.
        moved_to: Option<PathBuf>,
        /// Records inserted before the error was found.
        inserted: u64,
    },
    /// The file exists but reading it failed (permissions, a disk error). It was left in
    /// place: the server should not start, since its next snapshot would replace a file that
    /// may well be good. Clear the records already inserted.
    Unreadable {
        /// What went wrong.
        error: SnapshotError,
        /// Records inserted before the error.
        inserted: u64,
    },
}

impl LoadOutcome {
    /// Whether records were handed to `insert` that must now be discarded (the checksum or a
    /// later record failed): the caller empties its table.
    pub fn must_clear_table(&self) -> bool {
        match self {
            LoadOutcome::Quarantined { inserted, .. }
            | LoadOutcome::Unreadable { inserted, .. } => *inserted > 0,
            LoadOutcome::Missing | LoadOutcome::Loaded { .. } => false,
        }
    }
}

/// Loads the snapshot at `path` at start-up, handing each record to `insert` as it is read.
///
/// The documented choice for a bad file: a truncated or corrupt snapshot (any
/// [`SnapshotError`] but `Io`) is logged at error level (the error and the path; no player
/// data), renamed to `<path>.corrupt-<unix secs>` so an operator can inspect it (at most
/// [`MAX_QUARANTINED`] are kept), and the server starts with an empty table: players simply
/// register again within one TTL. Because records are inserted while streaming (the file can be
/// 170 MB; holding it twice is not an option on a Pi), a failure can come after some inserts:
/// then [`LoadOutcome::must_clear_table`] is true and the caller clears its table.
///
/// A missing file is an empty start, logged at info. Stale temporary files are removed first.
pub fn load_or_quarantine(
    path: &Path,
    capacity: u32,
    mut insert: impl FnMut(SnapshotRecord),
) -> LoadOutcome {
    match remove_stale_temp_files(path) {
        Ok(0) => {}
        Ok(n) => log::info!("snapshot: removed {n} temporary file(s) left by an interrupted write"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("snapshot: could not remove stale temporary files: {e}"),
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log::info!(
                "snapshot {}: none yet, starting with an empty table",
                path.display()
            );
            return LoadOutcome::Missing;
        }
        Err(e) => return bad_file(path, SnapshotError::Io(e), 0),
    };
    let (mut reader, header) = match SnapshotReader::open(file, capacity) {
        Ok(opened) => opened,
        Err(error) => return bad_file(path, error, 0),
    };
    let mut inserted = 0;
    loop {
        match reader.next_record() {
            Ok(Some(record)) => {
                insert(record);
                inserted += 1;
            }
            Ok(None) => {
                log::info!("snapshot {}: loaded {inserted} records", path.display());
                return LoadOutcome::Loaded {
                    header,
                    records: inserted,
                };
            }
            Err(error) => return bad_file(path, error, inserted),
        }
    }
}

fn bad_file(path: &Path, error: SnapshotError, inserted: u64) -> LoadOutcome {
    if let SnapshotError::Io(_) = error {
        log::error!(
            "snapshot {}: {error}; the file is left in place, do not start until it is readable",
            path.display()
        );
        return LoadOutcome::Unreadable { error, inserted };
    }
    let moved_to = match quarantine(path) {
        Ok(to) => {
            log::error!(
                "snapshot {}: {error}; moved to {}, starting with an empty table",
                path.display(),
                to.display()
            );
            Some(to)
        }
        Err(e) => {
            log::error!(
                "snapshot {}: {error}; could not move it aside ({e}), starting with an empty table",
                path.display()
            );
            None
        }
    };
    LoadOutcome::Quarantined {
        error,
        moved_to,
        inserted,
    }
}

/// Renames `path` to a fresh `<path>.corrupt-<secs>[-n]` and prunes old ones.
fn quarantine(path: &Path) -> io::Result<PathBuf> {
    let name = file_name(path)?;
    let dir = dir_of(path);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!("{}{secs}", quarantine_prefix(&name));
    let mut to = dir.join(&base);
    let mut n = 0u32;
    while to.exists() {
        n += 1;
        if n > 1000 {
            return Err(io::Error::other("too many quarantined snapshots"));
        }
        to = dir.join(format!("{base}-{n}"));
    }
    fs::rename(path, &to)?;
    sync_dir(dir)?;
    prune_quarantined(dir, &name, &to);
    Ok(to)
}

/// Keeps the newest [`MAX_QUARANTINED`] quarantined files (by the number in their name; the one
/// just made always stays, even if the wall clock went backwards).
fn prune_quarantined(dir: &Path, name: &str, newest: &Path) {
    let prefix = quarantine_prefix(name);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut old: Vec<((u64, u32), PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let rest = file.strip_prefix(&prefix)?;
            let (secs, n) = match rest.split_once('-') {
                Some((s, n)) => (s.parse().ok()?, n.parse().ok()?),
                None => (rest.parse().ok()?, 0),
            };
            let path = e.path();
            (path != newest).then_some(((secs, n), path))
        })
        .collect();
    old.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.0));
    for (_, path) in old.iter().skip(MAX_QUARANTINED.saturating_sub(1)) {
        if let Err(e) = fs::remove_file(path) {
            log::warn!("snapshot: could not remove old {}: {e}", path.display());
        }
    }
}

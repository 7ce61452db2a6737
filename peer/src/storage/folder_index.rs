//! The hash index a [`crate::FolderStore`] keeps on disk, so a restart re-hashes only the files
//! that changed: per file, its path relative to the folder, size, modification time and
//! manifest. Sans-IO: bytes in, entries out.
//!
//! Format (big-endian): `MAGIC`, a version byte, the folder's path (u16 length + UTF-8), the
//! entry count (u32), then per entry: the relative path (u16 length + UTF-8), size (u64),
//! modification time in ns since the Unix epoch (u64), the manifest (u32 length + its
//! canonical encoding); last, SHA-256 of everything before it. A file that does not decode is
//! ignored as a whole (everything is hashed again), never trusted in part.

use std::sync::Arc;

use ring::digest::{SHA256, digest};

use crate::transfer::codec::{DecodeError, Reader};
use crate::transfer::manifest::{MAX_MANIFEST_LEN, Manifest};

/// First bytes of an index file.
pub const MAGIC: &[u8; 8] = b"PBFOLDIX";
/// The format's version.
pub const VERSION: u8 = 1;
/// Longest path (the folder's or a file's relative one), in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Most entries in one index.
pub const MAX_ENTRIES: usize = crate::storage::folder::MAX_FOLDER_FILES;
/// Largest index file: entries beyond it are left out (and hashed again at the next start).
pub const MAX_INDEX_BYTES: usize = 64 << 20;
const DIGEST_LEN: usize = 32;

/// What the index remembers of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Path relative to the folder, `/`-separated.
    pub path: String,
    /// Size in bytes when it was hashed.
    pub size: u64,
    /// Modification time when it was hashed, ns since the Unix epoch.
    pub mtime_ns: u64,
    /// Its manifest.
    pub manifest: Arc<Manifest>,
}

/// Encodes the index of `folder`. Entries that would take the file past [`MAX_INDEX_BYTES`]
/// (or beyond [`MAX_ENTRIES`], or with a path too long) are left out.
pub fn encode(folder: &str, entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    let folder = if folder.len() <= MAX_PATH_LEN {
        folder
    } else {
        ""
    };
    out.extend_from_slice(&(folder.len() as u16).to_be_bytes());
    out.extend_from_slice(folder.as_bytes());
    let count_at = out.len();
    out.extend_from_slice(&0u32.to_be_bytes());
    let mut count = 0u32;
    for e in entries.iter().take(MAX_ENTRIES) {
        if e.path.is_empty() || e.path.len() > MAX_PATH_LEN {
            continue;
        }
        let manifest = e.manifest.encode();
        let len = 2 + e.path.len() + 8 + 8 + 4 + manifest.len();
        if out.len() + len + DIGEST_LEN > MAX_INDEX_BYTES {
            break;
        }
        out.extend_from_slice(&(e.path.len() as u16).to_be_bytes());
        out.extend_from_slice(e.path.as_bytes());
        out.extend_from_slice(&e.size.to_be_bytes());
        out.extend_from_slice(&e.mtime_ns.to_be_bytes());
        out.extend_from_slice(&(manifest.len() as u32).to_be_bytes());
        out.extend_from_slice(&manifest);
        count += 1;
    }
    out[count_at..count_at + 4].copy_from_slice(&count.to_be_bytes());
    let sum = digest(&SHA256, &out);
    out.extend_from_slice(sum.as_ref());
    out
}

/// Decodes an index: the folder it describes and its entries. Strict: a wrong checksum, an
/// unknown version, a field out of bounds or a manifest whose size disagrees with the entry's
/// refuses the whole file.
pub fn decode(bytes: &[u8]) -> Result<(String, Vec<IndexEntry>), DecodeError> {
    if bytes.len() > MAX_INDEX_BYTES {
        return Err(DecodeError::TooLarge);
    }
    if bytes.len() < MAGIC.len() + 1 + DIGEST_LEN {
        return Err(DecodeError::Truncated);
    }
    let (body, sum) = bytes.split_at(bytes.len() - DIGEST_LEN);
    if digest(&SHA256, body).as_ref() != sum {
        return Err(DecodeError::Inconsistent);
    }
    let mut r = Reader::new(body);
    if r.bytes(MAGIC.len())? != MAGIC {
        return Err(DecodeError::BadKind);
    }
    if r.u8()? != VERSION {
        return Err(DecodeError::BadVersion);
    }
    let folder = path(&mut r, true)?;
    let count = r.u32()? as usize;
    if count > MAX_ENTRIES {
        return Err(DecodeError::TooLarge);
    }
    // Every entry takes at least 23 bytes: a count beyond what is left is a lie, refused
    // before anything is allocated for it.
    if count > r.remaining() / 23 {
        return Err(DecodeError::Truncated);
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let path = path(&mut r, false)?;
        let size = r.u64()?;
        let mtime_ns = r.u64()?;
        let len = r.u32()? as usize;
        if len > MAX_MANIFEST_LEN {
            return Err(DecodeError::TooLarge);
        }
        let manifest = Manifest::decode(r.bytes(len)?)?;
        if manifest.file_size() != size {
            return Err(DecodeError::Inconsistent);
        }
        entries.push(IndexEntry {
            path,
            size,
            mtime_ns,
            manifest: Arc::new(manifest),
        });
    }
    r.finish()?;
    Ok((folder, entries))
}

fn path(r: &mut Reader<'_>, may_be_empty: bool) -> Result<String, DecodeError> {
    let len = r.u16()? as usize;
    if len > MAX_PATH_LEN {
        return Err(DecodeError::TooLarge);
    }
    if len == 0 && !may_be_empty {
        return Err(DecodeError::Inconsistent);
    }
    let s = std::str::from_utf8(r.bytes(len)?).map_err(|_| DecodeError::Inconsistent)?;
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(path: &str, data: &[u8], mtime_ns: u64) -> IndexEntry {
        IndexEntry {
            path: path.into(),
            size: data.len() as u64,
            mtime_ns,
            manifest: Arc::new(Manifest::from_bytes(data, 1 << 14)),
        }
    }

    #[test]
    fn round_trip_and_every_corruption_is_refused() {
        let big = vec![7u8; 3 * (1 << 14) + 5];
        let entries = vec![
            entry("a.bin", b"hello", 1),
            entry("sub/dir/b.mdl", &big, u64::MAX),
            entry("empty", b"", 0),
        ];
        let bytes = encode("/mods/Penumbra", &entries);
        let (folder, back) = decode(&bytes).unwrap();
        assert_eq!(folder, "/mods/Penumbra");
        assert_eq!(back, entries);
        // Any flipped byte breaks the checksum (or, in the checksum, the match).
        for i in [0, 8, 9, 20, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {i}");
        }
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Inconsistent)
        );
        assert_eq!(decode(&bytes[..10]), Err(DecodeError::Truncated));
    }

    #[test]
    fn a_consistent_checksum_over_bad_fields_is_still_refused() {
        // A count far above the bytes present, with a valid checksum.
        let mut body = Vec::new();
        body.extend_from_slice(MAGIC);
        body.push(VERSION);
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&50_000u32.to_be_bytes());
        let mut bytes = body.clone();
        bytes.extend_from_slice(digest(&SHA256, &body).as_ref());
        assert_eq!(decode(&bytes), Err(DecodeError::Truncated));
        // An unknown version.
        let mut v2 = encode("", &[]);
        v2[8] = 2;
        let n = v2.len() - DIGEST_LEN;
        let sum = digest(&SHA256, &v2[..n]);
        v2[n..].copy_from_slice(sum.as_ref());
        assert_eq!(decode(&v2), Err(DecodeError::BadVersion));
    }

    #[test]
    fn entries_past_the_limits_are_left_out_not_written_broken() {
        let long = "x".repeat(MAX_PATH_LEN + 1);
        let entries = vec![entry(&long, b"1", 1), entry("ok", b"2", 2)];
        let (_, back) = decode(&encode("f", &entries)).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].path, "ok");
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_never_panics_behind_a_valid_checksum(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = MAGIC.to_vec();
            bytes.push(VERSION);
            bytes.extend_from_slice(&body);
            let sum = digest(&SHA256, &bytes);
            bytes.extend_from_slice(sum.as_ref());
            let _ = decode(&bytes);
        }

        #[test]
        fn round_trips(paths in proptest::collection::vec("[a-z/]{1,20}", 0..8), mtime in any::<u64>()) {
            let entries: Vec<IndexEntry> = paths
                .iter()
                .enumerate()
                .map(|(i, p)| entry(p, &vec![i as u8; i * 100], mtime))
                .collect();
            let (_, back) = decode(&encode("dir", &entries)).unwrap();
            prop_assert_eq!(back, entries);
        }
    }
}

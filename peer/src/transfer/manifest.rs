//! The chunk manifest: a file's size, chunk size and the SHA-1 chaining value at every chunk
//! boundary. Each chunk is checked alone against the two values around it; the chain is anchored
//! at SHA-1's initial value and ends in the file's SHA-1, so a manifest that lies cannot be
//! completed by any data (short of a SHA-1 second preimage).

use std::io::{self, Read};

use crate::transfer::codec::{DecodeError, Reader};
use crate::transfer::hash::FileHash;
use crate::transfer::sha1_chain::{self, SHA1_IV};

/// Chunk size used when a file is indexed: large enough to keep per-request overhead small
/// on a fast link, small enough that a 25 Mbit/s uplink sends one in about a third of a second.
pub const DEFAULT_CHUNK_SIZE: u32 = 1 << 20;
/// Smallest chunk size a manifest may declare.
pub const MIN_CHUNK_SIZE: u32 = 1 << 14;
/// Largest chunk size a manifest may declare (bounds a receiver's buffer per request).
pub const MAX_CHUNK_SIZE: u32 = 1 << 24;
/// Most chunks a manifest may list (bounds its size to about 1.3 MB).
pub const MAX_CHUNKS: u64 = 1 << 16;
/// Largest encoded manifest.
pub const MAX_MANIFEST_LEN: usize = 64 + 20 * MAX_CHUNKS as usize;

const VERSION: u8 = 1;

/// Manifest of one file.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    hash: FileHash,
    file_size: u64,
    chunk_size: u32,
    /// Chaining value after chunk `i`, for every chunk but the last.
    states: Vec<[u8; 20]>,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("hash", &self.hash)
            .field("file_size", &self.file_size)
            .field("chunk_size", &self.chunk_size)
            .field("chunks", &self.chunk_count())
            .finish()
    }
}

/// Number of chunks of a file.
fn chunks_for(file_size: u64, chunk_size: u32) -> u64 {
    file_size.div_ceil(u64::from(chunk_size))
}

fn valid_chunk_size(chunk_size: u32) -> bool {
    (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) && chunk_size.is_power_of_two()
}

impl Manifest {
    /// Reads a whole file once (bounded memory: one chunk) and builds its manifest.
    pub fn build(mut reader: impl Read, chunk_size: u32) -> io::Result<Self> {
        if !valid_chunk_size(chunk_size) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "chunk size"));
        }
        let mut buf = vec![0u8; chunk_size as usize];
        let mut state = SHA1_IV;
        let mut states = Vec::new();
        let mut done = 0u64;
        let mut n = read_full(&mut reader, &mut buf)?;
        loop {
            // A full chunk is the last one only if nothing follows it: peek one byte.
            let mut peek = [0u8; 1];
            if n < buf.len() || read_full(&mut reader, &mut peek)? == 0 {
                let hash = FileHash::Sha1(sha1_chain::finish(state, &buf[..n], done + n as u64));
                return Ok(Self {
                    hash,
                    file_size: done + n as u64,
                    chunk_size,
                    states,
                });
            }
            sha1_chain::advance(&mut state, &buf);
            states.push(sha1_chain::state_to_bytes(&state));
            done += n as u64;
            if states.len() as u64 >= MAX_CHUNKS {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "file too large",
                ));
            }
            buf[0] = peek[0];
            n = 1 + read_full(&mut reader, &mut buf[1..])?;
        }
    }

    /// Builds the manifest of bytes in memory.
    pub fn from_bytes(data: &[u8], chunk_size: u32) -> Self {
        Self::build(data, chunk_size).expect("reading memory cannot fail")
    }

    /// The file's hash.
    pub fn hash(&self) -> FileHash {
        self.hash
    }

    /// The file's size in bytes.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// The chunk size in bytes.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Number of chunks (0 for an empty file).
    pub fn chunk_count(&self) -> u32 {
        chunks_for(self.file_size, self.chunk_size) as u32
    }

    /// Offset and length of chunk `index`.
    pub fn chunk_range(&self, index: u32) -> (u64, usize) {
        let offset = u64::from(index) * u64::from(self.chunk_size);
        let len = (self.file_size - offset).min(u64::from(self.chunk_size));
        (offset, len as usize)
    }

    /// Whether `data` is exactly chunk `index` of the file.
    pub fn verify_chunk(&self, index: u32, data: &[u8]) -> bool {
        if index >= self.chunk_count() || data.len() != self.chunk_range(index).1 {
            return false;
        }
        let i = index as usize;
        let start = if i == 0 {
            SHA1_IV
        } else {
            sha1_chain::state_from_bytes(&self.states[i - 1])
        };
        if i + 1 < self.chunk_count() as usize {
            let mut s = start;
            sha1_chain::advance(&mut s, data);
            sha1_chain::state_to_bytes(&s) == self.states[i]
        } else {
            let FileHash::Sha1(expected) = self.hash;
            sha1_chain::finish(start, data, self.file_size) == expected
        }
    }

    /// Whether an empty file's manifest is complete as it stands (an empty file has no chunk
    /// to check, so its hash must be the SHA-1 of nothing).
    pub fn is_verified_empty(&self) -> bool {
        self.file_size == 0 && self.hash == FileHash::Sha1(sha1_chain::sha1(b""))
    }

    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(38 + 20 * self.states.len());
        out.push(VERSION);
        out.push(FileHash::KIND_SHA1);
        out.extend_from_slice(self.hash.as_bytes());
        out.extend_from_slice(&self.file_size.to_be_bytes());
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        for s in &self.states {
            out.extend_from_slice(s);
        }
        out
    }

    /// Strict decoding: every field checked, the number of chaining values implied by the size.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(DecodeError::TooLarge);
        }
        let mut r = Reader::new(bytes);
        if r.u8()? != VERSION {
            return Err(DecodeError::BadVersion);
        }
        if r.u8()? != FileHash::KIND_SHA1 {
            return Err(DecodeError::BadKind);
        }
        let hash = FileHash::Sha1(r.array()?);
        let file_size = r.u64()?;
        let chunk_size = r.u32()?;
        if !valid_chunk_size(chunk_size) {
            return Err(DecodeError::Inconsistent);
        }
        let chunks = chunks_for(file_size, chunk_size);
        if chunks > MAX_CHUNKS {
            return Err(DecodeError::TooLarge);
        }
        let n = chunks.saturating_sub(1) as usize;
        if r.remaining() != 20 * n {
            return Err(if r.remaining() < 20 * n {
                DecodeError::Truncated
            } else {
                DecodeError::TrailingBytes
            });
        }
        let mut states = Vec::with_capacity(n);
        for _ in 0..n {
            states.push(r.array()?);
        }
        r.finish()?;
        Ok(Self {
            hash,
            file_size,
            chunk_size,
            states,
        })
    }
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CS: u32 = MIN_CHUNK_SIZE;

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
            .collect()
    }

    #[test]
    fn boundary_sizes_verify_every_chunk() {
        let cs = CS as usize;
        for len in [0, 1, cs - 1, cs, cs + 1, 3 * cs, 3 * cs + 7] {
            let d = data(len, 3);
            let m = Manifest::from_bytes(&d, CS);
            assert_eq!(m.file_size(), len as u64);
            assert_eq!(m.hash(), FileHash::Sha1(sha1_chain::sha1(&d)));
            assert_eq!(m.chunk_count() as usize, len.div_ceil(cs));
            assert_eq!(m.is_verified_empty(), len == 0);
            for i in 0..m.chunk_count() {
                let (off, l) = m.chunk_range(i);
                let chunk = &d[off as usize..off as usize + l];
                assert!(m.verify_chunk(i, chunk), "len {len} chunk {i}");
                let mut bad = chunk.to_vec();
                bad[l / 2] ^= 1;
                assert!(!m.verify_chunk(i, &bad));
                assert!(!m.verify_chunk(i, &chunk[..l - 1]));
            }
            assert!(!m.verify_chunk(m.chunk_count(), b""));
            assert_eq!(Manifest::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn a_chunk_does_not_verify_at_another_index() {
        let d = data(4 * CS as usize, 9);
        let m = Manifest::from_bytes(&d, CS);
        let c1 = &d[CS as usize..2 * CS as usize];
        assert!(m.verify_chunk(1, c1));
        assert!(!m.verify_chunk(2, c1));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn encode_decode_round_trips(len in 0usize..(5 * CS as usize), seed in any::<u8>()) {
            let m = Manifest::from_bytes(&data(len, seed), CS);
            prop_assert_eq!(Manifest::decode(&m.encode()), Ok(m));
        }

        #[test]
        fn decode_survives_random_truncated_and_flipped_bytes(
            len in 0usize..(3 * CS as usize),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            junk in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let enc = Manifest::from_bytes(&data(len, 1), CS).encode();
            let _ = Manifest::decode(&enc[..cut.index(enc.len() + 1)]);
            let mut flipped = enc.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= 0x40;
            if let Ok(m) = Manifest::decode(&flipped) {
                prop_assert_eq!(m.encode(), flipped);
            }
            let _ = Manifest::decode(&junk);
        }
    }
}

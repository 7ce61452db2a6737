//! The transfer protocol's messages. One QUIC bidirectional stream per request.
//!
//! ```text
//! requester -> server:  one sealed record of kind REQUEST holding a `Request`, then FIN
//! server -> requester:  a status byte, then (if Ok) sealed records until FIN:
//!                       MANIFEST records (the encoded manifest), followed with
//!                       `with_last_chunk` by the DATA records of the file's last chunk; or
//!                       DATA / DATA_LZ4 records (the requested chunks in order, each split
//!                       into records of at most RECORD_SIZE plaintext bytes)
//! record:               kind u8 | ciphertext length u32 | ciphertext (plaintext + 16-byte tag)
//! ```
//! The record header is the AEAD's associated data; the nonce is the stream id and the record's
//! sequence number on that stream (see `session`).

use crate::transfer::codec::{DecodeError, Reader};
use crate::transfer::hash::FileHash;

const VERSION: u8 = 1;
/// Largest plaintext in one record.
pub const RECORD_SIZE: usize = 64 * 1024;
/// AEAD tag length.
pub const TAG_LEN: usize = 16;
/// Largest ciphertext a record may carry.
pub const MAX_RECORD_CIPHERTEXT: usize = RECORD_SIZE + TAG_LEN;
/// Record header length.
pub const RECORD_HEADER_LEN: usize = 5;
/// Most chunks one request may ask for.
pub const MAX_CHUNKS_PER_REQUEST: u16 = 64;
/// Largest encoded request.
pub const MAX_REQUEST_LEN: usize = 32;

/// Kinds of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A request (requester to server).
    Request = 1,
    /// Part of an encoded manifest.
    Manifest = 2,
    /// Raw file bytes.
    Data = 3,
    /// File bytes compressed with LZ4 (block format).
    DataLz4 = 4,
}

impl RecordKind {
    fn from_u8(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            1 => Self::Request,
            2 => Self::Manifest,
            3 => Self::Data,
            4 => Self::DataLz4,
            _ => return Err(DecodeError::BadKind),
        })
    }
}

/// A record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// What the record holds.
    pub kind: RecordKind,
    /// Ciphertext length, tag included.
    pub len: u32,
}

impl RecordHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut out = [0u8; RECORD_HEADER_LEN];
        out[0] = self.kind as u8;
        out[1..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// Decodes a header, refusing lengths outside `TAG_LEN..=MAX_RECORD_CIPHERTEXT`.
    pub fn decode(bytes: &[u8; RECORD_HEADER_LEN]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let kind = RecordKind::from_u8(r.u8()?)?;
        let len = r.u32()?;
        if (len as usize) < TAG_LEN || len as usize > MAX_RECORD_CIPHERTEXT {
            return Err(DecodeError::TooLarge);
        }
        Ok(Self { kind, len })
    }
}

/// What a requester asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The manifest of a file.
    Manifest {
        /// Which file.
        hash: FileHash,
        /// Send the file's last chunk after the manifest, saving the requester a round trip:
        /// the scheduler asks for the last chunk first anyway.
        with_last_chunk: bool,
        /// The requester accepts LZ4-compressed records for that chunk.
        accept_lz4: bool,
    },
    /// `count` consecutive chunks starting at `first`.
    Chunks {
        /// Which file.
        hash: FileHash,
        /// First chunk index.
        first: u32,
        /// Number of chunks, 1..=MAX_CHUNKS_PER_REQUEST.
        count: u16,
        /// The requester accepts LZ4-compressed records.
        accept_lz4: bool,
    },
}

const KIND_MANIFEST: u8 = 1;
const KIND_CHUNKS: u8 = 2;

impl Request {
    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        match self {
            Self::Manifest {
                hash,
                with_last_chunk,
                accept_lz4,
            } => {
                out.push(KIND_MANIFEST);
                push_hash(&mut out, hash);
                out.push(u8::from(*with_last_chunk) | u8::from(*accept_lz4) << 1);
            }
            Self::Chunks {
                hash,
                first,
                count,
                accept_lz4,
            } => {
                out.push(KIND_CHUNKS);
                push_hash(&mut out, hash);
                out.extend_from_slice(&first.to_be_bytes());
                out.extend_from_slice(&count.to_be_bytes());
                out.push(u8::from(*accept_lz4));
            }
        }
        out
    }

    /// Strict decoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_REQUEST_LEN {
            return Err(DecodeError::TooLarge);
        }
        let mut r = Reader::new(bytes);
        if r.u8()? != VERSION {
            return Err(DecodeError::BadVersion);
        }
        let kind = r.u8()?;
        let req = match kind {
            KIND_MANIFEST => {
                let hash = read_hash(&mut r)?;
                let flags = r.u8()?;
                if flags > 3 {
                    return Err(DecodeError::Inconsistent);
                }
                Self::Manifest {
                    hash,
                    with_last_chunk: flags & 1 != 0,
                    accept_lz4: flags & 2 != 0,
                }
            }
            KIND_CHUNKS => {
                let hash = read_hash(&mut r)?;
                let first = r.u32()?;
                let count = r.u16()?;
                let accept_lz4 = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Inconsistent),
                };
                if count == 0 || count > MAX_CHUNKS_PER_REQUEST {
                    return Err(DecodeError::TooLarge);
                }
                Self::Chunks {
                    hash,
                    first,
                    count,
                    accept_lz4,
                }
            }
            _ => return Err(DecodeError::BadKind),
        };
        r.finish()?;
        Ok(req)
    }
}

fn push_hash(out: &mut Vec<u8>, hash: &FileHash) {
    out.push(FileHash::KIND_SHA1);
    out.extend_from_slice(hash.as_bytes());
}

fn read_hash(r: &mut Reader<'_>) -> Result<FileHash, DecodeError> {
    match r.u8()? {
        FileHash::KIND_SHA1 => Ok(FileHash::Sha1(r.array()?)),
        _ => Err(DecodeError::BadKind),
    }
}

/// The first byte a server writes on a response stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum Status {
    /// Records follow.
    Ok = 0,
    /// The server does not have that file.
    NotFound = 1,
    /// All upload slots are taken: try again later or elsewhere.
    Busy = 2,
    /// The request could not be decoded or asks for chunks past the end.
    BadRequest = 3,
    /// The server does not serve this requester.
    Refused = 4,
}

impl Status {
    /// Decodes a status byte.
    pub fn from_u8(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0 => Self::Ok,
            1 => Self::NotFound,
            2 => Self::Busy,
            3 => Self::BadRequest,
            4 => Self::Refused,
            _ => return Err(DecodeError::BadKind),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_request() -> impl Strategy<Value = Request> {
        prop_oneof![
            (any::<[u8; 20]>(), any::<bool>(), any::<bool>()).prop_map(
                |(h, with_last_chunk, accept_lz4)| {
                    Request::Manifest {
                        hash: FileHash::Sha1(h),
                        with_last_chunk,
                        accept_lz4,
                    }
                }
            ),
            (
                any::<[u8; 20]>(),
                any::<u32>(),
                1..=MAX_CHUNKS_PER_REQUEST,
                any::<bool>()
            )
                .prop_map(|(h, first, count, accept_lz4)| Request::Chunks {
                    hash: FileHash::Sha1(h),
                    first,
                    count,
                    accept_lz4
                }),
        ]
    }

    proptest! {
        #[test]
        fn request_round_trips(req in any_request()) {
            let enc = req.encode();
            prop_assert!(enc.len() <= MAX_REQUEST_LEN);
            prop_assert_eq!(Request::decode(&enc), Ok(req));
        }

        #[test]
        fn request_decode_never_panics(
            req in any_request(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            junk in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let enc = req.encode();
            prop_assert!(Request::decode(&enc[..cut.index(enc.len())]).is_err());
            let mut f = enc.clone();
            f[flip.index(enc.len())] ^= 0x81;
            if let Ok(r) = Request::decode(&f) {
                prop_assert_eq!(r.encode(), f);
            }
            let _ = Request::decode(&junk);
        }

        #[test]
        fn record_header_round_trips_or_refuses(bytes in any::<[u8; 5]>()) {
            if let Ok(h) = RecordHeader::decode(&bytes) {
                prop_assert_eq!(h.encode(), bytes);
                prop_assert!(h.len as usize <= MAX_RECORD_CIPHERTEXT);
            }
        }
    }
}

//! The snapshot file: the table saved to disk so that a restart keeps registrations and
//! name bindings. This module encodes, decodes and durably writes it; it does not decide when to
//! snapshot or hold the table.
//!
//! # Format, version 4
//!
//! All integers are big-endian; lengths are one byte and bounded by the named limits below.
//!
//! | part | bytes |
//! |---|---|
//! | magic | [`MAGIC`] `"PBSNAP\r\n"` (8; the CR LF catches text-mode mangling) |
//! | version | u32, [`VERSION`] |
//! | header | `saved_wall_ms` u64, `token_secret` 32, `record_count` u64 |
//! | records | `record_count` times the record below |
//! | trailer | SHA-256 of every byte before it (32) |
//!
//! A record, fields in this order:
//!
//! | field | bytes |
//! |---|---|
//! | slot | u32, below the loader's capacity, each slot at most once |
//! | state | u8: 0 live, 1 retained |
//! | lookup id | 32: the player's blinded name (docs/PROTOCOL.md "Lookup ids"); no name is ever stored |
//! | key | 32 |
//! | signature | 64 |
//! | timestamp | u64, the last accepted signed Unix ms |
//! | ip | u8 family (4 or 6), then 4 or 16 bytes |
//! | port | u16 |
//! | visibility | u8: 0 public, 1 friends |
//! | friend count, friends | u8 (at most [`phonebook_proto::MAX_FRIENDS`]; 0 when public), then 32 each |
//! | friends digest | 32, only when visibility is friends: the salted `friendsDigest` the owner signed |
//! | remaining_secs | u32 |
//! | candidate count, candidates | u8 (at most [`phonebook_proto::MAX_CANDIDATES`]), then 20 each: kind u8 (0 lan, 1 reflexive, 2 mapped, 3 v6), family u8 (4 or 6), port u16, 16 address bytes (IPv4 in the first 4, the rest zero) |
//!
//! Versions 1 to 3 stored the name (a length byte, then the ASCII name, a valid player name) in
//! place of the lookup id; the reader still takes them and hashes each name into its id as it
//! reads, so the next snapshot holds no name.
//!
//! A retained record keeps its visibility (a retained public record still binds its id against
//! other keys going public); a retained friends record's digest is 32 zero bytes.
//!
//! Candidates (record version 2, docs/PROTOCOL.md "Candidates") are stored because the owner's
//! signature covers them: a record restored without them would fail every client's check.
//! Version 2 had no candidate field (its records have none).
//!
//! The digest is stored because the server cannot recompute it: it never keeps the
//! `friendsSalt` of a registration (docs/PROTOCOL.md "Signed messages"). Version 1, written
//! before friend lists were salted, had no digest field; the reader still takes it and gives
//! its friends records the unsalted digest they were signed over, SHA-256 of the sorted keys.
//!
//! Nothing follows the trailer. The reader refuses anything else: another magic or version,
//! a bad length, name, tag or slot, a short file ([`SnapshotError::Truncated`]), trailing bytes,
//! or a checksum that does not match.
//!
//! # Time
//!
//! A Raspberry Pi has no real-time clock: until NTP syncs, its wall clock may say 1970. So a
//! record stores `remaining_secs`, the time it has left on the server's monotonic clock when
//! the snapshot was taken (TTL left for a live record, retention left for a retained binding),
//! never a wall-clock expiry. On load the server gives each record `remaining_secs` from its
//! own monotonic "now": the downtime is not counted, so a record may outlive its TTL by the
//! length of the outage, but a clock jump can neither expire the table at once nor keep a record
//! forever. `saved_wall_ms` is informative only (logs, metrics).
//!
//! # Streaming and checksum
//!
//! The file can hold a million records (about 160 MB), so it is written and read in pieces:
//! [`encode_header`] / [`encode_record`] into a buffer, [`SnapshotWriter::write_chunk`],
//! [`SnapshotWriter::finish`]; [`SnapshotReader::next_record`] one record at a time. The
//! checksum is known only at the end, so a caller that inserts records as they come must
//! discard them all if the reader fails: [`load_or_quarantine`] reports that in
//! [`LoadOutcome::must_clear_table`].
//!
//! ```
//! use pi_server::snapshot::*;
//! use phonebook_proto::{LookupId, PlayerName, Visibility};
//!
//! let header = SnapshotHeader { saved_wall_ms: 1, token_secret: [9; 32], record_count: 1 };
//! let record = SnapshotRecord {
//!     slot: 0, state: RecordState::Live,
//!     id: LookupId::of(&PlayerName::parse("Alice Smith@Gilgamesh").unwrap()),
//!     key: [1; 32], signature: [2; 64], timestamp: 3, ip: [192, 0, 2, 1].into(), port: 5000,
//!     visibility: Visibility::Public, friends: vec![], friends_digest: None, remaining_secs: 3600,
//!     candidates: vec!["reflexive 192.0.2.1:5000".parse().unwrap()],
//! };
//! let mut bytes = Vec::new();
//! encode_header(&header, &mut bytes);
//! encode_record(&record, &mut bytes);
//! append_trailer(&mut bytes);
//!
//! let (mut reader, read_header) = SnapshotReader::open(&bytes[..], 100).unwrap();
//! assert_eq!(read_header, header);
//! assert_eq!(reader.next_record().unwrap(), Some(record));
//! assert_eq!(reader.next_record().unwrap(), None); // the trailer checked out
//! ```

use phonebook_proto::name::NameError;
use std::fmt;
use std::io;
use std::net::IpAddr;

mod codec;
mod file;

pub use codec::{
    READ_BUFFER_BYTES, SnapshotReader, append_trailer, decode_record, encode_header, encode_record,
};
pub use file::{
    LoadOutcome, MAX_QUARANTINED, SnapshotWriter, WRITE_BUFFER_BYTES, load_or_quarantine,
    remove_stale_temp_files,
};

/// First bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"PBSNAP\r\n";
/// The format version this module writes (it reads this one, [`VERSION_NAMES`],
/// [`VERSION_NO_CANDIDATES`] and [`VERSION_UNSALTED`]).
pub const VERSION: u32 = 4;
/// The previous version, with names instead of lookup ids.
pub const VERSION_NAMES: u32 = 3;
/// The previous version, without candidates.
pub const VERSION_NO_CANDIDATES: u32 = 2;
/// The previous version, without friends digests.
pub const VERSION_UNSALTED: u32 = 1;
/// Bytes of the SHA-256 trailer.
pub const TRAILER_LEN: usize = 32;

/// The fixed part at the start of a snapshot.
#[derive(Clone, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Wall-clock Unix ms when the snapshot was taken (informative: the Pi's clock may be wrong).
    pub saved_wall_ms: u64,
    /// The server's secret for lookup tokens, so tokens survive a restart (hence mode 0600).
    pub token_secret: [u8; 32],
    /// How many records follow.
    pub record_count: u64,
}

impl fmt::Debug for SnapshotHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotHeader")
            .field("saved_wall_ms", &self.saved_wall_ms)
            .field("token_secret", &"<redacted>")
            .field("record_count", &self.record_count)
            .finish()
    }
}

/// Whether a record is registered or only keeps its name bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// A registration that lives `remaining_secs` more.
    Live,
    /// A binding kept after expiry or unregistration (name -> key and the last timestamp) for
    /// `remaining_secs` more; its ip, port and signature may be zero.
    Retained,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// Index in the server's table, below its capacity.
    pub slot: u32,
    /// Live or retained.
    pub state: RecordState,
    /// The player's blinded name.
    pub id: phonebook_proto::LookupId,
    /// The owner's Ed25519 public key.
    pub key: [u8; 32],
    /// The owner's signature over the registration.
    pub signature: [u8; 64],
    /// The last accepted signed timestamp (Unix ms).
    pub timestamp: u64,
    /// The peer's address.
    pub ip: IpAddr,
    /// The peer's port.
    pub port: u16,
    /// Who may look the player up.
    pub visibility: phonebook_proto::Visibility,
    /// Keys allowed by a friends-only record, at most [`phonebook_proto::MAX_FRIENDS`].
    pub friends: Vec<[u8; 32]>,
    /// The `friendsDigest` the owner signed: `Some` exactly for a friends-only record.
    pub friends_digest: Option<[u8; 32]>,
    /// Seconds left on the monotonic clock: TTL if live, retention if retained.
    pub remaining_secs: u32,
    /// The signed address candidates (empty for a version-1 record).
    pub candidates: Vec<phonebook_proto::Candidate>,
}

impl SnapshotRecord {
    /// Checks what the reader checks beyond framing: at most
    /// [`phonebook_proto::MAX_FRIENDS`] friends and none for a public record, and
    /// `slot < capacity`. [`encode_record`] writes any record, so a writer that is not sure of
    /// its records calls this first: one bad record makes the whole file unreadable.
    pub fn validate(&self, capacity: u32) -> Result<(), SnapshotError> {
        if self.friends.len() > phonebook_proto::MAX_FRIENDS {
            return Err(SnapshotError::Corrupt("more friends than MAX_FRIENDS"));
        }
        if self.visibility == phonebook_proto::Visibility::Public && !self.friends.is_empty() {
            return Err(SnapshotError::Corrupt("public record with friends"));
        }
        if (self.visibility == phonebook_proto::Visibility::Friends)
            != self.friends_digest.is_some()
        {
            return Err(SnapshotError::Corrupt(
                "friends digest present exactly for friends records",
            ));
        }
        if self.slot >= capacity {
            return Err(SnapshotError::SlotOutOfRange {
                slot: self.slot,
                capacity,
            });
        }
        Ok(())
    }
}

/// Why a snapshot could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Reading failed (not a short file: that is [`SnapshotError::Truncated`]).
    Io(io::Error),
    /// The file does not start with [`MAGIC`].
    BadMagic,
    /// A format version this build does not read.
    UnsupportedVersion(u32),
    /// The file ends early (a write cut short, or a damaged file).
    Truncated,
    /// A field breaks the format (what is wrong, no payload).
    Corrupt(&'static str),
    /// A record's name is not a valid player name.
    BadName(NameError),
    /// A record's slot is at or above the table's capacity (the capacity was lowered?).
    SlotOutOfRange {
        /// The slot read.
        slot: u32,
        /// The capacity given to the reader.
        capacity: u32,
    },
    /// The header announces more records than the capacity.
    TooManyRecords {
        /// Records announced.
        count: u64,
        /// The capacity given to the reader.
        capacity: u32,
    },
    /// Bytes after the trailer.
    TrailingBytes,
    /// The SHA-256 trailer does not match the content.
    ChecksumMismatch,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Io(e) => write!(f, "snapshot read failed: {e}"),
            SnapshotError::BadMagic => f.write_str("not a phone-book snapshot (bad magic)"),
            SnapshotError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "snapshot format version {v} is not supported (this build reads {VERSION_UNSALTED} to {VERSION})"
                )
            }
            SnapshotError::Truncated => f.write_str("snapshot is truncated"),
            SnapshotError::Corrupt(what) => write!(f, "snapshot is corrupt: {what}"),
            SnapshotError::BadName(e) => write!(f, "snapshot is corrupt: bad name: {e}"),
            SnapshotError::SlotOutOfRange { slot, capacity } => {
                write!(
                    f,
                    "snapshot record slot {slot} is not below the capacity {capacity}"
                )
            }
            SnapshotError::TooManyRecords { count, capacity } => {
                write!(
                    f,
                    "snapshot holds {count} records, more than the capacity {capacity}"
                )
            }
            SnapshotError::TrailingBytes => f.write_str("snapshot has bytes after its checksum"),
            SnapshotError::ChecksumMismatch => f.write_str("snapshot checksum does not match"),
        }
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapshotError::Io(e) => Some(e),
            SnapshotError::BadName(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for SnapshotError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            SnapshotError::Truncated
        } else {
            SnapshotError::Io(e)
        }
    }
}

#[cfg(test)]
mod tests;

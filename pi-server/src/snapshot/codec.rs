//! Encoding into a buffer and streaming, validating decoding (see the format in the parent).

use super::{
    MAGIC, RecordState, SnapshotError, SnapshotHeader, SnapshotRecord, TRAILER_LEN, VERSION,
    VERSION_NAMES, VERSION_UNSALTED,
};
use phonebook_proto::name::NAME_MAX_LEN;
use phonebook_proto::{Candidate, CandidateKind, LookupId, PlayerName, Visibility};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{self, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Read buffer of [`SnapshotReader`], in bytes.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

const STATE_LIVE: u8 = 0;
const STATE_RETAINED: u8 = 1;
const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;
const VIS_PUBLIC: u8 = 0;
const VIS_FRIENDS: u8 = 1;

/// Appends the magic, the version and `h`.
pub fn encode_header(h: &SnapshotHeader, out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&h.saved_wall_ms.to_be_bytes());
    out.extend_from_slice(&h.token_secret);
    out.extend_from_slice(&h.record_count.to_be_bytes());
}

/// Appends one record.
///
/// This never fails; a record that breaks the rules of [`SnapshotRecord::validate`] is still
/// framed consistently (over 255 friends are cut to fit their length byte), but the reader
/// will refuse the file.
pub fn encode_record(r: &SnapshotRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(&r.slot.to_be_bytes());
    out.push(match r.state {
        RecordState::Live => STATE_LIVE,
        RecordState::Retained => STATE_RETAINED,
    });
    out.extend_from_slice(r.id.as_bytes());
    out.extend_from_slice(&r.key);
    out.extend_from_slice(&r.signature);
    out.extend_from_slice(&r.timestamp.to_be_bytes());
    match r.ip {
        IpAddr::V4(v4) => {
            out.push(FAMILY_V4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(FAMILY_V6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&r.port.to_be_bytes());
    out.push(match r.visibility {
        Visibility::Public => VIS_PUBLIC,
        Visibility::Friends => VIS_FRIENDS,
    });
    let friends = u8::try_from(r.friends.len()).unwrap_or(u8::MAX);
    out.push(friends);
    for key in &r.friends[..usize::from(friends)] {
        out.extend_from_slice(key);
    }
    if r.visibility == Visibility::Friends {
        out.extend_from_slice(&r.friends_digest.unwrap_or([0; 32]));
    }
    out.extend_from_slice(&r.remaining_secs.to_be_bytes());
    let count = r.candidates.len().min(phonebook_proto::MAX_CANDIDATES);
    out.push(count as u8);
    for c in &r.candidates[..count] {
        out.push(match c.kind {
            CandidateKind::Lan => 0,
            CandidateKind::Reflexive => 1,
            CandidateKind::Mapped => 2,
            CandidateKind::V6 => 3,
            CandidateKind::Relay => 4,
        });
        let (family, ip) = match c.addr.ip() {
            IpAddr::V4(v4) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v4.octets());
                (FAMILY_V4, b)
            }
            IpAddr::V6(v6) => (FAMILY_V6, v6.octets()),
        };
        out.push(family);
        out.extend_from_slice(&c.addr.port().to_be_bytes());
        out.extend_from_slice(&ip);
    }
}

/// Decodes one record that [`encode_record`] wrote, alone (a record carried outside a
/// snapshot file, such as in Redis): the same checks as [`SnapshotReader::next_record`]
/// (slot below `capacity`), and nothing may follow it.
pub fn decode_record(bytes: &[u8], capacity: u32) -> Result<SnapshotRecord, SnapshotError> {
    let mut reader = SnapshotReader {
        input: BufReader::with_capacity(bytes.len().max(1), bytes),
        hasher: Sha256::new(),
        capacity,
        version: VERSION,
        remaining: 1,
        seen_slots: Vec::new(),
        state: State::Records,
    };
    let rec = reader.record()?;
    let mut one = [0u8; 1];
    if read_up_to(&mut reader.input, &mut one)? != 0 {
        return Err(SnapshotError::TrailingBytes);
    }
    Ok(rec)
}

/// Appends the SHA-256 trailer over all of `bytes`, for a snapshot built in memory
/// ([`super::SnapshotWriter`] does this itself for files).
pub fn append_trailer(bytes: &mut Vec<u8>) {
    let digest: [u8; TRAILER_LEN] = Sha256::digest(&bytes[..]).into();
    bytes.extend_from_slice(&digest);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Records,
    Done,
    Failed,
}

/// Reads a snapshot one record at a time, checking everything; see the parent module.
///
/// Memory stays bounded: a [`READ_BUFFER_BYTES`] buffer, one record, and one bit per slot
/// seen (at most `capacity / 8` bytes). After an error every call returns an error.
pub struct SnapshotReader<R> {
    input: BufReader<R>,
    hasher: Sha256,
    capacity: u32,
    version: u32,
    remaining: u64,
    seen_slots: Vec<u64>,
    state: State,
}

impl<R> fmt::Debug for SnapshotReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("capacity", &self.capacity)
            .field("remaining", &self.remaining)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<R: Read> SnapshotReader<R> {
    /// Reads and checks the magic, version and header. `capacity` bounds the record count and
    /// every slot.
    pub fn open(r: R, capacity: u32) -> Result<(Self, SnapshotHeader), SnapshotError> {
        let mut reader = SnapshotReader {
            input: BufReader::with_capacity(READ_BUFFER_BYTES, r),
            hasher: Sha256::new(),
            capacity,
            version: VERSION,
            remaining: 0,
            seen_slots: Vec::new(),
            state: State::Failed,
        };
        let mut magic = [0u8; MAGIC.len()];
        let got = read_up_to(&mut reader.input, &mut magic)?;
        if magic[..got] != MAGIC[..got] {
            return Err(SnapshotError::BadMagic);
        }
        if got < MAGIC.len() {
            return Err(SnapshotError::Truncated);
        }
        reader.hasher.update(magic);
        let version = u32::from_be_bytes(reader.take()?);
        if !(VERSION_UNSALTED..=VERSION).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        reader.version = version;
        let header = SnapshotHeader {
            saved_wall_ms: u64::from_be_bytes(reader.take()?),
            token_secret: reader.take()?,
            record_count: u64::from_be_bytes(reader.take()?),
        };
        if header.record_count > u64::from(capacity) {
            return Err(SnapshotError::TooManyRecords {
                count: header.record_count,
                capacity,
            });
        }
        reader.remaining = header.record_count;
        reader.state = State::Records;
        Ok((reader, header))
    }

    /// The next record; `Ok(None)` once all records were read **and** the trailer matched and
    /// nothing follows it. Records returned before an error are not trustworthy.
    pub fn next_record(&mut self) -> Result<Option<SnapshotRecord>, SnapshotError> {
        match self.state {
            State::Done => return Ok(None),
            State::Failed => return Err(SnapshotError::Corrupt("read after an earlier error")),
            State::Records => {}
        }
        let result = if self.remaining == 0 {
            self.finish().map(|()| None)
        } else {
            self.record().map(Some)
        };
        self.state = match &result {
            Ok(None) => State::Done,
            Ok(Some(_)) => State::Records,
            Err(_) => State::Failed,
        };
        result
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut bytes = [0u8; N];
        self.input.read_exact(&mut bytes)?;
        self.hasher.update(bytes);
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take::<1>()?[0])
    }

    fn record(&mut self) -> Result<SnapshotRecord, SnapshotError> {
        let slot = u32::from_be_bytes(self.take()?);
        if slot >= self.capacity {
            return Err(SnapshotError::SlotOutOfRange {
                slot,
                capacity: self.capacity,
            });
        }
        let state = match self.byte()? {
            STATE_LIVE => RecordState::Live,
            STATE_RETAINED => RecordState::Retained,
            _ => return Err(SnapshotError::Corrupt("unknown record state")),
        };
        let id = if self.version >= VERSION {
            LookupId(self.take()?)
        } else {
            self.old_name()?
        };
        let key = self.take()?;
        let signature = self.take()?;
        let timestamp = u64::from_be_bytes(self.take()?);
        let ip = match self.byte()? {
            FAMILY_V4 => IpAddr::V4(Ipv4Addr::from(self.take::<4>()?)),
            FAMILY_V6 => IpAddr::V6(Ipv6Addr::from(self.take::<16>()?)),
            _ => return Err(SnapshotError::Corrupt("unknown address family")),
        };
        let port = u16::from_be_bytes(self.take()?);
        let visibility = match self.byte()? {
            VIS_PUBLIC => Visibility::Public,
            VIS_FRIENDS => Visibility::Friends,
            _ => return Err(SnapshotError::Corrupt("unknown visibility")),
        };
        let count = usize::from(self.byte()?);
        if count > phonebook_proto::MAX_FRIENDS {
            return Err(SnapshotError::Corrupt("more friends than MAX_FRIENDS"));
        }
        if visibility == Visibility::Public && count != 0 {
            return Err(SnapshotError::Corrupt("public record with friends"));
        }
        let mut friends = Vec::with_capacity(count);
        for _ in 0..count {
            friends.push(self.take()?);
        }
        let friends_digest = match visibility {
            Visibility::Public => None,
            Visibility::Friends if self.version == VERSION_UNSALTED => {
                Some(unsalted_digest(&friends))
            }
            Visibility::Friends => Some(self.take()?),
        };
        let remaining_secs = u32::from_be_bytes(self.take()?);
        let candidates = if self.version >= VERSION_NAMES {
            self.candidates()?
        } else {
            Vec::new()
        };
        self.mark_slot(slot)?;
        self.remaining -= 1;
        Ok(SnapshotRecord {
            slot,
            state,
            id,
            key,
            signature,
            timestamp,
            ip,
            port,
            visibility,
            friends,
            friends_digest,
            remaining_secs,
            candidates,
        })
    }

    /// The name field of versions 1 to 3, hashed into its lookup id.
    fn old_name(&mut self) -> Result<LookupId, SnapshotError> {
        let name_len = usize::from(self.byte()?);
        if name_len == 0 || name_len > NAME_MAX_LEN {
            return Err(SnapshotError::Corrupt("name length out of range"));
        }
        let mut name = [0u8; NAME_MAX_LEN];
        let name = &mut name[..name_len];
        self.input.read_exact(name)?;
        self.hasher.update(&*name);
        let text =
            core::str::from_utf8(name).map_err(|_| SnapshotError::Corrupt("name is not UTF-8"))?;
        let name = PlayerName::parse(text).map_err(SnapshotError::BadName)?;
        Ok(LookupId::of(&name))
    }

    fn candidates(&mut self) -> Result<Vec<Candidate>, SnapshotError> {
        let count = usize::from(self.byte()?);
        if count > phonebook_proto::MAX_CANDIDATES {
            return Err(SnapshotError::Corrupt(
                "more candidates than MAX_CANDIDATES",
            ));
        }
        let mut list = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = match self.byte()? {
                0 => CandidateKind::Lan,
                1 => CandidateKind::Reflexive,
                2 => CandidateKind::Mapped,
                3 => CandidateKind::V6,
                4 => CandidateKind::Relay,
                _ => return Err(SnapshotError::Corrupt("unknown candidate kind")),
            };
            let family = self.byte()?;
            let port = u16::from_be_bytes(self.take()?);
            let ip: [u8; 16] = self.take()?;
            let ip = match family {
                FAMILY_V4 if ip[4..] == [0; 12] => {
                    IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))
                }
                FAMILY_V6 => IpAddr::V6(Ipv6Addr::from(ip)),
                _ => return Err(SnapshotError::Corrupt("bad candidate address")),
            };
            list.push(Candidate::new(kind, std::net::SocketAddr::new(ip, port)));
        }
        phonebook_proto::candidate::check_list(&list)
            .map_err(|_| SnapshotError::Corrupt("unusable or repeated candidate"))?;
        Ok(list)
    }

    fn mark_slot(&mut self, slot: u32) -> Result<(), SnapshotError> {
        let word = (slot / 64) as usize;
        let bit = 1u64 << (slot % 64);
        if word >= self.seen_slots.len() {
            self.seen_slots.resize(word + 1, 0);
        }
        if self.seen_slots[word] & bit != 0 {
            return Err(SnapshotError::Corrupt("slot used twice"));
        }
        self.seen_slots[word] |= bit;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SnapshotError> {
        let mut trailer = [0u8; TRAILER_LEN];
        self.input.read_exact(&mut trailer)?;
        let digest: [u8; TRAILER_LEN] = self.hasher.clone().finalize().into();
        if digest != trailer {
            return Err(SnapshotError::ChecksumMismatch);
        }
        let mut one = [0u8; 1];
        if read_up_to(&mut self.input, &mut one)? != 0 {
            return Err(SnapshotError::TrailingBytes);
        }
        Ok(())
    }
}

/// The `friendsDigest` of a record written before friend lists were salted (snapshot version 1):
/// SHA-256 of the keys sorted bytewise and concatenated.
fn unsalted_digest(friends: &[[u8; 32]]) -> [u8; 32] {
    let mut sorted = friends.to_vec();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    for k in &sorted {
        h.update(k);
    }
    h.finalize().into()
}

/// Fills `buf` as far as the input goes; returns how many bytes were read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, SnapshotError> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SnapshotError::Io(e)),
        }
    }
    Ok(got)
}

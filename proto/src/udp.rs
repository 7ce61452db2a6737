//! The phone book's UDP messages (normative; docs/PROTOCOL.md "UDP service"): address discovery,
//! keep-alives that hold the NAT mapping a player published, and hole-punch coordination.
//!
//! Every message starts with [`MAGIC`] and a type byte. The first magic byte has the QUIC
//! "fixed bit" (0x40) clear, so a peer tells these apart from QUIC packets arriving on the same
//! socket by the first byte alone (as RFC 7983 does for STUN and DTLS).
//!
//! No answer is larger than the request that caused it, and a forward to a target is never
//! larger than the request that asked for it: the service cannot amplify a spoofed request.
//! Authenticated messages carry the requester's lookup token's slot and timestamp and an 8-byte
//! tag: HMAC-SHA256 keyed with the 16-byte tag of that token (never sent over UDP), over every
//! byte before the tag, truncated. A counter that must grow keeps a copy from being replayed.
//!
//! Decoding is strict: a wrong length, magic, type or reserved byte is an error, never a panic.

use crate::b64;
use crate::key::PublicKey;
use crate::lookup_id::LookupId;
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// First four bytes of every message: 0x1b (QUIC fixed bit clear), then `FX1`.
pub const MAGIC: [u8; 4] = [0x1b, b'F', b'X', b'1'];
/// Bytes of a binding request (zero padding makes it as large as its answer).
pub const BINDING_REQUEST_LEN: usize = 36;
/// Bytes of a keep-alive.
pub const KEEPALIVE_LEN: usize = 5 + 4 + 8 + 8 + TAG_LEN;
/// Bytes of a punch request.
pub const PUNCH_REQUEST_LEN: usize = 5 + 4 + 8 + 8 + 8 + 1 + TARGET_FIELD + 2 * ADDR_LEN + TAG_LEN;
/// Bytes of a forwarded punch request.
pub const PUNCH_FORWARD_LEN: usize = 5 + 8 + 32 + 3 * ADDR_LEN + TAG_LEN;
/// Bytes of a relay call.
pub const RELAY_CALL_LEN: usize = 5 + 16 + 32 + TAG_LEN;
/// Bytes of a punch or punch acknowledgement between peers.
pub const PUNCH_LEN: usize = 5 + 8;
/// Bytes of the truncated HMAC tag.
pub const TAG_LEN: usize = 8;
/// Bytes of an encoded address: family (0 none, 4, 6), port, 16 address bytes.
pub const ADDR_LEN: usize = 19;
/// Bytes of the target field of a punch request: its lookup id, then zeros (the field is
/// longer than the id so that a request stays larger than anything it causes).
const TARGET_FIELD: usize = 64;
/// The length byte before the target field: the lookup id's 32 bytes.
const TARGET_ID_LEN: u8 = 32;
const _: () = assert!(PUNCH_FORWARD_LEN <= PUNCH_REQUEST_LEN);
/// The largest message: a receive buffer this large holds any of them.
pub const MAX_LEN: usize = PUNCH_REQUEST_LEN;

/// What a punch request's answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunchStatus {
    /// The target was told; it will send to the requester's addresses.
    Forwarded,
    /// No such player for this requester: absent, hidden from it, or offline. The same answer
    /// in all three cases.
    Unknown,
    /// The target may be seen but sends no keep-alives: it cannot be told (try its candidates
    /// directly, or a relay).
    NoPath,
}

/// One message.
// Messages are short-lived values decoded from one datagram: boxing the larger variants
// would cost an allocation per packet for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Peer -> phone book: "from which address do you see me?" Unauthenticated.
    BindingRequest {
        /// Chosen at random by the requester, echoed in the answer.
        txid: [u8; 8],
    },
    /// Phone book -> peer.
    BindingAnswer {
        /// The request's id.
        txid: [u8; 8],
        /// The source address of the request, as the phone book saw it.
        observed: SocketAddr,
        /// Another UDP port of the phone book at the same address (0: none): a second request
        /// there tells whether the NAT's mapping depends on the destination.
        alt_port: u16,
    },
    /// Peer -> phone book: "I am online at this source address"; keeps the NAT mapping open.
    KeepAlive {
        /// The requester's token's slot and timestamp.
        auth: Auth,
        /// Grows with every keep-alive and punch request of one registration.
        counter: u64,
    },
    /// Phone book -> peer.
    KeepAliveAnswer {
        /// The keep-alive's counter.
        counter: u64,
        /// Its source address as seen by the phone book.
        observed: SocketAddr,
    },
    /// Fetcher -> phone book: "tell `target` that I want to connect".
    PunchRequest {
        /// The requester's token's slot and timestamp.
        auth: Auth,
        /// See [`Message::KeepAlive`].
        counter: u64,
        /// Chosen at random; the target's punches carry it.
        nonce: [u8; 8],
        /// The player to reach, by lookup id (the name never travels).
        target: LookupId,
        /// Up to two more addresses of the requester for the target to try (LAN, IPv6).
        extra: [Option<SocketAddr>; 2],
    },
    /// Phone book -> fetcher.
    PunchAnswer {
        /// The request's counter.
        counter: u64,
        /// What happened.
        status: PunchStatus,
    },
    /// Phone book -> target, through the target's keep-alive mapping.
    PunchForward {
        /// The requester's nonce.
        nonce: [u8; 8],
        /// The requester's key: the target serves only keys it allows.
        requester: PublicKey,
        /// The requester's address as the phone book saw it, then its extra addresses.
        addrs: [Option<SocketAddr>; 3],
    },
    /// Phone book -> target, through the target's keep-alive mapping: `requester` waits at the
    /// phone book's relay (docs/PROTOCOL.md "Relay"); connect there and accept with `ticket`.
    RelayCall {
        /// The one-time ticket of the session.
        ticket: [u8; 16],
        /// The requester's key: the target serves only keys it allows.
        requester: PublicKey,
    },
    /// Peer -> peer: "here I am" (opens our NAT toward the other side).
    Punch {
        /// The punch request's nonce.
        nonce: [u8; 8],
    },
    /// Peer -> peer: answer to a punch, sent to its source address.
    PunchAck {
        /// The punch's nonce.
        nonce: [u8; 8],
    },
}

/// Which registration an authenticated message speaks for: the slot and timestamp of the
/// requester's lookup token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auth {
    /// The token's slot.
    pub slot: u32,
    /// The token's registration timestamp.
    pub timestamp: u64,
}

/// A lookup token taken apart (docs/PROTOCOL.md "Tokens"): what signs UDP messages.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenParts {
    /// Slot and timestamp.
    pub auth: Auth,
    /// The token's 16-byte tag: the key of UDP message tags.
    pub key: [u8; 16],
}

impl fmt::Debug for TokenParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenParts")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl TokenParts {
    /// Parses a version-2 token (standard base64 of 29 bytes); `None` for anything else.
    pub fn parse(token: &str) -> Option<Self> {
        let raw = b64::decode_exact::<29>(token)?;
        if raw[0] != 2 {
            return None;
        }
        let mut key = [0; 16];
        key.copy_from_slice(&raw[13..]);
        Some(TokenParts {
            auth: Auth {
                slot: u32::from_be_bytes(raw[1..5].try_into().ok()?),
                timestamp: u64::from_be_bytes(raw[5..13].try_into().ok()?),
            },
            key,
        })
    }
}

/// Why bytes are not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not our magic: not a phone-book message at all.
    NotOurs,
    /// Unknown type byte.
    Type(u8),
    /// Wrong length for its type.
    Length,
    /// A reserved byte, family, status or name is invalid.
    Invalid,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOurs => f.write_str("not a phone-book UDP message"),
            Self::Type(t) => write!(f, "unknown message type {t}"),
            Self::Length => f.write_str("wrong length for its type"),
            Self::Invalid => f.write_str("invalid field"),
        }
    }
}

impl std::error::Error for DecodeError {}

mod ty {
    pub const BINDING_REQUEST: u8 = 1;
    pub const BINDING_ANSWER: u8 = 2;
    pub const KEEPALIVE: u8 = 3;
    pub const KEEPALIVE_ANSWER: u8 = 4;
    pub const PUNCH_REQUEST: u8 = 5;
    pub const PUNCH_ANSWER: u8 = 6;
    pub const PUNCH_FORWARD: u8 = 7;
    pub const PUNCH: u8 = 8;
    pub const PUNCH_ACK: u8 = 9;
    pub const RELAY_CALL: u8 = 10;
}

/// Whether `datagram` could be one of ours (the magic): what a socket shared with QUIC checks.
pub fn is_ours(datagram: &[u8]) -> bool {
    datagram.len() >= 5 && datagram[..4] == MAGIC
}

/// HMAC-SHA256 of `data` under `key`, truncated to [`TAG_LEN`] bytes.
pub fn tag(key: &[u8; 16], data: &[u8]) -> [u8; TAG_LEN] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for i in 0..16 {
        ipad[i] ^= key[i];
        opad[i] ^= key[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(data)
        .finalize();
    let outer = Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize();
    let mut t = [0; TAG_LEN];
    t.copy_from_slice(&outer[..TAG_LEN]);
    t
}

/// Whether the last [`TAG_LEN`] bytes of an authenticated message are its tag under `key`
/// (compared in constant time).
pub fn tag_ok(key: &[u8; 16], datagram: &[u8]) -> bool {
    let Some(split) = datagram.len().checked_sub(TAG_LEN) else {
        return false;
    };
    let want = tag(key, &datagram[..split]);
    want.iter()
        .zip(&datagram[split..])
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// One address field (see the module docs: family, port, 16 address bytes), as the messages
/// carry it; also used by the phone book's messages between its instances.
pub fn encode_addr(addr: Option<SocketAddr>) -> [u8; ADDR_LEN] {
    let mut out = Vec::with_capacity(ADDR_LEN);
    put_addr(&mut out, addr);
    let mut a = [0; ADDR_LEN];
    a.copy_from_slice(&out);
    a
}

/// Reads one address field: [`DecodeError::Invalid`] for a bad family, port or padding.
pub fn decode_addr(field: &[u8; ADDR_LEN]) -> Result<Option<SocketAddr>, DecodeError> {
    Reader(field).addr()
}

fn put_addr(out: &mut Vec<u8>, addr: Option<SocketAddr>) {
    match addr {
        None => out.extend_from_slice(&[0; ADDR_LEN]),
        Some(a) => {
            let (family, ip) = match a.ip() {
                IpAddr::V4(v4) => {
                    let mut b = [0; 16];
                    b[..4].copy_from_slice(&v4.octets());
                    (4, b)
                }
                IpAddr::V6(v6) => (6, v6.octets()),
            };
            out.push(family);
            out.extend_from_slice(&a.port().to_be_bytes());
            out.extend_from_slice(&ip);
        }
    }
}

/// A bounded reader: every read fails on short input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Length);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn addr(&mut self) -> Result<Option<SocketAddr>, DecodeError> {
        let family = self.array::<1>()?[0];
        let port = self.u16()?;
        let ip: [u8; 16] = self.array()?;
        match family {
            0 if port == 0 && ip == [0; 16] => Ok(None),
            4 if port != 0 && ip[4..] == [0; 12] => {
                let v4 = Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]);
                Ok(Some(SocketAddr::new(v4.into(), port)))
            }
            6 if port != 0 => Ok(Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port))),
            _ => Err(DecodeError::Invalid),
        }
    }
    fn auth(&mut self) -> Result<Auth, DecodeError> {
        Ok(Auth {
            slot: self.u32()?,
            timestamp: self.u64()?,
        })
    }
    fn zeros(&mut self, n: usize) -> Result<(), DecodeError> {
        if self.take(n)?.iter().any(|&b| b != 0) {
            return Err(DecodeError::Invalid);
        }
        Ok(())
    }
    fn end(self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Length)
        }
    }
}

impl Message {
    /// The wire bytes. Authenticated messages (keep-alive, punch request, punch forward) are
    /// tagged with `key` (their token's tag); others ignore it.
    pub fn encode(&self, key: &[u8; 16]) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_LEN);
        out.extend_from_slice(&MAGIC);
        let tagged = match self {
            Self::BindingRequest { txid } => {
                out.push(ty::BINDING_REQUEST);
                out.extend_from_slice(txid);
                out.resize(BINDING_REQUEST_LEN, 0);
                false
            }
            Self::BindingAnswer {
                txid,
                observed,
                alt_port,
            } => {
                out.push(ty::BINDING_ANSWER);
                out.extend_from_slice(txid);
                put_addr(&mut out, Some(*observed));
                out.extend_from_slice(&alt_port.to_be_bytes());
                false
            }
            Self::KeepAlive { auth, counter } => {
                out.push(ty::KEEPALIVE);
                out.extend_from_slice(&auth.slot.to_be_bytes());
                out.extend_from_slice(&auth.timestamp.to_be_bytes());
                out.extend_from_slice(&counter.to_be_bytes());
                true
            }
            Self::KeepAliveAnswer { counter, observed } => {
                out.push(ty::KEEPALIVE_ANSWER);
                out.extend_from_slice(&counter.to_be_bytes());
                put_addr(&mut out, Some(*observed));
                false
            }
            Self::PunchRequest {
                auth,
                counter,
                nonce,
                target,
                extra,
            } => {
                out.push(ty::PUNCH_REQUEST);
                out.extend_from_slice(&auth.slot.to_be_bytes());
                out.extend_from_slice(&auth.timestamp.to_be_bytes());
                out.extend_from_slice(&counter.to_be_bytes());
                out.extend_from_slice(nonce);
                out.push(TARGET_ID_LEN);
                out.extend_from_slice(target.as_bytes());
                out.resize(out.len() + TARGET_FIELD - usize::from(TARGET_ID_LEN), 0);
                for a in extra {
                    put_addr(&mut out, *a);
                }
                true
            }
            Self::PunchAnswer { counter, status } => {
                out.push(ty::PUNCH_ANSWER);
                out.extend_from_slice(&counter.to_be_bytes());
                out.push(match status {
                    PunchStatus::Forwarded => 0,
                    PunchStatus::Unknown => 1,
                    PunchStatus::NoPath => 2,
                });
                false
            }
            Self::PunchForward {
                nonce,
                requester,
                addrs,
            } => {
                out.push(ty::PUNCH_FORWARD);
                out.extend_from_slice(nonce);
                out.extend_from_slice(requester.as_bytes());
                for a in addrs {
                    put_addr(&mut out, *a);
                }
                true
            }
            Self::RelayCall { ticket, requester } => {
                out.push(ty::RELAY_CALL);
                out.extend_from_slice(ticket);
                out.extend_from_slice(requester.as_bytes());
                true
            }
            Self::Punch { nonce } => {
                out.push(ty::PUNCH);
                out.extend_from_slice(nonce);
                false
            }
            Self::PunchAck { nonce } => {
                out.push(ty::PUNCH_ACK);
                out.extend_from_slice(nonce);
                false
            }
        };
        if tagged {
            let t = tag(key, &out);
            out.extend_from_slice(&t);
        }
        out
    }

    /// Parses a message (not its tag: check that with [`tag_ok`] once the key is known).
    pub fn decode(datagram: &[u8]) -> Result<Self, DecodeError> {
        if !is_ours(datagram) {
            return Err(DecodeError::NotOurs);
        }
        let mut r = Reader(&datagram[5..]);
        let t = datagram[4];
        let m = match t {
            ty::BINDING_REQUEST => {
                let txid = r.array()?;
                r.zeros(BINDING_REQUEST_LEN - 13)?;
                Self::BindingRequest { txid }
            }
            ty::BINDING_ANSWER => Self::BindingAnswer {
                txid: r.array()?,
                observed: r.addr()?.ok_or(DecodeError::Invalid)?,
                alt_port: r.u16()?,
            },
            ty::KEEPALIVE => {
                let m = Self::KeepAlive {
                    auth: r.auth()?,
                    counter: r.u64()?,
                };
                r.take(TAG_LEN)?;
                m
            }
            ty::KEEPALIVE_ANSWER => Self::KeepAliveAnswer {
                counter: r.u64()?,
                observed: r.addr()?.ok_or(DecodeError::Invalid)?,
            },
            ty::PUNCH_REQUEST => {
                let auth = r.auth()?;
                let counter = r.u64()?;
                let nonce = r.array()?;
                let len = r.array::<1>()?[0];
                let field = r.take(TARGET_FIELD)?;
                let id = usize::from(TARGET_ID_LEN);
                if len != TARGET_ID_LEN || field[id..].iter().any(|&b| b != 0) {
                    return Err(DecodeError::Invalid);
                }
                let target = LookupId(field[..id].try_into().expect("32 bytes"));
                let extra = [r.addr()?, r.addr()?];
                r.take(TAG_LEN)?;
                Self::PunchRequest {
                    auth,
                    counter,
                    nonce,
                    target,
                    extra,
                }
            }
            ty::PUNCH_ANSWER => Self::PunchAnswer {
                counter: r.u64()?,
                status: match r.array::<1>()?[0] {
                    0 => PunchStatus::Forwarded,
                    1 => PunchStatus::Unknown,
                    2 => PunchStatus::NoPath,
                    _ => return Err(DecodeError::Invalid),
                },
            },
            ty::PUNCH_FORWARD => {
                let nonce = r.array()?;
                let requester =
                    PublicKey::from_bytes(&r.array()?).map_err(|_| DecodeError::Invalid)?;
                let addrs = [r.addr()?, r.addr()?, r.addr()?];
                r.take(TAG_LEN)?;
                Self::PunchForward {
                    nonce,
                    requester,
                    addrs,
                }
            }
            ty::RELAY_CALL => {
                let ticket = r.array()?;
                let requester =
                    PublicKey::from_bytes(&r.array()?).map_err(|_| DecodeError::Invalid)?;
                r.take(TAG_LEN)?;
                Self::RelayCall { ticket, requester }
            }
            ty::PUNCH => Self::Punch { nonce: r.array()? },
            ty::PUNCH_ACK => Self::PunchAck { nonce: r.array()? },
            other => return Err(DecodeError::Type(other)),
        };
        r.end()?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Message> {
        let auth = Auth {
            slot: 7,
            timestamp: 1_764_000_000_000,
        };
        let v4: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::9]:7000".parse().unwrap();
        let name = LookupId::of(&crate::PlayerName::parse("Alice Smith@Gilgamesh").unwrap());
        vec![
            Message::BindingRequest { txid: [1; 8] },
            Message::BindingAnswer {
                txid: [1; 8],
                observed: v6,
                alt_port: 3479,
            },
            Message::KeepAlive { auth, counter: 9 },
            Message::KeepAliveAnswer {
                counter: 9,
                observed: v6,
            },
            Message::PunchRequest {
                auth,
                counter: 10,
                nonce: [3; 8],
                target: name,
                extra: [Some(v6), None],
            },
            Message::PunchAnswer {
                counter: 10,
                status: PunchStatus::NoPath,
            },
            Message::PunchForward {
                nonce: [3; 8],
                requester: crate::Keypair::from_seed(&[4; 32]).public(),
                addrs: [Some(v4), Some(v6), None],
            },
            Message::Punch { nonce: [5; 8] },
            Message::PunchAck { nonce: [5; 8] },
            Message::RelayCall {
                ticket: [6; 16],
                requester: crate::Keypair::from_seed(&[4; 32]).public(),
            },
        ]
    }

    #[test]
    fn round_trips_and_lengths() {
        let key = [9; 16];
        for m in samples() {
            let bytes = m.encode(&key);
            assert_eq!(Message::decode(&bytes), Ok(m.clone()), "{m:?}");
            assert!(bytes.len() <= MAX_LEN);
            assert_eq!(bytes[0] & 0x40, 0, "must not look like QUIC");
            let want = match m {
                Message::BindingRequest { .. } => BINDING_REQUEST_LEN,
                Message::KeepAlive { .. } => KEEPALIVE_LEN,
                Message::PunchRequest { .. } => PUNCH_REQUEST_LEN,
                Message::PunchForward { .. } => PUNCH_FORWARD_LEN,
                Message::Punch { .. } | Message::PunchAck { .. } => PUNCH_LEN,
                Message::RelayCall { .. } => RELAY_CALL_LEN,
                _ => bytes.len(),
            };
            assert_eq!(bytes.len(), want, "{m:?}");
            // Cut short or lengthened: refused.
            assert!(Message::decode(&bytes[..bytes.len() - 1]).is_err());
            let mut long = bytes.clone();
            long.push(0);
            assert!(Message::decode(&long).is_err());
        }
    }

    #[test]
    fn no_answer_is_larger_than_its_request() {
        let key = [0; 16];
        let s = samples();
        // binding answer (IPv6) <= binding request; keep-alive answer <= keep-alive;
        // punch answer and forward <= punch request.
        assert!(s[1].encode(&key).len() <= s[0].encode(&key).len());
        assert!(s[3].encode(&key).len() <= s[2].encode(&key).len());
        assert!(s[5].encode(&key).len() <= s[4].encode(&key).len());
        assert!(s[6].encode(&key).len() <= s[4].encode(&key).len());
        assert!(s[8].encode(&key).len() <= s[7].encode(&key).len());
    }

    #[test]
    fn tags_check_and_token_parts() {
        let key = [9; 16];
        let bytes = samples()[2].encode(&key);
        assert!(tag_ok(&key, &bytes));
        assert!(!tag_ok(&[8; 16], &bytes));
        let mut flipped = bytes.clone();
        flipped[10] ^= 1;
        assert!(!tag_ok(&key, &flipped));
        assert!(!tag_ok(&key, &bytes[..4]));
        let mut raw = [0u8; 29];
        raw[0] = 2;
        raw[1..5].copy_from_slice(&7u32.to_be_bytes());
        raw[5..13].copy_from_slice(&42u64.to_be_bytes());
        raw[13..].copy_from_slice(&[6; 16]);
        let parts = TokenParts::parse(&b64::encode(&raw)).unwrap();
        assert_eq!(
            parts.auth,
            Auth {
                slot: 7,
                timestamp: 42
            }
        );
        assert_eq!(parts.key, [6; 16]);
        raw[0] = 1;
        assert_eq!(TokenParts::parse(&b64::encode(&raw)), None);
        assert_eq!(TokenParts::parse("not a token"), None);
    }

    #[test]
    fn strictness() {
        assert_eq!(Message::decode(b""), Err(DecodeError::NotOurs));
        assert_eq!(Message::decode(&[0xc0; 40]), Err(DecodeError::NotOurs));
        let mut b = samples()[0].encode(&[0; 16]);
        b[20] = 1; // padding must be zero
        assert_eq!(Message::decode(&b), Err(DecodeError::Invalid));
        let mut b = samples()[0].encode(&[0; 16]);
        b[4] = 99;
        assert_eq!(Message::decode(&b), Err(DecodeError::Type(99)));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::decode(&bytes);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            if let Ok(m) = Message::decode(&with_magic) {
                // Whatever decodes re-encodes to the same bytes (tags aside).
                let again = m.encode(&[0; 16]);
                prop_assert_eq!(again.len(), with_magic.len());
            }
        }
    }
}

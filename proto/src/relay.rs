//! The relay's frames (normative; docs/PROTOCOL.md "Relay"): what a peer and the relay say
//! over one TLS 1.3 connection on TCP (ALPN [`ALPN`]).
//!
//! The relay carries the peers' own QUIC packets as [`Frame::Data`], one datagram per frame: it
//! sees only ciphertext it cannot read or alter (QUIC authenticates every packet end to end),
//! and the transfer code does not know whether a path is relayed.
//!
//! A frame is a type byte, a big-endian `u16` body length and the body; no body is longer than
//! [`MAX_BODY`]. [`Frame::decode`] reads one frame from the front of a buffer, says when more
//! bytes are needed, and rejects anything malformed with a typed error, never a panic.
//!
//! A conversation: the peer sends [`Frame::Hello`] with its lookup token (proof of a live,
//! signed registration: the relay knows its key); the relay answers [`Frame::Welcome`] or
//! [`Frame::Refused`] and closes. A peer that wants to reach a player sends [`Frame::Open`]
//! with a session number of its choice; the relay checks that the target allows the requester
//! (the lookup rules) and tells the target, on a connection the target holds open after
//! [`Frame::Listen`] or through a UDP call (docs/PROTOCOL.md "UDP service", `RelayCall`), with
//! [`Frame::Incoming`] and a one-time ticket. The target answers [`Frame::Accept`] with the
//! ticket and a session number of its own; the requester gets [`Frame::Opened`], and
//! [`Frame::Data`] flows both ways until either side sends [`Frame::Close`]. An absent, hidden
//! or offline target gets the same [`CloseReason::Unknown`].
//!
//! A **peer relay** (a player who relays for their friends, docs/PROTOCOL.md "Peer relays")
//! speaks the same frames with two differences: the peer proves its key with its TLS client
//! certificate and opens with [`Frame::Join`] instead of a token, and it names targets by key
//! with [`Frame::OpenKey`] (a peer relay knows its friends' keys, not their names).

use crate::key::PublicKey;
use crate::lookup_id::LookupId;
use std::fmt;
use std::time::Duration;

/// ALPN of the relay protocol.
pub const ALPN: &[u8] = b"ffxiv-p2p-relay/1";
/// Bytes of a frame header: type and body length.
pub const HEADER_LEN: usize = 3;
/// The largest datagram a [`Frame::Data`] carries (QUIC's packets are at most 1452 bytes by
/// quinn's default; room for larger MTUs is left).
pub const MAX_DATAGRAM: usize = 1500;
/// The largest body of any frame.
pub const MAX_BODY: usize = 4 + MAX_DATAGRAM;
/// Bytes of a lookup token, raw (docs/PROTOCOL.md "Tokens").
pub const TOKEN_LEN: usize = 29;
/// Bytes of an incoming-session ticket.
pub const TICKET_LEN: usize = 16;

/// Why the relay refuses a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// The token is not that of a live registration (re-register and try again).
    Unauthenticated,
    /// The relay holds as many connections as it may (in total or from this address).
    Full,
    /// The peer broke the protocol or a limit (too many sessions, oversized or unknown frames).
    Protocol,
    /// The relay is shutting down.
    ShuttingDown,
}

/// Why a session ends (or never opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Closed by a side on purpose.
    Normal,
    /// No such player for this requester: absent, hidden from it, or offline. One answer.
    Unknown,
    /// The target may be seen but cannot be told (no relay connection and no UDP mapping).
    NoPath,
    /// The target did not accept in time.
    Timeout,
    /// A limit of the relay (sessions per peer, in total).
    Limit,
    /// The other side's connection to the relay ended.
    Gone,
}

/// One frame. `Data` borrows its payload from the buffer it was decoded from.
// Frames are short-lived values decoded in place: boxing the name of `Open` would cost an
// allocation per frame for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Peer -> relay, first frame: a raw lookup token.
    Hello {
        /// The token, decoded from base64.
        token: [u8; TOKEN_LEN],
    },
    /// Relay -> peer: authenticated.
    Welcome {
        /// Seconds of silence after which the relay closes the connection: send
        /// [`Frame::Ping`] more often than this when idle.
        idle_secs: u16,
    },
    /// Relay -> peer, then the relay closes.
    Refused {
        /// Why.
        reason: RefuseReason,
    },
    /// Peer -> relay: tell me of incoming sessions on this connection.
    Listen,
    /// Peer -> relay: connect me to `target`.
    Open {
        /// The requester's number for the session.
        session: u32,
        /// The player to reach, by lookup id (the name never travels).
        target: LookupId,
    },
    /// Relay -> target: `requester` wants a session.
    Incoming {
        /// What [`Frame::Accept`] must show.
        ticket: [u8; TICKET_LEN],
        /// The requester's key: the target serves only keys it allows.
        requester: PublicKey,
    },
    /// Target -> relay: accept the session of `ticket`, numbered `session` on this connection.
    Accept {
        /// The target's number for the session.
        session: u32,
        /// From [`Frame::Incoming`] or the UDP call.
        ticket: [u8; TICKET_LEN],
    },
    /// Relay -> requester: the target accepted; data may flow.
    Opened {
        /// The requester's number.
        session: u32,
    },
    /// Either way: the session ends (or never opened).
    Close {
        /// The receiver's number for the session (the relay translates).
        session: u32,
        /// Why.
        reason: CloseReason,
    },
    /// Either way: one datagram of the session.
    Data {
        /// The receiver's number for the session when sent by the relay, the sender's when
        /// sent to it.
        session: u32,
        /// The datagram (a QUIC packet), 1 to [`MAX_DATAGRAM`] bytes.
        payload: &'a [u8],
    },
    /// Either way: are you there?
    Ping {
        /// Echoed in the answer.
        nonce: [u8; 8],
    },
    /// Answer to a ping.
    Pong {
        /// The ping's nonce.
        nonce: [u8; 8],
    },
    /// Peer -> peer relay, first frame: authenticate by the TLS client certificate's key.
    Join,
    /// Peer -> peer relay: connect me to the friend whose key is `target`.
    OpenKey {
        /// The requester's number for the session.
        session: u32,
        /// The key of the player to reach.
        target: PublicKey,
    },
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Unknown type byte.
    Type(u8),
    /// The announced body is longer than [`MAX_BODY`].
    TooLong(usize),
    /// Wrong body length for its type.
    Length,
    /// A reason, key, name or reserved value is invalid.
    Invalid,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Type(t) => write!(f, "unknown relay frame type {t}"),
            Self::TooLong(n) => write!(f, "relay frame of {n} bytes (at most {MAX_BODY})"),
            Self::Length => f.write_str("wrong relay frame length for its type"),
            Self::Invalid => f.write_str("invalid relay frame field"),
        }
    }
}

impl std::error::Error for FrameError {}

mod ty {
    pub const HELLO: u8 = 1;
    pub const WELCOME: u8 = 2;
    pub const REFUSED: u8 = 3;
    pub const LISTEN: u8 = 4;
    pub const OPEN: u8 = 5;
    pub const INCOMING: u8 = 6;
    pub const ACCEPT: u8 = 7;
    pub const OPENED: u8 = 8;
    pub const CLOSE: u8 = 9;
    pub const DATA: u8 = 10;
    pub const PING: u8 = 11;
    pub const PONG: u8 = 12;
    pub const JOIN: u8 = 13;
    pub const OPEN_KEY: u8 = 14;
}

impl RefuseReason {
    fn byte(self) -> u8 {
        match self {
            Self::Unauthenticated => 1,
            Self::Full => 2,
            Self::Protocol => 3,
            Self::ShuttingDown => 4,
        }
    }

    fn from_byte(b: u8) -> Result<Self, FrameError> {
        Ok(match b {
            1 => Self::Unauthenticated,
            2 => Self::Full,
            3 => Self::Protocol,
            4 => Self::ShuttingDown,
            _ => return Err(FrameError::Invalid),
        })
    }
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unauthenticated => {
                "not authenticated (a lookup token not valid, or a key the relay does not serve)"
            }
            Self::Full => "relay full",
            Self::Protocol => "protocol error or limit",
            Self::ShuttingDown => "relay shutting down",
        })
    }
}

impl CloseReason {
    fn byte(self) -> u8 {
        match self {
            Self::Normal => 0,
            Self::Unknown => 1,
            Self::NoPath => 2,
            Self::Timeout => 3,
            Self::Limit => 4,
            Self::Gone => 5,
        }
    }

    fn from_byte(b: u8) -> Result<Self, FrameError> {
        Ok(match b {
            0 => Self::Normal,
            1 => Self::Unknown,
            2 => Self::NoPath,
            3 => Self::Timeout,
            4 => Self::Limit,
            5 => Self::Gone,
            _ => return Err(FrameError::Invalid),
        })
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Normal => "closed",
            Self::Unknown => "no such player",
            Self::NoPath => "the player cannot be told (offline from the relay)",
            Self::Timeout => "the player did not answer in time",
            Self::Limit => "a relay limit",
            Self::Gone => "the other side left the relay",
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Length);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn end(&self) -> Result<(), FrameError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Length)
        }
    }
}

impl<'a> Frame<'a> {
    /// Appends the frame's bytes to `out`. A `Data` payload longer than [`MAX_DATAGRAM`] is a
    /// caller's bug: it is truncated by no one, so check [`MAX_DATAGRAM`] first (debug builds
    /// assert).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0, 0, 0]);
        let t = match self {
            Self::Hello { token } => {
                out.extend_from_slice(token);
                ty::HELLO
            }
            Self::Welcome { idle_secs } => {
                out.extend_from_slice(&idle_secs.to_be_bytes());
                ty::WELCOME
            }
            Self::Refused { reason } => {
                out.push(reason.byte());
                ty::REFUSED
            }
            Self::Listen => ty::LISTEN,
            Self::Open { session, target } => {
                out.extend_from_slice(&session.to_be_bytes());
                out.extend_from_slice(target.as_bytes());
                ty::OPEN
            }
            Self::Incoming { ticket, requester } => {
                out.extend_from_slice(ticket);
                out.extend_from_slice(requester.as_bytes());
                ty::INCOMING
            }
            Self::Accept { session, ticket } => {
                out.extend_from_slice(&session.to_be_bytes());
                out.extend_from_slice(ticket);
                ty::ACCEPT
            }
            Self::Opened { session } => {
                out.extend_from_slice(&session.to_be_bytes());
                ty::OPENED
            }
            Self::Close { session, reason } => {
                out.extend_from_slice(&session.to_be_bytes());
                out.push(reason.byte());
                ty::CLOSE
            }
            Self::Data { session, payload } => {
                debug_assert!(!payload.is_empty() && payload.len() <= MAX_DATAGRAM);
                out.extend_from_slice(&session.to_be_bytes());
                out.extend_from_slice(payload);
                ty::DATA
            }
            Self::Ping { nonce } => {
                out.extend_from_slice(nonce);
                ty::PING
            }
            Self::Pong { nonce } => {
                out.extend_from_slice(nonce);
                ty::PONG
            }
            Self::Join => ty::JOIN,
            Self::OpenKey { session, target } => {
                out.extend_from_slice(&session.to_be_bytes());
                out.extend_from_slice(target.as_bytes());
                ty::OPEN_KEY
            }
        };
        let len = (out.len() - start - HEADER_LEN) as u16;
        out[start] = t;
        out[start + 1..start + 3].copy_from_slice(&len.to_be_bytes());
    }

    /// Reads one frame from the front of `buf`: `Ok(None)` when `buf` does not hold a whole
    /// frame yet (read more; never more than [`HEADER_LEN`] + [`MAX_BODY`] bytes are needed),
    /// else the frame and how many bytes it took.
    pub fn decode(buf: &'a [u8]) -> Result<Option<(Self, usize)>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let t = buf[0];
        let len = usize::from(u16::from_be_bytes([buf[1], buf[2]]));
        if len > MAX_BODY {
            return Err(FrameError::TooLong(len));
        }
        if !(ty::HELLO..=ty::OPEN_KEY).contains(&t) {
            return Err(FrameError::Type(t));
        }
        let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        let mut r = Reader(body);
        let frame = match t {
            ty::HELLO => Self::Hello { token: r.array()? },
            ty::WELCOME => Self::Welcome {
                idle_secs: u16::from_be_bytes(r.array()?),
            },
            ty::REFUSED => Self::Refused {
                reason: RefuseReason::from_byte(r.array::<1>()?[0])?,
            },
            ty::LISTEN => Self::Listen,
            ty::OPEN => {
                let session = r.u32()?;
                let target = LookupId(r.array()?);
                Self::Open { session, target }
            }
            ty::INCOMING => Self::Incoming {
                ticket: r.array()?,
                requester: PublicKey::from_bytes(&r.array()?).map_err(|_| FrameError::Invalid)?,
            },
            ty::ACCEPT => Self::Accept {
                session: r.u32()?,
                ticket: r.array()?,
            },
            ty::OPENED => Self::Opened { session: r.u32()? },
            ty::CLOSE => Self::Close {
                session: r.u32()?,
                reason: CloseReason::from_byte(r.array::<1>()?[0])?,
            },
            ty::DATA => {
                let session = r.u32()?;
                let payload = r.take(r.0.len())?;
                if payload.is_empty() {
                    return Err(FrameError::Length);
                }
                Self::Data { session, payload }
            }
            ty::PING => Self::Ping { nonce: r.array()? },
            ty::PONG => Self::Pong { nonce: r.array()? },
            ty::JOIN => Self::Join,
            ty::OPEN_KEY => Self::OpenKey {
                session: r.u32()?,
                target: PublicKey::from_bytes(&r.array()?).map_err(|_| FrameError::Invalid)?,
            },
            other => return Err(FrameError::Type(other)),
        };
        r.end()?;
        Ok(Some((frame, HEADER_LEN + len)))
    }
}

/// A token bucket in bytes, free of I/O and of the clock: a relay connection over its rate
/// is not read until [`Bucket::take`]'s wait has passed, so TCP slows the sender. Holds a
/// quarter second of the rate (at least 64 KiB) as a burst.
#[derive(Debug)]
pub struct Bucket {
    rate: u64,
    tokens: i64,
    last_ms: u64,
}

impl Bucket {
    /// A bucket filling at `rate` bytes per second (0: unlimited), full at first.
    pub fn new(rate: u32) -> Self {
        Bucket {
            rate: u64::from(rate),
            tokens: Self::burst_of(u64::from(rate)),
            last_ms: 0,
        }
    }

    fn burst_of(rate: u64) -> i64 {
        (rate / 4).max(64 * 1024) as i64
    }

    /// Takes `n` bytes at `now_ms` (any monotonic millisecond clock); how long to wait before
    /// reading more.
    pub fn take(&mut self, n: usize, now_ms: u64) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = now_ms;
        let refill = (elapsed.saturating_mul(self.rate) / 1000) as i64;
        self.tokens = (self.tokens + refill).min(Self::burst_of(self.rate)) - n as i64;
        if self.tokens >= 0 {
            Duration::ZERO
        } else {
            Duration::from_millis((-self.tokens) as u64 * 1000 / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Keypair;
    use proptest::prelude::*;

    fn samples() -> Vec<Frame<'static>> {
        let key = Keypair::from_seed(&[3; 32]).public();
        vec![
            Frame::Hello { token: [7; 29] },
            Frame::Welcome { idle_secs: 60 },
            Frame::Refused {
                reason: RefuseReason::Full,
            },
            Frame::Listen,
            Frame::Open {
                session: 9,
                target: LookupId::of(&crate::PlayerName::parse("Alice Smith@Gilgamesh").unwrap()),
            },
            Frame::Incoming {
                ticket: [1; 16],
                requester: key,
            },
            Frame::Accept {
                session: u32::MAX,
                ticket: [2; 16],
            },
            Frame::Opened { session: 1 },
            Frame::Close {
                session: 4,
                reason: CloseReason::Unknown,
            },
            Frame::Data {
                session: 5,
                payload: &[0xc0; MAX_DATAGRAM],
            },
            Frame::Ping { nonce: [5; 8] },
            Frame::Pong { nonce: [6; 8] },
            Frame::Join,
            Frame::OpenKey {
                session: 3,
                target: key,
            },
        ]
    }

    #[test]
    fn every_frame_round_trips_and_a_prefix_asks_for_more() {
        for f in samples() {
            let mut out = Vec::new();
            f.encode(&mut out);
            assert!(out.len() <= HEADER_LEN + MAX_BODY);
            let (back, used) = Frame::decode(&out).unwrap().unwrap();
            assert_eq!(back, f);
            assert_eq!(used, out.len());
            for cut in 0..out.len() {
                assert_eq!(Frame::decode(&out[..cut]), Ok(None), "{f:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn oversized_unknown_and_malformed_frames_are_errors() {
        assert_eq!(
            Frame::decode(&[ty::DATA, 0xff, 0xff]),
            Err(FrameError::TooLong(0xffff))
        );
        assert_eq!(Frame::decode(&[0, 0, 0]), Err(FrameError::Type(0)));
        assert_eq!(Frame::decode(&[99, 0, 0]), Err(FrameError::Type(99)));
        // A data frame without payload, a hello with a short token, a bad reason.
        assert_eq!(
            Frame::decode(&[ty::DATA, 0, 4, 0, 0, 0, 1]),
            Err(FrameError::Length)
        );
        assert_eq!(
            Frame::decode(&[ty::HELLO, 0, 2, 1, 2]),
            Err(FrameError::Length)
        );
        assert_eq!(
            Frame::decode(&[ty::CLOSE, 0, 5, 0, 0, 0, 1, 77]),
            Err(FrameError::Invalid)
        );
        // A target that is not a 32-byte lookup id (a name, as version 1 sent).
        let mut open = vec![ty::OPEN, 0, 8, 0, 0, 0, 1];
        open.extend_from_slice(b"nope");
        assert!(Frame::decode(&open).is_err());
        // Trailing bytes inside the announced body.
        assert_eq!(
            Frame::decode(&[ty::LISTEN, 0, 1, 0]),
            Err(FrameError::Length)
        );
    }

    #[test]
    fn buckets_pace_to_their_rate() {
        let mut b = Bucket::new(1_000_000);
        // The burst (a quarter second) passes at once, then the rate holds.
        assert_eq!(b.take(250_000, 0), Duration::ZERO);
        assert_eq!(b.take(100_000, 0), Duration::from_millis(100));
        // 200 ms later, 200 kB more came in: 100 kB ahead of the debt.
        assert_eq!(b.take(50_000, 200), Duration::ZERO);
        let mut free = Bucket::new(0);
        assert_eq!(free.take(usize::MAX / 2, 0), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn any_bytes_decode_to_a_frame_an_error_or_a_request_for_more(
            data in proptest::collection::vec(any::<u8>(), 0..1600)
        ) {
            match Frame::decode(&data) {
                Ok(Some((f, used))) => {
                    prop_assert!(used <= data.len());
                    let mut out = Vec::new();
                    f.encode(&mut out);
                    prop_assert_eq!(&out[..], &data[..used]);
                }
                Ok(None) => prop_assert!(data.len() < HEADER_LEN + MAX_BODY),
                Err(_) => {}
            }
        }

        #[test]
        fn data_frames_of_any_payload_round_trip(
            session in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 1..=MAX_DATAGRAM)
        ) {
            let mut out = Vec::new();
            Frame::Data { session, payload: &payload }.encode(&mut out);
            let (back, used) = Frame::decode(&out).unwrap().unwrap();
            prop_assert_eq!(used, out.len());
            prop_assert_eq!(back, Frame::Data { session, payload: &payload });
        }
    }
}

//! The bytes of the messages instances send each other over Redis pub/sub (see the module
//! docs of [`crate::bus`]). Fixed layouts, big-endian, every field checked: a message that
//! does not decode is counted and dropped, never trusted in part.
//!
//! Every message starts with the magic `1B 50 42 31` (`\x1bPB1`), a type byte and the
//! sender's instance id (8 bytes).
//!
//! | type | message | bytes after the header |
//! |---|---|---|
//! | 1 | punch | target lookup id (32), target key (32), requester key (32), nonce (8), the requester's three addresses (3 x 19, as in UDP messages) |
//! | 2 | relay open | bridge (u64), requester key (32), target lookup id (32), target key (32) |
//! | 3 | bridged frame | bridge (u64), direction (1: `1` toward the instance that opened it, `0` away), one relay frame: `Opened`, `Data` or `Close` (its session number is ignored) |

use std::fmt;
use std::net::SocketAddr;

use phonebook_proto::LookupId;
use phonebook_proto::relay::Frame;
use phonebook_proto::relay::{FrameError, HEADER_LEN, MAX_BODY};
use phonebook_proto::udp::{ADDR_LEN, decode_addr, encode_addr};

/// First bytes of every message.
pub const MAGIC: [u8; 4] = [0x1b, b'P', b'B', b'1'];
/// Magic, type and sender.
pub const HEADER: usize = 4 + 1 + 8;
/// A punch message's length.
pub const PUNCH_LEN: usize = HEADER + 32 * 3 + 8 + 3 * ADDR_LEN;
/// A relay open's length.
pub const RELAY_OPEN_LEN: usize = HEADER + 8 + 32 * 3;
/// The longest message: a bridged `Data` frame of the largest datagram.
pub const MAX_LEN: usize = HEADER + 8 + 1 + HEADER_LEN + MAX_BODY;

const PUNCH: u8 = 1;
const RELAY_OPEN: u8 = 2;
const BRIDGED: u8 = 3;

/// An instance's id: random at each start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Instance(pub [u8; 8]);

impl Instance {
    /// A new random id.
    pub fn random() -> Self {
        let mut b = [0; 8];
        getrandom::fill(&mut b).expect("OS random generator");
        Instance(b)
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// One message between instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// "Whoever holds this registration's keep-alive mapping: forward this punch request."
    /// The sender checked that the requester may see the target.
    Punch {
        /// The target's lookup id.
        target: LookupId,
        /// The target record's key.
        target_key: [u8; 32],
        /// The requester's key.
        requester: [u8; 32],
        /// The request's nonce.
        nonce: [u8; 8],
        /// The request's source address, then its two extra addresses.
        addrs: [Option<SocketAddr>; 3],
    },
    /// "Whoever can tell this registration (a listening relay connection or a keep-alive
    /// mapping): a session to it waits at my relay as `bridge`."
    RelayOpen {
        /// The opening instance's number for the session.
        bridge: u64,
        /// The requester's key.
        requester: [u8; 32],
        /// The target's lookup id.
        target: LookupId,
        /// The target record's key.
        target_key: [u8; 32],
    },
    /// A frame of a bridged session, for the other instance's side of it.
    Bridged {
        /// The opening instance's number for the session.
        bridge: u64,
        /// Toward the instance that opened the session (else from it).
        to_origin: bool,
        /// `Opened`, `Data` or `Close`.
        frame: Frame<'a>,
    },
}

/// Why bytes are not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusError {
    /// Not our magic.
    NotOurs,
    /// Unknown type byte.
    Type(u8),
    /// Wrong length for its type.
    Length,
    /// A field is invalid (address, direction, frame).
    Invalid,
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::NotOurs => f.write_str("not a phone-book bus message"),
            BusError::Type(t) => write!(f, "unknown bus message type {t}"),
            BusError::Length => f.write_str("wrong length for its type"),
            BusError::Invalid => f.write_str("an invalid field"),
        }
    }
}

impl std::error::Error for BusError {}

impl From<FrameError> for BusError {
    fn from(_: FrameError) -> Self {
        BusError::Invalid
    }
}

impl Message<'_> {
    /// The bytes of this message sent by `from`.
    pub fn encode(&self, from: Instance) -> Vec<u8> {
        let mut out = Vec::with_capacity(PUNCH_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(match self {
            Message::Punch { .. } => PUNCH,
            Message::RelayOpen { .. } => RELAY_OPEN,
            Message::Bridged { .. } => BRIDGED,
        });
        out.extend_from_slice(&from.0);
        match self {
            Message::Punch {
                target,
                target_key,
                requester,
                nonce,
                addrs,
            } => {
                out.extend_from_slice(target.as_bytes());
                out.extend_from_slice(target_key);
                out.extend_from_slice(requester);
                out.extend_from_slice(nonce);
                for a in addrs {
                    out.extend_from_slice(&encode_addr(*a));
                }
            }
            Message::RelayOpen {
                bridge,
                requester,
                target,
                target_key,
            } => {
                out.extend_from_slice(&bridge.to_be_bytes());
                out.extend_from_slice(requester);
                out.extend_from_slice(target.as_bytes());
                out.extend_from_slice(target_key);
            }
            Message::Bridged {
                bridge,
                to_origin,
                frame,
            } => {
                out.extend_from_slice(&bridge.to_be_bytes());
                out.push(u8::from(*to_origin));
                frame.encode(&mut out);
            }
        }
        out
    }

    /// Reads one message: its sender and the message.
    pub fn decode(bytes: &[u8]) -> Result<(Instance, Message<'_>), BusError> {
        if bytes.len() < HEADER || bytes[..4] != MAGIC {
            return Err(if bytes.len() >= 4 && bytes[..4] != MAGIC {
                BusError::NotOurs
            } else {
                BusError::Length
            });
        }
        let from = Instance(array(&bytes[5..HEADER]));
        let body = &bytes[HEADER..];
        let msg = match bytes[4] {
            PUNCH => {
                if bytes.len() != PUNCH_LEN {
                    return Err(BusError::Length);
                }
                let mut addrs = [None; 3];
                for (i, a) in addrs.iter_mut().enumerate() {
                    let at = 104 + i * ADDR_LEN;
                    *a = decode_addr(&array(&body[at..at + ADDR_LEN]))
                        .map_err(|_| BusError::Invalid)?;
                }
                Message::Punch {
                    target: LookupId(array(&body[..32])),
                    target_key: array(&body[32..64]),
                    requester: array(&body[64..96]),
                    nonce: array(&body[96..104]),
                    addrs,
                }
            }
            RELAY_OPEN => {
                if bytes.len() != RELAY_OPEN_LEN {
                    return Err(BusError::Length);
                }
                Message::RelayOpen {
                    bridge: u64::from_be_bytes(array(&body[..8])),
                    requester: array(&body[8..40]),
                    target: LookupId(array(&body[40..72])),
                    target_key: array(&body[72..104]),
                }
            }
            BRIDGED => {
                if body.len() < 9 + HEADER_LEN || bytes.len() > MAX_LEN {
                    return Err(BusError::Length);
                }
                let to_origin = match body[8] {
                    0 => false,
                    1 => true,
                    _ => return Err(BusError::Invalid),
                };
                let raw = &body[9..];
                let (frame, used) = Frame::decode(raw)?.ok_or(BusError::Length)?;
                if used != raw.len() {
                    return Err(BusError::Length);
                }
                if !matches!(
                    frame,
                    Frame::Opened { .. } | Frame::Data { .. } | Frame::Close { .. }
                ) {
                    return Err(BusError::Invalid);
                }
                Message::Bridged {
                    bridge: u64::from_be_bytes(array(&body[..8])),
                    to_origin,
                    frame,
                }
            }
            t => return Err(BusError::Type(t)),
        };
        Ok((from, msg))
    }
}

fn array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&b[..N]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonebook_proto::relay::CloseReason;
    use proptest::prelude::*;

    const ME: Instance = Instance([7; 8]);

    fn samples() -> Vec<Message<'static>> {
        vec![
            Message::Punch {
                target: LookupId([1; 32]),
                target_key: [2; 32],
                requester: [3; 32],
                nonce: [4; 8],
                addrs: [
                    Some("198.51.100.7:4000".parse().unwrap()),
                    None,
                    Some("[2001:db8::1]:5".parse().unwrap()),
                ],
            },
            Message::RelayOpen {
                bridge: u64::MAX - 1,
                requester: [5; 32],
                target: LookupId([6; 32]),
                target_key: [8; 32],
            },
            Message::Bridged {
                bridge: 3,
                to_origin: true,
                frame: Frame::Opened { session: 0 },
            },
            Message::Bridged {
                bridge: 4,
                to_origin: false,
                frame: Frame::Data {
                    session: 0,
                    payload: &[9; 1500],
                },
            },
            Message::Bridged {
                bridge: 5,
                to_origin: false,
                frame: Frame::Close {
                    session: 0,
                    reason: CloseReason::Timeout,
                },
            },
        ]
    }

    #[test]
    fn messages_round_trip_and_have_their_lengths() {
        for m in samples() {
            let bytes = m.encode(ME);
            assert!(bytes.len() <= MAX_LEN);
            assert_eq!(Message::decode(&bytes), Ok((ME, m.clone())));
            // Every shorter prefix is refused.
            for n in 0..bytes.len() {
                assert!(Message::decode(&bytes[..n]).is_err(), "{m:?} cut at {n}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Message::decode(&longer).is_err());
        }
        assert_eq!(samples()[0].encode(ME).len(), PUNCH_LEN);
        assert_eq!(samples()[1].encode(ME).len(), RELAY_OPEN_LEN);
        assert_eq!(samples()[3].encode(ME).len(), MAX_LEN);
    }

    #[test]
    fn bad_fields_are_refused() {
        let mut b = samples()[2].encode(ME);
        b[HEADER + 8] = 2;
        assert_eq!(Message::decode(&b), Err(BusError::Invalid));
        let mut b = samples()[0].encode(ME);
        b[0] = b'x';
        assert_eq!(Message::decode(&b), Err(BusError::NotOurs));
        b = samples()[0].encode(ME);
        b[4] = 9;
        assert_eq!(Message::decode(&b), Err(BusError::Type(9)));
        // An address of family 5.
        b = samples()[0].encode(ME);
        b[HEADER + 104] = 5;
        assert_eq!(Message::decode(&b), Err(BusError::Invalid));
        // A relay frame peers send (Listen) is not a bridged frame.
        let mut b = samples()[2].encode(ME);
        b.truncate(HEADER + 9);
        Frame::Listen.encode(&mut b);
        assert_eq!(Message::decode(&b), Err(BusError::Invalid));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn mutated_messages_decode_without_panic(
            which in 0usize..5,
            at in any::<usize>(),
            v in any::<u8>(),
        ) {
            let mut b = samples()[which].encode(ME);
            let i = at % b.len();
            b[i] = v;
            if let Ok((from, m)) = Message::decode(&b) {
                // What decodes encodes back to the same bytes.
                prop_assert_eq!(m.encode(from), b);
            }
        }

        #[test]
        fn data_of_any_size_round_trips(payload in proptest::collection::vec(any::<u8>(), 1..=1500), bridge: u64, to_origin: bool) {
            let m = Message::Bridged { bridge, to_origin, frame: Frame::Data { session: 0, payload: &payload } };
            let bytes = m.encode(ME);
            prop_assert_eq!(Message::decode(&bytes), Ok((ME, m)));
        }
    }
}

//! NAT-PMP (RFC 6886) messages: the external-address request, the UDP and TCP mapping
//! requests and their responses. NAT-PMP is IPv4 only.
//!
//! A client sends to the gateway's UDP port 5351, all integers big-endian:
//!
//! | message          | bytes                                                                   |
//! |------------------|-------------------------------------------------------------------------|
//! | external address | version 0, opcode 0                                                     |
//! | map UDP          | version 0, opcode 1, 2 reserved, internal port, suggested external port, requested lifetime (u32 s) |
//! | map TCP          | the same with opcode 2                                                  |
//!
//! The gateway answers with the opcode plus 128, a 16-bit result code and its "seconds since
//! start of epoch" (a value that goes back when the gateway lost its mappings), then the external
//! IPv4 address, or the internal port, the mapped external port and the granted lifetime. An
//! error may come as that 8-byte header alone. A mapping request with lifetime 0 and suggested
//! port 0 deletes the mapping.

use std::net::Ipv4Addr;

use super::Transport;
use super::codec::{DecodeError, Reader};

/// The version byte of every NAT-PMP message.
pub const VERSION: u8 = 0;
/// Set in the opcode of a response.
pub const RESPONSE_BIT: u8 = 0x80;
/// Opcode: what is the gateway's external address?
pub const OP_EXTERNAL_ADDRESS: u8 = 0;
/// Opcode: map a UDP port.
pub const OP_MAP_UDP: u8 = 1;
/// Opcode: map a TCP port.
pub const OP_MAP_TCP: u8 = 2;
/// The largest NAT-PMP message (a mapping response); longer datagrams are refused.
pub const MAX_MESSAGE_LEN: usize = 16;

/// Result code: success.
pub const RESULT_SUCCESS: u16 = 0;
/// Result code: the gateway does not speak this version (a NAT-PMP gateway's answer to PCP).
pub const RESULT_UNSUPPORTED_VERSION: u16 = 1;
/// Result code: mapping refused by configuration.
pub const RESULT_NOT_AUTHORIZED: u16 = 2;
/// Result code: the gateway has no external address (for example its uplink is down).
pub const RESULT_NETWORK_FAILURE: u16 = 3;
/// Result code: the gateway has no room for another mapping.
pub const RESULT_OUT_OF_RESOURCES: u16 = 4;
/// Result code: unknown opcode.
pub const RESULT_UNSUPPORTED_OPCODE: u16 = 5;

/// A request from a client to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// What is the gateway's external address?
    ExternalAddress,
    /// Forward UDP from the external port to `internal_port` of the sender, for `lifetime`
    /// seconds (0 deletes the mapping).
    MapUdp {
        /// The sender's UDP port to forward to.
        internal_port: u16,
        /// The external port wanted; 0 for any (and when deleting).
        suggested_port: u16,
        /// Seconds requested.
        lifetime: u32,
    },
    /// Forward TCP from the external port to `internal_port` of the sender, for `lifetime`
    /// seconds (0 deletes the mapping).
    MapTcp {
        /// The sender's TCP port to forward to.
        internal_port: u16,
        /// The external port wanted; 0 for any (and when deleting).
        suggested_port: u16,
        /// Seconds requested.
        lifetime: u32,
    },
}

impl Request {
    /// The mapping request for `transport`: [`Request::MapUdp`] or [`Request::MapTcp`].
    pub fn map(
        transport: Transport,
        internal_port: u16,
        suggested_port: u16,
        lifetime: u32,
    ) -> Self {
        match transport {
            Transport::Udp => Self::MapUdp {
                internal_port,
                suggested_port,
                lifetime,
            },
            Transport::Tcp => Self::MapTcp {
                internal_port,
                suggested_port,
                lifetime,
            },
        }
    }

    /// The request's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Self::ExternalAddress => vec![VERSION, OP_EXTERNAL_ADDRESS],
            Self::MapUdp {
                internal_port,
                suggested_port,
                lifetime,
            } => map_request(OP_MAP_UDP, internal_port, suggested_port, lifetime),
            Self::MapTcp {
                internal_port,
                suggested_port,
                lifetime,
            } => map_request(OP_MAP_TCP, internal_port, suggested_port, lifetime),
        }
    }

    /// Parses a request (a gateway's side, and tests).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong);
        }
        let mut r = Reader::new(bytes);
        if r.u8()? != VERSION {
            return Err(DecodeError::BadVersion);
        }
        let request = match r.u8()? {
            OP_EXTERNAL_ADDRESS => Self::ExternalAddress,
            op @ (OP_MAP_UDP | OP_MAP_TCP) => {
                let _reserved = r.u16()?;
                let (internal_port, suggested_port, lifetime) = (r.u16()?, r.u16()?, r.u32()?);
                if op == OP_MAP_UDP {
                    Self::MapUdp {
                        internal_port,
                        suggested_port,
                        lifetime,
                    }
                } else {
                    Self::MapTcp {
                        internal_port,
                        suggested_port,
                        lifetime,
                    }
                }
            }
            op if op & RESPONSE_BIT != 0 => return Err(DecodeError::BadDirection),
            _ => return Err(DecodeError::BadOpcode),
        };
        r.finish()?;
        Ok(request)
    }
}

/// A mapping request's bytes: version, `opcode`, 2 reserved, the ports, the lifetime.
fn map_request(opcode: u8, internal_port: u16, suggested_port: u16, lifetime: u32) -> Vec<u8> {
    let mut out = vec![VERSION, opcode, 0, 0];
    out.extend_from_slice(&internal_port.to_be_bytes());
    out.extend_from_slice(&suggested_port.to_be_bytes());
    out.extend_from_slice(&lifetime.to_be_bytes());
    out
}

/// A gateway's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// `RESULT_*`; 0 is success.
    pub result: u16,
    /// The gateway's seconds since its mappings were last lost (reboot, reset).
    pub epoch: u32,
    /// What follows the header.
    pub body: Body,
}

/// The part of a response after its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// The header alone, which only an error may be; `opcode` is the request's (below 128).
    Error {
        /// The opcode of the request this answers.
        opcode: u8,
    },
    /// The answer to [`Request::ExternalAddress`].
    ExternalAddress(Ipv4Addr),
    /// The answer to [`Request::MapUdp`].
    MapUdp {
        /// The internal port of the request.
        internal_port: u16,
        /// The external port mapped (0 after a deletion).
        external_port: u16,
        /// Seconds granted (0 after a deletion).
        lifetime: u32,
    },
    /// The answer to [`Request::MapTcp`] (opcode 130).
    MapTcp {
        /// The internal port of the request.
        internal_port: u16,
        /// The external port mapped (0 after a deletion).
        external_port: u16,
        /// Seconds granted (0 after a deletion).
        lifetime: u32,
    },
}

impl Body {
    /// A mapping answer's transport and fields: `(transport, internal, external, lifetime)`.
    pub fn mapping(&self) -> Option<(Transport, u16, u16, u32)> {
        match *self {
            Self::MapUdp {
                internal_port,
                external_port,
                lifetime,
            } => Some((Transport::Udp, internal_port, external_port, lifetime)),
            Self::MapTcp {
                internal_port,
                external_port,
                lifetime,
            } => Some((Transport::Tcp, internal_port, external_port, lifetime)),
            _ => None,
        }
    }
}

impl Response {
    /// The response's bytes (a gateway's side, and tests).
    pub fn encode(&self) -> Vec<u8> {
        let opcode = match self.body {
            Body::Error { opcode } => opcode & !RESPONSE_BIT,
            Body::ExternalAddress(_) => OP_EXTERNAL_ADDRESS,
            Body::MapUdp { .. } => OP_MAP_UDP,
            Body::MapTcp { .. } => OP_MAP_TCP,
        };
        let mut out = vec![VERSION, opcode | RESPONSE_BIT];
        out.extend_from_slice(&self.result.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        match self.body {
            Body::Error { .. } => {}
            Body::ExternalAddress(ip) => out.extend_from_slice(&ip.octets()),
            Body::MapUdp {
                internal_port,
                external_port,
                lifetime,
            }
            | Body::MapTcp {
                internal_port,
                external_port,
                lifetime,
            } => {
                out.extend_from_slice(&internal_port.to_be_bytes());
                out.extend_from_slice(&external_port.to_be_bytes());
                out.extend_from_slice(&lifetime.to_be_bytes());
            }
        }
        out
    }

    /// Parses a gateway's datagram: exactly one response, nothing after it.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong);
        }
        let mut r = Reader::new(bytes);
        if r.u8()? != VERSION {
            return Err(DecodeError::BadVersion);
        }
        let opcode = r.u8()?;
        if opcode & RESPONSE_BIT == 0 {
            return Err(DecodeError::BadDirection);
        }
        let opcode = opcode & !RESPONSE_BIT;
        let result = r.u16()?;
        let epoch = r.u32()?;
        let body = if r.is_empty() {
            if result == RESULT_SUCCESS {
                return Err(DecodeError::Inconsistent);
            }
            Body::Error { opcode }
        } else {
            match opcode {
                OP_EXTERNAL_ADDRESS => Body::ExternalAddress(Ipv4Addr::from(r.array::<4>()?)),
                OP_MAP_UDP => Body::MapUdp {
                    internal_port: r.u16()?,
                    external_port: r.u16()?,
                    lifetime: r.u32()?,
                },
                OP_MAP_TCP => Body::MapTcp {
                    internal_port: r.u16()?,
                    external_port: r.u16()?,
                    lifetime: r.u32()?,
                },
                _ => return Err(DecodeError::BadOpcode),
            }
        };
        r.finish()?;
        Ok(Self {
            result,
            epoch,
            body,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_what_miniupnpd_sent() {
        // Captured from miniupnpd 2.3.1 in a network namespace.
        let address = Response::decode(&hex("0080000000000006cb007102")).unwrap();
        assert_eq!(
            address.body,
            Body::ExternalAddress(Ipv4Addr::new(203, 0, 113, 2))
        );
        let map = Response::decode(&hex("00810000000000069c409c4000000003")).unwrap();
        assert_eq!(
            map.body,
            Body::MapUdp {
                internal_port: 40000,
                external_port: 40000,
                lifetime: 3
            }
        );
        let unsupported = Response::decode(&hex("0085000500000007")).unwrap();
        assert_eq!(unsupported.result, RESULT_UNSUPPORTED_OPCODE);
        assert_eq!(unsupported.body, Body::Error { opcode: 5 });
    }

    #[test]
    fn refuses_malformed_responses() {
        let ok = hex("00810000000000069c409c4000000003");
        assert_eq!(Response::decode(&ok[..15]), Err(DecodeError::Truncated));
        assert_eq!(
            Response::decode(&[ok.as_slice(), &[0]].concat()),
            Err(DecodeError::TooLong)
        );
        let mut pcp = ok.clone();
        pcp[0] = 2;
        assert_eq!(Response::decode(&pcp), Err(DecodeError::BadVersion));
        // A success must carry its body; a request is not a response.
        assert_eq!(Response::decode(&ok[..8]), Err(DecodeError::Inconsistent));
        assert_eq!(Response::decode(&[0, 1]), Err(DecodeError::BadDirection));
        // Opcode 3 is no NAT-PMP message (1 and 2 map UDP and TCP).
        let mut unknown = ok;
        unknown[1] = 0x83;
        assert_eq!(Response::decode(&unknown), Err(DecodeError::BadOpcode));
        assert_eq!(
            Request::decode(&hex("000300009c409c4100001c20")),
            Err(DecodeError::BadOpcode)
        );
    }

    #[test]
    fn tcp_mapping_bytes() {
        // RFC 6886 §3.3: opcode 2 maps TCP; the answer's opcode is 130 (0x82).
        let request = Request::map(Transport::Tcp, 40000, 40001, 7200);
        assert_eq!(
            request,
            Request::MapTcp {
                internal_port: 40000,
                suggested_port: 40001,
                lifetime: 7200
            }
        );
        assert_eq!(request.encode(), hex("000200009c409c4100001c20"));
        assert_eq!(
            Request::decode(&hex("000200009c409c4100001c20")),
            Ok(request)
        );
        // Deleting: lifetime 0, suggested port 0.
        let delete = Request::map(Transport::Tcp, 40000, 0, 0);
        assert_eq!(delete.encode(), hex("000200009c40000000000000"));
        // UDP is unchanged: opcode 1.
        let udp = Request::map(Transport::Udp, 40000, 40001, 7200);
        assert_eq!(udp.encode(), hex("000100009c409c4100001c20"));

        let answer = Response::decode(&hex("00820000000000069c409c4100001c20")).unwrap();
        assert_eq!(
            answer,
            Response {
                result: RESULT_SUCCESS,
                epoch: 6,
                body: Body::MapTcp {
                    internal_port: 40000,
                    external_port: 40001,
                    lifetime: 7200
                }
            }
        );
        assert_eq!(
            answer.body.mapping(),
            Some((Transport::Tcp, 40000, 40001, 7200))
        );
        assert_eq!(answer.encode(), hex("00820000000000069c409c4100001c20"));
        // A TCP answer is not a UDP one, nor the reverse.
        let udp_answer = Response::decode(&hex("00810000000000069c409c4100001c20")).unwrap();
        assert_eq!(
            udp_answer.body.mapping(),
            Some((Transport::Udp, 40000, 40001, 7200))
        );
        // A refusal of a TCP request: the header alone, with opcode 130.
        let refused = Response::decode(&hex("0082000200000006")).unwrap();
        assert_eq!(refused.result, RESULT_NOT_AUTHORIZED);
        assert_eq!(refused.body, Body::Error { opcode: OP_MAP_TCP });
        assert_eq!(
            Response::decode(&hex("00820000000000069c409c4100001c")),
            Err(DecodeError::Truncated)
        );
    }

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            Just(Request::ExternalAddress),
            (any::<u16>(), any::<u16>(), any::<u32>()).prop_map(|(i, s, l)| Request::MapUdp {
                internal_port: i,
                suggested_port: s,
                lifetime: l
            }),
            (any::<u16>(), any::<u16>(), any::<u32>()).prop_map(|(i, s, l)| Request::MapTcp {
                internal_port: i,
                suggested_port: s,
                lifetime: l
            }),
        ]
    }

    fn response() -> impl Strategy<Value = Response> {
        let body = prop_oneof![
            (0u8..128).prop_map(|opcode| Body::Error { opcode }),
            any::<[u8; 4]>().prop_map(|ip| Body::ExternalAddress(ip.into())),
            (any::<u16>(), any::<u16>(), any::<u32>()).prop_map(|(i, e, l)| Body::MapUdp {
                internal_port: i,
                external_port: e,
                lifetime: l
            }),
            (any::<u16>(), any::<u16>(), any::<u32>()).prop_map(|(i, e, l)| Body::MapTcp {
                internal_port: i,
                external_port: e,
                lifetime: l
            }),
        ];
        (any::<u16>(), any::<u32>(), body).prop_map(|(result, epoch, body)| {
            // The header alone is an error: never a success.
            let result = match body {
                Body::Error { .. } => result.max(1),
                _ => result,
            };
            Response {
                result,
                epoch,
                body,
            }
        })
    }

    proptest! {
        #[test]
        fn requests_round_trip(req in request()) {
            prop_assert_eq!(Request::decode(&req.encode()), Ok(req));
        }

        #[test]
        fn responses_round_trip(resp in response()) {
            prop_assert_eq!(Response::decode(&resp.encode()), Ok(resp));
        }

        #[test]
        fn decoders_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(resp) = Response::decode(&bytes) {
                prop_assert_eq!(resp.encode(), bytes.clone());
            }
            if let Ok(req) = Request::decode(&bytes) {
                // Reserved bytes are ignored, so compare decoded values.
                prop_assert_eq!(Request::decode(&req.encode()), Ok(req));
            }
        }

        #[test]
        fn tcp_messages_take_any_bytes(
            is_response in any::<bool>(), tail in proptest::collection::vec(any::<u8>(), 0..20)
        ) {
            // Datagrams that start like a TCP mapping message: a value or an error, never a panic.
            let opcode = if is_response { RESPONSE_BIT | OP_MAP_TCP } else { OP_MAP_TCP };
            let bytes = [&[VERSION, opcode][..], &tail].concat();
            if let Ok(resp) = Response::decode(&bytes) {
                prop_assert_eq!(resp.encode(), bytes.clone());
                if resp.result == RESULT_SUCCESS {
                    prop_assert_eq!(resp.body.mapping().map(|m| m.0), Some(Transport::Tcp));
                }
            }
            if let Ok(req) = Request::decode(&bytes) {
                prop_assert!(matches!(req, Request::MapTcp { .. }), "{:?}", req);
                prop_assert_eq!(Request::decode(&req.encode()), Ok(req));
            }
        }

        #[test]
        fn truncated_and_flipped_responses_never_panic(
            resp in response(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()
        ) {
            let mut bytes = resp.encode();
            let _ = Response::decode(&bytes[..cut.index(bytes.len())]);
            let at = flip.0.index(bytes.len());
            bytes[at] ^= flip.1;
            let _ = Response::decode(&bytes);
        }
    }
}

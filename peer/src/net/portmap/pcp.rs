//! PCP (RFC 6887) messages: the ANNOUNCE and MAP opcodes, without sending options.
//!
//! Every message starts with a 24-byte header, all integers big-endian:
//!
//! | part            | bytes                                                                       |
//! |-----------------|-----------------------------------------------------------------------------|
//! | request header  | version 2, R=0 + opcode, 2 reserved, requested lifetime (u32 s), client IP (16) |
//! | response header | version 2, R=1 + opcode, 1 reserved, result code, lifetime (u32 s), epoch (u32), 12 reserved |
//! | MAP body        | nonce (12), protocol (17 = UDP, 6 = TCP), 3 reserved, internal port, external port, external IP (16) |
//!
//! IPv4 addresses travel as IPv4-mapped IPv6 (`::ffff:a.b.c.d`). A MAP request names the
//! suggested external port and address (`::ffff:0.0.0.0` for "any IPv4"); its response the
//! assigned ones. The 12-byte nonce ties a mapping to its client: renewing or deleting (lifetime
//! 0) must repeat it. ANNOUNCE with lifetime 0 is a side-effect-free "do you speak PCP?".
//! Options (4-byte aligned type-length-value items after the body) are skipped when well formed.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::codec::{DecodeError, Reader};

/// The version byte of every PCP message.
pub const VERSION: u8 = 2;
/// Set in the opcode byte of a response.
pub const RESPONSE_BIT: u8 = 0x80;
/// Opcode: announce (and, from a client, "are you there?").
pub const OP_ANNOUNCE: u8 = 0;
/// Opcode: map a port.
pub const OP_MAP: u8 = 1;
/// The protocol number of UDP in a MAP body.
pub const PROTOCOL_UDP: u8 = 17;
/// The protocol number of TCP in a MAP body.
pub const PROTOCOL_TCP: u8 = 6;
/// The largest PCP message (RFC 6887 §7); longer datagrams are refused.
pub const MAX_MESSAGE_LEN: usize = 1100;
/// Bytes of the common header.
pub const HEADER_LEN: usize = 24;
/// Bytes of a MAP body.
pub const MAP_LEN: usize = 36;

/// Result code: success.
pub const RESULT_SUCCESS: u8 = 0;
/// Result code: the server does not speak this version.
pub const RESULT_UNSUPP_VERSION: u8 = 1;
/// Result code: refused by policy, or the nonce does not own the mapping.
pub const RESULT_NOT_AUTHORIZED: u8 = 2;
/// Result code: the server could not parse the request.
pub const RESULT_MALFORMED_REQUEST: u8 = 3;
/// Result code: the server has no external address right now.
pub const RESULT_NETWORK_FAILURE: u8 = 7;
/// Result code: the server has no room for another mapping.
pub const RESULT_NO_RESOURCES: u8 = 8;
/// Result code: the client IP in the header is not the datagram's source (a NAT between us).
pub const RESULT_ADDRESS_MISMATCH: u8 = 12;

/// The body of a MAP request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Map {
    /// Random bytes chosen by the client, repeated to renew or delete the mapping.
    pub nonce: [u8; 12],
    /// IANA protocol number: [`PROTOCOL_UDP`] or [`PROTOCOL_TCP`] here.
    pub protocol: u8,
    /// The client's port.
    pub internal_port: u16,
    /// Suggested (request) or assigned (response) external address and port; IPv4 as
    /// [`SocketAddr::V4`], `0.0.0.0:0` for "no preference".
    pub external: SocketAddr,
}

/// A request from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Seconds requested (0 deletes a mapping, and is the value for ANNOUNCE).
    pub lifetime: u32,
    /// The client's own address, which the server compares with the datagram's source.
    pub client: IpAddr,
    /// `None` for ANNOUNCE, the body for MAP.
    pub map: Option<Map>,
}

/// A server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// [`OP_ANNOUNCE`] or [`OP_MAP`].
    pub opcode: u8,
    /// `RESULT_*`; 0 is success.
    pub result: u8,
    /// Seconds granted (on an error: how long the error is likely to last).
    pub lifetime: u32,
    /// The server's seconds since its mappings were last lost.
    pub epoch: u32,
    /// The MAP body: always present on a MAP success, optional on a MAP error.
    pub map: Option<Map>,
}

impl Request {
    /// The request's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let opcode = if self.map.is_some() {
            OP_MAP
        } else {
            OP_ANNOUNCE
        };
        let mut out = Vec::with_capacity(HEADER_LEN + MAP_LEN);
        out.extend_from_slice(&[VERSION, opcode, 0, 0]);
        out.extend_from_slice(&self.lifetime.to_be_bytes());
        out.extend_from_slice(&ip_octets(self.client));
        if let Some(map) = &self.map {
            encode_map(map, &mut out);
        }
        out
    }

    /// Parses a request (a server's side, and tests).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, opcode) = header(bytes, false)?;
        let _reserved = r.u16()?;
        let lifetime = r.u32()?;
        let client = ip_from(r.array()?);
        let map = match opcode {
            OP_ANNOUNCE => None,
            _ => Some(decode_map(&mut r)?),
        };
        skip_options(r)?;
        Ok(Self {
            lifetime,
            client,
            map,
        })
    }
}

impl Response {
    /// The response's bytes (a server's side, and tests).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + MAP_LEN);
        out.extend_from_slice(&[VERSION, self.opcode | RESPONSE_BIT, 0, self.result]);
        out.extend_from_slice(&self.lifetime.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&[0; 12]);
        if let Some(map) = &self.map {
            encode_map(map, &mut out);
        }
        out
    }

    /// Parses a server's datagram: one response, then only well-formed options.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, opcode) = header(bytes, true)?;
        let _reserved = r.u8()?;
        let result = r.u8()?;
        let lifetime = r.u32()?;
        let epoch = r.u32()?;
        let _reserved: [u8; 12] = r.array()?;
        // An error answer may come as the header alone (RFC 6887 §7.2 leaves it to the server).
        let map = if opcode == OP_MAP && (result == RESULT_SUCCESS || !r.is_empty()) {
            Some(decode_map(&mut r)?)
        } else {
            None
        };
        skip_options(r)?;
        Ok(Self {
            opcode,
            result,
            lifetime,
            epoch,
            map,
        })
    }
}

/// Checks the length, version, direction and opcode; returns a reader after those two bytes.
fn header(bytes: &[u8], response: bool) -> Result<(Reader<'_>, u8), DecodeError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLong);
    }
    let mut r = Reader::new(bytes);
    if r.u8()? != VERSION {
        return Err(DecodeError::BadVersion);
    }
    let opcode = r.u8()?;
    if (opcode & RESPONSE_BIT != 0) != response {
        return Err(DecodeError::BadDirection);
    }
    match opcode & !RESPONSE_BIT {
        op @ (OP_ANNOUNCE | OP_MAP) => Ok((r, op)),
        _ => Err(DecodeError::BadOpcode),
    }
}

fn encode_map(map: &Map, out: &mut Vec<u8>) {
    out.extend_from_slice(&map.nonce);
    out.extend_from_slice(&[map.protocol, 0, 0, 0]);
    out.extend_from_slice(&map.internal_port.to_be_bytes());
    out.extend_from_slice(&map.external.port().to_be_bytes());
    out.extend_from_slice(&ip_octets(map.external.ip()));
}

fn decode_map(r: &mut Reader<'_>) -> Result<Map, DecodeError> {
    let nonce = r.array()?;
    let protocol = r.u8()?;
    let _reserved: [u8; 3] = r.array()?;
    let internal_port = r.u16()?;
    let port = r.u16()?;
    let ip = ip_from(r.array()?);
    Ok(Map {
        nonce,
        protocol,
        internal_port,
        external: SocketAddr::new(ip, port),
    })
}

/// Options: code, reserved, length (u16), data padded to 4 bytes. Ignored, but they must fit.
fn skip_options(mut r: Reader<'_>) -> Result<(), DecodeError> {
    while !r.is_empty() {
        let _code_and_reserved = r.u16()?;
        let len = usize::from(r.u16()?);
        r.skip(len.next_multiple_of(4))
            .map_err(|_| DecodeError::Inconsistent)?;
    }
    r.finish()
}

/// An address as PCP carries it: IPv4 mapped into IPv6.
fn ip_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The address PCP carried: an IPv4-mapped one becomes IPv4.
pub(crate) fn ip_from(octets: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(octets);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::super::natpmp::tests::hex;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_what_miniupnpd_sent() {
        // Captured from miniupnpd 2.3.1 in a network namespace: a MAP success, then the answer
        // to a request with version 3.
        let ok = Response::decode(&hex(concat!(
            "028100000000000300000006000000000000000000000000",
            "bbdb3df881f0013ccbe5b823110000009c419c4100000000000000000000ffffcb007102"
        )))
        .unwrap();
        assert_eq!(
            (ok.opcode, ok.result, ok.lifetime),
            (OP_MAP, RESULT_SUCCESS, 3)
        );
        let map = ok.map.unwrap();
        assert_eq!(map.protocol, PROTOCOL_UDP);
        assert_eq!(map.internal_port, 40001);
        assert_eq!(map.external, "203.0.113.2:40001".parse().unwrap());
        let old = Response::decode(&hex(concat!(
            "028100010000000000000006000000000000000000000000",
            "bbdb3df881f0013ccbe5b823110000000000000000000000000000000000ffff00000000"
        )))
        .unwrap();
        assert_eq!(old.result, RESULT_UNSUPP_VERSION);
        let announce =
            Response::decode(&hex("028000000000000000000054000000000000000000000000")).unwrap();
        assert_eq!((announce.opcode, announce.result), (OP_ANNOUNCE, 0));
    }

    #[test]
    fn tcp_map_bytes() {
        // A MAP request for TCP port 40001: protocol 6 at byte 36 (RFC 6887 §11.1).
        let request = Request {
            lifetime: 7200,
            client: "192.168.77.2".parse().unwrap(),
            map: Some(Map {
                nonce: [0xbb; 12],
                protocol: PROTOCOL_TCP,
                internal_port: 40001,
                external: "0.0.0.0:40001".parse().unwrap(),
            }),
        };
        let bytes = hex(concat!(
            "0201000000001c2000000000000000000000ffffc0a84d02",
            "bbbbbbbbbbbbbbbbbbbbbbbb060000009c419c4100000000000000000000ffff00000000"
        ));
        assert_eq!(request.encode(), bytes);
        assert_eq!(bytes[HEADER_LEN + 12], 6);
        assert_eq!(Request::decode(&bytes), Ok(request));
        // The same for UDP differs in that byte only: 17.
        let mut udp = request;
        udp.map.as_mut().unwrap().protocol = PROTOCOL_UDP;
        let mut udp_bytes = bytes.clone();
        udp_bytes[HEADER_LEN + 12] = 0x11;
        assert_eq!(udp.encode(), udp_bytes);
        // Its answer: the same nonce and protocol, the assigned address.
        let answer = Response::decode(&hex(concat!(
            "028100000000070800000006000000000000000000000000",
            "bbbbbbbbbbbbbbbbbbbbbbbb060000009c419c4500000000000000000000ffffcb007102"
        )))
        .unwrap();
        assert_eq!(
            (answer.opcode, answer.result, answer.lifetime),
            (OP_MAP, RESULT_SUCCESS, 1800)
        );
        let map = answer.map.unwrap();
        assert_eq!(map.protocol, PROTOCOL_TCP);
        assert_eq!(map.internal_port, 40001);
        assert_eq!(map.external, "203.0.113.2:40005".parse().unwrap());
    }

    #[test]
    fn options_are_skipped_when_well_formed() {
        let mut bytes = Response {
            opcode: OP_ANNOUNCE,
            result: 0,
            lifetime: 0,
            epoch: 1,
            map: None,
        }
        .encode();
        // One option of 5 bytes padded to 8, then one empty option.
        bytes.extend_from_slice(&[3, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0, 4, 0, 0, 0]);
        assert!(Response::decode(&bytes).is_ok());
        // Its padding missing.
        assert_eq!(
            Response::decode(&bytes[..bytes.len() - 5]),
            Err(DecodeError::Inconsistent)
        );
        // A stray byte that is no option.
        bytes.push(9);
        assert_eq!(Response::decode(&bytes), Err(DecodeError::Truncated));
    }

    #[test]
    fn refuses_malformed_responses() {
        let header = hex("028100000000000300000006000000000000000000000000");
        // A MAP success without its body.
        assert_eq!(Response::decode(&header), Err(DecodeError::Truncated));
        assert_eq!(Response::decode(&header[..23]), Err(DecodeError::Truncated));
        let mut bytes = header.clone();
        bytes[0] = 0;
        assert_eq!(Response::decode(&bytes), Err(DecodeError::BadVersion));
        bytes = header.clone();
        bytes[1] = OP_MAP;
        assert_eq!(Response::decode(&bytes), Err(DecodeError::BadDirection));
        bytes[1] = RESPONSE_BIT | 2; // PEER
        assert_eq!(Response::decode(&bytes), Err(DecodeError::BadOpcode));
        assert_eq!(Response::decode(&vec![0; 1101]), Err(DecodeError::TooLong));
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        (
            any::<[u8; 16]>(),
            any::<bool>(),
            any::<[u8; 4]>(),
            any::<u16>(),
        )
            .prop_map(|(v6, is_v4, v4, port)| {
                let ip = if is_v4 { IpAddr::from(v4) } else { ip_from(v6) };
                SocketAddr::new(ip, port)
            })
    }

    fn map() -> impl Strategy<Value = Map> {
        let protocol = prop_oneof![Just(PROTOCOL_UDP), Just(PROTOCOL_TCP), any::<u8>()];
        (any::<[u8; 12]>(), protocol, any::<u16>(), addr()).prop_map(
            |(nonce, protocol, internal_port, external)| Map {
                nonce,
                protocol,
                internal_port,
                external,
            },
        )
    }

    fn request() -> impl Strategy<Value = Request> {
        (any::<u32>(), addr(), proptest::option::of(map())).prop_map(|(lifetime, client, map)| {
            Request {
                lifetime,
                client: client.ip(),
                map,
            }
        })
    }

    fn response() -> impl Strategy<Value = Response> {
        (
            any::<bool>(),
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            map(),
        )
            .prop_map(|(is_map, result, lifetime, epoch, body)| Response {
                opcode: if is_map { OP_MAP } else { OP_ANNOUNCE },
                result,
                lifetime,
                epoch,
                // A MAP success carries its body; an error may or may not.
                map: (is_map && (result == 0 || epoch % 2 == 0)).then_some(body),
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
        fn decoders_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(resp) = Response::decode(&bytes) {
                prop_assert_eq!(Response::decode(&resp.encode()), Ok(resp));
            }
            if let Ok(req) = Request::decode(&bytes) {
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

//! PCP and NAT-PMP on the wire: a UDP socket connected to the gateway's port 5351, requests
//! sent again on a doubling schedule until answered or a deadline passes.
//!
//! The decisions (which datagram answers which request, what counts as a lie) are plain
//! functions of the bytes, tested without sockets; [`Server::exchange`] is the only I/O.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use smol::net::UdpSocket;

use super::{NoMapping, Protocol, Transport, natpmp, pcp, until};

/// The UDP port PCP and NAT-PMP servers listen on.
pub(crate) const SERVER_PORT: u16 = 5351;
/// The first wait for an answer; doubled after each send (RFC 6886 §3.1 starts at 250 ms;
/// RFC 6887's 3 s would not fit a start-up bounded at 2 s, and a gateway is one hop away).
const FIRST_RETRANSMIT: Duration = Duration::from_millis(250);
/// The longest wait between two sends.
const MAX_RETRANSMIT: Duration = Duration::from_secs(4);
/// How long the probe waits for both protocols to answer.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_millis(600);
/// The receive buffer: one byte more than the largest message, so that a longer datagram is
/// seen whole and refused by the decoder.
const RECV_BUF: usize = pcp::MAX_MESSAGE_LEN + 1;

/// When to send a request (again): at once, then after 250 ms, 500 ms, 1 s... up to
/// [`MAX_RETRANSMIT`]. Takes the clock as an argument.
#[derive(Debug)]
pub(crate) struct Retransmit {
    next: Instant,
    interval: Duration,
}

impl Retransmit {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            next: now,
            interval: FIRST_RETRANSMIT,
        }
    }

    /// Whether a send is due at `now`; if so, the next one is scheduled.
    pub(crate) fn poll_transmit(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + self.interval;
        self.interval = (self.interval * 2).min(MAX_RETRANSMIT);
        true
    }

    /// When the next send is due.
    pub(crate) fn poll_timeout(&self) -> Instant {
        self.next
    }
}

/// Why an exchange got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Silence {
    /// Nothing came back before the deadline.
    Timeout,
    /// The socket failed: an ICMP "port unreachable" (nothing listens on 5351), no route.
    Unreachable,
}

impl From<Silence> for NoMapping {
    fn from(_: Silence) -> Self {
        NoMapping::NoGateway
    }
}

/// A UDP socket connected to a gateway's PCP/NAT-PMP port.
#[derive(Debug)]
pub(crate) struct Server {
    socket: UdpSocket,
    /// Our address as the gateway sees it (PCP puts it in every request).
    client: Ipv4Addr,
}

impl Server {
    /// Binds to `local` (or any address) and connects to `server`; learns the source address
    /// the kernel picks for it.
    pub(crate) async fn connect(server: SocketAddr, local: Option<Ipv4Addr>) -> io::Result<Self> {
        let socket = UdpSocket::bind((local.unwrap_or(Ipv4Addr::UNSPECIFIED), 0)).await?;
        socket.connect(server).await?;
        let client = match socket.local_addr()?.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => return Err(io::ErrorKind::Unsupported.into()),
        };
        Ok(Self { socket, client })
    }

    /// Our address as the gateway sees it.
    pub(crate) fn client(&self) -> Ipv4Addr {
        self.client
    }

    /// Sends every request of `requests` on the [`Retransmit`] schedule until `answer` makes
    /// something of a datagram, or `deadline` passes. Datagrams `answer` ignores (`None`) are
    /// late answers to earlier requests, or not for us.
    pub(crate) async fn exchange<T>(
        &self,
        requests: &[Vec<u8>],
        deadline: Instant,
        mut answer: impl FnMut(&[u8]) -> Option<T>,
    ) -> Result<T, Silence> {
        let mut schedule = Retransmit::new(Instant::now());
        let mut buf = [0u8; RECV_BUF];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Silence::Timeout);
            }
            if schedule.poll_transmit(now) {
                for request in requests {
                    self.socket.send(request).await.map_err(unreachable)?;
                }
            }
            let wake = schedule.poll_timeout().min(deadline);
            match until(wake, self.socket.recv(&mut buf)).await {
                None => {}
                Some(Err(e)) => return Err(unreachable(e)),
                Some(Ok(n)) => {
                    if let Some(t) = answer(&buf[..n]) {
                        return Ok(t);
                    }
                    log::trace!("port mapping: ignored a {n}-byte datagram from the gateway");
                }
            }
        }
    }
}

fn unreachable(e: io::Error) -> Silence {
    log::debug!("port mapping: gateway port {SERVER_PORT}: {e}");
    Silence::Unreachable
}

/// Which protocols the gateway speaks, from the side-effect-free probe: a PCP ANNOUNCE and a
/// NAT-PMP external-address request, sent together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Probe {
    /// `Some(true)`: PCP answered with success; `Some(false)`: answered otherwise.
    pub(crate) pcp: Option<bool>,
    /// `Some(true)`: NAT-PMP gave an external address; `Some(false)`: answered otherwise.
    pub(crate) natpmp: Option<bool>,
}

impl Probe {
    /// The probe's requests, for the protocols wanted.
    pub(crate) fn requests(client: Ipv4Addr, pcp: bool, natpmp: bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if pcp {
            let announce = pcp::Request {
                lifetime: 0,
                client: client.into(),
                map: None,
            };
            out.push(announce.encode());
        }
        if natpmp {
            out.push(natpmp::Request::ExternalAddress.encode());
        }
        out
    }

    /// Learns from one datagram; true once there is nothing more to wait for (PCP works, or
    /// every protocol asked has answered).
    pub(crate) fn handle(&mut self, bytes: &[u8], want_pcp: bool, want_natpmp: bool) -> bool {
        match bytes.first() {
            Some(&pcp::VERSION) => {
                if let Ok(r) = pcp::Response::decode(bytes)
                    && r.opcode == pcp::OP_ANNOUNCE
                {
                    self.pcp = Some(r.result == pcp::RESULT_SUCCESS);
                }
            }
            Some(&natpmp::VERSION) => match natpmp::Response::decode(bytes) {
                // A NAT-PMP-only gateway's answer to the PCP request (RFC 6887 §9): our own
                // NAT-PMP request has the version it speaks.
                Ok(r) if r.result == natpmp::RESULT_UNSUPPORTED_VERSION => self.pcp = Some(false),
                Ok(natpmp::Response {
                    result,
                    body: natpmp::Body::ExternalAddress(ip),
                    ..
                }) => self.natpmp = Some(result == natpmp::RESULT_SUCCESS && !ip.is_unspecified()),
                Ok(natpmp::Response {
                    body: natpmp::Body::Error { opcode: 0 },
                    ..
                }) => self.natpmp = Some(false),
                _ => {}
            },
            _ => {}
        }
        let pcp_works = want_pcp && self.pcp == Some(true);
        let all_answered =
            (!want_pcp || self.pcp.is_some()) && (!want_natpmp || self.natpmp.is_some());
        pcp_works || all_answered
    }
}

/// Asks which protocols the gateway speaks; waits at most [`PROBE_TIMEOUT`] (or `deadline`).
pub(crate) async fn probe(
    server: &Server,
    want_pcp: bool,
    want_natpmp: bool,
    deadline: Instant,
) -> Probe {
    let mut probe = Probe::default();
    let requests = Probe::requests(server.client, want_pcp, want_natpmp);
    let deadline = deadline.min(Instant::now() + PROBE_TIMEOUT);
    let _ = server
        .exchange(&requests, deadline, |bytes| {
            probe.handle(bytes, want_pcp, want_natpmp).then_some(())
        })
        .await;
    probe
}

/// A mapping as the gateway granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Granted {
    pub(crate) external: SocketAddrV4,
    /// Seconds; 0 after a deletion.
    pub(crate) lifetime: u32,
}

/// The PCP MAP request for `transport` port `internal_port`: `lifetime` 0 deletes.
pub(crate) fn pcp_map_request(
    client: Ipv4Addr,
    transport: Transport,
    nonce: [u8; 12],
    internal_port: u16,
    suggested: SocketAddrV4,
    lifetime: u32,
) -> pcp::Request {
    pcp::Request {
        lifetime,
        client: client.into(),
        map: Some(pcp::Map {
            nonce,
            protocol: transport.protocol_number(),
            internal_port,
            external: suggested.into(),
        }),
    }
}

/// What a datagram says about a PCP MAP `request`: `None` when it is not the answer to it.
/// A success must name an IPv4 address and port (and a lifetime, unless deleting) or it is
/// taken as a lie.
pub(crate) fn pcp_map_answer(
    bytes: &[u8],
    request: &pcp::Request,
) -> Option<Result<Granted, NoMapping>> {
    let asked = request.map.as_ref()?;
    if bytes.first() == Some(&natpmp::VERSION) {
        // A NAT-PMP gateway answering "unsupported version" to PCP.
        let r = natpmp::Response::decode(bytes).ok()?;
        return (r.result == natpmp::RESULT_UNSUPPORTED_VERSION).then_some(Err(refused(
            Protocol::Pcp,
            pcp::RESULT_UNSUPP_VERSION.into(),
        )));
    }
    let r = pcp::Response::decode(bytes).ok()?;
    if r.opcode != pcp::OP_MAP {
        return None;
    }
    if let Some(got) = &r.map
        && (got.nonce != asked.nonce
            || got.protocol != asked.protocol
            || got.internal_port != asked.internal_port)
    {
        return None;
    }
    if r.result != pcp::RESULT_SUCCESS {
        return Some(Err(refused(Protocol::Pcp, r.result.into())));
    }
    let deleting = request.lifetime == 0;
    let granted = match r.map?.external {
        SocketAddr::V4(external) => Granted {
            external,
            lifetime: r.lifetime,
        },
        SocketAddr::V6(_) => return Some(Err(NoMapping::Invalid(Protocol::Pcp))),
    };
    Some(check(granted, deleting, Protocol::Pcp))
}

/// Collects the two NAT-PMP answers a mapping needs: the mapping itself and the external
/// address (which the mapping answer does not carry).
#[derive(Debug, Default)]
pub(crate) struct NatPmpAnswers {
    address: Option<Ipv4Addr>,
    map: Option<(u16, u32)>,
}

impl NatPmpAnswers {
    /// The requests: the mapping of `transport` (opcode 1 UDP, 2 TCP), and (unless deleting)
    /// the external address.
    pub(crate) fn requests(
        transport: Transport,
        internal_port: u16,
        suggested_port: u16,
        lifetime: u32,
    ) -> Vec<Vec<u8>> {
        let suggested_port = if lifetime == 0 { 0 } else { suggested_port };
        let map = natpmp::Request::map(transport, internal_port, suggested_port, lifetime);
        let mut out = vec![map.encode()];
        if lifetime != 0 {
            out.push(natpmp::Request::ExternalAddress.encode());
        }
        out
    }

    /// Learns from one datagram about the mapping of `transport` port `internal_port`;
    /// `Some` once the outcome is known.
    pub(crate) fn handle(
        &mut self,
        bytes: &[u8],
        transport: Transport,
        internal_port: u16,
        lifetime: u32,
    ) -> Option<Result<Granted, NoMapping>> {
        let r = natpmp::Response::decode(bytes).ok()?;
        if r.result != natpmp::RESULT_SUCCESS {
            return Some(Err(refused(Protocol::NatPmp, r.result)));
        }
        match (r.body, r.body.mapping()) {
            (natpmp::Body::ExternalAddress(ip), _) => self.address = Some(ip),
            (_, Some((t, port, external_port, lifetime)))
                if t == transport && port == internal_port =>
            {
                self.map = Some((external_port, lifetime))
            }
            _ => return None,
        }
        let deleting = lifetime == 0;
        let (port, granted) = self.map?;
        let ip = if deleting {
            Ipv4Addr::UNSPECIFIED
        } else {
            self.address?
        };
        let granted = Granted {
            external: SocketAddrV4::new(ip, port),
            lifetime: granted,
        };
        Some(check(granted, deleting, Protocol::NatPmp))
    }
}

fn refused(protocol: Protocol, code: u16) -> NoMapping {
    NoMapping::Refused { protocol, code }
}

/// A granted mapping must be usable: an address, a port, a lifetime. A deletion needs none.
fn check(granted: Granted, deleting: bool, protocol: Protocol) -> Result<Granted, NoMapping> {
    let usable = !granted.external.ip().is_unspecified()
        && !granted.external.ip().is_multicast()
        && !granted.external.ip().is_broadcast()
        && granted.external.port() != 0
        && granted.lifetime != 0;
    if deleting || usable {
        Ok(granted)
    } else {
        Err(NoMapping::Invalid(protocol))
    }
}

/// Maps (renews, or with `lifetime` 0 deletes) with PCP.
pub(crate) async fn pcp_map(
    server: &Server,
    transport: Transport,
    nonce: [u8; 12],
    internal_port: u16,
    suggested: SocketAddrV4,
    lifetime: u32,
    deadline: Instant,
) -> Result<Granted, NoMapping> {
    let request = pcp_map_request(
        server.client,
        transport,
        nonce,
        internal_port,
        suggested,
        lifetime,
    );
    let bytes = [request.encode()];
    server
        .exchange(&bytes, deadline, |b| pcp_map_answer(b, &request))
        .await?
}

/// Maps (renews, or with `lifetime` 0 deletes) with NAT-PMP.
pub(crate) async fn natpmp_map(
    server: &Server,
    transport: Transport,
    internal_port: u16,
    suggested_port: u16,
    lifetime: u32,
    deadline: Instant,
) -> Result<Granted, NoMapping> {
    let requests = NatPmpAnswers::requests(transport, internal_port, suggested_port, lifetime);
    let mut answers = NatPmpAnswers::default();
    server
        .exchange(&requests, deadline, |b| {
            answers.handle(b, transport, internal_port, lifetime)
        })
        .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 20);
    const NONCE: [u8; 12] = [7; 12];

    fn map_response(result: u8, lifetime: u32, external: SocketAddr, nonce: [u8; 12]) -> Vec<u8> {
        pcp::Response {
            opcode: pcp::OP_MAP,
            result,
            lifetime,
            epoch: 9,
            map: Some(pcp::Map {
                nonce,
                protocol: pcp::PROTOCOL_UDP,
                internal_port: 4000,
                external,
            }),
        }
        .encode()
    }

    #[test]
    fn retransmissions_double_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut r = Retransmit::new(t0);
        let mut sends = vec![];
        let mut now = t0;
        while now < t0 + Duration::from_secs(20) {
            if r.poll_transmit(now) {
                sends.push((now - t0).as_millis());
            }
            now = r.poll_timeout();
        }
        assert_eq!(&sends[..6], &[0, 250, 750, 1750, 3750, 7750]);
        assert_eq!(sends[6] - sends[5], 4000);
        assert!(!r.poll_transmit(r.poll_timeout() - Duration::from_millis(1)));
    }

    #[test]
    fn probe_prefers_pcp_and_learns_natpmp_only_gateways() {
        let announce_ok = pcp::Response {
            opcode: pcp::OP_ANNOUNCE,
            result: 0,
            lifetime: 0,
            epoch: 1,
            map: None,
        }
        .encode();
        let mut p = Probe::default();
        assert!(p.handle(&announce_ok, true, true), "PCP is enough");

        // A NAT-PMP-only gateway: "unsupported version" to PCP, then its address.
        let mut p = Probe::default();
        let unsupported = natpmp::Response {
            result: natpmp::RESULT_UNSUPPORTED_VERSION,
            epoch: 1,
            body: natpmp::Body::Error { opcode: 0 },
        };
        assert!(!p.handle(&unsupported.encode(), true, true));
        let address = natpmp::Response {
            result: 0,
            epoch: 1,
            body: natpmp::Body::ExternalAddress(Ipv4Addr::new(198, 51, 100, 7)),
        };
        assert!(p.handle(&address.encode(), true, true));
        assert_eq!(
            p,
            Probe {
                pcp: Some(false),
                natpmp: Some(true)
            }
        );
        // Garbage teaches nothing.
        let mut p = Probe::default();
        assert!(!p.handle(&[2, 0x80, 0], true, true));
        assert!(!p.handle(&[], true, true));
        assert_eq!(p, Probe::default());
    }

    #[test]
    fn pcp_answers_are_matched_and_checked() {
        let suggested = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4000);
        let req = pcp_map_request(CLIENT, Transport::Udp, NONCE, 4000, suggested, 7200);
        let ext: SocketAddr = "203.0.113.2:4000".parse().unwrap();
        let ok = map_response(0, 3600, ext, NONCE);
        assert_eq!(
            pcp_map_answer(&ok, &req),
            Some(Ok(Granted {
                external: "203.0.113.2:4000".parse().unwrap(),
                lifetime: 3600
            }))
        );
        // Someone else's nonce: not our answer.
        assert_eq!(
            pcp_map_answer(&map_response(0, 3600, ext, [1; 12]), &req),
            None
        );
        // Refused.
        let refused = map_response(pcp::RESULT_NOT_AUTHORIZED, 30, ext, NONCE);
        assert_eq!(
            pcp_map_answer(&refused, &req),
            Some(Err(NoMapping::Refused {
                protocol: Protocol::Pcp,
                code: 2
            }))
        );
        // Lies: no address, no port, no lifetime, an IPv6 address for an IPv4 request.
        for bogus in [
            map_response(0, 3600, "0.0.0.0:4000".parse().unwrap(), NONCE),
            map_response(0, 3600, "203.0.113.2:0".parse().unwrap(), NONCE),
            map_response(0, 0, ext, NONCE),
            map_response(0, 3600, "[2001:db8::1]:4000".parse().unwrap(), NONCE),
        ] {
            assert_eq!(
                pcp_map_answer(&bogus, &req),
                Some(Err(NoMapping::Invalid(Protocol::Pcp)))
            );
        }
        // A deletion's answer carries no lifetime.
        let delete = pcp_map_request(CLIENT, Transport::Udp, NONCE, 4000, suggested, 0);
        assert!(matches!(
            pcp_map_answer(&map_response(0, 0, ext, NONCE), &delete),
            Some(Ok(_))
        ));
    }

    #[test]
    fn natpmp_needs_both_answers() {
        let mut a = NatPmpAnswers::default();
        let map = natpmp::Response {
            result: 0,
            epoch: 3,
            body: natpmp::Body::MapUdp {
                internal_port: 4000,
                external_port: 4001,
                lifetime: 7200,
            },
        };
        assert_eq!(a.handle(&map.encode(), Transport::Udp, 4000, 7200), None);
        let address = natpmp::Response {
            result: 0,
            epoch: 3,
            body: natpmp::Body::ExternalAddress(Ipv4Addr::new(198, 51, 100, 7)),
        };
        assert_eq!(
            a.handle(&address.encode(), Transport::Udp, 4000, 7200),
            Some(Ok(Granted {
                external: "198.51.100.7:4001".parse().unwrap(),
                lifetime: 7200
            }))
        );
        // Another port's answer is not ours; a refusal is final.
        let mut a = NatPmpAnswers::default();
        let other = natpmp::Response {
            body: natpmp::Body::MapUdp {
                internal_port: 5000,
                external_port: 5000,
                lifetime: 7200,
            },
            ..map
        };
        assert_eq!(a.handle(&other.encode(), Transport::Udp, 4000, 7200), None);
        let refused = natpmp::Response {
            result: natpmp::RESULT_OUT_OF_RESOURCES,
            ..map
        };
        assert_eq!(
            a.handle(&refused.encode(), Transport::Udp, 4000, 7200),
            Some(Err(NoMapping::Refused {
                protocol: Protocol::NatPmp,
                code: 4
            }))
        );
        // A gateway without an external address lies if it says success.
        let mut a = NatPmpAnswers::default();
        let nowhere = natpmp::Response {
            body: natpmp::Body::ExternalAddress(Ipv4Addr::UNSPECIFIED),
            ..address
        };
        a.handle(&map.encode(), Transport::Udp, 4000, 7200);
        assert_eq!(
            a.handle(&nowhere.encode(), Transport::Udp, 4000, 7200),
            Some(Err(NoMapping::Invalid(Protocol::NatPmp)))
        );
    }

    #[test]
    fn tcp_requests_and_answers() {
        // PCP: protocol 6 in the request; an answer for UDP (same nonce and port) is not ours.
        let suggested = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4000);
        let req = pcp_map_request(CLIENT, Transport::Tcp, NONCE, 4000, suggested, 7200);
        assert_eq!(req.map.unwrap().protocol, pcp::PROTOCOL_TCP);
        let ext: SocketAddr = "203.0.113.2:4000".parse().unwrap();
        assert_eq!(
            pcp_map_answer(&map_response(0, 3600, ext, NONCE), &req),
            None
        );
        let mut tcp = pcp::Response::decode(&map_response(0, 3600, ext, NONCE)).unwrap();
        tcp.map.as_mut().unwrap().protocol = pcp::PROTOCOL_TCP;
        assert_eq!(
            pcp_map_answer(&tcp.encode(), &req),
            Some(Ok(Granted {
                external: "203.0.113.2:4000".parse().unwrap(),
                lifetime: 3600
            }))
        );
        // The UDP request is the same bytes as before, protocol 17.
        let udp = pcp_map_request(CLIENT, Transport::Udp, NONCE, 4000, suggested, 7200);
        assert_eq!(udp.map.unwrap().protocol, pcp::PROTOCOL_UDP);

        // NAT-PMP: opcode 2, then the address; deleting asks no address.
        assert_eq!(
            NatPmpAnswers::requests(Transport::Tcp, 4000, 4001, 7200),
            vec![
                natpmp::Request::MapTcp {
                    internal_port: 4000,
                    suggested_port: 4001,
                    lifetime: 7200
                }
                .encode(),
                vec![0, 0]
            ]
        );
        assert_eq!(
            NatPmpAnswers::requests(Transport::Tcp, 4000, 4001, 0),
            vec![vec![0, 2, 0, 0, 0x0f, 0xa0, 0, 0, 0, 0, 0, 0]]
        );
        assert_eq!(
            NatPmpAnswers::requests(Transport::Udp, 4000, 4001, 0),
            vec![vec![0, 1, 0, 0, 0x0f, 0xa0, 0, 0, 0, 0, 0, 0]]
        );
        let mut a = NatPmpAnswers::default();
        let udp_map = natpmp::Response {
            result: 0,
            epoch: 3,
            body: natpmp::Body::MapUdp {
                internal_port: 4000,
                external_port: 4001,
                lifetime: 7200,
            },
        };
        let address = natpmp::Response {
            result: 0,
            epoch: 3,
            body: natpmp::Body::ExternalAddress(Ipv4Addr::new(198, 51, 100, 7)),
        };
        assert_eq!(
            a.handle(&address.encode(), Transport::Tcp, 4000, 7200),
            None
        );
        // The UDP mapping of the same port does not answer a TCP request.
        assert_eq!(
            a.handle(&udp_map.encode(), Transport::Tcp, 4000, 7200),
            None
        );
        let tcp_map = natpmp::Response {
            body: natpmp::Body::MapTcp {
                internal_port: 4000,
                external_port: 4002,
                lifetime: 7200,
            },
            ..udp_map
        };
        assert_eq!(
            a.handle(&tcp_map.encode(), Transport::Tcp, 4000, 7200),
            Some(Ok(Granted {
                external: "198.51.100.7:4002".parse().unwrap(),
                lifetime: 7200
            }))
        );
        // Nor the reverse.
        let mut a = NatPmpAnswers::default();
        a.handle(&address.encode(), Transport::Udp, 4000, 7200);
        assert_eq!(
            a.handle(&tcp_map.encode(), Transport::Udp, 4000, 7200),
            None
        );
    }
}

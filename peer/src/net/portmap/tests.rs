//! The mapper against a fake gateway on loopback: PCP, NAT-PMP, a lying and a silent one; UDP
//! and TCP mappings. (The real routers are in the integration tests: miniupnpd in network
//! namespaces.)

use super::*;
use std::sync::atomic::{AtomicU16, Ordering};

const INTERNAL_PORT: u16 = 4000;
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Speaks PCP (and NAT-PMP); grants `lifetime` seconds at external port 20000 + the number
    /// of MAP requests so far, so every renewal moves the mapping.
    Pcp { lifetime: u32 },
    /// Speaks NAT-PMP only, like an old router.
    NatPmpOnly,
    /// Says "success" with external address 0.0.0.0.
    Lying,
}

/// A gateway on 127.0.0.1 that answers by `mode` and records every request.
pub(crate) struct FakeGateway {
    port: u16,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    _task: smol::Task<()>,
}

impl FakeGateway {
    pub(crate) fn start_pcp(lifetime: u32) -> Self {
        Self::start(Mode::Pcp { lifetime })
    }

    fn start(mode: Mode) -> Self {
        let socket = smol::block_on(smol::net::UdpSocket::bind("127.0.0.1:0")).unwrap();
        let port = socket.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let maps = AtomicU16::new(0);
        let task = smol::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let request = buf[..n].to_vec();
                log.lock().unwrap().push(request.clone());
                if let Some(reply) = answer(mode, &request, &maps) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        Self {
            port,
            requests,
            _task: task,
        }
    }

    fn ctx(&self, lease: u32) -> Ctx {
        self.ctx_for(Transport::Udp, lease)
    }

    /// A UDP or TCP mapper's context towards this gateway.
    fn ctx_for(&self, transport: Transport, lease: u32) -> Ctx {
        Ctx {
            config: PortMapConfig {
                upnp: false,
                gateway: Some(Ipv4Addr::LOCALHOST),
                discovery_timeout: Duration::from_millis(800),
                ..Default::default()
            },
            lease,
            transport,
            internal_port: INTERNAL_PORT,
            local_ip: None,
            server_port: self.port,
            lane: Default::default(),
        }
    }

    /// Starts a mapper of `transport` port `internal_port` towards this gateway.
    pub(crate) async fn mapper(
        &self,
        transport: Transport,
        internal_port: u16,
        lease: u32,
    ) -> PortMapper {
        let mut ctx = self.ctx_for(transport, lease);
        ctx.internal_port = internal_port;
        PortMapper::start_with(ctx, &Spawner::Global).await
    }

    /// The NAT-PMP requests received so far.
    fn natpmp_requests(&self) -> Vec<natpmp::Request> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter_map(|r| natpmp::Request::decode(r).ok())
            .collect()
    }

    /// The PCP MAP requests received so far.
    fn pcp_maps(&self) -> Vec<pcp::Request> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter_map(|r| pcp::Request::decode(r).ok())
            .filter(|r| r.map.is_some())
            .collect()
    }
}

fn answer(mode: Mode, request: &[u8], maps: &AtomicU16) -> Option<Vec<u8>> {
    if let Ok(req) = pcp::Request::decode(request) {
        if mode == Mode::NatPmpOnly {
            let reply = natpmp::Response {
                result: natpmp::RESULT_UNSUPPORTED_VERSION,
                epoch: 1,
                body: natpmp::Body::Error { opcode: 0 },
            };
            return Some(reply.encode());
        }
        let map = req.map.map(|mut m| {
            let n = maps.fetch_add(1, Ordering::Relaxed) + 1;
            let ip = if mode == Mode::Lying {
                Ipv4Addr::UNSPECIFIED
            } else {
                EXTERNAL_IP
            };
            m.external = SocketAddrV4::new(ip, 20000 + n).into();
            m
        });
        let lifetime = match mode {
            Mode::Pcp { lifetime } if req.lifetime != 0 => lifetime,
            _ => req.lifetime.min(3600),
        };
        let reply = pcp::Response {
            opcode: if map.is_some() {
                pcp::OP_MAP
            } else {
                pcp::OP_ANNOUNCE
            },
            result: pcp::RESULT_SUCCESS,
            lifetime,
            epoch: 1,
            map,
        };
        return Some(reply.encode());
    }
    let body = match natpmp::Request::decode(request).ok()? {
        natpmp::Request::ExternalAddress => natpmp::Body::ExternalAddress(EXTERNAL_IP),
        natpmp::Request::MapUdp {
            internal_port,
            suggested_port,
            lifetime,
        } => natpmp::Body::MapUdp {
            internal_port,
            external_port: suggested_port,
            lifetime,
        },
        natpmp::Request::MapTcp {
            internal_port,
            suggested_port,
            lifetime,
        } => natpmp::Body::MapTcp {
            internal_port,
            external_port: suggested_port,
            lifetime,
        },
    };
    let reply = natpmp::Response {
        result: 0,
        epoch: 1,
        body,
    };
    Some(reply.encode())
}

#[test]
fn pcp_maps_renews_reports_the_change_and_deletes() {
    let gateway = FakeGateway::start(Mode::Pcp { lifetime: 2 });
    smol::block_on(async {
        let mapper = PortMapper::start_with(gateway.ctx(2), &Spawner::Global).await;
        let first = mapper.status();
        let Status::Mapped(m) = first else {
            panic!("not mapped: {first:?}")
        };
        assert_eq!(m.protocol, Protocol::Pcp);
        assert_eq!(m.external, "198.51.100.1:20001".parse().unwrap());
        assert_eq!(m.internal, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(m.lease, Duration::from_secs(2));

        // The renewal, a second later, gets port 20002: a change the caller sees.
        let next = until(
            Instant::now() + Duration::from_secs(5),
            mapper.changed(&first),
        )
        .await;
        let Some(Status::Mapped(renewed)) = next else {
            panic!("no renewal: {next:?}")
        };
        assert_eq!(renewed.external, "198.51.100.1:20002".parse().unwrap());

        mapper.close().await;
    });
    let maps = gateway.pcp_maps();
    let nonce = |r: &pcp::Request| r.map.unwrap().nonce;
    assert!(maps.len() >= 3, "map, renewal, delete: {maps:?}");
    assert!(
        maps.iter().all(|r| nonce(r) == nonce(&maps[0])),
        "one nonce throughout"
    );
    assert_eq!(
        maps[1].map.unwrap().external,
        "198.51.100.1:20001".parse().unwrap()
    );
    assert_eq!(maps.last().unwrap().lifetime, 0, "close deletes");
}

#[test]
fn a_natpmp_only_gateway_is_used_with_natpmp() {
    let gateway = FakeGateway::start(Mode::NatPmpOnly);
    smol::block_on(async {
        let mapper = PortMapper::start_with(gateway.ctx(7200), &Spawner::Global).await;
        let m = mapper.mapping().expect("mapped");
        assert_eq!(m.protocol, Protocol::NatPmp);
        assert_eq!(m.external, SocketAddr::from((EXTERNAL_IP, INTERNAL_PORT)));
        assert_eq!(m.lease, Duration::from_secs(7200));
        mapper.close().await;
    });
    let requests = gateway.requests.lock().unwrap();
    let last = natpmp::Request::decode(requests.last().unwrap());
    assert_eq!(
        last,
        Ok(natpmp::Request::MapUdp {
            internal_port: INTERNAL_PORT,
            suggested_port: 0,
            lifetime: 0
        }),
        "close deletes"
    );
}

#[test]
fn dropping_the_mapper_deletes_the_mapping_too() {
    let gateway = FakeGateway::start(Mode::Pcp { lifetime: 7200 });
    let mapper = smol::block_on(PortMapper::start_with(gateway.ctx(7200), &Spawner::Global));
    assert!(mapper.mapping().is_some());
    drop(mapper);
    let start = Instant::now();
    while gateway.pcp_maps().last().map(|r| r.lifetime) != Some(0) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no deletion after drop"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_lying_gateway_gives_no_mapping() {
    let gateway = FakeGateway::start(Mode::Lying);
    smol::block_on(async {
        let mapper = PortMapper::start_with(gateway.ctx(7200), &Spawner::Global).await;
        assert_eq!(
            mapper.status(),
            Status::Unmapped(NoMapping::Invalid(Protocol::Pcp))
        );
    });
}

#[test]
fn silent_or_absent_gateways_give_none_within_the_bound() {
    // Silent: a socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // Absent: a port nothing listens on (the kernel answers "port unreachable").
    let absent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let absent_port = absent.local_addr().unwrap().port();
    drop(absent);
    for (port, bound) in [
        (silent.local_addr().unwrap().port(), 1000),
        (absent_port, 1000),
    ] {
        let mut ctx = FakeGateway::start(Mode::NatPmpOnly).ctx(7200);
        ctx.server_port = port;
        let start = Instant::now();
        let status = smol::block_on(async {
            let mapper = PortMapper::start_with(ctx, &Spawner::Global).await;
            mapper.status()
        });
        assert_eq!(status, Status::Unmapped(NoMapping::NoGateway));
        assert!(
            start.elapsed() < Duration::from_millis(bound),
            "{:?}",
            start.elapsed()
        );
    }
}

#[test]
fn disabled_asks_nothing() {
    let config = PortMapConfig {
        upnp: false,
        pcp: false,
        natpmp: false,
        ..Default::default()
    };
    let mapper = smol::block_on(PortMapper::start(
        "0.0.0.0:4000".parse().unwrap(),
        config,
        &Spawner::Global,
    ));
    assert_eq!(mapper.status(), Status::Unmapped(NoMapping::Disabled));
    assert!(mapper.task.is_none());
}

#[test]
fn pcp_maps_renews_and_deletes_a_tcp_port() {
    let gateway = FakeGateway::start(Mode::Pcp { lifetime: 2 });
    smol::block_on(async {
        let mapper =
            PortMapper::start_with(gateway.ctx_for(Transport::Tcp, 2), &Spawner::Global).await;
        let first = mapper.status();
        let Status::Mapped(m) = first else {
            panic!("not mapped: {first:?}")
        };
        assert_eq!((m.protocol, m.transport), (Protocol::Pcp, Transport::Tcp));
        assert_eq!(m.external, "198.51.100.1:20001".parse().unwrap());
        assert_eq!(m.internal, "127.0.0.1:4000".parse().unwrap());

        // Renewed (the fake moves the port on each MAP): the caller sees the change.
        let next = until(
            Instant::now() + Duration::from_secs(10),
            mapper.changed(&first),
        )
        .await;
        let Some(Status::Mapped(renewed)) = next else {
            panic!("no renewal: {next:?}")
        };
        assert_eq!(renewed.transport, Transport::Tcp);
        assert_eq!(renewed.external, "198.51.100.1:20002".parse().unwrap());
        mapper.close().await;
    });
    let maps = gateway.pcp_maps();
    assert!(maps.len() >= 3, "map, renewal, delete: {maps:?}");
    for r in &maps {
        let map = r.map.unwrap();
        assert_eq!(
            map.protocol,
            pcp::PROTOCOL_TCP,
            "every MAP is for TCP: {r:?}"
        );
        assert_eq!(map.internal_port, INTERNAL_PORT);
        assert_eq!(map.nonce, maps[0].map.unwrap().nonce);
    }
    assert_eq!(
        maps[1].map.unwrap().external,
        "198.51.100.1:20001".parse().unwrap(),
        "the renewal asks for the port it holds"
    );
    assert_eq!(maps.last().unwrap().lifetime, 0, "close deletes");
}

#[test]
fn natpmp_maps_renews_and_deletes_a_tcp_port() {
    let gateway = FakeGateway::start(Mode::NatPmpOnly);
    let tcp_maps = |g: &FakeGateway| {
        g.natpmp_requests()
            .into_iter()
            .filter(|r| matches!(r, natpmp::Request::MapTcp { .. }))
            .collect::<Vec<_>>()
    };
    smol::block_on(async {
        let mapper =
            PortMapper::start_with(gateway.ctx_for(Transport::Tcp, 2), &Spawner::Global).await;
        let m = mapper.mapping().expect("mapped");
        assert_eq!(
            (m.protocol, m.transport),
            (Protocol::NatPmp, Transport::Tcp)
        );
        assert_eq!(m.external, SocketAddr::from((EXTERNAL_IP, INTERNAL_PORT)));
        // The renewal (the same mapping again, so no change to wait for): a second request.
        let renewed = until(Instant::now() + Duration::from_secs(10), async {
            while tcp_maps(&gateway).len() < 2 {
                Timer::after(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(renewed.is_some(), "no renewal: {:?}", tcp_maps(&gateway));
        assert_eq!(mapper.mapping().map(|m| m.external), Some(m.external));
        mapper.close().await;
    });
    let maps = tcp_maps(&gateway);
    let asked = natpmp::Request::MapTcp {
        internal_port: INTERNAL_PORT,
        suggested_port: INTERNAL_PORT,
        lifetime: 2,
    };
    assert_eq!(&maps[..2], &[asked, asked], "map, then renew");
    assert_eq!(
        maps.last(),
        Some(&natpmp::Request::MapTcp {
            internal_port: INTERNAL_PORT,
            suggested_port: 0,
            lifetime: 0
        }),
        "close deletes"
    );
    assert!(
        !gateway
            .natpmp_requests()
            .iter()
            .any(|r| matches!(r, natpmp::Request::MapUdp { .. })),
        "no UDP mapping asked"
    );
}

#[test]
fn upnp_renews_and_deletes_a_tcp_port() {
    // UPnP's discovery is an SSDP multicast, which a test cannot point at a fake: the mapping
    // is made through the fake router's control URL, then renewed and deleted by the mapper.
    let igd = upnp::tests::FakeIgd::start();
    let gateway = FakeGateway::start(Mode::NatPmpOnly);
    let mut ctx = gateway.ctx_for(Transport::Tcp, 7200);
    ctx.local_ip = Some(Ipv4Addr::LOCALHOST);
    smol::block_on(async {
        let (granted, internal) = upnp::map(
            &ctx.lane,
            &igd.gateway,
            Transport::Tcp,
            ctx.local_ip,
            INTERNAL_PORT,
            INTERNAL_PORT,
            ctx.lease,
            true,
        )
        .await
        .unwrap();
        let held = Held::new(
            Via::Upnp(igd.gateway.clone()),
            Transport::Tcp,
            granted,
            internal,
            ctx.lease,
        );
        assert_eq!(held.mapping.transport, Transport::Tcp);
        let renewed = renew(&ctx, &held).await.unwrap();
        assert_eq!(renewed.mapping.external, held.mapping.external);
        let deadline = Instant::now() + Duration::from_secs(10);
        delete(&ctx, &renewed, deadline).await;
    });
    let adds = igd.bodies("AddPortMapping");
    assert_eq!(adds.len(), 2, "map and renew: {adds:?}");
    let deletes = igd.bodies("DeletePortMapping");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    for body in adds.iter().chain(&deletes) {
        assert_eq!(
            upnp::tests::arg(body, "NewProtocol").as_deref(),
            Some("TCP")
        );
        assert_eq!(
            upnp::tests::arg(body, "NewExternalPort").as_deref(),
            Some("4000")
        );
    }
}

#[test]
fn renewal_schedule() {
    let now = Instant::now();
    let s = Duration::from_secs;
    assert_eq!(renew_time(now, s(7200)), now + s(3600));
    assert_eq!(renew_time(now, s(1)), now + MIN_RENEW_INTERVAL);
    assert_eq!(retry_time(now, now + s(100)), Some(now + s(50)));
    assert_eq!(retry_time(now, now + s(1)), None);
    assert_eq!(retry_time(now + s(5), now), None);
    assert_eq!(lease_secs(s(0)), 2);
    assert_eq!(lease_secs(s(7200)), 7200);
    assert_eq!(lease_secs(Duration::MAX), 24 * 3600);
}

//! Port mapping: asks the home router to forward the QUIC socket's UDP port, so that other
//! players reach this one directly (the `mapped` candidate of the signed record), and the TCP
//! port of a peer relay the player runs for its friends (the `relay` candidate;
//! [`PortMapper::start_for`] with [`Transport::Tcp`]). It maps IPv4 only; it does not open IPv6
//! firewall pinholes, learn the reflexive address or punch. One [`PortMapper`] keeps one
//! mapping: one transport, one port.
//!
//! # The three protocols
//!
//! - **PCP** (RFC 6887) and **NAT-PMP** (RFC 6886, its predecessor) are small UDP
//!   request/response protocols spoken on port 5351 of the default gateway (read from
//!   `/proc/net/route` on Linux; elsewhere the gateway is unknown and both are skipped). One
//!   side-effect-free probe asks both at once (PCP ANNOUNCE, NAT-PMP "external address?"),
//!   then one MAP request goes to the protocol that answered, PCP first: its answer names the
//!   external address, and a random nonce ties the mapping to us so nobody else renews or
//!   deletes it. NAT-PMP needs a second request for the external address. Both grant a lease
//!   in seconds; a request with lifetime 0 deletes. The transport is PCP's protocol number (17
//!   UDP, 6 TCP) or NAT-PMP's opcode (1 UDP, 2 TCP). Codecs: [`pcp`], [`natpmp`].
//! - **UPnP IGD** (through the `igd-next` crate): an SSDP multicast search on the LAN, then
//!   SOAP over HTTP to the router: `GetExternalIPAddress` and `AddPortMapping` (`NewProtocol`
//!   `UDP` or `TCP`; the external port equal to the internal one, or `AddAnyPortMapping` when
//!   it is taken). The search has no
//!   side effects, so it starts at once, beside PCP and NAT-PMP; it is used only when they map
//!   nothing.
//!
//! # Lifecycle
//!
//! [`PortMapper::start`] waits at most [`PortMapConfig::discovery_timeout`] (2 s) and never
//! fails: without a mapping it reports why ([`NoMapping`]). A task on the given
//! [`Spawner`] then drives the mapping:
//!
//! ```text
//! loop {
//!     mapped:   wait until half the lease has passed; renew with the same protocol (same
//!               nonce, same external port). Failed: retry when half of what remains has
//!               passed; once the lease is over: status Lost, discover again at once.
//!     unmapped: wait retry_interval (10 min), discover again.
//! }
//! ```
//!
//! [`PortMapper::status`] and [`PortMapper::changed`] show the current state; a renewal that
//! brings a new external address or port changes it. [`PortMapper::close`] stops the task and
//! deletes the mapping within [`PortMapConfig::close_timeout`]; dropping the mapper without
//! `close` spawns the deletion, best effort.
//!
//! # When the router lies or vanishes
//!
//! - **Silent or gone**: every wait is bounded. At start-up the outcome is
//!   [`NoMapping::NoGateway`]. A renewal that gets no answer is retried until the lease ends;
//!   then [`NoMapping::Lost`] and a new discovery. A router that reboots forgets its mappings
//!   (PCP and NAT-PMP announce it with a smaller epoch, which is not tracked here): the next
//!   renewal, at most half a lease later, makes the mapping again, because a renewal is a full
//!   MAP or `AddPortMapping` request.
//! - **Lying**: a "success" without a usable address, port or lifetime is
//!   [`NoMapping::Invalid`] and is not used. Answers carrying another nonce or internal port are
//!   ignored, and only the gateway's address and port can answer (the socket is connected). A
//!   lease longer than the one asked for counts as the one asked for. Every datagram goes
//!   through a bounded decoder that refuses short, long and inconsistent input; UPnP's XML is
//!   parsed by igd-next, which caps bodies at 1 MiB.
//! - **Not the real edge**: an external address that is itself private or shared (a second
//!   router upstream, carrier-grade NAT) is reported as the router said. Compare it with the
//!   reflexive address before publishing it.
//!
//! # Example
//!
//! ```
//! use peer::net::portmap::{NoMapping, PortMapConfig, PortMapper, Status};
//!
//! smol::block_on(async {
//!     // With every protocol off, nothing is asked: the shortest possible start-up.
//!     let config = PortMapConfig { upnp: false, pcp: false, natpmp: false, ..Default::default() };
//!     let quic_socket = "0.0.0.0:4000".parse().unwrap();
//!     let mapper = PortMapper::start(quic_socket, config, &peer::Spawner::Global).await;
//!     assert_eq!(mapper.status(), Status::Unmapped(NoMapping::Disabled));
//!     if let Some(mapping) = mapper.mapping() {
//!         println!("reachable at {} through {}", mapping.external, mapping.protocol);
//!     }
//!     mapper.close().await;
//! });
//! ```

pub mod natpmp;
pub mod pcp;

mod client;
mod codec;
mod route;
mod upnp;

pub use codec::DecodeError;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use event_listener::Event;
use smol::Timer;

use crate::net::runtime::Spawner;
use client::{Granted, Server};

/// The description a UPnP router shows for our mappings.
pub const DESCRIPTION: &str = "ffxiv-p2p peer";
/// The lease asked for by default (PCP, NAT-PMP and UPnP alike): two hours.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(2 * 3600);
/// The shortest lease asked for (tests use a few seconds; routers may grant less).
pub const MIN_LEASE: Duration = Duration::from_secs(2);
/// The longest lease asked for or believed: a day.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);
/// Never renew more often than this, whatever lease the router grants.
pub const MIN_RENEW_INTERVAL: Duration = Duration::from_secs(1);
/// The default bound on a discovery (start-up included).
pub const DEFAULT_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(2);
/// The default bound on [`PortMapper::close`].
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The default wait before discovering again when there is no mapping.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// The bound on one renewal attempt.
pub const RENEW_TIMEOUT: Duration = Duration::from_secs(5);

/// What to try and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapConfig {
    /// Try UPnP IGD.
    pub upnp: bool,
    /// Try PCP.
    pub pcp: bool,
    /// Try NAT-PMP.
    pub natpmp: bool,
    /// The lease to ask for, within [`MIN_LEASE`]..=[`MAX_LEASE`]; renewed at half.
    pub lease: Duration,
    /// The bound on a discovery: start-up returns within it.
    pub discovery_timeout: Duration,
    /// The bound on deleting the mapping in [`PortMapper::close`].
    pub close_timeout: Duration,
    /// How long to wait before discovering again when there is no mapping.
    pub retry_interval: Duration,
    /// The PCP/NAT-PMP server; `None`: the gateway of the default IPv4 route.
    pub gateway: Option<Ipv4Addr>,
}

impl Default for PortMapConfig {
    fn default() -> Self {
        Self {
            upnp: true,
            pcp: true,
            natpmp: true,
            lease: DEFAULT_LEASE,
            discovery_timeout: DEFAULT_DISCOVERY_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            gateway: None,
        }
    }
}

/// What a mapping forwards: UDP (the QUIC socket) or TCP (a peer relay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// UDP: the QUIC socket's port.
    #[default]
    Udp,
    /// TCP: a peer relay's listening port.
    Tcp,
}

impl Transport {
    /// The IANA protocol number, as PCP carries it (17, 6).
    pub fn protocol_number(self) -> u8 {
        match self {
            Self::Udp => pcp::PROTOCOL_UDP,
            Self::Tcp => pcp::PROTOCOL_TCP,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
        })
    }
}

/// The protocol that made a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// Port Control Protocol (RFC 6887).
    Pcp,
    /// NAT Port Mapping Protocol (RFC 6886).
    NatPmp,
    /// UPnP Internet Gateway Device.
    Upnp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pcp => "PCP",
            Self::NatPmp => "NAT-PMP",
            Self::Upnp => "UPnP",
        })
    }
}

/// A port the router forwards to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Who made it.
    pub protocol: Protocol,
    /// What it forwards.
    pub transport: Transport,
    /// The router's external address and port: the `mapped` candidate (UDP), or the `relay`
    /// one (TCP).
    pub external: SocketAddr,
    /// Where the router forwards to: our LAN address and the QUIC (or peer relay) port.
    pub internal: SocketAddr,
    /// The lease granted (at most the one asked for).
    pub lease: Duration,
}

/// Why there is no mapping. Not an error: the peer works without one, reachable by the other
/// means of the network layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoMapping {
    /// Every protocol is turned off in the config.
    Disabled,
    /// No router answered in time (or there is no default route).
    NoGateway,
    /// A router answered but refused: `code` is its PCP or NAT-PMP result code, or its UPnP
    /// error code (606 not authorized, 718 port taken, 728 no ports left...).
    Refused {
        /// Who refused.
        protocol: Protocol,
        /// The router's code.
        code: u16,
    },
    /// A router said "success" without a usable address, port or lease.
    Invalid(Protocol),
    /// A mapping could not be renewed before its lease ended.
    Lost,
    /// [`PortMapper::close`] was called.
    Closed,
}

impl fmt::Display for NoMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disabled => f.write_str("port mapping is turned off"),
            Self::NoGateway => f.write_str("no router answered a port mapping request"),
            Self::Refused { protocol, code } => {
                write!(
                    f,
                    "the router refused the {protocol} port mapping (code {code})"
                )
            }
            Self::Invalid(protocol) => write!(f, "the router's {protocol} answer was unusable"),
            Self::Lost => f.write_str("the port mapping could not be renewed"),
            Self::Closed => f.write_str("port mapping closed"),
        }
    }
}

/// The mapper's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The router forwards a port to us.
    Mapped(Mapping),
    /// It does not, and why.
    Unmapped(NoMapping),
}

/// Keeps a port mapping on the home router for the QUIC socket (or a peer relay's TCP
/// listener): see the module documentation.
#[derive(Debug)]
pub struct PortMapper {
    ctx: Arc<Ctx>,
    shared: Arc<Shared>,
    /// Renews and rediscovers; dropping it stops that.
    task: Option<smol::Task<()>>,
    spawner: Spawner,
}

impl PortMapper {
    /// Maps the UDP port of `local`, the QUIC socket's address, waiting at most
    /// `config.discovery_timeout`; then keeps the mapping alive on `spawner`. A specific IPv4
    /// address in `local` is the address the router forwards to; an unspecified or IPv6 one
    /// means the address this host uses towards the router. Never fails: see [`Self::status`].
    pub async fn start(local: SocketAddr, config: PortMapConfig, spawner: &Spawner) -> Self {
        Self::start_for(Transport::Udp, local, config, spawner).await
    }

    /// [`Self::start`] for either transport: with [`Transport::Tcp`], maps the TCP port of
    /// `local`, a listening TCP socket's address (a peer relay's), the same way.
    pub async fn start_for(
        transport: Transport,
        local: SocketAddr,
        config: PortMapConfig,
        spawner: &Spawner,
    ) -> Self {
        let local_ip = match local.ip() {
            IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
            _ => None,
        };
        let ctx = Ctx {
            lease: lease_secs(config.lease),
            config,
            transport,
            internal_port: local.port(),
            local_ip,
            server_port: client::SERVER_PORT,
            lane: Default::default(),
        };
        Self::start_with(ctx, spawner).await
    }

    async fn start_with(ctx: Ctx, spawner: &Spawner) -> Self {
        let ctx = Arc::new(ctx);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                status: Status::Unmapped(NoMapping::NoGateway),
                held: None,
            }),
            changed: Event::new(),
        });
        let found = discover(&ctx).await;
        let what = match ctx.transport {
            Transport::Udp => "the QUIC port",
            Transport::Tcp => "the TCP port",
        };
        match &found {
            Ok(held) => log::info!(
                "port mapping: mapped {what} {} with {}",
                ctx.internal_port,
                held.mapping.protocol
            ),
            Err(why) => log::info!(
                "port mapping: none for {what} {} ({why})",
                ctx.internal_port
            ),
        }
        let disabled = matches!(found, Err(NoMapping::Disabled));
        shared.set(found);
        let task = (!disabled).then(|| spawner.spawn(maintain(ctx.clone(), shared.clone())));
        Self {
            ctx,
            shared,
            task,
            spawner: spawner.clone(),
        }
    }

    /// The current state.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// The current mapping, if any.
    pub fn mapping(&self) -> Option<Mapping> {
        match self.status() {
            Status::Mapped(mapping) => Some(mapping),
            Status::Unmapped(_) => None,
        }
    }

    /// Waits until the state differs from `seen` (usually the last value returned), and
    /// returns it. At once if it already differs.
    pub async fn changed(&self, seen: &Status) -> Status {
        loop {
            let listener = self.shared.changed.listen();
            let now = self.status();
            if now != *seen {
                return now;
            }
            listener.await;
        }
    }

    /// Stops renewing and deletes the mapping, waiting at most `config.close_timeout`.
    pub async fn close(mut self) {
        if let Some(task) = self.task.take() {
            task.cancel().await;
        }
        let held = self.shared.take();
        self.shared.set(Err(NoMapping::Closed));
        if let Some(held) = held {
            let deadline = Instant::now() + self.ctx.config.close_timeout;
            if until(deadline, delete(&self.ctx, &held, deadline))
                .await
                .is_none()
            {
                log::debug!("port mapping: the router did not confirm the deletion in time");
            }
        }
    }
}

impl Drop for PortMapper {
    /// Best effort: spawns the deletion, which runs if the executor keeps running.
    fn drop(&mut self) {
        drop(self.task.take());
        if let Some(held) = self.shared.take() {
            let ctx = self.ctx.clone();
            let deadline = Instant::now() + ctx.config.close_timeout;
            self.spawner
                .spawn(async move { until(deadline, delete(&ctx, &held, deadline)).await })
                .detach();
        }
    }
}

/// What every attempt needs.
#[derive(Debug)]
struct Ctx {
    config: PortMapConfig,
    /// `config.lease` in seconds, clamped.
    lease: u32,
    /// What is mapped: UDP (the QUIC socket) or TCP (a peer relay).
    transport: Transport,
    internal_port: u16,
    /// The address to forward to, when the caller named one.
    local_ip: Option<Ipv4Addr>,
    /// 5351, except in tests with a fake gateway.
    server_port: u16,
    lane: upnp::Lane,
}

/// A mapping held, and what renewing or deleting it needs.
#[derive(Debug, Clone)]
struct Held {
    mapping: Mapping,
    via: Via,
    /// When the lease ends, and when to renew it.
    expires: Instant,
    renew_at: Instant,
}

#[derive(Debug, Clone)]
enum Via {
    Pcp { server: SocketAddr, nonce: [u8; 12] },
    NatPmp { server: SocketAddr },
    Upnp(Arc<upnp::Gateway>),
}

impl Held {
    fn new(
        via: Via,
        transport: Transport,
        granted: Granted,
        internal: SocketAddrV4,
        requested: u32,
    ) -> Self {
        let protocol = match via {
            Via::Pcp { .. } => Protocol::Pcp,
            Via::NatPmp { .. } => Protocol::NatPmp,
            Via::Upnp(_) => Protocol::Upnp,
        };
        let lease = Duration::from_secs(granted.lifetime.min(requested).into());
        let now = Instant::now();
        Self {
            mapping: Mapping {
                protocol,
                transport,
                external: granted.external.into(),
                internal: internal.into(),
                lease,
            },
            via,
            expires: now + lease,
            renew_at: renew_time(now, lease),
        }
    }

    fn external_v4(&self) -> SocketAddrV4 {
        match self.mapping.external {
            SocketAddr::V4(v4) => v4,
            SocketAddr::V6(_) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        }
    }
}

/// The lease to ask for, in whole seconds.
fn lease_secs(lease: Duration) -> u32 {
    let secs = lease.clamp(MIN_LEASE, MAX_LEASE).as_secs();
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// When to renew a lease granted at `now`: half-way through.
fn renew_time(now: Instant, lease: Duration) -> Instant {
    now + (lease / 2).max(MIN_RENEW_INTERVAL)
}

/// When to retry a failed renewal: half of what remains; `None` once too little remains.
fn retry_time(now: Instant, expires: Instant) -> Option<Instant> {
    let left = expires.saturating_duration_since(now);
    (left >= 2 * MIN_RENEW_INTERVAL).then(|| now + left / 2)
}

/// `fut`'s output, or `None` if `deadline` comes first.
pub(crate) async fn until<T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(fut.await) }, async {
        Timer::at(deadline).await;
        None
    })
    .await
}

/// Finds a router and maps the port, within the discovery timeout.
async fn discover(ctx: &Ctx) -> Result<Held, NoMapping> {
    let c = &ctx.config;
    if !(c.upnp || c.pcp || c.natpmp) {
        return Err(NoMapping::Disabled);
    }
    let deadline = Instant::now() + c.discovery_timeout;
    until(deadline, discover_by_all(ctx, deadline))
        .await
        .unwrap_or(Err(NoMapping::NoGateway))
}

async fn discover_by_all(ctx: &Ctx, deadline: Instant) -> Result<Held, NoMapping> {
    let c = &ctx.config;
    // The UPnP search has no side effects: start it now, use it only if needed.
    let search = c
        .upnp
        .then(|| upnp::search(c.discovery_timeout, ctx.local_ip));
    let mut failure = NoMapping::NoGateway;
    if c.pcp || c.natpmp {
        match c.gateway.or_else(route::default_gateway) {
            Some(gateway) => {
                let server = SocketAddr::new(gateway.into(), ctx.server_port);
                match discover_pcp_natpmp(ctx, server, deadline).await {
                    Ok(held) => return Ok(held),
                    Err(why) => failure = why,
                }
            }
            None => log::debug!("port mapping: no default IPv4 gateway, PCP and NAT-PMP skipped"),
        }
    }
    if let Some(search) = search
        && let Some(gateway) = search.await
    {
        let gateway = Arc::new(gateway);
        let port = ctx.internal_port;
        match upnp::map(
            &ctx.lane,
            &gateway,
            ctx.transport,
            ctx.local_ip,
            port,
            port,
            ctx.lease,
            true,
        )
        .await
        {
            Ok((granted, internal)) => {
                let via = Via::Upnp(gateway);
                return Ok(Held::new(via, ctx.transport, granted, internal, ctx.lease));
            }
            Err(why) if failure == NoMapping::NoGateway => failure = why,
            Err(_) => {}
        }
    }
    Err(failure)
}

/// Probes the gateway's port 5351, then maps with PCP or else NAT-PMP.
async fn discover_pcp_natpmp(
    ctx: &Ctx,
    server: SocketAddr,
    deadline: Instant,
) -> Result<Held, NoMapping> {
    let c = &ctx.config;
    let socket = connect(server, ctx.local_ip).await?;
    let speaks = client::probe(&socket, c.pcp, c.natpmp, deadline).await;
    let internal = SocketAddrV4::new(socket.client(), ctx.internal_port);
    let mut failure = NoMapping::NoGateway;
    if speaks.pcp == Some(true) {
        let nonce = new_nonce();
        let suggested = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, ctx.internal_port);
        let port = ctx.internal_port;
        let t = ctx.transport;
        match client::pcp_map(&socket, t, nonce, port, suggested, ctx.lease, deadline).await {
            Ok(granted) => {
                let via = Via::Pcp { server, nonce };
                return Ok(Held::new(via, t, granted, internal, ctx.lease));
            }
            Err(why) => failure = why,
        }
    }
    if speaks.natpmp == Some(true) {
        let port = ctx.internal_port;
        let t = ctx.transport;
        match client::natpmp_map(&socket, t, port, port, ctx.lease, deadline).await {
            Ok(granted) => {
                let via = Via::NatPmp { server };
                return Ok(Held::new(via, t, granted, internal, ctx.lease));
            }
            Err(why) if failure == NoMapping::NoGateway => failure = why,
            Err(_) => {}
        }
    }
    Err(failure)
}

async fn connect(server: SocketAddr, local: Option<Ipv4Addr>) -> Result<Server, NoMapping> {
    Server::connect(server, local).await.map_err(|e| {
        log::debug!("port mapping: no socket towards the gateway: {e}");
        NoMapping::NoGateway
    })
}

/// A PCP mapping nonce: random, so that no other host can guess it and take the mapping over.
fn new_nonce() -> [u8; 12] {
    let mut nonce = [0u8; 12];
    if getrandom::fill(&mut nonce).is_err() {
        // Without the OS generator, a value that still differs between runs and hosts.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        nonce[..8].copy_from_slice(&t.as_nanos().to_le_bytes()[..8]);
        nonce[8..].copy_from_slice(&std::process::id().to_le_bytes());
    }
    nonce
}

/// Renews with the protocol that made the mapping.
async fn renew(ctx: &Ctx, held: &Held) -> Result<Held, NoMapping> {
    let deadline = Instant::now() + RENEW_TIMEOUT;
    let port = ctx.internal_port;
    let external = held.external_v4();
    let t = ctx.transport;
    let (lease, via) = (ctx.lease, held.via.clone());
    match &held.via {
        Via::Pcp { server, nonce } => {
            let socket = connect(*server, ctx.local_ip).await?;
            let internal = SocketAddrV4::new(socket.client(), port);
            let g = client::pcp_map(&socket, t, *nonce, port, external, lease, deadline).await?;
            Ok(Held::new(via, t, g, internal, lease))
        }
        Via::NatPmp { server } => {
            let socket = connect(*server, ctx.local_ip).await?;
            let internal = SocketAddrV4::new(socket.client(), port);
            let ext_port = external.port();
            let g = client::natpmp_map(&socket, t, port, ext_port, lease, deadline).await?;
            Ok(Held::new(via, t, g, internal, lease))
        }
        Via::Upnp(gateway) => {
            let ext_port = external.port();
            let renewal = upnp::map(
                &ctx.lane,
                gateway,
                t,
                ctx.local_ip,
                port,
                ext_port,
                ctx.lease,
                false,
            );
            let (g, internal) = until(deadline, renewal)
                .await
                .ok_or(NoMapping::NoGateway)??;
            Ok(Held::new(via, t, g, internal, lease))
        }
    }
}

/// Deletes the mapping (lifetime 0, or UPnP's `DeletePortMapping`).
async fn delete(ctx: &Ctx, held: &Held, deadline: Instant) {
    let port = ctx.internal_port;
    let t = ctx.transport;
    let result = match &held.via {
        Via::Pcp { server, nonce } => match connect(*server, ctx.local_ip).await {
            Ok(socket) => {
                let external = held.external_v4();
                client::pcp_map(&socket, t, *nonce, port, external, 0, deadline)
                    .await
                    .map(drop)
            }
            Err(why) => Err(why),
        },
        Via::NatPmp { server } => match connect(*server, ctx.local_ip).await {
            Ok(socket) => client::natpmp_map(&socket, t, port, 0, 0, deadline)
                .await
                .map(drop),
            Err(why) => Err(why),
        },
        Via::Upnp(gateway) => {
            upnp::delete(&ctx.lane, gateway, t, held.external_v4().port()).await;
            Ok(())
        }
    };
    match result {
        Ok(()) => log::debug!("port mapping: deleted ({} {t})", held.mapping.protocol),
        Err(why) => log::debug!("port mapping: delete: {why}"),
    }
}

/// The background task: renews before each lease ends, rediscovers when there is no mapping.
async fn maintain(ctx: Arc<Ctx>, shared: Arc<Shared>) {
    loop {
        let Some(held) = shared.held() else {
            Timer::after(ctx.config.retry_interval).await;
            shared.set(discover(&ctx).await);
            continue;
        };
        Timer::at(held.renew_at).await;
        let renewed = renew(&ctx, &held).await;
        let now = Instant::now();
        match renewed {
            Ok(new) => {
                let (protocol, t) = (new.mapping.protocol, new.mapping.transport);
                log::debug!("port mapping: renewed ({protocol} {t})");
                shared.set(Ok(new));
            }
            Err(why) => match retry_time(now, held.expires) {
                Some(renew_at) => {
                    log::debug!("port mapping: renewal failed ({why}), retrying");
                    shared.set(Ok(Held { renew_at, ..held }));
                }
                None => {
                    log::info!("port mapping: lost ({why}), looking for a router again");
                    shared.set(Err(NoMapping::Lost));
                    let found = discover(&ctx).await;
                    if found.is_ok() {
                        shared.set(found);
                    }
                }
            },
        }
    }
}

/// The state the task and the mapper's handle share, with a notification on each change.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Event,
}

#[derive(Debug)]
struct State {
    status: Status,
    held: Option<Held>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn status(&self) -> Status {
        self.lock().status
    }

    fn held(&self) -> Option<Held> {
        self.lock().held.clone()
    }

    fn take(&self) -> Option<Held> {
        self.lock().held.take()
    }

    /// Records the outcome of an attempt; wakes `changed` waiters if the status moved.
    fn set(&self, outcome: Result<Held, NoMapping>) {
        let (status, held) = match outcome {
            Ok(held) => (Status::Mapped(held.mapping), Some(held)),
            Err(why) => (Status::Unmapped(why), None),
        };
        let moved = {
            let mut state = self.lock();
            let moved = state.status != status;
            *state = State { status, held };
            moved
        };
        if moved {
            self.changed.notify(usize::MAX);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

//! The QUIC endpoint: one UDP socket, a certificate made from the identity, mutual
//! authentication against an expected key, and per-session record keys.
//!
//! The UDP socket stays reachable ([`Endpoint::udp_socket`]) so that NAT traversal can send
//! its own packets from the port that QUIC uses and peers learn.

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::identity::{Identity, PeerId};
use crate::net::control::{self, ControlReceiver};
use crate::net::relay::paths::RelayPaths;
use crate::net::runtime::Spawner;
use crate::net::session::{Cipher, SessionKeys};
use crate::net::tls::{self, ExpectedServer};

/// Application close code: normal end.
pub const CLOSE_DONE: u32 = 0;
/// Application close code: the server's policy does not serve this key.
pub const CLOSE_REFUSED: u32 = 1;
/// Application close code: the server holds its maximum number of connections.
pub const CLOSE_FULL: u32 = 2;
/// Application close code: evicted from a full connection pool.
pub const CLOSE_EVICTED: u32 = 3;
/// Application close code (local): the relay that carried the connection went away.
pub const CLOSE_RELAY_GONE: u32 = 4;

/// Endpoint limits and timers.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// UDP address to listen on; port 0 picks a free one. The default, `[::]:0`, is
    /// dual-stack (IPv6 and IPv4 on one socket); where the system has no IPv6 it falls back to
    /// `0.0.0.0` on the same port.
    pub listen: SocketAddr,
    /// Longest wait for one connection attempt (handshake included) before it counts as
    /// failed: an unreachable player is known in seconds, not after the idle timeout.
    pub connect_timeout: Duration,
    /// Interval of keep-alive packets on an otherwise idle connection (keeps NAT bindings open).
    pub keep_alive: Duration,
    /// A connection with no packet for this long is closed.
    pub idle_timeout: Duration,
    /// Most concurrent requests (bidirectional streams) a peer may open on one connection.
    pub max_streams_per_connection: u32,
    /// Record cipher to offer first; `None` offers [`Cipher::QuicOnly`] first (QUIC's own
    /// encryption, end to end also through a relay), then the record ciphers by CPU
    /// ([`Cipher::preferred`]) for peers that know no other.
    pub cipher: Option<Cipher>,
    /// UDP socket receive and send buffer sizes asked of the kernel (capped by
    /// `net.core.rmem_max` / `wmem_max`). The 208 KiB default drops packets at loopback rates.
    pub udp_buffer: usize,
    /// Bytes a peer may send on one stream ahead of our reading (QUIC flow control).
    pub stream_window: u32,
    /// Bytes we keep unacknowledged in flight on one connection.
    pub send_window: u64,
    /// Bytes a peer may send on all streams of one connection ahead of our reading: bounds
    /// what one connection can make us buffer (quinn's default is unlimited, which leaves
    /// `max_streams_per_connection` times `stream_window`).
    pub receive_window: u64,
    /// Send and receive with the plain socket API, one datagram per call and without ECN,
    /// instead of quinn-udp's batched path. Chosen by itself where the system refuses
    /// quinn-udp's socket options (Wine); set it to test that path.
    pub plain_udp: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
            connect_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            max_streams_per_connection: 32,
            cipher: None,
            udp_buffer: 4 << 20,
            stream_window: 8 << 20,
            send_window: 32 << 20,
            receive_window: 16 << 20,
            plain_udp: false,
        }
    }
}

/// Connecting to a peer failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The peer proved a different key than expected (or none): not the player we looked for.
    WrongKey {
        /// The key we expected.
        expected: PeerId,
        /// The key its certificate carried, if any.
        found: Option<PeerId>,
    },
    /// The peer closed the connection: its policy refuses us, or it is full.
    Refused(u32),
    /// The two sides share no protocol version or cipher.
    NoCommonProtocol,
    /// Our side could not start the connection (bad address, endpoint closed).
    Start(quinn::ConnectError),
    /// The handshake failed or timed out.
    Handshake(quinn::ConnectionError),
    /// The pinned key of this player differs.
    Pin(crate::storage::pins::PinError),
    /// No handshake completed within the connect timeout.
    TimedOut,
    /// Every phone book we asked says the player is not online for us (absent, offline, or
    /// hidden from us: the phone book does not say which).
    Offline,
    /// Our own network lets no UDP through: no phone book ever answered us over UDP.
    UdpBlocked,
    /// The player is online but no direct path opened within the connect timeout (both
    /// NATs map per destination, or the player's network blocks UDP): a relay is needed.
    NoDirectPath {
        /// The addresses tried (personal data: not in this error's message).
        tried: Vec<SocketAddr>,
    },
}

impl ConnectError {
    /// Whether trying other addresses of the same peer cannot help (it answered, and not
    /// as wanted).
    pub fn is_definitive(&self) -> bool {
        matches!(
            self,
            Self::WrongKey { .. } | Self::Refused(_) | Self::NoCommonProtocol | Self::Pin(_)
        )
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongKey {
                expected,
                found: Some(found),
            } => {
                write!(f, "peer proved key {found}, expected {expected}: refusing")
            }
            Self::WrongKey {
                expected,
                found: None,
            } => {
                write!(
                    f,
                    "peer showed no Ed25519 key, expected {expected}: refusing"
                )
            }
            Self::Refused(code) => write!(f, "peer refused the connection (close code {code})"),
            Self::NoCommonProtocol => f.write_str("peer speaks no common protocol version"),
            Self::Start(e) => write!(f, "cannot start connection: {e}"),
            Self::Handshake(e) => write!(f, "handshake failed: {e}"),
            Self::Pin(e) => e.fmt(f),
            Self::TimedOut => f.write_str("no answer within the connect timeout"),
            Self::Offline => f.write_str("the player is not online (or does not let us see them)"),
            Self::UdpBlocked => f.write_str(
                "our network lets no UDP through (no phone book answered over UDP): a relay is needed",
            ),
            Self::NoDirectPath { tried } => write!(
                f,
                "no direct path to the player opened ({} address(es) tried): a relay is needed",
                tried.len()
            ),
        }
    }
}

impl std::error::Error for ConnectError {}

/// A QUIC endpoint bound to one UDP socket.
#[derive(Debug)]
pub struct Endpoint {
    quinn: quinn::Endpoint,
    identity: Arc<Identity>,
    socket: UdpSocket,
    transport: Arc<quinn::TransportConfig>,
    alpn: Vec<Vec<u8>>,
    spawner: Spawner,
    connect_timeout: Duration,
    /// Control datagrams diverted from QUIC, until the traversal layer takes them.
    control: Mutex<Option<ControlReceiver>>,
    /// Relayed peers' virtual addresses and the direct paths they moved to.
    paths: Arc<RelayPaths>,
}

/// Binds `listen`; an unspecified IPv6 address binds dual-stack, and falls back to IPv4 where
/// the system has no IPv6.
fn bind_socket(listen: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    if let SocketAddr::V6(v6) = listen
        && v6.ip().is_unspecified()
    {
        let dual = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).and_then(|s| {
            s.set_only_v6(false)?;
            s.bind(&listen.into())?;
            Ok(s)
        });
        match dual {
            Ok(s) => return Ok(s.into()),
            Err(e) => {
                log::debug!("no dual-stack socket ({e}); listening on IPv4 only");
                return UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], listen.port())));
            }
        }
    }
    UdpSocket::bind(listen)
}

fn transport(config: &EndpointConfig) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(config.keep_alive));
    t.max_idle_timeout(Some(
        config
            .idle_timeout
            .try_into()
            .expect("idle timeout within QUIC's range"),
    ));
    t.max_concurrent_bidi_streams(config.max_streams_per_connection.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.stream_receive_window(config.stream_window.into());
    t.send_window(config.send_window);
    t.receive_window(quinn::VarInt::from_u64(config.receive_window).unwrap_or(quinn::VarInt::MAX));
    t
}

impl Endpoint {
    /// Binds the UDP socket and starts the endpoint (client and server) on smol's global
    /// executor.
    pub fn bind(identity: Arc<Identity>, config: &EndpointConfig) -> io::Result<Self> {
        Self::bind_on(identity, config, Spawner::Global)
    }

    /// Like [`Endpoint::bind`], with every task of this endpoint (quinn's and the library's)
    /// spawned by `spawner`.
    pub fn bind_on(
        identity: Arc<Identity>,
        config: &EndpointConfig,
        spawner: Spawner,
    ) -> io::Result<Self> {
        let socket = bind_socket(config.listen)?;
        let sock = socket2::SockRef::from(&socket);
        // Best effort: a smaller buffer only costs throughput.
        let _ = sock.set_recv_buffer_size(config.udp_buffer);
        let _ = sock.set_send_buffer_size(config.udp_buffer);
        let alpn = Cipher::alpn_preference(config.cipher.unwrap_or(Cipher::QuicOnly));
        let transport = Arc::new(transport(config));
        let crypto = tls::server_config(&identity, alpn.clone());
        let crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(crypto).map_err(io::Error::other)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(transport.clone());
        let (control_tx, control_rx) = control::queue();
        let paths = Arc::new(RelayPaths::default());
        let quinn = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket.try_clone()?,
            spawner.quinn_runtime(control_tx, paths.clone(), config.plain_udp),
        )?;
        Ok(Self {
            quinn,
            identity,
            socket,
            transport,
            alpn,
            spawner,
            connect_timeout: config.connect_timeout,
            control: Mutex::new(Some(control_rx)),
            paths,
        })
    }

    /// The relay routes under this endpoint's socket ([`crate::net::relay`]).
    pub fn relay_paths(&self) -> &Arc<RelayPaths> {
        &self.paths
    }

    /// Where this endpoint's tasks run.
    pub fn spawner(&self) -> &Spawner {
        &self.spawner
    }

    /// Our identity.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The bound address (the port to register with the phone book).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.quinn.local_addr()
    }

    /// The UDP socket QUIC uses, for NAT traversal: packets sent from it leave from QUIC's
    /// port. It is non-blocking. Control messages that arrive on it are diverted from QUIC
    /// (see [`Endpoint::take_control`]).
    pub fn udp_socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// The queue of control datagrams (phone-book answers, hole punching) received on the
    /// QUIC socket; `None` after the first call. Until it is taken they are dropped once the
    /// queue is full.
    pub fn take_control(&self) -> Option<ControlReceiver> {
        self.control.lock().expect("not poisoned").take()
    }

    /// Sends one control datagram from the QUIC socket (an IPv4 destination works on a
    /// dual-stack socket too). A full socket buffer drops it: control messages are retried.
    pub fn send_control(&self, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        let local = self.socket.local_addr()?;
        match self.socket.send_to(bytes, control::for_socket(local, to)) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The connect timeout this endpoint was configured with.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The underlying quinn endpoint.
    pub fn quinn(&self) -> &quinn::Endpoint {
        &self.quinn
    }

    /// Connects to `addr` and accepts the connection only if the peer proves `expected`;
    /// gives up after the connect timeout ([`ConnectError::TimedOut`]).
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: PeerId,
    ) -> Result<PeerConnection, ConnectError> {
        let deadline = self.connect_timeout;
        smol::future::or(self.connect_once(addr, expected), async move {
            smol::Timer::after(deadline).await;
            Err(ConnectError::TimedOut)
        })
        .await
    }

    /// One attempt without the endpoint's timeout (the caller bounds it).
    pub(crate) async fn connect_once(
        &self,
        addr: SocketAddr,
        expected: PeerId,
    ) -> Result<PeerConnection, ConnectError> {
        let local = self
            .socket
            .local_addr()
            .map_err(|_| ConnectError::Start(quinn::ConnectError::EndpointStopping))?;
        let addr = control::for_socket(local, addr);
        let verifier = Arc::new(ExpectedServer {
            expected,
            seen: Mutex::new(None),
        });
        let crypto = tls::client_config(&self.identity, verifier.clone(), self.alpn.clone());
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(crypto))
            .expect("ring provides QUIC's initial cipher suite");
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.transport.clone());
        let connecting = self
            .quinn
            .connect_with(config, addr, tls::SERVER_NAME)
            .map_err(ConnectError::Start)?;
        let conn = match connecting.await {
            Ok(c) => c,
            Err(e) => {
                let seen = *verifier.seen.lock().expect("not poisoned");
                return Err(match (seen, e) {
                    (Some(k), e) if k == expected => ConnectError::Handshake(e),
                    (Some(found), _) => ConnectError::WrongKey {
                        expected,
                        found: Some(found),
                    },
                    (None, quinn::ConnectionError::ApplicationClosed(c)) => {
                        ConnectError::Refused(c.error_code.into_inner() as u32)
                    }
                    (None, e) => ConnectError::Handshake(e),
                });
            }
        };
        PeerConnection::new(conn, &self.identity, Some(expected))
    }

    /// Waits for the next incoming connection; `None` once the endpoint is closed.
    pub async fn accept(&self) -> Option<Result<PeerConnection, ConnectError>> {
        let incoming = self.quinn.accept().await?;
        Some(match incoming.await {
            Ok(conn) => PeerConnection::new(conn, &self.identity, None),
            Err(e) => Err(ConnectError::Handshake(e)),
        })
    }

    /// Closes every connection and stops the endpoint.
    pub fn close(&self) {
        self.quinn.close(CLOSE_DONE.into(), b"closing");
    }

    /// Waits until every connection has finished closing (after [`Endpoint::close`]).
    pub async fn wait_idle(&self) {
        self.quinn.wait_idle().await;
    }
}

/// An authenticated connection to one peer, with its record keys. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PeerConnection {
    pub(crate) conn: quinn::Connection,
    peer: PeerId,
    pub(crate) keys: Arc<SessionKeys>,
}

impl PeerConnection {
    /// Wraps a connection a server accepted.
    pub(crate) fn accepted(conn: quinn::Connection, us: &Identity) -> Result<Self, ConnectError> {
        Self::new(conn, us, None)
    }

    fn new(
        conn: quinn::Connection,
        us: &Identity,
        expected: Option<PeerId>,
    ) -> Result<Self, ConnectError> {
        let peer = conn
            .peer_identity()
            .and_then(|any| {
                any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .and_then(|certs| certs.first().and_then(tls::key_of_certificate));
        let Some(peer) = peer else {
            conn.close(CLOSE_REFUSED.into(), b"no key");
            return Err(ConnectError::WrongKey {
                expected: expected.unwrap_or(us.id()),
                found: None,
            });
        };
        if let Some(e) = expected
            && e != peer
        {
            conn.close(CLOSE_REFUSED.into(), b"wrong key");
            return Err(ConnectError::WrongKey {
                expected: e,
                found: Some(peer),
            });
        }
        let cipher = conn
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.protocol.and_then(|p| Cipher::from_alpn(&p)));
        let Some(cipher) = cipher else {
            conn.close(CLOSE_REFUSED.into(), b"no protocol");
            return Err(ConnectError::NoCommonProtocol);
        };
        let is_client = expected.is_some();
        let (client, server) = if is_client {
            (us.id(), peer)
        } else {
            (peer, us.id())
        };
        let (label, ctx) = SessionKeys::exporter_input(&client, &server);
        let mut exported = zeroize::Zeroizing::new([0u8; 64]);
        conn.export_keying_material(&mut *exported, label, &ctx)
            .map_err(|_| ConnectError::NoCommonProtocol)?;
        let keys = Arc::new(SessionKeys::from_exported(cipher, &exported, is_client));
        Ok(Self { conn, peer, keys })
    }

    /// The peer's proven key.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The peer's current address (personal data: log it at debug level at most).
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// The record cipher in use.
    pub fn cipher(&self) -> Cipher {
        self.keys.cipher()
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    /// Closes the connection with an application code.
    pub fn close(&self, code: u32, reason: &[u8]) {
        self.conn.close(code.into(), reason);
    }

    /// The quinn connection (statistics, datagrams for later protocols).
    pub fn quinn(&self) -> &quinn::Connection {
        &self.conn
    }
}

//! One TLS connection to a relay (docs/PROTOCOL.md "Relay"): authenticated with our lookup
//! token, carrying any number of sessions, each a route in [`RelayPaths`].
//!
//! Three tasks per connection: the reader decodes frames and hands datagrams to the socket's
//! inbox; the writer drains a bounded queue of frames, several per TLS write; the pinger keeps
//! the relay (and any NAT or firewall on the way) from closing an idle connection.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use phonebook_proto::PlayerName;
use phonebook_proto::relay::{self, CloseReason, Frame, TICKET_LEN};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use smol::io::{AsyncReadExt, AsyncWriteExt};

use super::paths::{RelayLink, RelayPaths};
use super::{RelayBook, RelayError};
use crate::net::runtime::Spawner;
use crate::net::tls;
use crate::transfer::serve::Policy;

/// Frames waiting to be written to one relay connection; more are dropped (they are QUIC
/// datagrams, which QUIC recovers, or control frames that are retried).
pub const QUEUE: usize = 1024;
/// Bytes gathered into one TLS write.
const WRITE_BATCH: usize = 64 * 1024;
/// A relay session that carried nothing this long is closed: a live QUIC connection sends
/// keep-alives far more often (every 15 s by default).
pub const SESSION_IDLE: Duration = Duration::from_secs(90);
/// Sessions waiting for the target to accept, per connection.
pub const MAX_OPENING: usize = 64;

/// Accepts exactly the certificate whose SHA-256 the phone book gave (`relayCert`).
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref()).as_ref() == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The TLS client settings of a relay connection: TLS 1.3, the relay's ALPN, and only the
/// certificate whose SHA-256 is `pin` accepted. Public for tools and tests that speak the
/// relay protocol themselves.
pub fn tls_config(pin: [u8; 32]) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { pin, provider }))
        .with_no_client_auth();
    c.alpn_protocols = vec![relay::ALPN.to_vec()];
    c
}

#[derive(Debug, Default)]
struct State {
    /// Our session number -> the route's virtual address.
    sessions: HashMap<u32, SocketAddr>,
    /// Sessions we opened that the target has not accepted yet.
    opening: HashMap<u32, smol::channel::Sender<Result<(), CloseReason>>>,
}

/// Whom an open is for: a player by name (a phone book's relay), or a friend by key (a peer
/// relay).
#[derive(Debug, Clone, Copy)]
pub(crate) enum OpenTarget<'a> {
    Name(&'a PlayerName),
    Key(&'a crate::identity::PeerId),
}

/// A live relay connection.
pub struct RelayConn {
    frames: smol::channel::Sender<Vec<u8>>,
    paths: Arc<RelayPaths>,
    state: Mutex<State>,
    next_session: AtomicU32,
    closed: Arc<AtomicBool>,
    tasks: Mutex<Vec<smol::Task<()>>>,
    /// Whom incoming sessions are accepted from.
    policy: Option<Policy>,
}

impl Drop for RelayConn {
    fn drop(&mut self) {
        self.on_end();
    }
}

impl fmt::Debug for RelayConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayConn")
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn encode(frame: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    frame.encode(&mut out);
    out
}

impl RelayConn {
    /// Connects to `addr`, checks the relay's certificate against the pin, and authenticates.
    pub(crate) async fn connect(
        addr: SocketAddr,
        book: &RelayBook,
        paths: Arc<RelayPaths>,
        spawner: &Spawner,
        timeout: Duration,
        policy: Option<Policy>,
    ) -> Result<Arc<Self>, RelayError> {
        let attempt = async {
            let tcp = smol::net::TcpStream::connect(addr)
                .await
                .map_err(RelayError::Connect)?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(book.host.clone())
                .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
            let (config, first) = match &book.peer {
                // A friend's peer relay: both sides prove their keys.
                Some(p) => (
                    tls::client_config(
                        &p.identity,
                        Arc::new(tls::ExpectedServer {
                            expected: p.relay,
                            seen: Mutex::new(None),
                        }),
                        vec![relay::ALPN.to_vec()],
                    ),
                    Frame::Join,
                ),
                None => (tls_config(book.pin), Frame::Hello { token: book.token }),
            };
            let connector = futures_rustls::TlsConnector::from(Arc::new(config));
            let mut tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| RelayError::Tls(e.to_string()))?;
            tls.write_all(&encode(&first))
                .await
                .map_err(RelayError::Connect)?;
            tls.flush().await.map_err(RelayError::Connect)?;
            let mut buf = Vec::with_capacity(256);
            let mut chunk = [0u8; 256];
            loop {
                match Frame::decode(&buf) {
                    Ok(Some((Frame::Welcome { idle_secs }, used))) => {
                        buf.drain(..used);
                        return Ok((tls, buf, idle_secs));
                    }
                    Ok(Some((Frame::Refused { reason }, _))) => {
                        return Err(RelayError::Refused(reason));
                    }
                    Ok(Some(_)) | Err(_) => return Err(RelayError::Protocol),
                    Ok(None) => {}
                }
                let n = tls.read(&mut chunk).await.map_err(RelayError::Connect)?;
                if n == 0 {
                    return Err(RelayError::Protocol);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        };
        let (tls, leftover, idle_secs) = smol::future::or(attempt, async {
            smol::Timer::after(timeout).await;
            Err(RelayError::TimedOut)
        })
        .await?;
        let (reader, writer) = smol::io::split(tls);
        let (tx, rx) = smol::channel::bounded::<Vec<u8>>(QUEUE);
        let closed = Arc::new(AtomicBool::new(false));
        let conn = Arc::new(RelayConn {
            frames: tx.clone(),
            paths,
            state: Mutex::new(State::default()),
            next_session: AtomicU32::new(1),
            closed: closed.clone(),
            tasks: Mutex::new(Vec::new()),
            policy,
        });
        let weak = Arc::downgrade(&conn);
        let every = Duration::from_secs(u64::from(idle_secs.max(3)) / 3);
        let tasks = vec![
            spawner.spawn(write_loop(writer, rx, closed)),
            spawner.spawn(read_loop(reader, leftover, weak.clone())),
            spawner.spawn(async move {
                loop {
                    smol::Timer::after(every).await;
                    let Some(c) = weak.upgrade() else { return };
                    c.close_idle_sessions();
                    if tx
                        .send(encode(&Frame::Ping { nonce: [0; 8] }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }),
        ];
        *conn.tasks.lock().expect("not poisoned") = tasks;
        Ok(conn)
    }

    /// Whether the connection still works.
    pub fn is_alive(&self) -> bool {
        !self.closed.load(Ordering::Relaxed) && !self.frames.is_closed()
    }

    fn new_route(&self) -> Result<(u32, SocketAddr), RelayError> {
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let vaddr = self
            .paths
            .add(RelayLink {
                frames: self.frames.clone(),
                session,
            })
            .ok_or(RelayError::Full)?;
        self.state
            .lock()
            .expect("not poisoned")
            .sessions
            .insert(session, vaddr);
        Ok((session, vaddr))
    }

    fn drop_route(&self, session: u32) {
        let vaddr = self
            .state
            .lock()
            .expect("not poisoned")
            .sessions
            .remove(&session);
        if let Some(v) = vaddr {
            self.paths.relay_gone(v);
        }
    }

    /// Asks the relay to connect us to `target`; the virtual address to dial once the target
    /// accepted.
    pub(crate) async fn open(
        &self,
        target: OpenTarget<'_>,
        timeout: Duration,
    ) -> Result<SocketAddr, RelayError> {
        let (session, vaddr) = self.new_route()?;
        let (tx, rx) = smol::channel::bounded(1);
        {
            let mut st = self.state.lock().expect("not poisoned");
            if st.opening.len() >= MAX_OPENING {
                drop(st);
                self.drop_route(session);
                return Err(RelayError::Full);
            }
            st.opening.insert(session, tx);
        }
        let sent = self
            .frames
            .send(encode(&match target {
                OpenTarget::Name(name) => Frame::Open {
                    session,
                    target: phonebook_proto::LookupId::of(name),
                },
                OpenTarget::Key(key) => Frame::OpenKey {
                    session,
                    target: crate::phonebook::to_public_key(key),
                },
            }))
            .await;
        let result = if sent.is_err() {
            Err(RelayError::Protocol)
        } else {
            smol::future::or(
                async {
                    match rx.recv().await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(reason)) => Err(RelayError::Closed(reason)),
                        Err(_) => Err(RelayError::Closed(CloseReason::Gone)),
                    }
                },
                async {
                    smol::Timer::after(timeout).await;
                    Err(RelayError::TimedOut)
                },
            )
            .await
        };
        self.state
            .lock()
            .expect("not poisoned")
            .opening
            .remove(&session);
        match result {
            Ok(()) => Ok(vaddr),
            Err(e) => {
                self.drop_route(session);
                Err(e)
            }
        }
    }

    /// Accepts the session of `ticket` (a relay call or an incoming frame); its virtual
    /// address, from which the requester's QUIC handshake will arrive.
    pub(crate) fn accept(&self, ticket: [u8; TICKET_LEN]) -> Result<SocketAddr, RelayError> {
        let (session, vaddr) = self.new_route()?;
        if self
            .frames
            .try_send(encode(&Frame::Accept { session, ticket }))
            .is_err()
        {
            self.drop_route(session);
            return Err(RelayError::Protocol);
        }
        Ok(vaddr)
    }

    /// Asks the relay to tell us of incoming sessions on this connection.
    pub(crate) async fn listen(&self) -> Result<(), RelayError> {
        self.frames
            .send(encode(&Frame::Listen))
            .await
            .map_err(|_| RelayError::Protocol)
    }

    /// Ends the sessions whose QUIC connection is over (no datagram for [`SESSION_IDLE`]).
    fn close_idle_sessions(&self) {
        let idle: Vec<u32> = self
            .state
            .lock()
            .expect("not poisoned")
            .sessions
            .iter()
            .filter(|(_, v)| self.paths.is_idle(**v, SESSION_IDLE))
            .map(|(s, _)| *s)
            .collect();
        for session in idle {
            let _ = self.frames.try_send(encode(&Frame::Close {
                session,
                reason: CloseReason::Normal,
            }));
            self.drop_route(session);
        }
    }

    /// Handles one frame from the relay.
    fn on_frame(&self, frame: Frame<'_>) {
        match frame {
            Frame::Data { session, payload } => {
                let vaddr = self
                    .state
                    .lock()
                    .expect("not poisoned")
                    .sessions
                    .get(&session)
                    .copied();
                if let Some(v) = vaddr {
                    self.paths.deliver(v, payload.to_vec());
                }
            }
            Frame::Opened { session } => {
                if let Some(tx) = self
                    .state
                    .lock()
                    .expect("not poisoned")
                    .opening
                    .remove(&session)
                {
                    let _ = tx.try_send(Ok(()));
                }
            }
            Frame::Close { session, reason } => {
                let waiter = self
                    .state
                    .lock()
                    .expect("not poisoned")
                    .opening
                    .remove(&session);
                if let Some(tx) = waiter {
                    let _ = tx.try_send(Err(reason));
                }
                self.drop_route(session);
            }
            Frame::Incoming { ticket, requester } => {
                // A phone book's relay checked that they may see us, a peer relay only that
                // they are its friends: we accept only keys we serve (and the QUIC handshake
                // checks the key again). Not accepting looks the same as not being there.
                let requester = crate::phonebook::to_peer_id(&requester);
                if self.policy.as_ref().is_some_and(|p| !p(&requester)) {
                    log::debug!("incoming relay session from a key we do not serve: ignored");
                } else if let Err(e) = self.accept(ticket) {
                    log::debug!("incoming relay session not accepted: {e}");
                }
            }
            Frame::Ping { nonce } => {
                let _ = self.frames.try_send(encode(&Frame::Pong { nonce }));
            }
            Frame::Pong { .. } | Frame::Welcome { .. } => {}
            Frame::Refused { reason } => {
                log::warn!("the relay cut us off: {reason}");
                self.closed.store(true, Ordering::Relaxed);
            }
            Frame::Hello { .. }
            | Frame::Join
            | Frame::Listen
            | Frame::Open { .. }
            | Frame::OpenKey { .. }
            | Frame::Accept { .. } => {
                log::debug!("relay sent a frame only peers send");
            }
        }
    }

    /// The connection ended: every session's route loses its relay.
    fn on_end(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.frames.close();
        let mut st = self.state.lock().expect("not poisoned");
        for (_, tx) in st.opening.drain() {
            let _ = tx.try_send(Err(CloseReason::Gone));
        }
        for (_, v) in st.sessions.drain() {
            self.paths.relay_gone(v);
        }
    }
}

async fn write_loop(
    mut writer: impl smol::io::AsyncWrite + Unpin,
    rx: smol::channel::Receiver<Vec<u8>>,
    closed: Arc<AtomicBool>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while let Ok(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(f) => batch.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        if writer.write_all(&batch).await.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
    closed.store(true, Ordering::Relaxed);
    rx.close();
    let _ = writer.close().await;
}

async fn read_loop(
    mut reader: impl smol::io::AsyncRead + Unpin,
    mut buf: Vec<u8>,
    conn: std::sync::Weak<RelayConn>,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    'read: loop {
        let mut start = 0;
        loop {
            match Frame::decode(&buf[start..]) {
                Ok(Some((frame, used))) => {
                    let Some(c) = conn.upgrade() else { return };
                    c.on_frame(frame);
                    start += used;
                }
                Ok(None) => break,
                Err(e) => {
                    log::warn!("relay sent a malformed frame ({e}); disconnecting");
                    break 'read;
                }
            }
        }
        buf.drain(..start);
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    if let Some(c) = conn.upgrade() {
        c.on_end();
    }
}

/// Checks a `relayCert` value: 64 lowercase hex digits.
pub fn parse_pin(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut pin = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        pin[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(pin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_64_lowercase_hex_digits() {
        let hex = "00ff".repeat(16);
        let pin = parse_pin(&hex).unwrap();
        assert_eq!(pin[0], 0);
        assert_eq!(pin[1], 0xff);
        assert!(parse_pin(&hex.to_uppercase()).is_none());
        assert!(parse_pin(&hex[2..]).is_none());
        assert!(parse_pin(&"zz".repeat(32)).is_none());
    }
}

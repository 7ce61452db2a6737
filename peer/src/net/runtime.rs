//! Where the library runs its tasks: smol's global executor (the default), or an executor the
//! application owns and runs, for example on one thread with `block_on(ex.run(..))`.
//!
//! On one thread, quinn's drivers, the I/O reactor and the transfer tasks hand work to each
//! other without waking another thread; with the global executor every hand-off between the
//! caller's `block_on` thread, smol's executor thread and the reactor thread is a futex
//! wake-up and often a context switch (see the README's loopback figures).
//!
//! quinn's own smol runtime waits for the reactor before every send and every receive (a fresh
//! `writable()` future, or `poll_readable` first, is pending until the next epoll round even
//! when the socket is ready), and re-inserts its timer into the reactor, waking it, whenever a
//! deadline moves. At loopback rates that is one reactor round per datagram batch. The runtime
//! here tries the socket first and waits only after `WouldBlock`, and moves timers later
//! lazily; see `UdpSocket` and `LazyTimer` below.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use crate::net::control::{self, ControlSender};
use crate::net::relay::paths::{RelayPaths, Send as Route};

/// Spawns the library's tasks.
#[derive(Clone, Default)]
pub enum Spawner {
    /// smol's global executor (`smol::spawn`).
    #[default]
    Global,
    /// An executor the application runs.
    Executor(Arc<smol::Executor<'static>>),
}

impl fmt::Debug for Spawner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Global => "Spawner::Global",
            Self::Executor(_) => "Spawner::Executor",
        })
    }
}

impl Spawner {
    /// Spawns `fut`; dropping the task cancels it.
    pub fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> smol::Task<T> {
        match self {
            Self::Global => smol::spawn(fut),
            Self::Executor(ex) => ex.spawn(fut),
        }
    }

    /// The quinn runtime that spawns its drivers here. Datagrams that are phone-book or
    /// hole-punching messages (see [`crate::net::control`]) go to `control` instead of QUIC;
    /// datagrams to and from relayed peers go through `paths` ([`crate::net::relay`]).
    pub(crate) fn quinn_runtime(
        &self,
        control: ControlSender,
        paths: Arc<RelayPaths>,
        plain_udp: bool,
    ) -> Arc<dyn quinn::Runtime> {
        Arc::new(Runtime {
            spawner: self.clone(),
            control,
            paths,
            plain_udp,
        })
    }
}

/// quinn's runtime on smol: tasks go to the [`Spawner`]; sockets and timers as described in
/// the module's documentation.
struct Runtime {
    spawner: Spawner,
    control: ControlSender,
    paths: Arc<RelayPaths>,
    /// No quinn-udp socket state (see [`crate::EndpointConfig::plain_udp`]).
    plain_udp: bool,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Runtime({:?})", self.spawner)
    }
}

impl quinn::Runtime for Runtime {
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn quinn::AsyncTimer>> {
        Box::pin(LazyTimer::new(at))
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.spawner.spawn(future).detach();
    }

    fn wrap_udp_socket(
        &self,
        socket: std::net::UdpSocket,
    ) -> io::Result<Arc<dyn quinn::AsyncUdpSocket>> {
        let state = match quinn::udp::UdpSocketState::new((&socket).into()) {
            _ if self.plain_udp => None,
            Ok(state) => Some(state),
            Err(e) => {
                // Wine, for one, refuses some of the options quinn-udp sets (ECN, packet info:
                // WSAENOPROTOOPT, 10045 as Wine reports it).
                log::warn!(
                    "UDP socket options unsupported here ({e}): plain sends and receives, \
                     without ECN or batching"
                );
                None
            }
        };
        Ok(Arc::new(UdpSocket {
            state,
            ipv6: socket.local_addr()?.is_ipv6(),
            io: smol::Async::new_nonblocking(socket)?,
            send_blocked: AtomicBool::new(false),
            control: self.control.clone(),
            paths: self.paths.clone(),
        }))
    }
}

/// A timer whose deadline moves later without touching the reactor.
///
/// quinn moves its connection timer (loss detection, idle timeout, acknowledgement delay) on
/// nearly every packet, mostly later. Re-arming an async-io timer removes and inserts it in the
/// reactor and wakes the reactor each time. This one keeps the reactor timer at the earliest
/// deadline asked for: when it fires before the current deadline, the task is woken once,
/// quinn checks the clock (it never relies on the timer alone) and polls again, and only then
/// is the reactor timer moved to the real deadline. A deadline moved earlier re-arms at once.
#[derive(Debug)]
struct LazyTimer {
    /// When quinn wants to be woken.
    deadline: Instant,
    /// The reactor timer, armed at `armed`; `None` once it has fired and been seen (an
    /// async-io timer that fired stays idle until set again).
    timer: smol::Timer,
    armed: Option<Instant>,
}

impl LazyTimer {
    fn new(at: Instant) -> Self {
        Self {
            deadline: at,
            timer: smol::Timer::at(at),
            armed: Some(at),
        }
    }

    fn arm(&mut self, at: Instant) {
        self.timer.set_at(at);
        self.armed = Some(at);
    }
}

impl quinn::AsyncTimer for LazyTimer {
    fn reset(self: Pin<&mut Self>, at: Instant) {
        let this = self.get_mut();
        this.deadline = at;
        if this.armed.is_none_or(|armed| at < armed) {
            this.arm(at);
        }
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let Some(armed) = this.armed else {
                // Fired and reported; quinn polls again only after a reset, but be safe.
                this.arm(this.deadline);
                continue;
            };
            ready!(Future::poll(Pin::new(&mut this.timer), cx));
            if armed >= this.deadline {
                this.armed = None;
                return Poll::Ready(());
            }
            // Fired at an earlier deadline that has since moved: wait for the real one.
            this.arm(this.deadline);
        }
    }
}

/// quinn's UDP socket on async-io, trying the socket before waiting for the reactor.
struct UdpSocket {
    io: smol::Async<std::net::UdpSocket>,
    /// quinn-udp's socket state (ECN, GSO/GRO, packet info); `None` where the system refused
    /// its options: then one datagram per system call, without ECN.
    state: Option<quinn::udp::UdpSocketState>,
    /// A send found the socket buffer full: senders wait for writability before the next try.
    send_blocked: AtomicBool,
    /// Where datagrams that are not QUIC go.
    control: ControlSender,
    /// Relayed peers and the direct paths they moved to.
    paths: Arc<RelayPaths>,
    /// The socket is IPv6 (dual-stack): IPv4 addresses are written IPv4-mapped.
    ipv6: bool,
}

impl UdpSocket {
    /// `addr` in the form quinn uses on this socket.
    fn family(&self, addr: std::net::SocketAddr) -> std::net::SocketAddr {
        match addr {
            std::net::SocketAddr::V4(v4) if self.ipv6 => {
                std::net::SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            other => other,
        }
    }

    fn send_udp(&self, transmit: &quinn::udp::Transmit<'_>) -> io::Result<()> {
        let result = match &self.state {
            Some(state) => state.send((&self.io).into(), transmit),
            // One segment at a time (`max_transmit_segments` is 1 then).
            None => self
                .io
                .get_ref()
                .send_to(transmit.contents, transmit.destination)
                .map(drop),
        };
        if let Err(e) = &result
            && e.kind() == io::ErrorKind::WouldBlock
        {
            self.send_blocked.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket").finish_non_exhaustive()
    }
}

impl quinn::AsyncUdpSocket for UdpSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Box::pin(UdpPoller {
            socket: self,
            waiting: None,
        })
    }

    fn try_send(&self, transmit: &quinn::udp::Transmit<'_>) -> io::Result<()> {
        let segment = transmit.segment_size.unwrap_or(transmit.contents.len());
        match self
            .paths
            .route_send(transmit.destination, transmit.contents, segment)
        {
            Route::Udp => self.send_udp(transmit),
            Route::Done => Ok(()),
            Route::Direct(to) => self.send_udp(&quinn::udp::Transmit {
                destination: self.family(to),
                ecn: transmit.ecn,
                contents: transmit.contents,
                segment_size: transmit.segment_size,
                src_ip: None,
            }),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> Poll<io::Result<usize>> {
        // Datagrams of relayed peers first (a few at a time: the socket is not starved).
        if let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut())
            && let Some((from, datagram)) = self.paths.take(cx.waker())
        {
            let len = datagram.len().min(buf.len());
            buf[..len].copy_from_slice(&datagram[..len]);
            *m = quinn::udp::RecvMeta {
                addr: self.family(from),
                len,
                stride: len,
                ecn: None,
                dst_ip: None,
            };
            return Poll::Ready(Ok(1));
        }
        loop {
            let received = match &self.state {
                Some(state) => state.recv((&self.io).into(), bufs, meta),
                None => plain_recv(self.io.get_ref(), bufs, meta),
            };
            match received {
                Ok(n) => {
                    // Phone-book and punching messages leave the batch; QUIC never sees them.
                    let kept = divert_control(&self.control, bufs, &mut meta[..n]);
                    // A relayed peer that moved to a direct path still looks relayed to quinn.
                    for m in &mut meta[..kept] {
                        if let Some(v) = self.paths.rewrite_from(m.addr) {
                            m.addr = self.family(v);
                        }
                    }
                    if kept > 0 {
                        return Poll::Ready(Ok(kept));
                    }
                    continue;
                }
                // Like quinn's own runtime: other errors (ICMP reports and the like) are
                // dropped and the socket waited on again.
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                    log::trace!("UDP receive error: {e}");
                }
                Err(_) => {}
            }
            ready!(self.io.poll_readable(cx))?;
        }
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.io.get_ref().local_addr()
    }

    fn may_fragment(&self) -> bool {
        self.state.as_ref().is_none_or(|s| s.may_fragment())
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.as_ref().map_or(1, |s| s.max_gso_segments())
    }

    fn max_receive_segments(&self) -> usize {
        self.state.as_ref().map_or(1, |s| s.gro_segments())
    }
}

/// One datagram with the plain socket API, described as quinn-udp would.
fn plain_recv(
    socket: &std::net::UdpSocket,
    bufs: &mut [io::IoSliceMut<'_>],
    meta: &mut [quinn::udp::RecvMeta],
) -> io::Result<usize> {
    let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
        return Ok(0);
    };
    let (len, addr) = socket.recv_from(buf)?;
    *m = quinn::udp::RecvMeta {
        addr,
        len,
        stride: len,
        ecn: None,
        dst_ip: None,
    };
    Ok(1)
}

/// Moves the datagrams of a received batch that are control messages to `control` and
/// compacts the rest to the front of `bufs` and `meta`; returns how many are left for QUIC.
/// A batch coalesced by GRO (`stride < len`) holds datagrams of one flow and one size: it is
/// judged by its first segment.
fn divert_control(
    control: &ControlSender,
    bufs: &mut [io::IoSliceMut<'_>],
    meta: &mut [quinn::udp::RecvMeta],
) -> usize {
    let mut kept = 0;
    for i in 0..meta.len() {
        let m = meta[i];
        let data = &bufs[i][..m.len];
        if control::is_control(data) {
            let stride = m.stride.max(1);
            for segment in data.chunks(stride) {
                control.offer(m.addr, segment);
            }
            continue;
        }
        if kept != i {
            let (front, back) = bufs.split_at_mut(i);
            front[kept][..m.len].copy_from_slice(&back[0][..m.len]);
            meta[kept] = m;
        }
        kept += 1;
    }
    kept
}

type Writable = Pin<Box<dyn Future<Output = io::Result<()>> + Send + Sync>>;

/// Ready at once unless a send found the socket full; then until the reactor reports it
/// writable.
struct UdpPoller {
    socket: Arc<UdpSocket>,
    waiting: Option<Writable>,
}

impl fmt::Debug for UdpPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpPoller").finish_non_exhaustive()
    }
}

impl quinn::UdpPoller for UdpPoller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.waiting.is_none() && !this.socket.send_blocked.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        let waiting = this.waiting.get_or_insert_with(|| {
            let socket = this.socket.clone();
            Box::pin(async move { socket.io.writable().await })
        });
        let result = ready!(waiting.as_mut().poll(cx));
        this.waiting = None;
        this.socket.send_blocked.store(false, Ordering::Relaxed);
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::AsyncTimer as _;
    use std::time::Duration;

    /// Waits for the timer; how long it took. Panics if it never fires.
    fn wait(timer: &mut Pin<Box<LazyTimer>>) -> Duration {
        let start = Instant::now();
        let fired = smol::block_on(smol::future::or(
            async {
                std::future::poll_fn(|cx| timer.as_mut().poll(cx)).await;
                true
            },
            async {
                smol::Timer::after(Duration::from_secs(10)).await;
                false
            },
        ));
        assert!(fired, "timer never fired");
        start.elapsed()
    }

    #[test]
    fn control_datagrams_leave_the_batch_and_quic_ones_stay_in_order() {
        let (tx, rx) = crate::net::control::queue();
        let punch = phonebook_proto::udp::Message::Punch { nonce: [9; 8] }.encode(&[0; 16]);
        let quic_a = [0xc3u8; 40];
        let quic_b = [0x41u8; 30];
        let mut b0 = [0u8; 64];
        let mut b1 = [0u8; 64];
        let mut b2 = [0u8; 64];
        let mut b3 = [0u8; 64];
        b0[..40].copy_from_slice(&quic_a);
        b1[..13].copy_from_slice(&punch);
        // Two punches coalesced by GRO: one buffer, stride 13.
        b2[..13].copy_from_slice(&punch);
        b2[13..26].copy_from_slice(&punch);
        b3[..30].copy_from_slice(&quic_b);
        let from: std::net::SocketAddr = "198.51.100.3:5000".parse().unwrap();
        let meta_of = |len, stride| quinn::udp::RecvMeta {
            addr: from,
            len,
            stride,
            ..Default::default()
        };
        let mut meta = [
            meta_of(40, 40),
            meta_of(13, 13),
            meta_of(26, 13),
            meta_of(30, 30),
        ];
        let mut bufs = [
            io::IoSliceMut::new(&mut b0),
            io::IoSliceMut::new(&mut b1),
            io::IoSliceMut::new(&mut b2),
            io::IoSliceMut::new(&mut b3),
        ];
        let kept = divert_control(&tx, &mut bufs, &mut meta);
        assert_eq!(kept, 2);
        assert_eq!(&bufs[0][..meta[0].len], &quic_a[..]);
        assert_eq!(&bufs[1][..meta[1].len], &quic_b[..]);
        assert_eq!(rx.rx.len(), 3, "every punch, GRO segments included");
        assert_eq!(rx.rx.try_recv().unwrap().bytes, punch);
    }

    #[test]
    fn lazy_timer_fires_at_moved_deadlines_and_again_after_firing() {
        let ms = Duration::from_millis;
        let mut t = Box::pin(LazyTimer::new(Instant::now() + ms(20)));
        // Moved later before firing: not before the later deadline.
        t.as_mut().reset(Instant::now() + ms(60));
        assert!(wait(&mut t) >= ms(60));
        // Set again after it fired: fires again.
        t.as_mut().reset(Instant::now() + ms(30));
        assert!(wait(&mut t) >= ms(30));
        // Moved earlier: fires at the earlier deadline, before the first one.
        t.as_mut().reset(Instant::now() + ms(5000));
        t.as_mut().reset(Instant::now() + ms(10));
        assert!(wait(&mut t) < ms(5000));
        // A deadline already past: ready at once.
        t.as_mut().reset(Instant::now());
        wait(&mut t);
    }
}

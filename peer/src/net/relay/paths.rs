//! The paths under QUIC: which remote addresses quinn sees are relay sessions, and which of
//! those have moved to a direct address.
//!
//! A relayed peer gets a *virtual address* in 240.0.0.0/8 (reserved, never routed): quinn dials
//! it and answers it like any other address, and the socket ([`crate::net::runtime`]) sends its
//! datagrams into the relay session instead of the UDP socket, and hands the session's
//! datagrams to quinn as coming from it. When hole punching later opens a direct path to the
//! same peer, the route's `direct` address is set: the socket then sends there and presents
//! what comes from there as the virtual address, so the connection moves without quinn
//! noticing on our side (the other side's quinn sees the peer migrate and validates the new
//! path). A relay that goes away leaves the direct path working.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;
use std::time::{Duration, Instant};

/// Datagrams from relays waiting for quinn; more are dropped (QUIC recovers them).
pub const INBOX_MAX: usize = 4096;
/// Relay sessions (virtual addresses) at once.
pub const MAX_ROUTES: usize = 1024;

/// Where a relay session's datagrams go: the connection's frame queue and the session number.
#[derive(Debug, Clone)]
pub(crate) struct RelayLink {
    pub(crate) frames: smol::channel::Sender<Vec<u8>>,
    pub(crate) session: u32,
}

#[derive(Debug)]
struct Route {
    relay: Option<RelayLink>,
    direct: Option<SocketAddr>,
    /// When a datagram last went through the relay session either way.
    last: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    routes: HashMap<u32, Route>,
    by_direct: HashMap<SocketAddr, u32>,
    inbox: VecDeque<(u32, Vec<u8>)>,
    waker: Option<Waker>,
    next: u32,
    dropped: u64,
}

/// The routes of one endpoint's socket.
#[derive(Debug, Default)]
pub struct RelayPaths {
    /// Any route exists: the socket's fast path skips the lock when not.
    active: AtomicBool,
    /// Any route has a direct address: received datagrams are checked for rewriting.
    any_direct: AtomicBool,
    inner: Mutex<Inner>,
    /// Notified when a route is removed because its relay went away.
    gone: event_listener::Event,
}

/// The virtual address of route `id` (in IPv4; the socket writes it IPv4-mapped on a
/// dual-stack socket).
pub fn virtual_addr(id: u32) -> SocketAddr {
    let b = (id & 0x00ff_ffff).to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(240, b[1], b[2], b[3])), 4433)
}

/// The route id of a virtual address, in either form.
pub fn route_of(addr: SocketAddr) -> Option<u32> {
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) if v4.octets()[0] == 240 => {
            let o = v4.octets();
            Some(u32::from_be_bytes([0, o[1], o[2], o[3]]))
        }
        _ => None,
    }
}

/// What the socket should do with a datagram quinn sends.
#[derive(Debug)]
pub(crate) enum Send {
    /// Not ours: send to the address quinn gave.
    Udp,
    /// Send to this direct address instead.
    Direct(SocketAddr),
    /// Handed to a relay (or dropped: no route).
    Done,
}

impl RelayPaths {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("not poisoned")
    }

    /// A new route through `link`; its virtual address. `None` when [`MAX_ROUTES`] are in use.
    pub(crate) fn add(&self, link: RelayLink) -> Option<SocketAddr> {
        let mut inner = self.lock();
        if inner.routes.len() >= MAX_ROUTES {
            return None;
        }
        let mut id = inner.next;
        while inner.routes.contains_key(&id) {
            id = (id + 1) & 0x00ff_ffff;
        }
        inner.next = (id + 1) & 0x00ff_ffff;
        inner.routes.insert(
            id,
            Route {
                relay: Some(link),
                direct: None,
                last: Instant::now(),
            },
        );
        self.active.store(true, Ordering::Release);
        Some(virtual_addr(id))
    }

    /// The relay session of `vaddr` ended: without a direct path the route is gone.
    pub(crate) fn relay_gone(&self, vaddr: SocketAddr) {
        let Some(id) = route_of(vaddr) else { return };
        let mut inner = self.lock();
        let remove = match inner.routes.get_mut(&id) {
            Some(r) => {
                r.relay = None;
                r.direct.is_none()
            }
            None => false,
        };
        if remove {
            inner.routes.remove(&id);
        }
        self.active
            .store(!inner.routes.is_empty(), Ordering::Release);
        drop(inner);
        if remove {
            self.gone.notify(usize::MAX);
        }
    }

    /// Whether `vaddr` is a virtual address whose route is gone (its relay went away and no
    /// direct path had taken over): a connection to it can carry nothing any more.
    pub fn is_gone(&self, vaddr: SocketAddr) -> bool {
        route_of(vaddr).is_some_and(|id| !self.lock().routes.contains_key(&id))
    }

    /// Waits until the route of `vaddr` is gone (returns at once if it is).
    pub async fn wait_gone(&self, vaddr: SocketAddr) {
        loop {
            let listener = self.gone.listen();
            if self.is_gone(vaddr) {
                return;
            }
            listener.await;
        }
    }

    /// Removes the route of `vaddr` whatever it holds.
    pub(crate) fn remove(&self, vaddr: SocketAddr) {
        let Some(id) = route_of(vaddr) else { return };
        let mut inner = self.lock();
        if let Some(r) = inner.routes.remove(&id)
            && let Some(d) = r.direct
        {
            inner.by_direct.remove(&d);
        }
        self.active
            .store(!inner.routes.is_empty(), Ordering::Release);
        self.any_direct
            .store(!inner.by_direct.is_empty(), Ordering::Release);
    }

    /// From now on the datagrams of `vaddr` go to `direct`, and what comes from `direct`
    /// is presented as `vaddr`. False if the route is gone.
    pub fn set_direct(&self, vaddr: SocketAddr, direct: SocketAddr) -> bool {
        let Some(id) = route_of(vaddr) else {
            return false;
        };
        let direct = SocketAddr::new(direct.ip().to_canonical(), direct.port());
        let mut inner = self.lock();
        let Some(r) = inner.routes.get_mut(&id) else {
            return false;
        };
        let old = r.direct.replace(direct);
        if let Some(old) = old {
            inner.by_direct.remove(&old);
        }
        inner.by_direct.insert(direct, id);
        self.any_direct.store(true, Ordering::Release);
        true
    }

    /// The direct address of `vaddr`'s route, if it moved.
    pub fn direct_of(&self, vaddr: SocketAddr) -> Option<SocketAddr> {
        let id = route_of(vaddr)?;
        self.lock().routes.get(&id).and_then(|r| r.direct)
    }

    /// Whether `vaddr` still has a relay session.
    pub fn is_relayed(&self, vaddr: SocketAddr) -> bool {
        route_of(vaddr).is_some_and(|id| {
            self.lock()
                .routes
                .get(&id)
                .is_some_and(|r| r.relay.is_some())
        })
    }

    /// Whether the relay session of `vaddr` carried nothing for `idle` (or is gone): a QUIC
    /// connection on it has ended, since a live one sends keep-alives.
    pub(crate) fn is_idle(&self, vaddr: SocketAddr, idle: Duration) -> bool {
        let Some(id) = route_of(vaddr) else {
            return true;
        };
        self.lock()
            .routes
            .get(&id)
            .is_none_or(|r| r.relay.is_none() || r.last.elapsed() >= idle)
    }

    /// Routes held.
    pub fn routes(&self) -> usize {
        self.lock().routes.len()
    }

    /// Datagrams dropped because quinn did not take them fast enough.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// What to do with a datagram of `segment_size` segments that quinn sends to `to`.
    pub(crate) fn route_send(&self, to: SocketAddr, contents: &[u8], segment: usize) -> Send {
        if !self.active.load(Ordering::Acquire) {
            return Send::Udp;
        }
        let Some(id) = route_of(to) else {
            return Send::Udp;
        };
        let mut inner = self.lock();
        let Some(route) = inner.routes.get_mut(&id) else {
            return Send::Done;
        };
        if let Some(d) = route.direct {
            return Send::Direct(d);
        }
        route.last = Instant::now();
        if let Some(link) = &route.relay {
            for datagram in contents.chunks(segment.max(1)) {
                if datagram.len() > phonebook_proto::relay::MAX_DATAGRAM {
                    continue;
                }
                let mut frame = Vec::with_capacity(datagram.len() + 8);
                phonebook_proto::relay::Frame::Data {
                    session: link.session,
                    payload: datagram,
                }
                .encode(&mut frame);
                // A full queue drops the datagram, as a full UDP buffer would.
                let _ = link.frames.try_send(frame);
            }
        }
        Send::Done
    }

    /// A datagram of the relay session of `vaddr` arrived.
    pub(crate) fn deliver(&self, vaddr: SocketAddr, datagram: Vec<u8>) {
        let Some(id) = route_of(vaddr) else { return };
        let mut inner = self.lock();
        if let Some(r) = inner.routes.get_mut(&id) {
            r.last = Instant::now();
        }
        if inner.inbox.len() >= INBOX_MAX {
            inner.dropped += 1;
            return;
        }
        inner.inbox.push_back((id, datagram));
        if let Some(w) = inner.waker.take() {
            w.wake();
        }
    }

    /// Takes a relayed datagram for quinn, or registers `waker` for the next one.
    pub(crate) fn take(&self, waker: &Waker) -> Option<(SocketAddr, Vec<u8>)> {
        // The waker is kept even while no route exists: the first relayed datagram must wake
        // an endpoint that sleeps on its socket.
        let mut inner = self.lock();
        match inner.inbox.pop_front() {
            Some((id, d)) => Some((virtual_addr(id), d)),
            None => {
                if !inner.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    inner.waker = Some(waker.clone());
                }
                None
            }
        }
    }

    /// The virtual address to present for a datagram received from `from`, if its route moved
    /// there.
    pub(crate) fn rewrite_from(&self, from: SocketAddr) -> Option<SocketAddr> {
        if !self.any_direct.load(Ordering::Acquire) {
            return None;
        }
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        self.lock().by_direct.get(&from).map(|id| virtual_addr(*id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_addresses_round_trip_in_both_forms() {
        for id in [0, 1, 0x00ab_cdef, 0x00ff_ffff] {
            let v = virtual_addr(id);
            assert_eq!(route_of(v), Some(id));
            let mapped = match v.ip() {
                IpAddr::V4(v4) => SocketAddr::new(v4.to_ipv6_mapped().into(), v.port()),
                IpAddr::V6(_) => unreachable!(),
            };
            assert_eq!(route_of(mapped), Some(id));
        }
        assert_eq!(route_of("203.0.113.5:7000".parse().unwrap()), None);
        assert_eq!(route_of("[2001:db8::1]:7000".parse().unwrap()), None);
    }

    #[test]
    fn relayed_datagrams_become_frames_and_a_direct_path_takes_over() {
        let paths = RelayPaths::default();
        let udp: SocketAddr = "198.51.100.7:9000".parse().unwrap();
        assert!(matches!(paths.route_send(udp, b"x", 1), Send::Udp));
        let (tx, rx) = smol::channel::bounded(8);
        let v = paths
            .add(RelayLink {
                frames: tx,
                session: 3,
            })
            .unwrap();
        // Two segments of 4 bytes: two frames.
        assert!(matches!(paths.route_send(v, b"abcdefgh", 4), Send::Done));
        assert_eq!(rx.len(), 2);
        let f = rx.try_recv().unwrap();
        let (frame, _) = phonebook_proto::relay::Frame::decode(&f).unwrap().unwrap();
        assert_eq!(
            frame,
            phonebook_proto::relay::Frame::Data {
                session: 3,
                payload: b"abcd"
            }
        );
        // Moved to a direct address: sent there, and what comes from there looks like v.
        assert_eq!(paths.rewrite_from(udp), None);
        assert!(paths.set_direct(v, udp));
        assert!(matches!(paths.route_send(v, b"x", 1), Send::Direct(d) if d == udp));
        assert_eq!(paths.rewrite_from(udp), Some(v));
        // The relay going away keeps the direct route.
        paths.relay_gone(v);
        assert_eq!(paths.direct_of(v), Some(udp));
        paths.remove(v);
        assert_eq!(paths.rewrite_from(udp), None);
        assert_eq!(paths.routes(), 0);
    }

    #[test]
    fn the_inbox_is_bounded() {
        let paths = RelayPaths::default();
        let (tx, _rx) = smol::channel::bounded(1);
        let v = paths
            .add(RelayLink {
                frames: tx,
                session: 1,
            })
            .unwrap();
        for _ in 0..INBOX_MAX + 10 {
            paths.deliver(v, vec![1]);
        }
        assert_eq!(paths.dropped(), 10);
        let waker = std::task::Waker::noop();
        let mut n = 0;
        while paths.take(waker).is_some() {
            n += 1;
        }
        assert_eq!(n, INBOX_MAX);
    }
}

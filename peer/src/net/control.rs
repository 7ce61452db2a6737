//! Control datagrams on the QUIC socket: phone-book answers and hole-punching messages
//! (`phonebook_proto::udp`) arrive on the same UDP port as QUIC. The socket's receive path hands
//! them here, by their first bytes, before quinn sees the batch; a bounded queue carries them
//! to the traversal task ([`crate::net::traversal`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use phonebook_proto::udp;

/// Control datagrams queued for the traversal task; more are dropped (they are retried).
pub const CONTROL_QUEUE: usize = 256;

/// One control datagram.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Its source, IPv4 addresses in their IPv4 form (not IPv4-mapped IPv6).
    pub from: SocketAddr,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Whether a received datagram is a control message rather than QUIC: QUIC packets always
/// have the fixed bit (0x40) set in their first byte; ours start with a magic that has not.
pub fn is_control(datagram: &[u8]) -> bool {
    udp::is_ours(datagram)
}

/// An address in canonical form: IPv4-mapped IPv6 becomes IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// `addr` as a destination for a socket bound to `local`: an IPv4 address for a dual-stack
/// IPv6 socket becomes IPv4-mapped.
pub fn for_socket(local: SocketAddr, addr: SocketAddr) -> SocketAddr {
    match (local, addr.ip()) {
        (SocketAddr::V6(_), IpAddr::V4(v4)) => {
            SocketAddr::new(v4.to_ipv6_mapped().into(), addr.port())
        }
        _ => addr,
    }
}

/// The socket's side of the queue.
#[derive(Debug, Clone)]
pub struct ControlSender {
    tx: smol::channel::Sender<Datagram>,
    dropped: Arc<AtomicU64>,
}

/// The traversal task's side.
#[derive(Debug)]
pub struct ControlReceiver {
    /// Datagrams in arrival order.
    pub rx: smol::channel::Receiver<Datagram>,
    /// Datagrams dropped because the queue was full or they were too large.
    pub dropped: Arc<AtomicU64>,
}

/// A bounded queue of [`CONTROL_QUEUE`] datagrams.
pub fn queue() -> (ControlSender, ControlReceiver) {
    let (tx, rx) = smol::channel::bounded(CONTROL_QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    (
        ControlSender {
            tx,
            dropped: dropped.clone(),
        },
        ControlReceiver { rx, dropped },
    )
}

impl ControlSender {
    /// Queues a copy of `bytes`, or drops it when the queue is full, closed, or the datagram
    /// is larger than any control message.
    pub fn offer(&self, from: SocketAddr, bytes: &[u8]) {
        if bytes.len() > udp::MAX_LEN
            || self
                .tx
                .try_send(Datagram {
                    from: canonical(from),
                    bytes: bytes.to_vec(),
                })
                .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_and_control_are_told_apart() {
        let punch = udp::Message::Punch { nonce: [1; 8] }.encode(&[0; 16]);
        assert!(is_control(&punch));
        // Every QUIC packet, long or short header, has the fixed bit.
        for first in [0xc0u8, 0xc3, 0x40, 0x5f, 0xff] {
            let mut p = vec![first];
            p.extend_from_slice(&punch[1..]);
            assert!(!is_control(&p));
        }
        assert!(!is_control(b""));
    }

    #[test]
    fn queue_is_bounded_and_canonical() {
        let (tx, rx) = queue();
        let mapped: SocketAddr = "[::ffff:198.51.100.7]:4000".parse().unwrap();
        for _ in 0..CONTROL_QUEUE + 10 {
            tx.offer(mapped, b"x");
        }
        tx.offer(mapped, &[0; udp::MAX_LEN + 1]);
        assert_eq!(rx.rx.len(), CONTROL_QUEUE);
        assert_eq!(rx.dropped.load(Ordering::Relaxed), 11);
        let d = rx.rx.try_recv().unwrap();
        assert_eq!(d.from, "198.51.100.7:4000".parse().unwrap());
        let local6: SocketAddr = "[::]:1".parse().unwrap();
        let local4: SocketAddr = "0.0.0.0:1".parse().unwrap();
        let v4: SocketAddr = "198.51.100.7:4000".parse().unwrap();
        assert_eq!(for_socket(local6, v4), mapped);
        assert_eq!(for_socket(local4, v4), v4);
    }
}

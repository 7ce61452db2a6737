//! The UDP service's sockets: the main one (by default at the HTTP listener's address and port
//! number) and the second port that lets peers tell a symmetric NAT. Each datagram goes to
//! [`App::handle_udp`](crate::api::App::handle_udp); what it returns is sent at once (a full
//! socket buffer drops it: every message is retried by its sender).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;

use async_io::Async;

use super::Shared;
use crate::config::Config;
use phonebook_proto::udp::MAX_LEN;

/// The bound sockets.
#[derive(Debug)]
pub struct UdpSockets {
    /// The main socket.
    pub main: Async<UdpSocket>,
    /// The second port, if it could be bound.
    pub alt: Option<Async<UdpSocket>>,
}

fn bind(addr: SocketAddr) -> io::Result<Async<UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if let SocketAddr::V6(v6) = addr
        && v6.ip().is_unspecified()
    {
        // Dual-stack like the HTTP listener.
        let _ = s.set_only_v6(false);
    }
    s.bind(&addr.into())?;
    Async::new(UdpSocket::from(s))
}

/// Binds the UDP service for an HTTP listener bound at `http`; `None` when it is off. The main
/// socket must bind (a configured service that cannot start is an error); the second port is
/// skipped with a warning if it is taken.
pub fn bind_all(config: &Config, http: SocketAddr) -> io::Result<Option<UdpSockets>> {
    let Some(addr) = config.udp_listen.resolve(http) else {
        return Ok(None);
    };
    let main = bind(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot listen on UDP {addr} (udp-listen; `off` turns the UDP service off): {e}"
            ),
        )
    })?;
    let port = main.get_ref().local_addr()?.port();
    let alt = match config.udp_alt_port.resolve(port) {
        None => None,
        Some(p) => match bind(SocketAddr::new(addr.ip(), p)) {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!(
                    "UDP second port {p} unavailable ({e}): peers cannot tell a symmetric NAT \
                     (set udp-alt-port to a free port, or off)"
                );
                None
            }
        },
    };
    Ok(Some(UdpSockets { main, alt }))
}

/// Sends `bytes` to `to` from `socket` (an IPv4 destination of a dual-stack socket is written
/// IPv4-mapped).
pub(crate) fn send(socket: &Async<UdpSocket>, bytes: &[u8], to: SocketAddr) {
    let to = match (socket.get_ref().local_addr(), to) {
        (Ok(SocketAddr::V6(_)), SocketAddr::V4(v4)) => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        _ => to,
    };
    if let Err(e) = socket.get_ref().send_to(bytes, to) {
        log::debug!("UDP send failed: {e}");
    }
}

/// Serves `socket` until the server stops. Answers leave from `socket`; forwards to a target
/// leave from `main`, the socket the target's keep-alives reach (its NAT lets only that in).
pub async fn serve(shared: Rc<Shared>, socket: Rc<Async<UdpSocket>>, main: Rc<Async<UdpSocket>>) {
    let mut buf = [0u8; MAX_LEN + 1];
    let mut out = Vec::new();
    loop {
        let (n, src) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors of earlier sends and the like: keep serving.
                log::debug!("UDP receive error: {e}");
                continue;
            }
        };
        out.clear();
        shared
            .app
            .borrow_mut()
            .handle_udp(src, &buf[..n], shared.now(), &mut out);
        shared.flush_bus();
        let from = SocketAddr::new(src.ip().to_canonical(), src.port());
        for d in &out {
            if d.to == from {
                send(&socket, &d.bytes, d.to);
            } else {
                send(&main, &d.bytes, d.to);
            }
        }
    }
}

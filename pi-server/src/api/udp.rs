//! The UDP service (docs/PROTOCOL.md "UDP service"), sans I/O: address discovery, keep-alives
//! that record where a registered peer can be reached, and punch requests forwarded through
//! that mapping, under exactly the lookup visibility rules.
//!
//! Given a datagram, its source and the time, [`App::handle_udp`] appends what to send where.
//! It never answers with more bytes than it received, and sends only to the datagram's source
//! or to a live registration's keep-alive address (the forward of an allowed punch request).
//! Anything invalid gets no answer at all.

use std::collections::HashMap;
use std::net::SocketAddr;

use phonebook_proto::udp::{self, Auth, Message, PunchStatus};

use super::{App, Now};
use crate::bus::{self, Dest};
use crate::metrics::UdpEvent;
use crate::ratelimit::Limiter;
use crate::table::source_key;
use crate::token::TokenClaim;

/// Burst allowed per requester and per target, in multiples of `punch-rate`.
pub const PUNCH_BURST_FACTOR: u32 = 4;

/// Where a registered peer's keep-alives come from.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    addr: SocketAddr,
    /// The registrant's key: a renewal (new timestamp) by the same key keeps the mapping.
    key: [u8; 32],
    /// The registration (token timestamp) that made it.
    timestamp: u64,
    /// Highest counter accepted from that registration.
    counter: u64,
    /// Monotonic ms of the last keep-alive.
    last_ms: u64,
}

/// State of the UDP service: keep-alive mappings (at most one per slot, so bounded by the
/// table's capacity) and its rate limiters.
#[derive(Debug)]
pub struct UdpState {
    mappings: HashMap<u32, Mapping>,
    /// Highest counter accepted per slot from punch requests of a registration without a
    /// mapping (a fetcher that sends no keep-alives): replay protection for those too.
    counters: HashMap<u32, (u64, u64)>,
    by_address: Limiter,
    by_requester: Limiter,
    by_target: Limiter,
    /// The second port announced in binding answers (0: none); set by the server once bound.
    pub alt_port: u16,
    /// The service's port, announced in register answers (`udpPort`; 0: no UDP service);
    /// set by the server once bound.
    pub port: u16,
}

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Destination.
    pub to: SocketAddr,
    /// Payload.
    pub bytes: Vec<u8>,
}

impl UdpState {
    /// State for `rate`/`burst` per address and `punch_rate` per requester and per target.
    pub fn new(rate: u32, burst: u32, punch_rate: u32) -> Self {
        let punch_burst = punch_rate.saturating_mul(PUNCH_BURST_FACTOR);
        UdpState {
            mappings: HashMap::new(),
            counters: HashMap::new(),
            by_address: Limiter::new(rate, burst),
            by_requester: Limiter::new(punch_rate, punch_burst),
            by_target: Limiter::new(punch_rate, punch_burst),
            alt_port: 0,
            port: 0,
        }
    }

    /// The keep-alive address of `slot`'s registration by `key`, if fresh.
    pub fn mapping_of(
        &self,
        slot: u32,
        key: [u8; 32],
        now: Now,
        ttl_secs: u32,
    ) -> Option<SocketAddr> {
        let ttl_ms = u64::from(ttl_secs) * 1000;
        self.mappings
            .get(&slot)
            .filter(|m| m.key == key && now.mono_ms.saturating_sub(m.last_ms) <= ttl_ms)
            .map(|m| m.addr)
    }

    /// Keep-alive mappings held.
    pub fn mappings(&self) -> usize {
        self.mappings.len()
    }
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

impl App {
    /// Handles one datagram from `src`; appends what to send to `out`.
    pub fn handle_udp(
        &mut self,
        src: SocketAddr,
        datagram: &[u8],
        now: Now,
        out: &mut Vec<Datagram>,
    ) {
        let src = canonical(src);
        let before = out.len();
        self.metrics.udp_in.0 += 1;
        self.metrics.udp_in.1 += datagram.len() as u64;
        let source = source_key(src.ip(), self.config.quota_ipv6_prefix.min(128) as u8);
        if self.udp.by_address.check(&source, 1, now.mono_ms).is_err() {
            self.metrics.udp(UdpEvent::DroppedRateLimited);
            return;
        }
        let msg = match Message::decode(datagram) {
            Ok(m) => m,
            Err(_) => {
                self.metrics.udp(UdpEvent::DroppedMalformed);
                return;
            }
        };
        match msg {
            Message::BindingRequest { txid } => {
                self.metrics.udp(UdpEvent::Binding);
                let answer = Message::BindingAnswer {
                    txid,
                    observed: src,
                    alt_port: self.udp.alt_port,
                };
                out.push(Datagram {
                    to: src,
                    bytes: answer.encode(&[0; 16]),
                });
            }
            Message::KeepAlive { auth, counter } => {
                let Some((id, key, _)) = self.authenticate(auth, counter, datagram, now) else {
                    return;
                };
                self.udp.mappings.insert(
                    id,
                    Mapping {
                        addr: src,
                        key,
                        timestamp: auth.timestamp,
                        counter,
                        last_ms: now.mono_ms,
                    },
                );
                self.udp.counters.remove(&id);
                self.metrics.udp(UdpEvent::KeepAlive);
                out.push(Datagram {
                    to: src,
                    bytes: Message::KeepAliveAnswer {
                        counter,
                        observed: src,
                    }
                    .encode(&[0; 16]),
                });
            }
            Message::PunchRequest {
                auth,
                counter,
                nonce,
                target,
                extra,
            } => {
                let Some((_, requester, _)) = self.authenticate(auth, counter, datagram, now)
                else {
                    return;
                };
                if self
                    .udp
                    .by_requester
                    .check(&requester, 1, now.mono_ms)
                    .is_err()
                {
                    self.metrics.udp(UdpEvent::DroppedRateLimited);
                    return;
                }
                let status = self.punch(src, &requester, &target, nonce, extra, now, out);
                out.push(Datagram {
                    to: src,
                    bytes: Message::PunchAnswer { counter, status }.encode(&[0; 16]),
                });
            }
            Message::BindingAnswer { .. }
            | Message::KeepAliveAnswer { .. }
            | Message::PunchAnswer { .. }
            | Message::PunchForward { .. }
            | Message::Punch { .. }
            | Message::PunchAck { .. }
            | Message::RelayCall { .. } => self.metrics.udp(UdpEvent::DroppedNotARequest),
        }
        for d in &out[before..] {
            self.metrics.udp_out.0 += 1;
            self.metrics.udp_out.1 += d.bytes.len() as u64;
        }
        self.metrics.udp_mappings = self.udp.mappings.len() as u64;
    }

    /// Checks an authenticated message: the slot is live with the token's timestamp, the tag
    /// verifies under that registration's token tag, and the counter grows. Returns the
    /// registrant's key and the tag key.
    fn authenticate(
        &mut self,
        auth: Auth,
        counter: u64,
        datagram: &[u8],
        now: Now,
    ) -> Option<(u32, [u8; 32], [u8; 16])> {
        // `auth.slot` is the record handle (see `table::record_handle`); the local slot
        // keys the mappings and counters.
        let (id, key) = match self
            .table
            .live_by_handle(auth.slot, auth.timestamp, now.secs())
        {
            Some((id, s)) => (id, s.key),
            None => {
                self.metrics.udp(UdpEvent::DroppedUnauthenticated);
                return None;
            }
        };
        let claim = TokenClaim {
            slot: auth.slot,
            timestamp: auth.timestamp,
        };
        let tag_key = self.tokens.tag_for(claim, &key);
        if !udp::tag_ok(&tag_key, datagram) {
            self.metrics.udp(UdpEvent::DroppedUnauthenticated);
            return None;
        }
        let last = match self.udp.mappings.get(&id) {
            Some(m) if m.timestamp == auth.timestamp => Some(m.counter),
            _ => self
                .udp
                .counters
                .get(&id)
                .filter(|(ts, _)| *ts == auth.timestamp)
                .map(|(_, c)| *c),
        };
        if last.is_some_and(|l| counter <= l) {
            self.metrics.udp(UdpEvent::DroppedReplayed);
            return None;
        }
        match self.udp.mappings.get_mut(&id) {
            Some(m) if m.timestamp == auth.timestamp => m.counter = counter,
            _ => {
                self.udp.counters.insert(id, (auth.timestamp, counter));
            }
        }
        Some((id, key, tag_key))
    }

    /// Decides a punch request and appends the forward if there is one.
    #[allow(clippy::too_many_arguments)]
    fn punch(
        &mut self,
        src: SocketAddr,
        requester: &[u8; 32],
        target: &phonebook_proto::LookupId,
        nonce: [u8; 8],
        extra: [Option<SocketAddr>; 2],
        now: Now,
        out: &mut Vec<Datagram>,
    ) -> PunchStatus {
        let t = now.secs();
        // The lookup rules: absent, expired and hidden-from-you are one answer.
        let Some((id, slot, _)) = self.table.lookup(target, requester, t) else {
            self.metrics.udp(UdpEvent::PunchUnknown);
            return PunchStatus::Unknown;
        };
        let (key, timestamp) = (slot.key, slot.timestamp);
        let ttl_ms = u64::from(self.config.udp_mapping_ttl) * 1000;
        let mapping = self
            .udp
            .mappings
            .get(&id)
            .copied()
            .filter(|m| m.key == key && now.mono_ms.saturating_sub(m.last_ms) <= ttl_ms);
        let Some(mapping) = mapping else {
            // Its keep-alives may reach another instance: hand the request to them all.
            let up = self.bus.as_ref().is_some_and(|b| b.up);
            if up && self.udp.by_target.check(&id, 1, now.mono_ms).is_err() {
                self.metrics.udp(UdpEvent::DroppedRateLimited);
                return PunchStatus::NoPath;
            }
            let handed = up
                && self.bus.as_mut().is_some_and(|b| {
                    b.push(
                        Dest::All,
                        &bus::codec::Message::Punch {
                            target: *target,
                            target_key: key,
                            requester: *requester,
                            nonce,
                            addrs: [Some(src), extra[0], extra[1]],
                        },
                    )
                });
            if handed {
                self.metrics.udp(UdpEvent::PunchHandedOver);
                return PunchStatus::Forwarded;
            }
            self.metrics.udp(UdpEvent::PunchNoPath);
            return PunchStatus::NoPath;
        };
        if self.udp.by_target.check(&id, 1, now.mono_ms).is_err() {
            self.metrics.udp(UdpEvent::DroppedRateLimited);
            return PunchStatus::NoPath;
        }
        let Ok(requester_key) = phonebook_proto::PublicKey::from_bytes(requester) else {
            return PunchStatus::Unknown;
        };
        let tag_key = self.tokens.tag_for(
            TokenClaim {
                slot: self.table.handle(id),
                timestamp,
            },
            &key,
        );
        let forward = Message::PunchForward {
            nonce,
            requester: requester_key,
            addrs: [Some(src), extra[0], extra[1]],
        };
        out.push(Datagram {
            to: mapping.addr,
            bytes: forward.encode(&tag_key),
        });
        self.metrics.udp(UdpEvent::PunchForwarded);
        PunchStatus::Forwarded
    }

    /// A punch request another instance handed over ([`bus::codec::Message::Punch`]): the forward to
    /// send if this instance holds the target's fresh mapping and the requester may still see
    /// the target (the lookup rules again, with this instance's table).
    pub fn punch_from_bus(
        &mut self,
        target: &phonebook_proto::LookupId,
        target_key: [u8; 32],
        requester: &[u8; 32],
        nonce: [u8; 8],
        addrs: [Option<SocketAddr>; 3],
        now: Now,
    ) -> Option<Datagram> {
        let (id, slot, _) = self.table.lookup(target, requester, now.secs())?;
        if slot.key != target_key {
            return None;
        }
        let timestamp = slot.timestamp;
        let to = self
            .udp
            .mapping_of(id, target_key, now, self.config.udp_mapping_ttl)?;
        let requester = phonebook_proto::PublicKey::from_bytes(requester).ok()?;
        let tag_key = self.tokens.tag_for(
            TokenClaim {
                slot: self.table.handle(id),
                timestamp,
            },
            &target_key,
        );
        let bytes = Message::PunchForward {
            nonce,
            requester,
            addrs,
        }
        .encode(&tag_key);
        self.metrics.udp(UdpEvent::PunchForwarded);
        self.metrics.udp_out.0 += 1;
        self.metrics.udp_out.1 += bytes.len() as u64;
        Some(Datagram { to, bytes })
    }

    /// Drops keep-alive mappings and counters of registrations that are gone or silent: called
    /// by the server's ticker, a bounded amount at a time.
    pub fn sweep_udp(&mut self, now: Now) {
        let t = now.secs();
        let ttl_ms = u64::from(self.config.udp_mapping_ttl) * 1000;
        let table = &self.table;
        self.udp.mappings.retain(|slot, m| {
            table
                .live_slot(*slot, t)
                .is_some_and(|(s, _)| s.key == m.key)
                && now.mono_ms.saturating_sub(m.last_ms) <= ttl_ms
        });
        self.udp.counters.retain(|slot, (ts, _)| {
            table
                .live_slot(*slot, t)
                .is_some_and(|(s, _)| s.timestamp == *ts)
        });
        self.metrics.udp_mappings = self.udp.mappings.len() as u64;
    }
}

//! The relay's decisions (docs/PROTOCOL.md "Relay"), sans I/O: who may use the relay (a live
//! registration's lookup token), and whom an open may reach (exactly the lookup visibility
//! rules: absent, hidden and offline are one answer). The connections, sessions and bytes live
//! in `crate::server::relay`.

use std::net::SocketAddr;

use phonebook_proto::relay::CloseReason;
use phonebook_proto::udp::Message;

use super::udp::Datagram;
use super::{App, Now};
use crate::metrics::RelayRefusal;
use crate::token::TokenClaim;

/// Who a relay connection speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelayPeer {
    /// The registration's slot.
    pub slot: u32,
    /// Its key.
    pub key: [u8; 32],
}

/// Where an allowed open goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayTarget {
    /// The target's registration.
    pub peer: RelayPeer,
    /// Its lookup id (for an open handed to the other instances).
    pub lookup_id: phonebook_proto::LookupId,
    /// The UDP call to send through its keep-alive mapping, if it has one.
    pub call: Option<Datagram>,
}

/// What the register answer says of the relay: its port, its host if elsewhere, and the
/// SHA-256 of its certificate in hex. Set by the server once the relay is bound.
#[derive(Debug, Clone, Default)]
pub struct RelayInfo {
    /// TCP port.
    pub port: u16,
    /// `relayHost`.
    pub host: Option<String>,
    /// `relayCert`.
    pub cert_sha256: String,
}

impl App {
    /// Checks a raw Hello token: the registration it proves, if live.
    pub fn relay_auth(&mut self, token: &[u8; 29], now: Now) -> Option<RelayPeer> {
        let text = phonebook_proto::b64::encode(token);
        let (table, t) = (&self.table, now.secs());
        let mut holder = None;
        let claim = self.tokens.check(text.as_bytes(), |claim| {
            holder = table.live_by_handle(claim.slot, claim.timestamp, t);
            holder.map(|(_, s)| s.key)
        });
        match (claim, holder) {
            (Some(_), Some((id, s))) => Some(RelayPeer {
                slot: id,
                key: s.key,
            }),
            _ => {
                self.metrics.relay.refuse(RelayRefusal::Unauthenticated);
                None
            }
        }
    }

    /// Whether `peer`'s registration is still the live one.
    pub fn relay_still_live(&self, peer: RelayPeer, now: Now) -> bool {
        self.table
            .live_slot(peer.slot, now.secs())
            .is_some_and(|(s, _)| s.key == peer.key)
    }

    /// Decides an open by `requester` to `target`; with a ticket for the UDP call.
    pub fn relay_open(
        &mut self,
        requester: &[u8; 32],
        target: &phonebook_proto::LookupId,
        ticket: [u8; 16],
        now: Now,
    ) -> Result<RelayTarget, CloseReason> {
        let target = self.relay_target(requester, target, None, ticket, now);
        if target.is_none() {
            self.metrics.relay.refuse(RelayRefusal::Unknown);
        }
        target.ok_or(CloseReason::Unknown)
    }

    /// An open another instance asks about ([`crate::bus::codec::Message::RelayOpen`]): the
    /// lookup rules again with this table, for exactly the record of `target_key`.
    pub fn relay_open_from_bus(
        &mut self,
        requester: &[u8; 32],
        target: &phonebook_proto::LookupId,
        target_key: [u8; 32],
        ticket: [u8; 16],
        now: Now,
    ) -> Option<RelayTarget> {
        self.relay_target(requester, target, Some(target_key), ticket, now)
    }

    fn relay_target(
        &mut self,
        requester: &[u8; 32],
        target: &phonebook_proto::LookupId,
        want_key: Option<[u8; 32]>,
        ticket: [u8; 16],
        now: Now,
    ) -> Option<RelayTarget> {
        let t = now.secs();
        let (id, slot, _) = self.table.lookup(target, requester, t)?;
        let (key, timestamp) = (slot.key, slot.timestamp);
        if want_key.is_some_and(|k| k != key) {
            return None;
        }
        let call = self
            .udp
            .mapping_of(id, key, now, self.config.udp_mapping_ttl)
            .and_then(|addr: SocketAddr| {
                let requester = phonebook_proto::PublicKey::from_bytes(requester).ok()?;
                let tag_key = self.tokens.tag_for(
                    TokenClaim {
                        slot: self.table.handle(id),
                        timestamp,
                    },
                    &key,
                );
                Some(Datagram {
                    to: addr,
                    bytes: Message::RelayCall { ticket, requester }.encode(&tag_key),
                })
            });
        Some(RelayTarget {
            peer: RelayPeer { slot: id, key },
            lookup_id: *target,
            call,
        })
    }
}

//! Relay sessions bridged to another instance over the bus (see [`crate::bus`]).
//!
//! Each instance keeps its half of a bridged session as a connection of its relay hub that
//! has no socket: on the instance where the session was opened (the **origin**) it stands
//! for the target, and accepts the requester's ticket once the other instance says the
//! target accepted; on the instance that told the target (the **answerer**) it stands for
//! the requester, and opened a session of its own that the target accepts. Frames the hub
//! sends to such a connection go over the bus; frames from the bus are played into the hub
//! as if that connection had sent them. Only `Opened`, `Data` and `Close` cross.

use std::cell::Cell;
use std::collections::HashMap;

use phonebook_proto::relay::{CloseReason, Frame};
use phonebook_proto::relay_hub::{Accepted, ConnId};

use super::relay::{ACCEPT_TIMEOUT_MS, Hub};
use crate::api::relay::RelayPeer;
use crate::bus::Dest;
use crate::bus::codec::{Instance, Message};

/// Milliseconds an unanswered bridge is kept after the accept time, for late answers to be
/// told `Close`.
pub const GRACE_MS: u64 = 2_000;

/// One instance's half of a bridged session.
#[derive(Debug)]
struct End {
    bridge: u64,
    /// This instance opened it (its connection stands for the target).
    origin: bool,
    /// The other instance (at the origin: the first that answered).
    remote: Option<Instance>,
    /// The origin's ticket, accepted when the answer comes.
    ticket: [u8; 16],
    created_ms: u64,
    last_ms: Cell<u64>,
    /// A `Close` crossed (or the session never paired and was let go).
    ended: Cell<bool>,
    paired: bool,
}

impl End {
    fn new(
        bridge: u64,
        origin: bool,
        remote: Option<Instance>,
        ticket: [u8; 16],
        now_ms: u64,
    ) -> Self {
        End {
            bridge,
            origin,
            remote,
            ticket,
            created_ms: now_ms,
            last_ms: Cell::new(now_ms),
            ended: Cell::new(false),
            paired: false,
        }
    }
}

/// The bridged sessions of one relay.
#[derive(Debug)]
pub(super) struct Bridges {
    me: Option<Instance>,
    tx: Option<async_channel::Sender<(Dest, Vec<u8>)>>,
    ends: HashMap<ConnId, End>,
    opened: HashMap<u64, ConnId>,
    answered: HashMap<(Instance, u64), ConnId>,
    next: u64,
    max: usize,
    idle_ms: u64,
    /// The relay's clock, moved on by [`Bridges::tick`] (a bridge's silence is told in
    /// seconds, so the sweeper's tick is fine enough).
    now_ms: Cell<u64>,
}

/// What the bus said that the relay must count.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    /// Sessions paired (+) or ended (-).
    pub paired: i64,
    /// Messages that could not be queued.
    pub dropped: u64,
}

impl Bridges {
    /// Bridges for a relay whose instance is `me` on the bus `tx` (`None`: no bus), at most
    /// `max` at once, let go after `idle_ms` of silence.
    pub(super) fn new(
        me: Option<Instance>,
        tx: Option<async_channel::Sender<(Dest, Vec<u8>)>>,
        max: usize,
        idle_ms: u64,
    ) -> Self {
        Bridges {
            me,
            tx,
            ends: HashMap::new(),
            opened: HashMap::new(),
            answered: HashMap::new(),
            next: 1,
            max,
            idle_ms,
            now_ms: Cell::new(0),
        }
    }

    /// Moves the clock to `now_ms`.
    pub(super) fn tick(&self, now_ms: u64) {
        self.now_ms.set(self.now_ms.get().max(now_ms));
    }

    /// Bridged sessions held.
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether `conn` is a bridge's half.
    pub(super) fn is_bridge(&self, conn: ConnId) -> bool {
        self.ends.contains_key(&conn)
    }

    fn publish(&self, dest: Dest, msg: &Message<'_>) -> bool {
        match (&self.me, &self.tx) {
            (Some(me), Some(tx)) => tx.try_send((dest, msg.encode(*me))).is_ok(),
            _ => false,
        }
    }

    fn close_to(&self, to: Instance, bridge: u64, to_origin: bool, reason: CloseReason) -> bool {
        self.publish(
            Dest::To(to),
            &Message::Bridged {
                bridge,
                to_origin,
                frame: Frame::Close { session: 0, reason },
            },
        )
    }

    /// Sends a frame the hub addressed to bridge half `conn` to the other instance; false if
    /// it could not be queued (or the other instance is not known yet).
    pub(super) fn forward(&self, conn: ConnId, bytes: &[u8]) -> bool {
        let now_ms = self.now_ms.get();
        let Some(end) = self.ends.get(&conn) else {
            return false;
        };
        let Some(remote) = end.remote else {
            return false;
        };
        let Ok(Some((frame, _))) = Frame::decode(bytes) else {
            return false;
        };
        match frame {
            Frame::Close { .. } => end.ended.set(true),
            Frame::Opened { .. } | Frame::Data { .. } => {}
            _ => return false,
        }
        end.last_ms.set(now_ms);
        self.publish(
            Dest::To(remote),
            &Message::Bridged {
                bridge: end.bridge,
                to_origin: !end.origin,
                frame,
            },
        )
    }
}

impl Hub {
    fn new_conn(&mut self) -> ConnId {
        self.next += 1;
        self.next
    }

    /// An open by `requester` (connection `from`, its `session`) for `target`, which no
    /// connection here can tell: asks the other instances. False if the bus is down or the
    /// bridges are full (the caller answers `no path`).
    pub(super) fn open_elsewhere(
        &mut self,
        from: ConnId,
        session: u32,
        requester: [u8; 32],
        target: &crate::api::relay::RelayTarget,
        ticket: [u8; 16],
        now_ms: u64,
    ) -> bool {
        let deadline_ms = now_ms + ACCEPT_TIMEOUT_MS;
        if self.bridges.ends.len() >= self.bridges.max {
            return false;
        }
        let bridge = self.bridges.next;
        let asked = self.bridges.publish(
            Dest::All,
            &Message::RelayOpen {
                bridge,
                requester,
                target: target.lookup_id,
                target_key: target.peer.key,
            },
        );
        if !asked {
            return false;
        }
        self.bridges.next += 1;
        let v = self.new_conn();
        self.core.insert(v, target.peer);
        self.core
            .open(from, session, target.peer, ticket, deadline_ms);
        self.bridges.opened.insert(bridge, v);
        self.bridges
            .ends
            .insert(v, End::new(bridge, true, None, ticket, now_ms));
        true
    }

    /// Another instance's open that this relay told its target about (with `ticket`): the
    /// requester's half. False if the bridges are full.
    pub(super) fn answer_elsewhere(
        &mut self,
        from: Instance,
        bridge: u64,
        requester: [u8; 32],
        target: RelayPeer,
        ticket: [u8; 16],
        now_ms: u64,
    ) -> bool {
        let deadline_ms = now_ms + ACCEPT_TIMEOUT_MS;
        if self.bridges.ends.len() >= self.bridges.max
            || self.bridges.answered.contains_key(&(from, bridge))
        {
            return false;
        }
        let v = self.new_conn();
        // A principal no registration has (slot u32::MAX): it never listens or accepts.
        self.core.insert(
            v,
            RelayPeer {
                slot: u32::MAX,
                key: requester,
            },
        );
        self.core.open(v, 0, target, ticket, deadline_ms);
        self.bridges.answered.insert((from, bridge), v);
        self.bridges
            .ends
            .insert(v, End::new(bridge, false, Some(from), ticket, now_ms));
        true
    }

    /// Whether this relay could take one more bridge.
    pub(super) fn bridge_room(&self) -> bool {
        self.bridges.ends.len() < self.bridges.max && self.bridges.me.is_some()
    }

    /// A frame of bridge `bridge` from instance `from`, played into the hub.
    pub(super) fn on_bridged(
        &mut self,
        from: Instance,
        bridge: u64,
        to_origin: bool,
        frame: Frame<'_>,
        now_ms: u64,
    ) -> Counts {
        let mut counts = Counts::default();
        let conn = if to_origin {
            self.bridges.opened.get(&bridge).copied()
        } else {
            self.bridges.answered.get(&(from, bridge)).copied()
        };
        let is_close = matches!(frame, Frame::Close { .. });
        let Some(v) = conn else {
            // Gone here (ended, expired): say so, unless it is a Close already.
            if !is_close
                && !self
                    .bridges
                    .close_to(from, bridge, !to_origin, CloseReason::Gone)
            {
                counts.dropped += 1;
            }
            return counts;
        };
        let Some(end) = self.bridges.ends.get_mut(&v) else {
            return counts;
        };
        end.last_ms.set(now_ms);
        if to_origin && end.remote.is_none() {
            // The first answer: the target accepted there.
            if !matches!(frame, Frame::Opened { .. }) {
                return counts;
            }
            end.remote = Some(from);
            let ticket = end.ticket;
            match self.core.accept(v, 0, ticket) {
                Accepted::Paired(opened) => {
                    if let Some(e) = self.bridges.ends.get_mut(&v) {
                        e.paired = true;
                    }
                    self.send(opened);
                    counts.paired += 1;
                }
                Accepted::Closed(reason) => {
                    if let Some(e) = self.bridges.ends.get(&v) {
                        e.ended.set(true);
                    }
                    if !self.bridges.close_to(from, bridge, false, reason) {
                        counts.dropped += 1;
                    }
                }
            }
            return counts;
        }
        if end.remote != Some(from) {
            // A second answer to one open: the first one won.
            if !is_close
                && !self
                    .bridges
                    .close_to(from, bridge, false, CloseReason::Normal)
            {
                counts.dropped += 1;
            }
            return counts;
        }
        match frame {
            Frame::Data { payload, .. } => {
                if let Some(o) = self.core.data(v, 0, payload)
                    && !self.send(o)
                {
                    counts.dropped += 1;
                }
            }
            Frame::Close { reason, .. } => {
                end.ended.set(true);
                if let Some(o) = self.core.close(v, 0, reason) {
                    self.send(o);
                    counts.paired -= 1;
                }
            }
            // `Opened` twice, or toward the answerer: ignored.
            _ => {}
        }
        counts
    }

    /// Lets go of bridges that ended, never paired in time, or fell silent; returns how
    /// many paired sessions that ended.
    pub(super) fn sweep_bridges(&mut self, now_ms: u64, accept_ms: u64) -> usize {
        let idle = self.bridges.idle_ms;
        let done: Vec<ConnId> = self
            .bridges
            .ends
            .iter()
            .filter(|(_, e)| {
                e.ended.get()
                    || (!e.paired
                        && e.origin
                        && now_ms.saturating_sub(e.created_ms) > accept_ms + GRACE_MS)
                    || now_ms.saturating_sub(e.last_ms.get()) > idle
            })
            .map(|(v, _)| *v)
            .collect();
        let mut ended = 0;
        for v in done {
            let Some(e) = self.bridges.ends.remove(&v) else {
                continue;
            };
            if e.origin {
                self.bridges.opened.remove(&e.bridge);
            } else if let Some(r) = e.remote {
                self.bridges.answered.remove(&(r, e.bridge));
            }
            // What stays on this side hears `gone`; the other instance too.
            let (out, paired) = self.core.remove(v);
            for o in out {
                self.send(o);
            }
            ended += paired;
            if !e.ended.get()
                && let Some(r) = e.remote
            {
                self.bridges
                    .close_to(r, e.bridge, !e.origin, CloseReason::Gone);
            }
        }
        ended
    }
}

#[cfg(test)]
mod tests;

//! Messages between the instances of one phone book over Redis pub/sub (issue 13), for the
//! two things that cannot be shared as records: a peer's keep-alive mapping (a NAT lets the
//! forward of a punch request in only from the address its keep-alives reach) and a peer's
//! relay connection.
//!
//! - **Punch requests.** An instance that gets a punch request for a target it may show the
//!   requester but whose keep-alives go to another instance hands the request to every
//!   instance ([`codec::Message::Punch`]); the one holding the mapping sends the forward from
//!   its own socket, tagged with the target's token tag (tokens are shared). The requester
//!   is answered `forwarded` at once: the status only ever helps diagnostics, the peer's
//!   timers do not depend on it.
//! - **Relay sessions.** An instance whose relay gets an open for a target that neither
//!   listens there nor keeps alive with it asks every instance
//!   ([`codec::Message::RelayOpen`]); one that can tell the target (a listening connection, or
//!   a UDP relay call through its mapping) does so with a ticket of its own, and the session is
//!   **bridged**: each instance keeps its half, and `Opened`, `Data` and `Close` frames cross
//!   over the bus ([`codec::Message::Bridged`]). The first instance to answer wins; a later
//!   one is told `Close`.
//!
//! Every instance subscribes to `{P}:bus` (to all) and `{P}:bus:<its id>` (to it). Both
//! sides re-check the lookup rules with their own table, so a message never widens who may
//! reach whom. Everything is bounded: [`QUEUE`] messages wait for Redis, [`INBOX`] wait for
//! the relay, and bridges count against `relay-max-connections`. A message that cannot be
//! queued is dropped and counted; QUIC and the peers' retries recover, as from a lost
//! datagram.

pub mod codec;
#[cfg(feature = "redis")]
pub(crate) mod link;

use codec::{Instance, Message};

/// Messages waiting to be published.
pub const QUEUE: usize = 4096;
/// Relay messages from the bus waiting for the relay.
pub const INBOX: usize = 4096;
/// Messages an [`App`](crate::api::App) call may leave in [`Side::outbox`] (the server
/// drains it after each call).
pub const MAX_OUTBOX: usize = 4;

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Every instance (`{P}:bus`).
    All,
    /// One instance (`{P}:bus:<id>`).
    To(Instance),
}

/// What the sans-I/O [`App`](crate::api::App) knows of the bus.
#[derive(Debug)]
pub struct Side {
    /// This instance.
    pub me: Instance,
    /// Subscribed: messages can reach the other instances and their answers reach us.
    pub up: bool,
    /// Messages to publish, drained by the server after each call.
    pub outbox: Vec<(Dest, Vec<u8>)>,
}

impl Side {
    /// A side for a new instance, not connected yet.
    pub fn new() -> Self {
        Side {
            me: Instance::random(),
            up: false,
            outbox: Vec::new(),
        }
    }

    /// Queues `msg` for `dest` if the bus is up and the outbox has room.
    pub fn push(&mut self, dest: Dest, msg: &Message<'_>) -> bool {
        if !self.up || self.outbox.len() >= MAX_OUTBOX {
            return false;
        }
        self.outbox.push((dest, msg.encode(self.me)));
        true
    }
}

impl Default for Side {
    fn default() -> Self {
        Self::new()
    }
}

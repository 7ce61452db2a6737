//! One record of the table, laid out flat (160 bytes) so that a million fit in the budget.

use phonebook_proto::{LookupId, Register, Visibility};
use std::net::{IpAddr, Ipv6Addr};

/// `friends` value of a slot without a friend list.
pub const NO_FRIENDS: u32 = u32::MAX;

/// State of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Unused.
    Free,
    /// Served to lookups until its deadline.
    Live,
    /// Not served; the name stays bound to `key` and `timestamp` until its deadline.
    Retained,
}

/// A record. Only the binding (id, key, visibility, timestamp) is meaningful when `Retained`.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The player's blinded name (the table never holds a name).
    pub id: LookupId,
    /// Current state.
    pub state: SlotState,
    /// Who may look the owner up.
    pub visibility: Visibility,
    /// The owner's port.
    pub port: u16,
    /// The owner's key.
    pub key: [u8; 32],
    /// The owner's signature over the registration.
    pub signature: [u8; 64],
    /// Last accepted signed timestamp (registration or unregistration), Unix ms.
    pub timestamp: u64,
    /// The address handed out, as IPv6 octets (IPv4 mapped).
    pub ip: [u8; 16],
    /// Index in the friend pool, or `NO_FRIENDS`.
    pub friends: u32,
}

impl Slot {
    /// A free slot.
    pub const EMPTY: Slot = Slot {
        id: LookupId([0; 32]),
        state: SlotState::Free,
        visibility: Visibility::Public,
        port: 0,
        key: [0; 32],
        signature: [0; 64],
        timestamp: 0,
        ip: [0; 16],
        friends: NO_FRIENDS,
    };

    /// Builds a slot from its parts (snapshot restore).
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        id: LookupId,
        state: SlotState,
        visibility: Visibility,
        port: u16,
        key: [u8; 32],
        signature: [u8; 64],
        timestamp: u64,
        ip: IpAddr,
    ) -> Option<Slot> {
        let mut s = Slot::EMPTY;
        s.id = id;
        s.state = state;
        s.visibility = visibility;
        s.port = port;
        s.key = key;
        s.signature = signature;
        s.timestamp = timestamp;
        s.ip = ip_octets(ip);
        Some(s)
    }

    pub(super) fn fill(&mut self, req: &Register, ip: IpAddr, friends: u32) {
        self.id = req.id;
        self.state = SlotState::Live;
        self.visibility = req.visibility;
        self.port = req.port;
        self.key = *req.key.as_bytes();
        self.signature = *req.signature.as_bytes();
        self.timestamp = req.timestamp;
        self.ip = ip_octets(ip);
        self.friends = friends;
    }

    /// Keeps only the binding: the id, the key, the last timestamp, and whether the record was
    /// public (a retained public binding keeps other keys from registering the id publicly).
    pub(super) fn retain(&mut self) {
        self.state = SlotState::Retained;
        self.port = 0;
        self.ip = [0; 16];
        self.signature = [0; 64];
        self.friends = NO_FRIENDS;
    }

    /// The address handed out (IPv4-mapped folded to IPv4).
    pub fn ip(&self) -> IpAddr {
        Ipv6Addr::from(self.ip).to_canonical()
    }
}

fn ip_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

//! The phone book's table: name -> signed record, with TTL, key binding and retention.
//!
//! Sans-IO: no sockets, no files, no clock. Every method that depends on time takes `now`, in
//! whole seconds on a monotonic clock (the server's start is 0). Memory is fixed at start: the
//! slot array is reserved for `capacity` records and never grows past it; friend lists draw from
//! a separate, bounded pool.
//!
//! A slot is `Free`, `Live` (served to lookups until its deadline) or `Retained` (expired or
//! unregistered, but the name stays bound to its key, with its last timestamp, until the
//! retention deadline). Expiry is incremental: [`Table::sweep`] checks a bounded number of
//! slots per call, and lookups never serve a record past its deadline even before the sweep
//! reaches it.

mod friends;
mod quota;
mod slot;

pub use friends::FriendStore;
pub use quota::{Charge, QuotaError, QuotaLimits, Quotas, source_key};
pub use slot::{Slot, SlotState};

use hashbrown::HashTable;
use phonebook_proto::name::NAME_MAX_LEN;
use phonebook_proto::{Candidate, FriendKey, PlayerName, Register, Unregister, Visibility};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;

/// Why a registration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// The name is bound to another key (live or retained).
    KeyConflict,
    /// The timestamp is not newer than the last one accepted for the name.
    Replayed,
    /// No room for a new name: every slot holds a live record.
    CapacityFull,
    /// The friend-key pool is exhausted.
    FriendPoolFull,
    /// The registration would break a per-address or per-key quota.
    Quota(QuotaError),
}

/// Why an unregistration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnregisterError {
    /// The name is not live.
    NotFound,
    /// The name is bound to another key.
    KeyConflict,
    /// The timestamp is not newer than the last one accepted.
    Replayed,
}

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// The slot now holding the record (tokens name it).
    pub slot: u32,
    /// True if the name was not live before.
    pub created: bool,
}

/// Limits of a table.
#[derive(Debug, Clone, Copy)]
pub struct TableLimits {
    /// Most slots (live plus retained).
    pub capacity: u32,
    /// Most friend keys across all records.
    pub friend_keys_total: u32,
    /// Per-address and per-key quotas.
    pub quotas: QuotaLimits,
}

/// The table. See the module docs.
#[derive(Debug)]
pub struct Table {
    slots: Vec<Slot>,
    /// Per slot: the second at which the current state ends (0 for free slots).
    deadline: Vec<u32>,
    index: HashTable<u32>,
    /// Per slot: its record handle (see [`record_handle`]); 0 for free slots.
    handle: Vec<u32>,
    /// Slot ids by record handle (several when handles collide).
    by_handle: HashTable<u32>,
    hasher: RandomState,
    free: Vec<u32>,
    friends: FriendStore,
    /// Signed address candidates of the slots whose registration listed some (record
    /// version 2): at most one entry per slot, so bounded by the capacity; slots without
    /// candidates cost nothing here.
    candidates: std::collections::HashMap<u32, Box<[Candidate]>>,
    quotas: Quotas,
    capacity: u32,
    live: u32,
    retained: u32,
    sweep_cursor: u32,
    evict_cursor: u32,
    changes: u64,
    hold_frees: bool,
}

fn canonical(name: &[u8]) -> ([u8; NAME_MAX_LEN], usize) {
    let mut buf = [0u8; NAME_MAX_LEN];
    let n = name.len().min(NAME_MAX_LEN);
    for (d, s) in buf.iter_mut().zip(&name[..n]) {
        *d = s.to_ascii_lowercase();
    }
    (buf, n)
}

/// The record handle of a name: the first 4 bytes of SHA-256 over a domain tag and the
/// lowercase name. Lookup tokens and UDP messages name a registration by it (the field that
/// held the slot number before issue 13): it is the same at every instance that shares the
/// records, which slot numbers are not. Handles may collide; a token names its
/// registration's timestamp too, and its tag is checked against that registration's key.
pub fn record_handle(name: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let (buf, n) = canonical(name.as_bytes());
    let mut h = Sha256::new();
    h.update(b"pb-record-handle-v1\0");
    h.update(&buf[..n]);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Spreads a handle over the 64 bits hashbrown uses (its tag bytes come from the top ones).
fn handle_hash(h: u32) -> u64 {
    u64::from(h).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Table {
    /// Reserves memory for `limits.capacity` records.
    pub fn new(limits: TableLimits) -> Self {
        let cap = limits.capacity as usize;
        Table {
            slots: Vec::with_capacity(cap),
            deadline: Vec::with_capacity(cap),
            index: HashTable::with_capacity(cap),
            handle: Vec::with_capacity(cap),
            by_handle: HashTable::with_capacity(cap),
            hasher: RandomState::new(),
            free: Vec::new(),
            friends: FriendStore::new(limits.friend_keys_total),
            candidates: std::collections::HashMap::new(),
            quotas: Quotas::new(limits.quotas),
            capacity: limits.capacity,
            live: 0,
            retained: 0,
            sweep_cursor: 0,
            evict_cursor: 0,
            changes: 0,
            hold_frees: false,
        }
    }

    /// Live records.
    pub fn live(&self) -> u32 {
        self.live
    }

    /// Retained bindings.
    pub fn retained(&self) -> u32 {
        self.retained
    }

    /// Capacity in slots.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Counts registrations and unregistrations: a snapshot is due when it moved.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Slots in use or once used (the range a snapshot walks).
    pub fn slot_count(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Friend keys stored.
    pub fn friend_keys(&self) -> u32 {
        self.friends.total_keys()
    }

    /// The per-address and per-key accounting.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// What the record in `id` is charged, if it is live (even past its deadline, until the
    /// sweep retires it: it still holds its friend keys until then).
    fn charge_of(&self, id: u32) -> Option<Charge> {
        let s = self.slots.get(id as usize)?;
        (s.state == SlotState::Live).then(|| Charge {
            source: self.quotas.source_of(s.ip()),
            key: s.key,
            friend_keys: self
                .friends
                .get(s.friends)
                .map_or(0, |(k, _)| k.len() as u32),
        })
    }

    fn release(&mut self, id: u32) {
        if let Some(c) = self.charge_of(id) {
            self.quotas.release(&c);
        }
    }

    fn hash(&self, canon: &[u8]) -> u64 {
        self.hasher.hash_one(canon)
    }

    /// The slot bound to `name` (any case), live or retained.
    pub fn find(&self, name: &str) -> Option<u32> {
        let (buf, n) = canonical(name.as_bytes());
        let canon = &buf[..n];
        let h = self.hash(canon);
        self.index
            .find(h, |&id| self.slots[id as usize].name_eq_canonical(canon))
            .copied()
    }

    /// The slot, if it exists.
    pub fn slot(&self, id: u32) -> Option<&Slot> {
        self.slots.get(id as usize)
    }

    /// The record handle of slot `id` (0 if out of range).
    pub fn handle(&self, id: u32) -> u32 {
        self.handle.get(id as usize).copied().unwrap_or(0)
    }

    /// The slot whose record has handle `handle` and the signed `timestamp`, if live at
    /// `now` (what a lookup token or a UDP message names).
    pub fn live_by_handle(&self, handle: u32, timestamp: u64, now: u32) -> Option<(u32, &Slot)> {
        self.by_handle
            .iter_hash(handle_hash(handle))
            .copied()
            .filter(|&id| self.handle[id as usize] == handle)
            .find_map(|id| match self.live_slot(id, now) {
                Some((s, _)) if s.timestamp == timestamp => Some((id, s)),
                _ => None,
            })
    }

    fn index_handle(&mut self, id: u32, name: &str) {
        let h = record_handle(name);
        self.handle[id as usize] = h;
        let handles = &self.handle;
        self.by_handle
            .insert_unique(handle_hash(h), id, |&i| handle_hash(handles[i as usize]));
    }

    fn unindex_handle(&mut self, id: u32) {
        let h = self.handle[id as usize];
        if let Ok(e) = self.by_handle.find_entry(handle_hash(h), |&i| i == id) {
            e.remove();
        }
        self.handle[id as usize] = 0;
    }

    /// The record of `id` if it is live at `now`, with its seconds left.
    pub fn live_slot(&self, id: u32, now: u32) -> Option<(&Slot, u32)> {
        let s = self.slots.get(id as usize)?;
        let d = self.deadline[id as usize];
        (s.state == SlotState::Live && d > now).then(|| (s, d - now))
    }

    /// The live record of `name` at `now`, with its seconds left.
    pub fn lookup(&self, name: &str, now: u32) -> Option<(u32, &Slot, u32)> {
        let id = self.find(name)?;
        self.live_slot(id, now).map(|(s, left)| (id, s, left))
    }

    /// The friend list of a slot (sorted keys) and its digest.
    pub fn friends_of(&self, slot: &Slot) -> Option<(&[[u8; 32]], &[u8; 32])> {
        self.friends.get(slot.friends)
    }

    /// Whether `requester` may learn the address in `slot`.
    pub fn allows(&self, slot: &Slot, requester: &[u8; 32]) -> bool {
        match slot.visibility {
            Visibility::Public => true,
            Visibility::Friends => {
                slot.key == *requester
                    || self
                        .friends
                        .get(slot.friends)
                        .is_some_and(|(keys, _)| keys.binary_search(requester).is_ok())
            }
        }
    }

    /// Applies a verified registration. `ip` is the address to hand out; `ttl` in seconds.
    pub fn register(
        &mut self,
        req: &Register,
        ip: IpAddr,
        now: u32,
        ttl: u32,
    ) -> Result<Registered, RegisterError> {
        let existing = self.find(req.name.as_str());
        if let Some(id) = existing {
            let s = &self.slots[id as usize];
            if s.key != *req.key.as_bytes() {
                return Err(RegisterError::KeyConflict);
            }
            if req.timestamp <= s.timestamp {
                return Err(RegisterError::Replayed);
            }
        }
        let old_charge = existing.and_then(|id| self.charge_of(id));
        let new_charge = Charge {
            source: self.quotas.source_of(ip),
            key: *req.key.as_bytes(),
            friend_keys: match req.visibility {
                Visibility::Public => 0,
                Visibility::Friends => req.friends.len() as u32,
            },
        };
        self.quotas
            .check(old_charge.as_ref(), &new_charge)
            .map_err(RegisterError::Quota)?;
        let friends = match req.visibility {
            Visibility::Public => slot::NO_FRIENDS,
            Visibility::Friends => {
                let old = existing.map_or(slot::NO_FRIENDS, |id| self.slots[id as usize].friends);
                self.friends
                    .replace(old, &req.friends, req.friends_digest())
                    .ok_or(RegisterError::FriendPoolFull)?
            }
        };
        let (id, created) = match existing {
            Some(id) => {
                let s = &mut self.slots[id as usize];
                if req.visibility == Visibility::Public {
                    self.friends.remove(s.friends);
                }
                let created = s.state != SlotState::Live || self.deadline[id as usize] <= now;
                if s.state == SlotState::Retained {
                    self.retained -= 1;
                    self.live += 1;
                }
                (id, created)
            }
            None => match self.allocate() {
                Some(id) => {
                    self.live += 1;
                    (id, true)
                }
                None => {
                    self.friends.remove(friends);
                    return Err(RegisterError::CapacityFull);
                }
            },
        };
        if let Some(old) = old_charge {
            self.quotas.release(&old);
        }
        self.quotas.charge(&new_charge);
        let s = &mut self.slots[id as usize];
        s.fill(req, ip, friends);
        self.set_candidates(id, &req.candidates);
        self.deadline[id as usize] = now.saturating_add(ttl);
        if existing.is_none() {
            let canon = canonical(req.name.as_str().as_bytes());
            let h = self.hash(&canon.0[..canon.1]);
            let slots = &self.slots;
            let hasher = &self.hasher;
            self.index.insert_unique(h, id, |&i| {
                let c = slots[i as usize].canonical();
                hasher.hash_one(&c.0[..c.1])
            });
            self.index_handle(id, req.name.as_str());
        }
        self.changes += 1;
        Ok(Registered { slot: id, created })
    }

    /// Applies a verified unregistration: the record stops being served and its binding is
    /// retained for `retention` seconds.
    pub fn unregister(
        &mut self,
        req: &Unregister,
        now: u32,
        retention: u32,
    ) -> Result<(), UnregisterError> {
        let id = self
            .find(req.name.as_str())
            .ok_or(UnregisterError::NotFound)?;
        let s = &self.slots[id as usize];
        if s.key != *req.key.as_bytes() {
            return Err(UnregisterError::KeyConflict);
        }
        if s.state != SlotState::Live || self.deadline[id as usize] <= now {
            return Err(UnregisterError::NotFound);
        }
        if req.timestamp <= s.timestamp {
            return Err(UnregisterError::Replayed);
        }
        self.slots[id as usize].timestamp = req.timestamp;
        self.retire(id, now, retention);
        self.changes += 1;
        Ok(())
    }

    /// Live -> Retained (or Free when `retention` is 0).
    fn retire(&mut self, id: u32, now: u32, retention: u32) {
        if retention == 0 && !self.hold_frees {
            self.free_slot(id);
            return;
        }
        self.release(id);
        self.live -= 1;
        let s = &mut self.slots[id as usize];
        self.friends.remove(s.friends);
        s.retain();
        self.retained += 1;
        self.deadline[id as usize] = now.saturating_add(retention);
    }

    fn free_slot(&mut self, id: u32) {
        self.release(id);
        let s = &self.slots[id as usize];
        match s.state {
            SlotState::Live => self.live -= 1,
            SlotState::Retained => self.retained -= 1,
            SlotState::Free => return,
        }
        let canon = s.canonical();
        let h = self.hash(&canon.0[..canon.1]);
        if let Ok(e) = self.index.find_entry(h, |&i| i == id) {
            e.remove();
        }
        self.unindex_handle(id);
        let s = &mut self.slots[id as usize];
        self.friends.remove(s.friends);
        *s = Slot::EMPTY;
        self.deadline[id as usize] = 0;
        self.candidates.remove(&id);
        self.free.push(id);
    }

    fn set_candidates(&mut self, id: u32, list: &[Candidate]) {
        if list.is_empty() {
            self.candidates.remove(&id);
        } else {
            self.candidates.insert(id, list.into());
        }
    }

    /// The signed candidates of a slot's registration (empty for version 1).
    pub fn candidates_of(&self, id: u32) -> &[Candidate] {
        self.candidates.get(&id).map_or(&[], |c| c)
    }

    fn allocate(&mut self) -> Option<u32> {
        if let Some(id) = self.free.pop() {
            return Some(id);
        }
        if (self.slots.len() as u32) < self.capacity {
            self.slots.push(Slot::EMPTY);
            self.deadline.push(0);
            self.handle.push(0);
            return Some(self.slots.len() as u32 - 1);
        }
        // Full of live and retained records: a retained binding gives way to a new name.
        if self.retained == 0 {
            return None;
        }
        let n = self.slots.len() as u32;
        for _ in 0..n {
            let id = self.evict_cursor;
            self.evict_cursor = (self.evict_cursor + 1) % n;
            if self.slots[id as usize].state == SlotState::Retained {
                log::warn!("audit: table full, evicting a retained name binding");
                self.free_slot(id);
                return self.free.pop();
            }
        }
        None
    }

    /// Expires what is due among the next `budget` slots; returns how many changed state.
    /// Called often with a small budget, it passes over the whole table without a pause.
    pub fn sweep(&mut self, now: u32, budget: u32, retention: u32) -> u32 {
        let n = self.slots.len() as u32;
        if n == 0 {
            return 0;
        }
        let mut changed = 0;
        for _ in 0..budget.min(n) {
            let id = self.sweep_cursor;
            self.sweep_cursor = (self.sweep_cursor + 1) % n;
            let d = self.deadline[id as usize];
            if d > now {
                continue;
            }
            match self.slots[id as usize].state {
                SlotState::Free => {}
                SlotState::Retained if self.hold_frees => {}
                SlotState::Live => {
                    // Retention counts from the expiry, not from when the sweep got here.
                    let left = (d.saturating_add(retention)).saturating_sub(now);
                    if left == 0 && !self.hold_frees {
                        self.free_slot(id);
                    } else {
                        self.retire(id, now, left);
                    }
                    changed += 1;
                }
                SlotState::Retained => {
                    self.free_slot(id);
                    changed += 1;
                }
            }
        }
        changed
    }

    /// While on, no occupied slot becomes free (expired bindings wait), so a snapshot that
    /// fixed its slot list at the start finds a record in each of them at the end. Evicting a
    /// retained binding for a new name is still allowed: the slot is reused at once.
    pub fn hold_frees(&mut self, on: bool) {
        self.hold_frees = on;
    }

    /// Ids of the slots holding a record (live or retained), in order.
    pub fn occupied(&self) -> Vec<u32> {
        (0..self.slots.len() as u32)
            .filter(|&i| self.slots[i as usize].state != SlotState::Free)
            .collect()
    }

    /// Seconds until the deadline of `id` (0 if past).
    pub fn remaining(&self, id: u32, now: u32) -> u32 {
        self.deadline
            .get(id as usize)
            .map_or(0, |d| d.saturating_sub(now))
    }

    /// Puts a record back at a given slot, from a snapshot. Returns false (and changes nothing)
    /// if the slot is out of range or taken, or the name is already present.
    #[allow(clippy::too_many_arguments)] // one per field of a snapshot record
    pub fn restore(
        &mut self,
        id: u32,
        slot: Slot,
        friends: &[FriendKey],
        friends_digest: [u8; 32],
        candidates: &[Candidate],
        remaining: u32,
        now: u32,
    ) -> bool {
        if id >= self.capacity || slot.state == SlotState::Free || remaining == 0 {
            return false;
        }
        if self.find(slot.name_str()).is_some() {
            return false;
        }
        while (self.slots.len() as u32) <= id {
            self.free.push(self.slots.len() as u32);
            self.slots.push(Slot::EMPTY);
            self.deadline.push(0);
            self.handle.push(0);
        }
        if self.slots[id as usize].state != SlotState::Free {
            return false;
        }
        let mut slot = slot;
        slot.friends = slot::NO_FRIENDS;
        if slot.state == SlotState::Live && slot.visibility == Visibility::Friends {
            match self
                .friends
                .replace(slot::NO_FRIENDS, friends, friends_digest)
            {
                Some(f) => slot.friends = f,
                None => return false,
            }
        }
        self.free.retain(|&f| f != id);
        match slot.state {
            SlotState::Live => self.live += 1,
            SlotState::Retained => self.retained += 1,
            SlotState::Free => {}
        }
        let canon = slot.canonical();
        let h = self.hash(&canon.0[..canon.1]);
        self.slots[id as usize] = slot;
        self.deadline[id as usize] = now.saturating_add(remaining);
        self.set_candidates(id, candidates);
        if let Some(c) = self.charge_of(id) {
            self.quotas.charge(&c);
        }
        let slots = &self.slots;
        let hasher = &self.hasher;
        self.index.insert_unique(h, id, |&i| {
            let c = slots[i as usize].canonical();
            hasher.hash_one(&c.0[..c.1])
        });
        let name = self.slots[id as usize].name_str().to_owned();
        self.index_handle(id, &name);
        true
    }

    /// Puts a record in, replacing whatever `slot`'s name held (a record that another phone
    /// book sharing the store wrote). Returns the slot used, or `None` (nothing changed
    /// but the old record's removal) when no slot or no friend-pool room is left.
    pub fn put(
        &mut self,
        slot: Slot,
        friends: &[FriendKey],
        friends_digest: [u8; 32],
        candidates: &[Candidate],
        remaining: u32,
        now: u32,
    ) -> Option<u32> {
        // The same slot again for a known name, so a snapshot being written (which fixed its
        // slot list) still finds a record there.
        let id = match self.find(slot.name_str()) {
            Some(old) => {
                self.free_slot(old);
                old
            }
            None => {
                let id = self.allocate()?;
                // `restore` takes its slot from the free list itself.
                self.free.push(id);
                id
            }
        };
        if self.restore(
            id,
            slot,
            friends,
            friends_digest,
            candidates,
            remaining,
            now,
        ) {
            self.changes += 1;
            Some(id)
        } else {
            None
        }
    }

    /// Frees the slot of `name` if it holds one (a record another instance put back, and
    /// this one must roll back). Returns whether it did.
    pub fn forget(&mut self, name: &str) -> bool {
        match self.find(name) {
            Some(id) => {
                self.free_slot(id);
                self.changes += 1;
                true
            }
            None => false,
        }
    }

    /// Empties the table (after a snapshot failed its checksum half-way through loading).
    pub fn clear(&mut self) {
        let limits = TableLimits {
            capacity: self.capacity,
            friend_keys_total: self.friends.budget(),
            quotas: self.quotas.limits(),
        };
        *self = Table::new(limits);
    }

    /// The player name of a slot, validated.
    pub fn name_of(&self, id: u32) -> Option<PlayerName> {
        PlayerName::parse(self.slots.get(id as usize)?.name_str()).ok()
    }
}

#[cfg(test)]
mod tests;

//! The phone book's table: (lookup id, key) -> signed record, with TTL, binding and retention.
//!
//! A record is identified by the player's blinded name (its [`LookupId`]) together with the
//! owner's key: any number of keys may hold a friends-only record under one id, so that
//! registering never tells a stranger whether someone else holds the id (docs/PROTOCOL.md
//! "Binding"). A *public* record binds its id: while it lives and for the retention after, no
//! other key may register the id publicly.
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
use phonebook_proto::{Candidate, FriendKey, LookupId, Register, Unregister, Visibility};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;

/// Most records with one lookup id that a lookup or a registration examines. Records under one
/// id beyond it (only someone registering one id with thousands of keys makes them) are not
/// found by a lookup and not checked for a public binding; the work per request stays bounded.
pub const MAX_SAME_ID: usize = 1024;

/// Why a registration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// A public registration for an id that another key holds publicly (live or retained).
    KeyConflict,
    /// The timestamp is not newer than the last one accepted for the record.
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
    /// This key holds no live record under the id.
    NotFound,
    /// The timestamp is not newer than the last one accepted.
    Replayed,
}

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// The slot now holding the record (tokens name it).
    pub slot: u32,
    /// True if the record was not live before.
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

/// The record handle of `key`'s record under `id`: the first 4 bytes of SHA-256 over a domain
/// tag, the lookup id and the key. Lookup tokens and UDP messages name a registration by it
/// (the field that held the slot number before issue 13): it is the same at every instance
/// that shares the records, which slot numbers are not. Handles may collide; a token names its
/// registration's timestamp too, and its tag is checked against that registration's key.
pub fn record_handle(id: &LookupId, key: &[u8; 32]) -> u32 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"pb-record-handle-v2\0");
    h.update(id.as_bytes());
    h.update(key);
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

    fn hash(&self, id: &LookupId) -> u64 {
        self.hasher.hash_one(id.as_bytes())
    }

    /// The slots holding a record (live or retained) under `id`, at most [`MAX_SAME_ID`].
    fn same_id(&self, id: &LookupId) -> impl Iterator<Item = u32> + '_ {
        let id = *id;
        self.index
            .iter_hash(self.hash(&id))
            .copied()
            .filter(move |&i| self.slots[i as usize].id == id)
            .take(MAX_SAME_ID)
    }

    /// The slot of `key`'s record under `id`, live or retained.
    pub fn find(&self, id: &LookupId, key: &[u8; 32]) -> Option<u32> {
        self.same_id(id)
            .find(|&i| self.slots[i as usize].key == *key)
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

    fn index_handle(&mut self, id: u32) {
        let s = &self.slots[id as usize];
        let h = record_handle(&s.id, &s.key);
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

    /// The live record under `id` at `now` that `requester` may see, with its seconds left:
    /// the requester's own if it has one, else the public one if there is one, else the first
    /// friends-only record that lists the requester. `None` both when nothing is registered and
    /// when nothing is visible: the caller cannot tell them apart, and neither can the requester.
    pub fn lookup(
        &self,
        id: &LookupId,
        requester: &[u8; 32],
        now: u32,
    ) -> Option<(u32, &Slot, u32)> {
        let (mut public, mut friend) = (None, None);
        for i in self.same_id(id) {
            let Some((s, left)) = self.live_slot(i, now) else {
                continue;
            };
            if s.key == *requester {
                return Some((i, s, left));
            }
            if s.visibility == Visibility::Public {
                public = public.or(Some((i, s, left)));
            } else if friend.is_none() && self.allows(s, requester) {
                friend = Some((i, s, left));
            }
        }
        public.or(friend)
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
        let key = req.key.as_bytes();
        let existing = self.find(&req.id, key);
        if req.visibility == Visibility::Public
            && self.same_id(&req.id).any(|i| {
                let s = &self.slots[i as usize];
                s.key != *key && s.visibility == Visibility::Public
            })
        {
            return Err(RegisterError::KeyConflict);
        }
        if let Some(id) = existing
            && req.timestamp <= self.slots[id as usize].timestamp
        {
            return Err(RegisterError::Replayed);
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
            self.insert_index(id);
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
            .find(&req.id, req.key.as_bytes())
            .ok_or(UnregisterError::NotFound)?;
        let s = &self.slots[id as usize];
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
        let h = self.hash(&s.id);
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

    /// Indexes slot `id` by its lookup id and by its record handle.
    fn insert_index(&mut self, id: u32) {
        let h = self.hash(&self.slots[id as usize].id);
        let slots = &self.slots;
        let hasher = &self.hasher;
        self.index
            .insert_unique(h, id, |&i| hasher.hash_one(slots[i as usize].id.as_bytes()));
        self.index_handle(id);
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
    /// if the slot is out of range or taken, or the key already has a record under the id.
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
        if self.find(&slot.id, &slot.key).is_some() {
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
        self.slots[id as usize] = slot;
        self.deadline[id as usize] = now.saturating_add(remaining);
        self.set_candidates(id, candidates);
        if let Some(c) = self.charge_of(id) {
            self.quotas.charge(&c);
        }
        self.insert_index(id);
        true
    }

    /// Puts a record in, replacing what `slot`'s key held under its id (a record that another
    /// phone book sharing the store wrote). Returns the slot used, or `None` (nothing changed
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
        // The same slot again for a known record, so a snapshot being written (which fixed
        // its slot list) still finds a record there.
        let id = match self.find(&slot.id, &slot.key) {
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

    /// Frees the slot of `key`'s record under `id` if there is one (a record another instance
    /// put back, and this one must roll back). Returns whether it did.
    pub fn forget(&mut self, id: &LookupId, key: &[u8; 32]) -> bool {
        match self.find(id, key) {
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
}

#[cfg(test)]
mod tests;

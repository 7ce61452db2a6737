//! The bounded pool of friend lists, kept sorted so membership is a binary search.

use phonebook_proto::FriendKey;

use super::slot::NO_FRIENDS;

#[derive(Debug)]
struct List {
    digest: [u8; 32],
    keys: Box<[[u8; 32]]>,
}

/// Friend lists of all records, with a cap on the keys they hold together.
#[derive(Debug)]
pub struct FriendStore {
    lists: Vec<Option<List>>,
    free: Vec<u32>,
    total: u32,
    budget: u32,
}

impl FriendStore {
    /// A pool for at most `budget` keys.
    pub fn new(budget: u32) -> Self {
        FriendStore {
            lists: Vec::new(),
            free: Vec::new(),
            total: 0,
            budget,
        }
    }

    /// Keys held.
    pub fn total_keys(&self) -> u32 {
        self.total
    }

    /// The cap.
    pub fn budget(&self) -> u32 {
        self.budget
    }

    /// The sorted keys and digest of list `id`.
    pub fn get(&self, id: u32) -> Option<(&[[u8; 32]], &[u8; 32])> {
        let l = self.lists.get(id as usize)?.as_ref()?;
        Some((&l.keys, &l.digest))
    }

    /// Stores `keys`, with the `digest` their owner signed, in place of list `old` (or
    /// `NO_FRIENDS`). On `None` (budget exhausted) the old list is untouched.
    pub fn replace(&mut self, old: u32, keys: &[FriendKey], digest: [u8; 32]) -> Option<u32> {
        let old_len = self.get(old).map_or(0, |(k, _)| k.len() as u32);
        let new_total = self.total - old_len + keys.len() as u32;
        if new_total > self.budget {
            return None;
        }
        self.remove(old);
        let mut sorted: Vec<[u8; 32]> = keys.iter().map(|k| *k.as_bytes()).collect();
        sorted.sort_unstable();
        let list = List {
            digest,
            keys: sorted.into_boxed_slice(),
        };
        self.total += list.keys.len() as u32;
        Some(match self.free.pop() {
            Some(id) => {
                self.lists[id as usize] = Some(list);
                id
            }
            None => {
                self.lists.push(Some(list));
                self.lists.len() as u32 - 1
            }
        })
    }

    /// Frees list `id` (no-op for `NO_FRIENDS`).
    pub fn remove(&mut self, id: u32) {
        if id == NO_FRIENDS {
            return;
        }
        if let Some(slot) = self.lists.get_mut(id as usize)
            && let Some(l) = slot.take()
        {
            self.total -= l.keys.len() as u32;
            self.free.push(id);
        }
    }
}

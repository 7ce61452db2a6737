//! Nodes behind handles: an index into a table plus a generation, so a stale, forged or
//! double-freed handle finds nothing (a status code) instead of freed memory.

use std::sync::{Arc, Mutex, MutexGuard};

use peer::Node;

/// Most nodes alive at once in one process.
pub const MAX_NODES: usize = 64;

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    node: Option<Arc<Node>>,
}

static TABLE: Mutex<Vec<Slot>> = Mutex::new(Vec::new());

fn table() -> MutexGuard<'static, Vec<Slot>> {
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stores `node`; returns its handle (never 0), or `None` when the table is full.
pub fn insert(node: Node) -> Option<u64> {
    let mut t = table();
    let index = match t.iter().position(|s| s.node.is_none()) {
        Some(i) => i,
        None if t.len() < MAX_NODES => {
            t.push(Slot::default());
            t.len() - 1
        }
        None => return None,
    };
    let slot = &mut t[index];
    slot.generation = slot.generation.wrapping_add(1).max(1);
    slot.node = Some(Arc::new(node));
    Some(((index as u64) << 32) | u64::from(slot.generation))
}

fn split(handle: u64) -> (usize, u32) {
    ((handle >> 32) as usize, handle as u32)
}

/// The node behind `handle`, if it is alive.
pub fn get(handle: u64) -> Option<Arc<Node>> {
    let (index, generation) = split(handle);
    let t = table();
    let slot = t.get(index)?;
    (slot.generation == generation && generation != 0)
        .then(|| slot.node.clone())
        .flatten()
}

/// Takes the node out of the table (the handle is dead from now on).
pub fn remove(handle: u64) -> Option<Arc<Node>> {
    let (index, generation) = split(handle);
    let mut t = table();
    let slot = t.get_mut(index)?;
    if slot.generation != generation || generation == 0 {
        return None;
    }
    slot.node.take()
}

//! The facade's event stream: a bounded queue a caller drains without blocking (for a game
//! plugin, once per frame). When it is full, progress events are coalesced per operation (the
//! newest replaces the queued one); state events (registration, done, failed) are never dropped.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::transfer::hash::FileHash;

/// Default bound on queued events before progress is coalesced.
pub const DEFAULT_EVENT_QUEUE: usize = 256;

/// An operation's id: returned by every call that takes time, carried by its events.
pub type OpId = u64;

/// Where the node's phone-book registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Registered; the phone book holds us for this many seconds more.
    Registered {
        /// Seconds until the registration lapses unless renewed.
        ttl_secs: u64,
    },
    /// The last attempt failed; another follows after `retry_in_secs`.
    Retrying {
        /// Why the last attempt failed.
        reason: String,
        /// Consecutive failures so far.
        failures: u32,
        /// Seconds until the next attempt.
        retry_in_secs: u64,
    },
    /// Not registered (no phone book configured, or shut down).
    Off,
}

/// What a node reports to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The registration state changed.
    Registration(Registration),
    /// Bytes verified so far for a fetch (coalesced: only the newest may be seen).
    Progress {
        /// The operation.
        op: OpId,
        /// The file.
        hash: FileHash,
        /// Verified bytes on disk.
        done: u64,
        /// The file's size.
        total: u64,
    },
    /// A lookup found a player.
    Found {
        /// The operation.
        op: OpId,
        /// The player's key.
        key: crate::PeerId,
    },
    /// An operation finished.
    Done {
        /// The operation.
        op: OpId,
    },
    /// An operation failed or was cancelled.
    Failed {
        /// The operation.
        op: OpId,
        /// Why.
        reason: String,
    },
}

impl Event {
    fn progress_op(&self) -> Option<OpId> {
        match self {
            Event::Progress { op, .. } => Some(*op),
            _ => None,
        }
    }
}

/// The bounded, coalescing queue behind [`Event`]s.
#[derive(Debug)]
pub struct EventQueue {
    limit: usize,
    queue: Mutex<VecDeque<Event>>,
}

impl EventQueue {
    /// A queue that starts coalescing progress beyond `limit` events (at least 1).
    pub fn new(limit: usize) -> Self {
        EventQueue {
            limit: limit.max(1),
            queue: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        // A panic while holding the lock leaves a consistent queue: keep using it.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event. A progress event replaces any queued progress of the same operation
    /// (always, so progress never piles up); state events are always queued, even past the limit.
    /// A progress event that finds the queue full and nothing to replace is dropped: the next
    /// one, or the operation's Done/Failed, carries the news.
    pub fn push(&self, event: Event) {
        let mut q = self.lock();
        if let Some(op) = event.progress_op() {
            if let Some(slot) = q.iter_mut().find(|e| e.progress_op() == Some(op)) {
                *slot = event;
                return;
            }
            if q.len() >= self.limit {
                return;
            }
        }
        q.push_back(event);
    }

    /// The oldest event, without blocking.
    pub fn poll(&self) -> Option<Event> {
        self.lock().pop_front()
    }

    /// Events queued now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(op: OpId, done: u64) -> Event {
        Event::Progress {
            op,
            hash: FileHash::Sha1([0; 20]),
            done,
            total: 100,
        }
    }

    #[test]
    fn progress_is_coalesced_per_operation() {
        let q = EventQueue::new(8);
        for done in 0..50 {
            q.push(progress(1, done));
            q.push(progress(2, done * 2));
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.poll(), Some(progress(1, 49)));
        assert_eq!(q.poll(), Some(progress(2, 98)));
        assert_eq!(q.poll(), None);
    }

    #[test]
    fn state_events_survive_a_full_queue() {
        let q = EventQueue::new(2);
        q.push(progress(1, 1));
        q.push(progress(2, 1));
        q.push(progress(3, 1)); // full, nothing to replace: dropped
        for op in 1..=3 {
            q.push(Event::Done { op });
        }
        q.push(Event::Registration(Registration::Off));
        assert_eq!(q.len(), 6);
        let all: Vec<Event> = std::iter::from_fn(|| q.poll()).collect();
        assert_eq!(all[2], Event::Done { op: 1 });
        assert_eq!(all[5], Event::Registration(Registration::Off));
        assert!(q.is_empty());
    }
}

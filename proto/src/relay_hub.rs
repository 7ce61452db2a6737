//! The relay's pairing of sessions, free of I/O and of the clock: the part the phone book's
//! relay (pi-server) and a player's peer relay (the peer library) share. It knows connections
//! by id and the principal each is authenticated as (`K`: a registration for the phone book, a
//! key for a peer relay), their sessions, who listens, and the opens that wait for their
//! target. Each call says which frames go to which connection; the servers around it do the
//! TLS, the pacing, the counting and who may open what.

use std::collections::HashMap;
use std::hash::Hash;

use crate::relay::{CloseReason, Frame, TICKET_LEN};

/// A connection's number, chosen by the server.
pub type ConnId = u64;

/// A frame for a connection.
pub type Out = (ConnId, Vec<u8>);

#[derive(Debug)]
struct Conn<K> {
    key: K,
    /// Our session number -> the paired connection and its number (`None` while opening).
    sessions: HashMap<u32, Option<(ConnId, u32)>>,
}

#[derive(Debug)]
struct Pending<K> {
    from: ConnId,
    session: u32,
    target: K,
    deadline_ms: u64,
}

/// Why an open or accept cannot proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The connection used a session number it already uses: a protocol error (cut it off).
    Reused,
    /// It has as many sessions as it may: answer `Close` with [`CloseReason::Limit`].
    Limit,
}

/// What an accept did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Paired; the frame tells the requester (`Opened`).
    Paired(Out),
    /// Not paired: answer the accepting connection `Close` with this reason.
    Closed(CloseReason),
}

/// Sessions of authenticated connections; see the module docs.
#[derive(Debug)]
pub struct Hub<K> {
    conns: HashMap<ConnId, Conn<K>>,
    listeners: HashMap<K, ConnId>,
    pending: HashMap<[u8; TICKET_LEN], Pending<K>>,
    max_sessions: usize,
}

/// Encodes one frame.
pub fn encode(f: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    f.encode(&mut out);
    out
}

fn close(session: u32, reason: CloseReason) -> Vec<u8> {
    encode(&Frame::Close { session, reason })
}

impl<K: Copy + Eq + Hash> Hub<K> {
    /// An empty hub whose connections hold at most `max_sessions` sessions each.
    pub fn new(max_sessions: usize) -> Self {
        Self {
            conns: HashMap::new(),
            listeners: HashMap::new(),
            pending: HashMap::new(),
            max_sessions,
        }
    }

    /// Authenticated connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Opens waiting for their target.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds connection `id`, authenticated as `key`.
    pub fn insert(&mut self, id: ConnId, key: K) {
        self.conns.insert(
            id,
            Conn {
                key,
                sessions: HashMap::new(),
            },
        );
    }

    /// Connection `id` ends: its sessions close for the other sides (`Close` `gone`). Returns
    /// those frames and how many paired sessions ended.
    pub fn remove(&mut self, id: ConnId) -> (Vec<Out>, usize) {
        let sessions: Vec<u32> = self
            .conns
            .get(&id)
            .map(|c| c.sessions.keys().copied().collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for s in sessions {
            if let Some(o) = self.close(id, s, CloseReason::Gone) {
                out.push(o);
            }
        }
        if let Some(c) = self.conns.remove(&id)
            && self.listeners.get(&c.key) == Some(&id)
        {
            self.listeners.remove(&c.key);
        }
        let paired = out.len();
        (out, paired)
    }

    /// Connection `id` waits for incoming sessions (the newest listener of a key wins).
    pub fn listen(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get(&id) {
            self.listeners.insert(c.key, id);
        }
    }

    /// The connection listening as `key`, if any.
    pub fn listener(&self, key: &K) -> Option<ConnId> {
        self.listeners
            .get(key)
            .copied()
            .filter(|l| self.conns.get(l).is_some_and(|c| c.key == *key))
    }

    /// Whether connection `id` may open (or accept) one more session numbered `session`.
    pub fn may_add(&self, id: ConnId, session: u32) -> Result<(), Refusal> {
        let Some(c) = self.conns.get(&id) else {
            return Err(Refusal::Limit);
        };
        if c.sessions.contains_key(&session) {
            Err(Refusal::Reused)
        } else if c.sessions.len() >= self.max_sessions {
            Err(Refusal::Limit)
        } else {
            Ok(())
        }
    }

    /// Records `id`'s open of `session` toward `target`, waiting for an accept with `ticket`
    /// until `deadline_ms` (check [`Hub::may_add`] first).
    pub fn open(
        &mut self,
        id: ConnId,
        session: u32,
        target: K,
        ticket: [u8; TICKET_LEN],
        deadline_ms: u64,
    ) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.sessions.insert(session, None);
            self.pending.insert(
                ticket,
                Pending {
                    from: id,
                    session,
                    target,
                    deadline_ms,
                },
            );
        }
    }

    /// Connection `id` accepts the open of `ticket` as its `session`.
    pub fn accept(&mut self, id: ConnId, session: u32, ticket: [u8; TICKET_LEN]) -> Accepted {
        let key = self.conns.get(&id).map(|c| c.key);
        let ours = self
            .pending
            .get(&ticket)
            .is_some_and(|p| Some(p.target) == key);
        if !ours {
            return Accepted::Closed(CloseReason::Unknown);
        }
        if self.may_add(id, session).is_err() {
            return Accepted::Closed(CloseReason::Limit);
        }
        let p = self.pending.remove(&ticket).expect("checked above");
        let waiting = self
            .conns
            .get(&p.from)
            .is_some_and(|c| c.sessions.get(&p.session) == Some(&None));
        if !waiting {
            return Accepted::Closed(CloseReason::Gone);
        }
        if let Some(c) = self.conns.get_mut(&p.from) {
            c.sessions.insert(p.session, Some((id, session)));
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.sessions.insert(session, Some((p.from, p.session)));
        }
        Accepted::Paired((p.from, encode(&Frame::Opened { session: p.session })))
    }

    /// A datagram of `id`'s `session`: the frame for the paired side, if paired.
    pub fn data(&self, id: ConnId, session: u32, payload: &[u8]) -> Option<Out> {
        let (to, their) = self.conns.get(&id)?.sessions.get(&session).copied()??;
        let mut out = Vec::with_capacity(payload.len() + 8);
        Frame::Data {
            session: their,
            payload,
        }
        .encode(&mut out);
        Some((to, out))
    }

    /// Ends `id`'s `session`: the `Close` for the paired side if it was paired (an open still
    /// waiting is forgotten).
    pub fn close(&mut self, id: ConnId, session: u32, reason: CloseReason) -> Option<Out> {
        let paired = self.conns.get_mut(&id)?.sessions.remove(&session)?;
        match paired {
            Some((peer, their)) => {
                if let Some(c) = self.conns.get_mut(&peer) {
                    c.sessions.remove(&their);
                }
                Some((peer, close(their, reason)))
            }
            None => {
                self.pending
                    .retain(|_, p| !(p.from == id && p.session == session));
                None
            }
        }
    }

    /// Ends the opens whose deadline passed at `now_ms`: `Close` `timeout` for each requester.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Out> {
        let expired: Vec<[u8; TICKET_LEN]> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(t, _)| *t)
            .collect();
        let mut out = Vec::new();
        for t in expired {
            if let Some(p) = self.pending.remove(&t) {
                if let Some(c) = self.conns.get_mut(&p.from) {
                    c.sessions.remove(&p.session);
                }
                out.push((p.from, close(p.session, CloseReason::Timeout)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Frame<'_> {
        Frame::decode(bytes).unwrap().unwrap().0
    }

    #[test]
    fn an_open_accepted_pairs_and_data_crosses_with_the_receivers_numbers() {
        let mut h: Hub<u8> = Hub::new(2);
        h.insert(1, b'a');
        h.insert(2, b'b');
        h.listen(2);
        assert_eq!(h.listener(&b'b'), Some(2));
        assert_eq!(h.may_add(1, 7), Ok(()));
        h.open(1, 7, b'b', [9; 16], 100);
        // Only the target may accept the ticket.
        assert_eq!(
            h.accept(1, 8, [9; 16]),
            Accepted::Closed(CloseReason::Unknown)
        );
        let Accepted::Paired((to, opened)) = h.accept(2, 3, [9; 16]) else {
            panic!("paired")
        };
        assert_eq!((to, decode(&opened)), (1, Frame::Opened { session: 7 }));
        let (to, data) = h.data(1, 7, b"quic").unwrap();
        assert_eq!(
            (to, decode(&data)),
            (
                2,
                Frame::Data {
                    session: 3,
                    payload: b"quic"
                }
            )
        );
        assert!(
            h.data(1, 99, b"x").is_none(),
            "an unknown session is dropped"
        );
        // The requester leaves: the target hears `gone`.
        let (out, paired) = h.remove(1);
        assert_eq!(paired, 1);
        assert_eq!(
            decode(&out[0].1),
            Frame::Close {
                session: 3,
                reason: CloseReason::Gone
            }
        );
        assert!(h.data(2, 3, b"x").is_none());
    }

    #[test]
    fn limits_reuse_and_deadlines() {
        let mut h: Hub<u8> = Hub::new(1);
        h.insert(1, b'a');
        h.open(1, 1, b'z', [1; 16], 50);
        assert_eq!(h.may_add(1, 1), Err(Refusal::Reused));
        assert_eq!(h.may_add(1, 2), Err(Refusal::Limit));
        assert!(h.expire(49).is_empty());
        let out = h.expire(50);
        assert_eq!(
            decode(&out[0].1),
            Frame::Close {
                session: 1,
                reason: CloseReason::Timeout
            }
        );
        assert_eq!((h.pending(), h.may_add(1, 1)), (0, Ok(())));
        // A closed open is forgotten with its ticket.
        h.open(1, 2, b'z', [2; 16], 50);
        assert_eq!(h.close(1, 2, CloseReason::Normal), None);
        assert_eq!(h.pending(), 0);
    }
}

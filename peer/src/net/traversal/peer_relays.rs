//! Friends' peer relays (docs/PROTOCOL.md "Peer relays"): the players named in
//! [`TraversalConfig::relay_via`](super::TraversalConfig::relay_via) relay for us. Their
//! records (looked up like any player's, so only if they let us see them) announce the relay's
//! TCP address as a `relay` candidate; their key, checked against their signature, is the key
//! the relay must prove.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use phonebook_proto::CandidateKind;

use super::Traversal;
use crate::net::relay::{PEER_RELAY_INDEX, RelayBook};

/// Most friends' relays used (the rest of `relay_via` is ignored, with a warning at start).
pub const MAX_RELAY_VIA: usize = 4;
/// How long a looked-up peer relay is used before it is looked up again.
pub const PEER_RELAY_TTL: Duration = Duration::from_secs(60);

/// How soon [`Traversal::hold_peer_relays`] tries again while a friend's relay is not held.
pub const HOLD_RETRY: Duration = Duration::from_secs(2);
/// How often it checks the connections once all are held.
pub const HOLD_CHECK: Duration = Duration::from_secs(15);

/// Resolved peer relays and when, and the relays that refused us lately.
#[derive(Debug, Default)]
pub(super) struct Cache {
    resolved: Option<(Instant, Vec<RelayBook>)>,
    refused: HashMap<usize, Instant>,
}

impl Traversal {
    /// The peer relays of the friends in `relay_via` that announce one, looked up at most
    /// every [`PEER_RELAY_TTL`]. A friend who is offline, hides from us or relays for nobody
    /// is left out.
    pub async fn peer_relay_books(&self) -> Vec<RelayBook> {
        if self.config.relay_via.is_empty() {
            return Vec::new();
        }
        if let Some((at, books)) = &self.peer_relays.lock().expect("not poisoned").resolved
            && at.elapsed() < PEER_RELAY_TTL
        {
            return books.clone();
        }
        let Some(pb) = self.phonebook.clone() else {
            return Vec::new();
        };
        let identity = Arc::clone(self.endpoint.identity());
        let mut books = Vec::new();
        let mut complete = true;
        for (i, name) in self.config.relay_via.iter().take(MAX_RELAY_VIA).enumerate() {
            match pb.lookup(name).await {
                Ok(found) => {
                    let relay = found
                        .record
                        .candidates
                        .iter()
                        .find(|c| c.kind == CandidateKind::Relay);
                    match relay {
                        Some(c) => books.push(RelayBook::peer(
                            PEER_RELAY_INDEX + i,
                            c.addr,
                            found.key,
                            identity.clone(),
                        )),
                        None => log::debug!("{name} announces no peer relay"),
                    }
                }
                Err(e) => {
                    // Not registered yet, or the phone book is down: look again next time.
                    complete = false;
                    log::debug!("cannot look up {name}'s peer relay: {e}");
                }
            }
        }
        if complete {
            self.peer_relays.lock().expect("not poisoned").resolved =
                Some((Instant::now(), books.clone()));
        }
        books
    }

    /// Holds a listening connection to every friend's peer relay of
    /// [`TraversalConfig::relay_via`](super::TraversalConfig::relay_via) while the task lives
    /// (a peer relay cannot call us, so a server waits there whatever its network): tries
    /// again every [`HOLD_RETRY`] while one is missing, checks every [`HOLD_CHECK`] otherwise.
    /// Ends at once when `relay_via` is empty.
    pub fn hold_peer_relays(self: &Arc<Self>) -> smol::Task<()> {
        let me = self.clone();
        self.endpoint.spawner().spawn(async move {
            let wanted = me.config.relay_via.len().min(MAX_RELAY_VIA);
            if wanted == 0 {
                return;
            }
            loop {
                let held = me.listen_on_peer_relays().await;
                smol::Timer::after(if held >= wanted {
                    HOLD_CHECK
                } else {
                    HOLD_RETRY
                })
                .await;
            }
        })
    }

    /// Whether the peer relay `index` refused us within [`PEER_RELAY_TTL`] (we are not its
    /// owner's friend, or it is full): not asked again before.
    pub(super) fn peer_relay_refused_lately(&self, index: usize) -> bool {
        let mut cache = self.peer_relays.lock().expect("not poisoned");
        cache.refused.retain(|_, at| at.elapsed() < PEER_RELAY_TTL);
        cache.refused.contains_key(&index)
    }

    /// Notes that the peer relay `index` refused us.
    pub(super) fn peer_relay_refused(&self, index: usize) {
        let mut cache = self.peer_relays.lock().expect("not poisoned");
        if cache.refused.len() < MAX_RELAY_VIA {
            cache.refused.insert(index, Instant::now());
        }
    }
}

//! Keep-alives: hold open the NAT mapping a player published, so that the phone book can
//! forward punch requests through it, at an interval that adapts to the router.
//!
//! A router forgets an idle UDP mapping after a timeout: commonly 30 s for a flow that was
//! never answered and 2 to 5 minutes for one that was (Linux: 30 s and 120 s). The phone book
//! answers every keep-alive, so the mapping counts as answered. The interval starts safely
//! short ([`KeepAlivePolicy::first`]) and grows by a step after each answer that shows the same
//! public address, up to [`KeepAlivePolicy::max`]. When an answer shows another address, the
//! router dropped the mapping between two keep-alives: the interval falls back one step and that
//! becomes its ceiling, and the new address is published. The cost, per 1,000 online players,
//! is in the README ("Keep-alive cost").

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use phonebook_proto::udp::Message;

use super::Traversal;
use crate::net::control::canonical;

/// Keep-alive intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlivePolicy {
    /// The first interval, below the shortest common unanswered-mapping timeout (30 s).
    pub first: Duration,
    /// The shortest interval.
    pub min: Duration,
    /// The longest interval, below the common answered-mapping timeout (120 s).
    pub max: Duration,
    /// How much the interval grows after each unchanged answer.
    pub step: Duration,
    /// Wait before asking again when a phone book did not answer a whole keep-alive round.
    pub retry: Duration,
}

impl Default for KeepAlivePolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(25),
            min: Duration::from_secs(10),
            max: Duration::from_secs(110),
            step: Duration::from_secs(15),
            retry: Duration::from_secs(1),
        }
    }
}

/// What an answer meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// The same public address as before.
    Same,
    /// The first answer, or another public address than before (publish it).
    New,
}

/// The interval's state, sans I/O.
#[derive(Debug, Clone)]
pub struct KeepAliveState {
    policy: KeepAlivePolicy,
    interval: Duration,
    ceiling: Duration,
    last: Option<SocketAddr>,
}

impl KeepAliveState {
    /// The state before the first keep-alive.
    pub fn new(policy: KeepAlivePolicy) -> Self {
        Self {
            policy,
            interval: policy.first.clamp(policy.min, policy.max),
            ceiling: policy.max,
            last: None,
        }
    }

    /// Wait until the next keep-alive.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The longest interval still allowed.
    pub fn ceiling(&self) -> Duration {
        self.ceiling
    }

    /// An answer showed `observed`.
    pub fn on_answer(&mut self, observed: SocketAddr) -> Observed {
        match self.last.replace(observed) {
            None => Observed::New,
            Some(prev) if prev == observed => {
                self.interval = (self.interval + self.policy.step).min(self.ceiling);
                Observed::Same
            }
            Some(_) => {
                // The mapping died within the last interval: one step back, for good.
                let shorter = self
                    .interval
                    .saturating_sub(self.policy.step)
                    .max(self.policy.min);
                self.ceiling = shorter;
                self.interval = shorter;
                Observed::New
            }
        }
    }

    /// A whole round went unanswered: ask again soon, then go on from the shortest interval.
    pub fn on_silence(&mut self) -> Duration {
        self.interval = self.policy.min;
        self.policy.retry
    }
}

impl Traversal {
    /// Sends one keep-alive to each phone book we are registered with; the address the first
    /// answer shows, if any.
    pub async fn keep_alive_once(&self) -> Option<SocketAddr> {
        let mut seen = None;
        let books = self.books();
        let mut answered = false;
        for book in books.iter() {
            let counter = self.next_counter();
            let bytes = Message::KeepAlive {
                auth: book.token.auth,
                counter,
            }
            .encode(&book.token.key);
            if let Some((from, Message::KeepAliveAnswer { observed, .. })) =
                self.ask(book.addr, counter, &bytes).await
                && from == book.addr
            {
                answered = true;
                if seen.is_none() {
                    seen = Some(canonical(observed));
                }
            }
        }
        if !books.is_empty() && !answered {
            self.note_silent_round();
        }
        seen
    }

    /// Keeps our mappings open while the task lives; calls `on_new` with each newly observed
    /// public address (the first one included), so the caller can publish it.
    pub fn keep_alive(
        self: &Arc<Self>,
        on_new: impl Fn(SocketAddr) + Send + Sync + 'static,
    ) -> smol::Task<()> {
        let me = self.clone();
        self.endpoint.spawner().spawn(async move {
            let mut state = KeepAliveState::new(me.config.keepalive);
            loop {
                // Listen before sending, so a registration during the exchange is not missed.
                let registered = me.phonebook.as_ref().map(|p| p.next_registration());
                if me.books().is_empty() {
                    // Not registered yet (or every phone book refused us): look again soon.
                    smol::Timer::after(Duration::from_millis(250)).await;
                    continue;
                }
                let wait = match me.keep_alive_once().await {
                    Some(observed) => {
                        if state.on_answer(observed) == Observed::New {
                            me.set_reflexive(observed);
                            on_new(observed);
                        }
                        state.interval()
                    }
                    None => {
                        // No UDP answer at all: wait for sessions at the relays instead,
                        // since no relay call can reach us either.
                        if !me.udp_works() {
                            me.listen_on_relays().await;
                        }
                        state.on_silence()
                    }
                };
                log::trace!("next keep-alive in {wait:?}");
                // A registration (a renewal, new candidates) replaces the token the keep-alives
                // are signed with, and the old one stops counting: send one with the new token
                // at once, so the phone book always has a mapping to forward through.
                match registered {
                    Some(registered) => {
                        smol::future::or(
                            async {
                                registered.await;
                            },
                            async {
                                smol::Timer::after(wait).await;
                            },
                        )
                        .await
                    }
                    None => {
                        smol::Timer::after(wait).await;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_grows_until_the_mapping_changes_then_stays_below() {
        let p = KeepAlivePolicy::default();
        let mut s = KeepAliveState::new(p);
        let a: SocketAddr = "198.51.100.2:4000".parse().unwrap();
        let b: SocketAddr = "198.51.100.2:4001".parse().unwrap();
        assert_eq!(s.interval(), p.first);
        assert_eq!(s.on_answer(a), Observed::New);
        assert_eq!(s.interval(), p.first);
        let mut last = s.interval();
        for _ in 0..10 {
            assert_eq!(s.on_answer(a), Observed::Same);
            assert!(s.interval() >= last && s.interval() <= p.max);
            last = s.interval();
        }
        assert_eq!(s.interval(), p.max);
        // The router forgot the mapping: a new port shows.
        assert_eq!(s.on_answer(b), Observed::New);
        let ceiling = s.ceiling();
        assert_eq!(ceiling, p.max - p.step);
        for _ in 0..10 {
            s.on_answer(b);
        }
        assert_eq!(s.interval(), ceiling, "never above the ceiling again");
        // Silence: retry soon, then from the shortest interval.
        assert_eq!(s.on_silence(), p.retry);
        assert_eq!(s.interval(), p.min);
    }

    #[test]
    fn ceiling_never_falls_below_the_minimum() {
        let p = KeepAlivePolicy::default();
        let mut s = KeepAliveState::new(p);
        for port in 1..50u16 {
            s.on_answer(SocketAddr::from(([198, 51, 100, 2], port)));
            assert!(s.interval() >= p.min);
        }
        assert_eq!(s.interval(), p.min);
    }
}

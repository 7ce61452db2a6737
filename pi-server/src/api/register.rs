//! `POST /api/register` and `DELETE /api/unregister`.

use super::{Answer, App, Now, Origin};
use crate::metrics::{Endpoint, Reject};
use crate::table::{QuotaError, RegisterError, UnregisterError};
use crate::token::TokenClaim;
use nanoserde::SerJson;
use phonebook_proto::{
    ErrorBody, ErrorCode, PublicKey, Register, RegisterAnswer, Signature, Unregister,
};

/// Retry-After when the table is full, in seconds.
pub const CAPACITY_RETRY_SECS: u32 = 60;

impl App {
    fn check_skew(&mut self, timestamp: u64, now: Now) -> Result<(), Answer> {
        let skew = u64::from(self.config.max_skew) * 1000;
        if timestamp.abs_diff(now.wall_ms) <= skew {
            return Ok(());
        }
        self.metrics.reject(Reject::ClockSkew);
        let mut b = ErrorBody::new(
            ErrorCode::ClockSkew,
            format!(
                "timestamp is more than {} s away from the server clock",
                self.config.max_skew
            ),
        );
        b.server_time = Some(now.wall_ms);
        let mut a = Answer::error(ErrorCode::ClockSkew, "");
        a.body = b.serialize_json().into_bytes();
        Err(a)
    }

    pub(super) fn key_limit(&mut self, key: &[u8; 32], cost: u32, now: Now) -> Result<(), Answer> {
        let result = self.key_limit.check(key, cost, now.mono_ms);
        self.key_limited(key, result, now)
    }

    /// Like [`App::key_limit`] without taking tokens: for a request whose signature is still
    /// unchecked, which anyone can send with anyone's key.
    fn key_limit_peek(&mut self, key: &[u8; 32], now: Now) -> Result<(), Answer> {
        let result = self.key_limit.peek(key, 1, now.mono_ms);
        self.key_limited(key, result, now)
    }

    fn key_limited(
        &mut self,
        key: &[u8; 32],
        result: Result<(), u32>,
        now: Now,
    ) -> Result<(), Answer> {
        result.map_err(|secs| {
            self.metrics.reject(Reject::RateLimitedKey);
            self.audit.warn(
                now.mono_ms,
                format_args!("rate limit tripped by key {}", short(key)),
            );
            Answer::error_retry(
                ErrorCode::RateLimited,
                "too many requests for this key",
                secs,
            )
        })
    }

    /// The checks a signed request passes before its signature is checked, cheapest first:
    /// the per-key rate limit (looked at, not charged: the key is charged only once the
    /// signature proves the request is its owner's, so a stranger cannot drain another
    /// player's bucket), then the clock skew.
    fn admit_signed(
        &mut self,
        key: &phonebook_proto::PublicKey,
        timestamp: u64,
        now: Now,
    ) -> Result<(), Answer> {
        self.key_limit_peek(key.as_bytes(), now)?;
        self.check_skew(timestamp, now)
    }

    /// 401 `bad_signature`, with an audit line.
    fn bad_signature(&mut self, key: &phonebook_proto::PublicKey, what: &str, now: Now) -> Answer {
        self.metrics.reject(Reject::BadSignature);
        self.audit.warn(
            now.mono_ms,
            format_args!("bad {what} signature for key {}", key.short()),
        );
        Answer::error(ErrorCode::BadSignature, "signature does not verify")
    }

    /// 409 `key_conflict`, with an audit line: `key` signed for a name bound to another key.
    fn key_conflict(&mut self, key: &phonebook_proto::PublicKey, what: &str, now: Now) -> Answer {
        self.metrics.reject(Reject::KeyConflict);
        self.audit.warn(
            now.mono_ms,
            format_args!(
                "key conflict: {what} by key {} for an id another key holds publicly",
                key.short()
            ),
        );
        Answer::error(
            ErrorCode::KeyConflict,
            "another key holds this player's public record",
        )
    }

    /// 409 `replayed`, with an audit line. The per-key token [`App::finish_signed`] took is
    /// given back: a copy of a signed body can be resent by whoever saw it (another phone book
    /// the player registers with, an on-path observer), and copies must not drain the owner's
    /// bucket.
    fn replayed(&mut self, key: &phonebook_proto::PublicKey, what: &str, now: Now) -> Answer {
        self.key_limit.refund(key.as_bytes(), 1, now.mono_ms);
        self.metrics.reject(Reject::Replayed);
        self.audit.warn(
            now.mono_ms,
            format_args!("replayed or stale {what} (key {})", key.short()),
        );
        Answer::error(
            ErrorCode::Replayed,
            "timestamp is not newer than the last accepted for this name",
        )
    }

    /// Parses a registration and admits it up to its signature check.
    pub(super) fn register_begin(&mut self, body: &[u8], now: Now) -> Result<Signed, Answer> {
        let req = Register::from_json(body).map_err(|e| {
            self.metrics.reject(Reject::BadRequest);
            Answer::error(ErrorCode::BadRequest, e.to_string())
        })?;
        self.admit_signed(&req.key, req.timestamp, now)?;
        Ok(Signed::Register(Box::new(req)))
    }

    /// Finishes a registration whose signature verified.
    fn register_commit(&mut self, req: &Register, origin: Origin, now: Now) -> Answer {
        let ip = match req.ip.map(|i| i.to_canonical()) {
            Some(claimed) if claimed != origin.client && !self.config.allow_claimed_ip => {
                self.metrics.reject(Reject::BadRequest);
                self.audit.warn(
                    now.mono_ms,
                    format_args!(
                        "claimed address differs from the observed one (key {})",
                        req.key.short()
                    ),
                );
                log::debug!("claimed {claimed}, observed {}", origin.client);
                return Answer::error(
                    ErrorCode::BadRequest,
                    "invalid ip: must equal the address the server sees (omit it to use that)",
                );
            }
            Some(claimed) => claimed,
            None => origin.client,
        };
        let ttl = self.config.ttl;
        match self.table.register(req, ip, now.secs(), ttl) {
            Ok(done) => {
                log::debug!(
                    "registered {} (key {}) at {ip}:{} ({})",
                    req.id.short(),
                    req.key.short(),
                    req.port,
                    if done.created { "new" } else { "renewed" }
                );
                // Re-register after 80-90 % of the TTL, spread so clients do not come in waves.
                let span = u64::from(ttl) / 10;
                let reregister_in = u64::from(ttl) * 8 / 10 + self.next_random() % (span + 1);
                let token = self.tokens.mint(
                    TokenClaim {
                        slot: self.table.handle(done.slot),
                        timestamp: req.timestamp,
                    },
                    req.key.as_bytes(),
                );
                let a = RegisterAnswer {
                    success: true,
                    ip: ip.to_string(),
                    port: req.port,
                    expires_in: u64::from(ttl),
                    reregister_in,
                    token,
                    udp_port: Some(self.udp.port),
                    relay_port: self.relay.as_ref().map(|r| r.port),
                    relay_host: self.relay.as_ref().and_then(|r| r.host.clone()),
                    relay_cert: self.relay.as_ref().map(|r| r.cert_sha256.clone()),
                };
                Answer::ok(a.serialize_json().into_bytes())
            }
            Err(RegisterError::KeyConflict) => self.key_conflict(&req.key, "registration", now),
            Err(RegisterError::Replayed) => self.replayed(&req.key, "registration", now),
            Err(RegisterError::CapacityFull) => {
                self.metrics.reject(Reject::CapacityFull);
                self.audit.warn(
                    now.mono_ms,
                    format_args!("capacity full ({} live records)", self.table.live()),
                );
                Answer::error_retry(
                    ErrorCode::CapacityFull,
                    "the phone book is full",
                    CAPACITY_RETRY_SECS,
                )
            }
            Err(RegisterError::Quota(q)) => {
                self.metrics.reject(Reject::QuotaExceeded);
                let (what, limit) = match q {
                    QuotaError::Records => (
                        "live registrations from your address",
                        self.config.max_records_per_address,
                    ),
                    QuotaError::SourceFriendKeys => (
                        "friend keys in the registrations from your address",
                        self.config.max_friend_keys_per_address,
                    ),
                    QuotaError::KeyFriendKeys => (
                        "friend keys in the registrations of your key",
                        self.config.max_friend_keys_per_key,
                    ),
                };
                self.audit.warn(
                    now.mono_ms,
                    format_args!("quota: {what} over {limit} (key {})", req.key.short()),
                );
                Answer::error(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "at most {limit} {what}; unregister one or let it expire, or register with fewer friends"
                    ),
                )
            }
            Err(RegisterError::FriendPoolFull) => {
                self.metrics.reject(Reject::FriendPoolFull);
                self.audit.warn(
                    now.mono_ms,
                    format_args!("friend-key pool full ({} keys)", self.table.friend_keys()),
                );
                Answer::error_retry(
                    ErrorCode::CapacityFull,
                    "the phone book cannot store more friend keys",
                    CAPACITY_RETRY_SECS,
                )
            }
        }
    }

    /// Parses an unregistration and admits it up to its signature check.
    pub(super) fn unregister_begin(&mut self, body: &[u8], now: Now) -> Result<Signed, Answer> {
        let req = Unregister::from_json(body).map_err(|e| {
            self.metrics.reject(Reject::BadRequest);
            Answer::error(ErrorCode::BadRequest, e.to_string())
        })?;
        self.admit_signed(&req.key, req.timestamp, now)?;
        Ok(Signed::Unregister(Box::new(req)))
    }

    /// Finishes an unregistration whose signature verified.
    fn unregister_commit(&mut self, req: &Unregister, now: Now) -> Answer {
        match self
            .table
            .unregister(req, now.secs(), self.config.retention)
        {
            Ok(()) => Answer::ok(br#"{"success":true}"#.to_vec()),
            Err(UnregisterError::NotFound) => Answer::error(
                ErrorCode::NotFound,
                "no live record of this key for this player",
            ),
            Err(UnregisterError::Replayed) => self.replayed(&req.key, "unregistration", now),
        }
    }

    /// Answers a signed request 503 `store_unavailable` with `Retry-After: secs` (the
    /// shared store cannot take the write); returns whether the connection stays open.
    pub fn store_unavailable(&mut self, p: &Pending, secs: u32, out: &mut Vec<u8>) -> bool {
        let a = Answer::error_retry(
            ErrorCode::StoreUnavailable,
            "the phone book's shared store is unreachable; try again later",
            secs,
        );
        self.respond(p.endpoint, a, p.keep_alive, p.head_only, out)
    }

    /// Gives back the per-key token `App::finish_signed` took for `p`: its change was
    /// rolled back (another instance wrote first, or Redis was unreachable), so the request
    /// is decided again or refused without the owner paying twice.
    pub fn refund_key(&mut self, p: &Pending, now: Now) {
        self.key_limit.refund(p.key().as_bytes(), 1, now.mono_ms);
    }

    /// Completes a signed request once its signature has been checked (`verified`), and
    /// returns the answer.
    pub(super) fn finish_signed(&mut self, p: &Pending, verified: bool, now: Now) -> Answer {
        let what = match &p.signed {
            Signed::Register(_) => "registration",
            Signed::Unregister(_) => "unregistration",
        };
        if !verified {
            return self.bad_signature(p.key(), what, now);
        }
        if let Err(a) = self.key_limit(p.key().as_bytes(), 1, now) {
            return a;
        }
        match &p.signed {
            Signed::Register(r) => self.register_commit(r, p.origin, now),
            Signed::Unregister(u) => self.unregister_commit(u, now),
        }
    }
}

/// A signed request, parsed and admitted, whose signature is still to be checked.
#[derive(Debug)]
pub(super) enum Signed {
    Register(Box<Register>),
    Unregister(Box<Unregister>),
}

/// A register or unregister request waiting for its signature check (see [`App::start`]).
/// Check it alone with [`Pending::verify`] or with others through [`verify_all`], then pass
/// the verdict to [`App::finish`].
#[derive(Debug)]
pub struct Pending {
    pub(super) endpoint: Endpoint,
    pub(super) keep_alive: bool,
    pub(super) head_only: bool,
    pub(super) origin: Origin,
    pub(super) signed: Signed,
    message: Vec<u8>,
}

impl Pending {
    pub(super) fn new(
        endpoint: Endpoint,
        keep_alive: bool,
        head_only: bool,
        origin: Origin,
        signed: Signed,
    ) -> Self {
        let message = match &signed {
            Signed::Register(r) => r.fields().message(),
            Signed::Unregister(u) => u.message(),
        };
        Pending {
            endpoint,
            keep_alive,
            head_only,
            origin,
            signed,
            message,
        }
    }

    /// The record the request is for: the player's lookup id and the signing key.
    pub fn record(&self) -> (phonebook_proto::LookupId, [u8; 32]) {
        match &self.signed {
            Signed::Register(r) => (r.id, *r.key.as_bytes()),
            Signed::Unregister(u) => (u.id, *u.key.as_bytes()),
        }
    }

    /// The key that must have signed.
    pub fn key(&self) -> &PublicKey {
        match &self.signed {
            Signed::Register(r) => &r.key,
            Signed::Unregister(u) => &u.key,
        }
    }

    /// The signature to check.
    pub fn signature(&self) -> &Signature {
        match &self.signed {
            Signed::Register(r) => &r.signature,
            Signed::Unregister(u) => &u.signature,
        }
    }

    /// The exact signed bytes (docs/PROTOCOL.md).
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// Strict verification of this request alone.
    pub fn verify(&self) -> bool {
        self.key().verify(&self.message, self.signature()).is_ok()
    }
}

/// Verifies the signatures of `pending` together and returns one verdict per request, the
/// same as [`Pending::verify`] would give each (see [`PublicKey::verify_batch`] for the one
/// kind of self-made signature a batch may accept). When the batch fails, each request is
/// checked alone, so one bad signature costs only its sender's request.
pub fn verify_all(pending: &[&Pending]) -> Vec<bool> {
    let items: Vec<_> = pending
        .iter()
        .map(|p| (p.key(), p.message(), p.signature()))
        .collect();
    if PublicKey::verify_batch(&items).is_ok() {
        vec![true; pending.len()]
    } else {
        pending.iter().map(|p| p.verify()).collect()
    }
}

/// The short log form of a raw key.
pub(super) fn short(key: &[u8; 32]) -> String {
    let mut s = phonebook_proto::b64::encode(key);
    s.truncate(8);
    s
}

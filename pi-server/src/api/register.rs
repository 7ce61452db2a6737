//! `POST /api/register` and `DELETE /api/unregister`.

use super::{Answer, App, Now, Origin};
use crate::metrics::Reject;
use crate::table::{RegisterError, UnregisterError};
use crate::token::TokenClaim;
use nanoserde::SerJson;
use phonebook_proto::{ErrorBody, ErrorCode, Register, RegisterAnswer, Unregister};

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
        self.key_limit
            .check(key, cost, now.mono_ms)
            .map_err(|secs| {
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

    /// The checks every signed request passes, cheapest first: the per-key rate limit, the
    /// clock skew, then the signature.
    fn admit_signed(
        &mut self,
        key: &phonebook_proto::PublicKey,
        timestamp: u64,
        what: &str,
        verify: impl FnOnce() -> Result<(), phonebook_proto::KeyError>,
        now: Now,
    ) -> Result<(), Answer> {
        self.key_limit(key.as_bytes(), 1, now)?;
        self.check_skew(timestamp, now)?;
        if verify().is_err() {
            self.metrics.reject(Reject::BadSignature);
            self.audit.warn(
                now.mono_ms,
                format_args!("bad {what} signature for key {}", key.short()),
            );
            return Err(Answer::error(
                ErrorCode::BadSignature,
                "signature does not verify",
            ));
        }
        Ok(())
    }

    /// 409 `key_conflict`, with an audit line: `key` signed for a name bound to another key.
    fn key_conflict(&mut self, key: &phonebook_proto::PublicKey, what: &str, now: Now) -> Answer {
        self.metrics.reject(Reject::KeyConflict);
        self.audit.warn(
            now.mono_ms,
            format_args!(
                "key conflict: {what} by key {} for a name bound to another key",
                key.short()
            ),
        );
        Answer::error(ErrorCode::KeyConflict, "this name is bound to another key")
    }

    /// 409 `replayed`, with an audit line.
    fn replayed(&mut self, key: &phonebook_proto::PublicKey, what: &str, now: Now) -> Answer {
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

    pub(super) fn register(&mut self, body: &[u8], origin: Origin, now: Now) -> Answer {
        let req = match Register::from_json(body) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.reject(Reject::BadRequest);
                return Answer::error(ErrorCode::BadRequest, e.to_string());
            }
        };
        if let Err(a) = self.admit_signed(
            &req.key,
            req.timestamp,
            "registration",
            || req.verify(),
            now,
        ) {
            return a;
        }
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
        match self.table.register(&req, ip, now.secs(), ttl) {
            Ok(done) => {
                log::debug!(
                    "registered {} at {ip}:{} ({})",
                    req.name,
                    req.port,
                    if done.created { "new" } else { "renewed" }
                );
                // Re-register after 80-90 % of the TTL, spread so clients do not come in waves.
                let span = u64::from(ttl) / 10;
                let reregister_in = u64::from(ttl) * 8 / 10 + self.next_random() % (span + 1);
                let token = self.tokens.mint(TokenClaim {
                    slot: done.slot,
                    timestamp: req.timestamp,
                });
                let a = RegisterAnswer {
                    success: true,
                    ip: ip.to_string(),
                    port: req.port,
                    expires_in: u64::from(ttl),
                    reregister_in,
                    token,
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

    pub(super) fn unregister(&mut self, body: &[u8], now: Now) -> Answer {
        let req = match Unregister::from_json(body) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.reject(Reject::BadRequest);
                return Answer::error(ErrorCode::BadRequest, e.to_string());
            }
        };
        if let Err(a) = self.admit_signed(
            &req.key,
            req.timestamp,
            "unregistration",
            || req.verify(),
            now,
        ) {
            return a;
        }
        match self
            .table
            .unregister(&req, now.secs(), self.config.retention)
        {
            Ok(()) => Answer::ok(br#"{"success":true}"#.to_vec()),
            Err(UnregisterError::NotFound) => Answer::error(ErrorCode::NotFound, "no such player"),
            Err(UnregisterError::KeyConflict) => self.key_conflict(&req.key, "unregistration", now),
            Err(UnregisterError::Replayed) => self.replayed(&req.key, "unregistration", now),
        }
    }
}

/// The short log form of a raw key.
pub(super) fn short(key: &[u8; 32]) -> String {
    let mut s = phonebook_proto::b64::encode(key);
    s.truncate(8);
    s
}

//! The API: routes a parsed request to its handler and writes the answer. Sans-IO: it is
//! given the request, the peer address and the time, and appends bytes to an output buffer.
//!
//! Driving loop (see `server::conn`): read bytes, [`crate::http::parse_head`], wait for the
//! body, call [`App::handle`], write `out`, repeat while it returns `true` (keep-alive).

mod audit;
mod lookup;
mod register;
pub mod relay;
pub mod udp;

use crate::addr;
use crate::config::Config;
use crate::http::{Head, Method, Response};
use crate::metrics::{Endpoint, Gauges, Metrics, Reject};
use crate::ratelimit::Limiter;
use crate::table::{QuotaLimits, Table, TableLimits};
use crate::token::TokenKey;
use nanoserde::SerJson;
use phonebook_proto::{ErrorBody, ErrorCode, Health, paths};
use std::net::IpAddr;

pub use audit::Audit;
use register::Signed;
pub use register::{Pending, verify_all};

/// Tokens of the per-address bucket (`rate-ip`) a TLS handshake costs before it starts. A full
/// handshake costs the server about 20 lookups of CPU (`tests/bench/https.sh`: 251 µs against
/// 12 µs); at the defaults (200 per second, burst 400) one address may start 20 handshakes per
/// second, 40 at once, which no player's reconnects come near, while a flood from one address
/// is cut off before it costs any cryptography.
pub const TLS_HANDSHAKE_COST: u32 = 10;

/// What [`App::start`] did with a request.
#[derive(Debug)]
pub enum Started {
    /// Answered; `true` if the connection stays open.
    Done(bool),
    /// A signed request waits for its signature check; then call [`App::finish`].
    Verify(Pending),
}

/// What routing decided: an answer now, or a signed request to verify first.
enum Routed {
    Answer(Answer),
    Signed(Signed),
}

/// The time, as the handlers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds on the monotonic clock since the server started.
    pub mono_ms: u64,
    /// Unix milliseconds (wall clock): only used to check signed timestamps.
    pub wall_ms: u64,
}

impl Now {
    /// Whole monotonic seconds: the table's time base.
    pub fn secs(&self) -> u32 {
        (self.mono_ms / 1000).min(u64::from(u32::MAX)) as u32
    }
}

/// What the server knows about where a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// TCP peer address.
    pub peer: IpAddr,
    /// The client address after trusted-proxy headers (see [`crate::addr`]).
    pub client: IpAddr,
}

/// All state of the phone book.
#[derive(Debug)]
pub struct App {
    /// Settings.
    pub config: Config,
    /// Registrations.
    pub table: Table,
    /// Lookup token key.
    pub tokens: TokenKey,
    /// Counters.
    pub metrics: Metrics,
    /// The UDP service's state.
    pub udp: udp::UdpState,
    /// The relay, as register answers announce it (`None`: off).
    pub relay: Option<relay::RelayInfo>,
    /// Messages to the other instances (`None`: one instance alone, no Redis).
    pub bus: Option<crate::bus::Side>,
    ip_limit: Limiter,
    key_limit: Limiter,
    audit: Audit,
    jitter: u64,
}

/// A response decided by a handler: status, body and the headers that go with it.
#[derive(Debug)]
pub(crate) struct Answer {
    status: u16,
    body: Vec<u8>,
    retry_after: Option<u32>,
    allow: Option<&'static str>,
    challenge: bool,
    close: bool,
    content_type: &'static str,
}

impl Answer {
    fn ok(body: Vec<u8>) -> Self {
        Answer {
            status: 200,
            body,
            retry_after: None,
            allow: None,
            challenge: false,
            close: false,
            content_type: "application/json",
        }
    }

    pub(crate) fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut b = ErrorBody::new(code, message);
        let mut a = Answer::ok(Vec::new());
        a.status = code.status();
        if matches!(
            code,
            ErrorCode::BodyTooLarge | ErrorCode::HeadersTooLarge | ErrorCode::Overloaded
        ) {
            a.close = true;
        }
        a.challenge = code == ErrorCode::Unauthorized;
        b.retry_after = None;
        a.body = b.serialize_json().into_bytes();
        a
    }

    fn error_retry(code: ErrorCode, message: &str, secs: u32) -> Self {
        let mut b = ErrorBody::new(code, message);
        b.retry_after = Some(u64::from(secs));
        let mut a = Answer::error(code, "");
        a.body = b.serialize_json().into_bytes();
        a.retry_after = Some(secs);
        a
    }
}

impl App {
    /// Whether a TLS connection from `peer` may start its handshake: charges
    /// [`TLS_HANDSHAKE_COST`] to the address's bucket (not for trusted proxies, whose clients
    /// are charged per request). A refusal is counted and audited; the caller closes the
    /// connection without a word, before any cryptography.
    pub fn admit_handshake(&mut self, peer: IpAddr, now: Now) -> bool {
        if self.config.trusted_proxies.iter().any(|c| c.contains(peer)) {
            return true;
        }
        match self
            .ip_limit
            .check(&addr::limit_key(peer), TLS_HANDSHAKE_COST, now.mono_ms)
        {
            Ok(()) => true,
            Err(_) => {
                self.metrics.reject(Reject::RateLimitedIp);
                self.audit.warn(
                    now.mono_ms,
                    format_args!("TLS handshakes from one address over its rate limit"),
                );
                false
            }
        }
    }

    /// A fresh app with `secret` as the token key (random, or from the snapshot).
    pub fn new(config: Config, secret: [u8; 32]) -> Self {
        let table = Table::new(TableLimits {
            capacity: config.capacity,
            friend_keys_total: config.friend_keys_total,
            quotas: QuotaLimits {
                records_per_source: config.max_records_per_address,
                friend_keys_per_source: config.max_friend_keys_per_address,
                friend_keys_per_key: config.max_friend_keys_per_key,
                ipv6_prefix: config.quota_ipv6_prefix.min(128) as u8,
            },
        });
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        App {
            ip_limit: Limiter::new(config.rate_ip, config.rate_ip_burst),
            key_limit: Limiter::new(config.rate_key, config.rate_key_burst),
            udp: udp::UdpState::new(config.udp_rate, config.udp_rate_burst, config.punch_rate),
            relay: None,
            bus: None,
            table,
            tokens: TokenKey::new(secret),
            metrics: Metrics::default(),
            audit: Audit::default(),
            jitter: u64::from_le_bytes(seed) | 1,
            config,
        }
    }

    /// The audit-log throttle.
    pub fn audit(&mut self) -> &mut Audit {
        &mut self.audit
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: only spreads re-registration times; not security relevant.
        let mut x = self.jitter;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.jitter = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Handles one complete request and appends the answer to `out`. Returns whether the
    /// connection stays open. A signed request's signature is checked here, alone; the
    /// server uses [`App::start`] and [`App::finish`] instead to check several at once.
    pub fn handle(
        &mut self,
        head: &Head<'_>,
        body: &[u8],
        peer: IpAddr,
        now: Now,
        out: &mut Vec<u8>,
    ) -> bool {
        match self.start(head, body, peer, now, out) {
            Started::Done(keep_alive) => keep_alive,
            Started::Verify(p) => {
                let verified = p.verify();
                self.finish(&p, verified, now, out)
            }
        }
    }

    /// Handles one complete request up to a signature check. Either the answer is written
    /// to `out` ([`Started::Done`]), or a register or unregister request waits for its
    /// signature to be checked ([`Started::Verify`]) and nothing is written yet.
    pub fn start(
        &mut self,
        head: &Head<'_>,
        body: &[u8],
        peer: IpAddr,
        now: Now,
        out: &mut Vec<u8>,
    ) -> Started {
        let head_only = head.method == Method::Head;
        let which = self.config.proxy_header;
        let client =
            match addr::client_ip(peer, &head.forwarding, which, &self.config.trusted_proxies) {
                Ok(client) => client,
                Err(e) => {
                    self.metrics.reject(Reject::BadRequest);
                    let a = Answer::error(
                        ErrorCode::BadRequest,
                        format!(
                            "invalid {} header from the trusted proxy: {e}",
                            which.name()
                        ),
                    );
                    return Started::Done(self.respond(
                        Endpoint::Other,
                        a,
                        head.keep_alive,
                        head_only,
                        out,
                    ));
                }
            };
        let origin = Origin { peer, client };
        let (endpoint, routed) = self.route(head, body, origin, now);
        let answer = match routed {
            Routed::Answer(a) => a,
            Routed::Signed(signed) => {
                return Started::Verify(Pending::new(
                    endpoint,
                    head.keep_alive,
                    head_only,
                    origin,
                    signed,
                ));
            }
        };
        Started::Done(self.respond(endpoint, answer, head.keep_alive, head_only, out))
    }

    /// Completes a request that [`App::start`] left waiting, given whether its signature
    /// verified, and writes the answer to `out`. Returns whether the connection stays open.
    /// `now` may be later than at the start.
    pub fn finish(&mut self, p: &Pending, verified: bool, now: Now, out: &mut Vec<u8>) -> bool {
        let answer = self.finish_signed(p, verified, now);
        self.respond(p.endpoint, answer, p.keep_alive, p.head_only, out)
    }

    pub(crate) fn respond(
        &mut self,
        endpoint: Endpoint,
        answer: Answer,
        keep_alive: bool,
        head_only: bool,
        out: &mut Vec<u8>,
    ) -> bool {
        self.metrics.request(endpoint, answer.status);
        let keep_alive = keep_alive && !answer.close;
        Response {
            status: answer.status,
            content_type: answer.content_type,
            retry_after: answer.retry_after,
            allow: answer.allow,
            bearer_challenge: answer.challenge,
            keep_alive,
            head_only,
        }
        .write(&answer.body, out);
        keep_alive
    }

    /// Writes an error answer for a request that could not be parsed far enough to route.
    pub fn reject(&mut self, code: ErrorCode, message: &str, reason: Reject, out: &mut Vec<u8>) {
        self.metrics.reject(reason);
        self.metrics.request(Endpoint::Other, code.status());
        let a = Answer::error(code, message);
        Response::json(a.status, false).write(&a.body, out);
    }

    fn route(
        &mut self,
        head: &Head<'_>,
        body: &[u8],
        origin: Origin,
        now: Now,
    ) -> (Endpoint, Routed) {
        let path = head.path;
        let m = if head.method == Method::Head {
            Method::Get
        } else {
            head.method
        };
        let endpoint = match (path, m) {
            (p, Method::Post) if p == paths::REGISTER.as_bytes() => Endpoint::Register,
            (p, Method::Delete) if p == paths::UNREGISTER.as_bytes() => Endpoint::Unregister,
            (p, Method::Get) if p == paths::HEALTH.as_bytes() => Endpoint::Health,
            (p, Method::Get) if p == paths::METRICS.as_bytes() => Endpoint::Metrics,
            (p, Method::Post) if p == paths::LOOKUP.as_bytes() => Endpoint::LookupBatch,
            (p, Method::Get) if p.starts_with(b"/api/lookup/") => Endpoint::Lookup,
            (p, _) => {
                let allow = if p == paths::REGISTER.as_bytes() {
                    Some("POST")
                } else if p == paths::UNREGISTER.as_bytes() {
                    Some("DELETE")
                } else if p == paths::HEALTH.as_bytes()
                    || p == paths::METRICS.as_bytes()
                    || p.starts_with(b"/api/lookup/")
                {
                    Some("GET, HEAD")
                } else if p == paths::LOOKUP.as_bytes() {
                    Some("POST")
                } else {
                    None
                };
                let a = match allow {
                    Some(allow) => {
                        let mut a = Answer::error(
                            ErrorCode::MethodNotAllowed,
                            "method not allowed for this path",
                        );
                        a.allow = Some(allow);
                        a
                    }
                    None => Answer::error(ErrorCode::NotFound, "no such path"),
                };
                return (Endpoint::Other, Routed::Answer(a));
            }
        };
        if let Err(secs) = self
            .ip_limit
            .check(&addr::limit_key(origin.client), 1, now.mono_ms)
        {
            self.metrics.reject(Reject::RateLimitedIp);
            self.audit.warn(
                now.mono_ms,
                format_args!("rate limit tripped by an address on {endpoint:?}"),
            );
            log::debug!("rate limited address {}", origin.client);
            return (
                endpoint,
                Routed::Answer(Answer::error_retry(
                    ErrorCode::RateLimited,
                    "too many requests from your address",
                    secs,
                )),
            );
        }
        let begun = match endpoint {
            Endpoint::Register => Some(self.register_begin(body, now)),
            Endpoint::Unregister => Some(self.unregister_begin(body, now)),
            _ => None,
        };
        let answer = match (endpoint, begun) {
            (_, Some(Ok(signed))) => return (endpoint, Routed::Signed(signed)),
            (_, Some(Err(a))) => a,
            (Endpoint::Lookup, None) => self.lookup_one(head, now),
            (Endpoint::LookupBatch, None) => self.lookup_batch(head, body, now),
            (Endpoint::Health, None) => self.health(now),
            (Endpoint::Metrics, None) => self.metrics_page(origin, now),
            (Endpoint::Register | Endpoint::Unregister | Endpoint::Other, None) => {
                Answer::error(ErrorCode::NotFound, "no such path")
            }
        };
        (endpoint, Routed::Answer(answer))
    }

    fn health(&self, now: Now) -> Answer {
        let redis = &self.metrics.redis;
        let h = Health {
            status: if redis.enabled && !redis.up {
                "degraded".into()
            } else {
                "ok".into()
            },
            redis: redis
                .enabled
                .then(|| if redis.up { "up" } else { "down" }.into()),
            active_users: u64::from(self.table.live()),
            capacity: u64::from(self.table.capacity()),
            ttl: u64::from(self.config.ttl),
            uptime: now.mono_ms / 1000,
            version: env!("CARGO_PKG_VERSION").into(),
        };
        Answer::ok(h.serialize_json().into_bytes())
    }

    /// `/metrics`, for clients on loopback or in a trusted proxy range, judged by the client
    /// address after proxy resolution: behind a proxy on the same host every peer is loopback.
    fn metrics_page(&self, origin: Origin, now: Now) -> Answer {
        let client = origin.client.to_canonical();
        let trusted = self
            .config
            .trusted_proxies
            .iter()
            .any(|c| c.contains(client));
        if !(self.config.metrics_public || client.is_loopback() || trusted) {
            return Answer::error(ErrorCode::NotFound, "no such path");
        }
        let g = Gauges {
            live: self.table.live(),
            retained: self.table.retained(),
            capacity: self.table.capacity(),
            friend_keys: self.table.friend_keys(),
            uptime: now.mono_ms / 1000,
            wall_secs: now.wall_ms / 1000,
        };
        let mut a = Answer::ok(self.metrics.render(g, now.mono_ms / 1000).into_bytes());
        a.content_type = "text/plain; version=0.0.4";
        a
    }
}

#[cfg(test)]
mod tests;

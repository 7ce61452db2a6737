//! Counters for `/metrics` (Prometheus text format 0.0.4).

use std::fmt::Write as _;

/// API endpoints, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /api/register`
    Register,
    /// `GET /api/lookup/{name}`
    Lookup,
    /// `POST /api/lookup`
    LookupBatch,
    /// `DELETE /api/unregister`
    Unregister,
    /// `GET /api/health`
    Health,
    /// `GET /metrics`
    Metrics,
    /// Anything else.
    Other,
}

const ENDPOINTS: [(Endpoint, &str); 7] = [
    (Endpoint::Register, "register"),
    (Endpoint::Lookup, "lookup"),
    (Endpoint::LookupBatch, "lookup_batch"),
    (Endpoint::Unregister, "unregister"),
    (Endpoint::Health, "health"),
    (Endpoint::Metrics, "metrics"),
    (Endpoint::Other, "other"),
];

const STATUSES: [u16; 13] = [
    200, 400, 401, 404, 405, 409, 411, 413, 429, 431, 500, 503, 505,
];

/// Why a request or connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Reject {
    BadRequest,
    ClockSkew,
    BadSignature,
    Unauthorized,
    KeyConflict,
    Replayed,
    RateLimitedIp,
    RateLimitedKey,
    CapacityFull,
    FriendPoolFull,
    QuotaExceeded,
    BodyTooLarge,
    HeadersTooLarge,
    TooManyConnections,
    Timeout,
    NotAllowed,
}

const REJECTS: [(Reject, &str); 16] = [
    (Reject::BadRequest, "bad_request"),
    (Reject::ClockSkew, "clock_skew"),
    (Reject::BadSignature, "bad_signature"),
    (Reject::Unauthorized, "unauthorized"),
    (Reject::KeyConflict, "key_conflict"),
    (Reject::Replayed, "replayed"),
    (Reject::RateLimitedIp, "rate_limited_ip"),
    (Reject::RateLimitedKey, "rate_limited_key"),
    (Reject::CapacityFull, "capacity_full"),
    (Reject::FriendPoolFull, "friend_pool_full"),
    (Reject::QuotaExceeded, "quota_exceeded"),
    (Reject::BodyTooLarge, "body_too_large"),
    (Reject::HeadersTooLarge, "headers_too_large"),
    (Reject::TooManyConnections, "too_many_connections"),
    (Reject::Timeout, "timeout"),
    (Reject::NotAllowed, "lookup_not_found_or_hidden"),
];

/// What became of a UDP datagram (docs/PROTOCOL.md "UDP service").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum UdpEvent {
    Binding,
    KeepAlive,
    PunchForwarded,
    /// Handed to the other instances (no mapping here).
    PunchHandedOver,
    PunchUnknown,
    PunchNoPath,
    DroppedMalformed,
    DroppedUnauthenticated,
    DroppedReplayed,
    DroppedRateLimited,
    DroppedNotARequest,
}

const UDP_EVENTS: [(UdpEvent, &str); 11] = [
    (UdpEvent::Binding, "binding"),
    (UdpEvent::KeepAlive, "keepalive"),
    (UdpEvent::PunchForwarded, "punch_forwarded"),
    (UdpEvent::PunchHandedOver, "punch_handed_over"),
    (UdpEvent::PunchUnknown, "punch_unknown"),
    (UdpEvent::PunchNoPath, "punch_no_path"),
    (UdpEvent::DroppedMalformed, "dropped_malformed"),
    (UdpEvent::DroppedUnauthenticated, "dropped_unauthenticated"),
    (UdpEvent::DroppedReplayed, "dropped_replayed"),
    (UdpEvent::DroppedRateLimited, "dropped_rate_limited"),
    (UdpEvent::DroppedNotARequest, "dropped_not_a_request"),
];

/// Why the relay refused a connection or a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayRefusal {
    /// Bad or stale token, or no Hello in time.
    Unauthenticated,
    /// relay-max-connections reached.
    Full,
    /// A malformed or unexpected frame, or a limit of sessions.
    Protocol,
    /// An open for a player absent, hidden from the requester, or offline.
    Unknown,
    /// The target can be seen but not told.
    NoPath,
    /// The target did not accept in time.
    Timeout,
    /// Too many sessions or opens.
    Limit,
}

const RELAY_REFUSALS: [(RelayRefusal, &str); 7] = [
    (RelayRefusal::Unauthenticated, "unauthenticated"),
    (RelayRefusal::Full, "full"),
    (RelayRefusal::Protocol, "protocol"),
    (RelayRefusal::Unknown, "unknown"),
    (RelayRefusal::NoPath, "no_path"),
    (RelayRefusal::Timeout, "timeout"),
    (RelayRefusal::Limit, "limit"),
];

/// The relay's counters.
#[derive(Debug, Default)]
pub struct RelayMetrics {
    refusals: [u64; RELAY_REFUSALS.len()],
    /// Bytes of relay frames received and sent (TLS payload).
    pub bytes_in: u64,
    /// See `bytes_in`.
    pub bytes_out: u64,
    /// Relay connections open now.
    pub connections: u64,
    /// Sessions paired now.
    pub sessions: u64,
    /// Sessions paired since start.
    pub sessions_total: u64,
    /// Datagrams dropped because the receiver's queue was full.
    pub dropped: u64,
    /// Sessions bridged to another instance now (see `crate::bus`).
    pub bridges: u64,
}

impl RelayMetrics {
    /// Counts a refusal.
    pub fn refuse(&mut self, r: RelayRefusal) {
        if let Some(i) = RELAY_REFUSALS.iter().position(|(x, _)| *x == r) {
            self.refusals[i] += 1;
        }
    }

    /// Refusals of one kind so far.
    pub fn refusals(&self, r: RelayRefusal) -> u64 {
        RELAY_REFUSALS
            .iter()
            .position(|(x, _)| *x == r)
            .map_or(0, |i| self.refusals[i])
    }

    fn render(&self, s: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            s,
            "# HELP phonebook_relay_bytes_total Relay frame bytes.\n# TYPE phonebook_relay_bytes_total counter\nphonebook_relay_bytes_total{{direction=\"in\"}} {}\nphonebook_relay_bytes_total{{direction=\"out\"}} {}\n",
            self.bytes_in, self.bytes_out
        );
        let _ = write!(
            s,
            "# HELP phonebook_relay_connections Relay connections open.\n# TYPE phonebook_relay_connections gauge\nphonebook_relay_connections {}\n# HELP phonebook_relay_sessions Relay sessions paired now.\n# TYPE phonebook_relay_sessions gauge\nphonebook_relay_sessions {}\n# HELP phonebook_relay_sessions_total Relay sessions paired.\n# TYPE phonebook_relay_sessions_total counter\nphonebook_relay_sessions_total {}\n# HELP phonebook_relay_dropped_total Datagrams dropped at a full relay queue.\n# TYPE phonebook_relay_dropped_total counter\nphonebook_relay_dropped_total {}\n# HELP phonebook_relay_bridges Relay sessions bridged to another instance (opening or paired).\n# TYPE phonebook_relay_bridges gauge\nphonebook_relay_bridges {}\n",
            self.connections, self.sessions, self.sessions_total, self.dropped, self.bridges
        );
        let _ = write!(
            s,
            "# HELP phonebook_relay_refusals_total Relay refusals by reason.\n# TYPE phonebook_relay_refusals_total counter\n"
        );
        for (i, (_, label)) in RELAY_REFUSALS.iter().enumerate() {
            let _ = writeln!(
                s,
                "phonebook_relay_refusals_total{{reason=\"{label}\"}} {}",
                self.refusals[i]
            );
        }
    }
}

/// HTTPS and ACME figures.
#[derive(Debug, Default)]
pub struct TlsMetrics {
    /// HTTPS is on (the figures below are rendered).
    pub enabled: bool,
    /// `notAfter` of the certificate served (Unix seconds); `None` without HTTPS.
    pub cert_not_after: Option<i64>,
    /// TLS handshakes completed.
    pub handshakes_ok: u64,
    /// Of those, handshakes that resumed an earlier session (no certificate signature).
    pub handshakes_resumed: u64,
    /// TLS handshakes that failed (bad client hello, no shared version, ...; timeouts count
    /// as `timeout` rejections).
    pub handshakes_failed: u64,
    /// Certificate reloads (files or renewals) that succeeded.
    pub reloads: u64,
    /// Reloads of the certificate files that failed (the old certificate stays).
    pub reload_failures: u64,
    /// ACME orders that failed (the old certificate stays; retried with back-off).
    pub acme_failures: u64,
    /// ACME failures since the last success: non-zero means renewal is stuck.
    pub acme_failures_in_a_row: u64,
}

impl TlsMetrics {
    /// Counts a handshake (`resumed`: of an earlier session).
    pub fn handshake(&mut self, ok: bool, resumed: bool) {
        if ok {
            self.handshakes_ok += 1;
            self.handshakes_resumed += u64::from(resumed);
        } else {
            self.handshakes_failed += 1;
        }
    }

    fn render(&self, s: &mut String, wall_secs: u64) {
        use std::fmt::Write;
        if !self.enabled {
            return;
        }
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        if let Some(not_after) = self.cert_not_after {
            let left = not_after - wall_secs as i64;
            line(
                "phonebook_tls_certificate_expiry_days",
                "gauge",
                "Days until the served certificate expires (negative: expired).",
                format!("{:.2}", left as f64 / 86_400.0),
            );
            line(
                "phonebook_tls_certificate_not_after_seconds",
                "gauge",
                "notAfter of the served certificate, Unix seconds.",
                not_after.to_string(),
            );
        }
        line(
            "phonebook_tls_certificate_reloads_total",
            "counter",
            "Certificate swaps at run time (file reloads and ACME renewals).",
            self.reloads.to_string(),
        );
        line(
            "phonebook_tls_certificate_reload_failures_total",
            "counter",
            "Reloads of the certificate files that failed (the old one stays).",
            self.reload_failures.to_string(),
        );
        line(
            "phonebook_acme_failures_total",
            "counter",
            "ACME orders that failed (the old certificate stays).",
            self.acme_failures.to_string(),
        );
        line(
            "phonebook_acme_failures_in_a_row",
            "gauge",
            "ACME failures since the last success (non-zero: renewal is stuck).",
            self.acme_failures_in_a_row.to_string(),
        );
        let _ = write!(
            s,
            "# HELP phonebook_tls_handshakes_total TLS handshakes by outcome.\n# TYPE phonebook_tls_handshakes_total counter\nphonebook_tls_handshakes_total{{outcome=\"ok\"}} {}\nphonebook_tls_handshakes_total{{outcome=\"failed\"}} {}\n# HELP phonebook_tls_handshakes_resumed_total Completed TLS handshakes that resumed a session.\n# TYPE phonebook_tls_handshakes_resumed_total counter\nphonebook_tls_handshakes_resumed_total {}\n",
            self.handshakes_ok, self.handshakes_failed, self.handshakes_resumed
        );
    }
}

/// All counters. Single-threaded: plain integers.
#[derive(Debug, Default)]
pub struct Metrics {
    /// The relay's counters.
    pub relay: RelayMetrics,
    /// HTTPS and ACME.
    pub tls: TlsMetrics,
    /// The shared store (Redis), when configured.
    pub redis: RedisMetrics,
    udp_events: [u64; UDP_EVENTS.len()],
    /// UDP datagrams received, and their bytes (UDP payload).
    pub udp_in: (u64, u64),
    /// UDP datagrams sent (answers and forwards), and their bytes.
    pub udp_out: (u64, u64),
    /// Keep-alive mappings held now.
    pub udp_mappings: u64,
    requests: [[u64; STATUSES.len() + 1]; ENDPOINTS.len()],
    rejects: [u64; REJECTS.len()],
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Seconds (monotonic) of the last good snapshot, if any.
    pub snapshot_at: Option<u64>,
    /// Duration of the last snapshot, in milliseconds.
    pub snapshot_ms: u64,
    /// Bytes of the last snapshot.
    pub snapshot_bytes: u64,
    /// Snapshots that failed.
    pub snapshot_failures: u64,
    /// Signature checks of signed requests, and the batches they were checked in (their
    /// ratio is the mean batch size: 1 when idle, up to `MAX_BATCH` under load).
    pub signatures_checked: u64,
    /// See [`Metrics::signatures_checked`].
    pub signature_batches: u64,
}

/// Counters of the shared store (`redis-url`); rendered only when it is configured.
#[derive(Debug, Default)]
pub struct RedisMetrics {
    /// Redis is configured.
    pub enabled: bool,
    /// Connected and read through: writes go to Redis (false: they answer 503).
    pub up: bool,
    /// Failed connections, commands and sessions.
    pub errors: u64,
    /// Successful reconnections after a loss.
    pub reconnects: u64,
    /// Writes Redis acknowledged.
    pub writes: u64,
    /// Writes refused by the compare-and-set (another instance wrote first).
    pub conflicts: u64,
    /// Records from Redis (full reads and the stream) put into the table.
    pub applied: u64,
    /// Records from Redis the table could not take (full).
    pub refused: u64,
    /// Records in Redis that did not decode, skipped.
    pub bad_records: u64,
    /// Full reads after falling further behind than the change stream keeps.
    pub resyncs: u64,
    /// Subscribed to the other instances' messages.
    pub bus_up: bool,
    /// Messages published to the other instances.
    pub bus_sent: u64,
    /// Messages received from the other instances.
    pub bus_received: u64,
    /// Messages that could not be queued or published, dropped.
    pub bus_dropped: u64,
    /// Messages received that did not decode, dropped.
    pub bus_bad: u64,
}

impl RedisMetrics {
    fn render(&self, s: &mut String) {
        if !self.enabled {
            return;
        }
        let _ = write!(
            s,
            "# HELP phonebook_redis_up Whether writes can go to Redis (0: they answer 503).
# TYPE phonebook_redis_up gauge
phonebook_redis_up {}
# HELP phonebook_redis_bus_up Whether messages reach the other instances (punch requests and relay sessions).
# TYPE phonebook_redis_bus_up gauge
phonebook_redis_bus_up {}
",
            u8::from(self.up),
            u8::from(self.bus_up)
        );
        for (name, help, v) in [
            (
                "errors",
                "Failed Redis connections, commands and sessions.",
                self.errors,
            ),
            (
                "reconnects",
                "Reconnections to Redis after a loss.",
                self.reconnects,
            ),
            ("writes", "Writes Redis acknowledged.", self.writes),
            (
                "conflicts",
                "Writes refused because another instance wrote first.",
                self.conflicts,
            ),
            (
                "records_applied",
                "Records from Redis put into the table.",
                self.applied,
            ),
            (
                "records_refused",
                "Records from Redis the table could not take.",
                self.refused,
            ),
            (
                "bad_records",
                "Records in Redis that did not decode, skipped.",
                self.bad_records,
            ),
            (
                "resyncs",
                "Full reads after falling further behind than the change stream keeps.",
                self.resyncs,
            ),
            (
                "bus_sent",
                "Messages published to the other instances.",
                self.bus_sent,
            ),
            (
                "bus_received",
                "Messages received from the other instances.",
                self.bus_received,
            ),
            (
                "bus_dropped",
                "Messages to or from the other instances dropped (queue full, Redis down).",
                self.bus_dropped,
            ),
            (
                "bus_bad",
                "Messages from the other instances that did not decode.",
                self.bus_bad,
            ),
        ] {
            let _ = write!(
                s,
                "# HELP phonebook_redis_{name}_total {help}\n# TYPE phonebook_redis_{name}_total counter\nphonebook_redis_{name}_total {v}\n"
            );
        }
    }
}

/// Table figures shown beside the counters.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    /// Live records.
    pub live: u32,
    /// Retained bindings.
    pub retained: u32,
    /// Capacity.
    pub capacity: u32,
    /// Friend keys stored.
    pub friend_keys: u32,
    /// Seconds since start.
    pub uptime: u64,
    /// Wall-clock Unix seconds (for the certificate's days left).
    pub wall_secs: u64,
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&mut self, e: Endpoint, status: u16) {
        let ei = ENDPOINTS
            .iter()
            .position(|(x, _)| *x == e)
            .unwrap_or(ENDPOINTS.len() - 1);
        let si = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len());
        self.requests[ei][si] += 1;
    }

    /// Counts one rejection.
    pub fn reject(&mut self, r: Reject) {
        if let Some(i) = REJECTS.iter().position(|(x, _)| *x == r) {
            self.rejects[i] += 1;
        }
    }

    /// Requests answered on `e` with `status` (for tests).
    pub fn count(&self, e: Endpoint, status: u16) -> u64 {
        let ei = ENDPOINTS.iter().position(|(x, _)| *x == e).unwrap_or(0);
        let si = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len());
        self.requests[ei][si]
    }

    /// Rejections for `r` (for tests).
    pub fn rejected(&self, r: Reject) -> u64 {
        REJECTS
            .iter()
            .position(|(x, _)| *x == r)
            .map_or(0, |i| self.rejects[i])
    }

    /// Counts one UDP outcome.
    pub fn udp(&mut self, e: UdpEvent) {
        if let Some(i) = UDP_EVENTS.iter().position(|(x, _)| *x == e) {
            self.udp_events[i] += 1;
        }
    }

    /// How often `e` happened.
    pub fn udp_count(&self, e: UdpEvent) -> u64 {
        UDP_EVENTS
            .iter()
            .position(|(x, _)| *x == e)
            .map_or(0, |i| self.udp_events[i])
    }

    /// The text exposition.
    pub fn render(&self, g: Gauges, now_secs: u64) -> String {
        let mut s = String::with_capacity(4096);
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        };
        gauge(
            "phonebook_entries",
            "Live registrations.",
            u64::from(g.live),
        );
        gauge(
            "phonebook_retained",
            "Name bindings kept after expiry.",
            u64::from(g.retained),
        );
        gauge(
            "phonebook_capacity",
            "Most live registrations held.",
            u64::from(g.capacity),
        );
        gauge(
            "phonebook_friend_keys",
            "Friend keys stored.",
            u64::from(g.friend_keys),
        );
        gauge(
            "phonebook_connections_open",
            "Open client connections.",
            self.connections_open,
        );
        gauge("phonebook_uptime_seconds", "Seconds since start.", g.uptime);
        if let Some(at) = self.snapshot_at {
            gauge(
                "phonebook_snapshot_age_seconds",
                "Seconds since the last snapshot.",
                now_secs.saturating_sub(at),
            );
        }
        gauge(
            "phonebook_snapshot_duration_milliseconds",
            "Duration of the last snapshot.",
            self.snapshot_ms,
        );
        gauge(
            "phonebook_snapshot_bytes",
            "Size of the last snapshot.",
            self.snapshot_bytes,
        );
        gauge(
            "phonebook_udp_mappings",
            "Keep-alive mappings held (peers reachable for punch requests).",
            self.udp_mappings,
        );
        let _ = write!(
            s,
            "# HELP phonebook_udp_datagrams_total UDP datagrams by outcome.\n# TYPE phonebook_udp_datagrams_total counter\n"
        );
        for (i, (_, label)) in UDP_EVENTS.iter().enumerate() {
            let _ = writeln!(
                s,
                "phonebook_udp_datagrams_total{{outcome=\"{label}\"}} {}",
                self.udp_events[i]
            );
        }
        let _ = write!(
            s,
            "# HELP phonebook_udp_bytes_total UDP payload bytes.\n# TYPE phonebook_udp_bytes_total counter\nphonebook_udp_bytes_total{{direction=\"in\"}} {}\nphonebook_udp_bytes_total{{direction=\"out\"}} {}\n",
            self.udp_in.1, self.udp_out.1
        );
        self.relay.render(&mut s);
        self.tls.render(&mut s, g.wall_secs);
        self.redis.render(&mut s);
        let _ = write!(
            s,
            "# HELP phonebook_udp_packets_total UDP datagrams.\n# TYPE phonebook_udp_packets_total counter\nphonebook_udp_packets_total{{direction=\"in\"}} {}\nphonebook_udp_packets_total{{direction=\"out\"}} {}\n",
            self.udp_in.0, self.udp_out.0
        );
        let _ = write!(
            s,
            "# HELP phonebook_snapshot_failures_total Snapshots that failed.\n# TYPE phonebook_snapshot_failures_total counter\nphonebook_snapshot_failures_total {}\n",
            self.snapshot_failures
        );
        let _ = write!(
            s,
            "# HELP phonebook_connections_total Connections accepted.\n# TYPE phonebook_connections_total counter\nphonebook_connections_total {}\n",
            self.connections_total
        );
        let _ = write!(
            s,
            "# HELP phonebook_signatures_checked_total Signatures of register and unregister requests checked.\n# TYPE phonebook_signatures_checked_total counter\nphonebook_signatures_checked_total {}\n",
            self.signatures_checked
        );
        let _ = write!(
            s,
            "# HELP phonebook_signature_batches_total Batches those signatures were checked in.\n# TYPE phonebook_signature_batches_total counter\nphonebook_signature_batches_total {}\n",
            self.signature_batches
        );
        s.push_str("# HELP phonebook_requests_total Requests answered, by endpoint and status.\n# TYPE phonebook_requests_total counter\n");
        for (ei, (_, ename)) in ENDPOINTS.iter().enumerate() {
            for (si, n) in self.requests[ei].iter().enumerate() {
                if *n > 0 {
                    let status = STATUSES
                        .get(si)
                        .map_or("other".to_string(), |s| s.to_string());
                    let _ = writeln!(
                        s,
                        "phonebook_requests_total{{endpoint=\"{ename}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }
        s.push_str("# HELP phonebook_rejections_total Requests or connections turned away, by reason.\n# TYPE phonebook_rejections_total counter\n");
        for (i, (_, rname)) in REJECTS.iter().enumerate() {
            let _ = writeln!(
                s,
                "phonebook_rejections_total{{reason=\"{rname}\"}} {}",
                self.rejects[i]
            );
        }
        s
    }
}

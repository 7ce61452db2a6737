//! The accepted range of every numeric setting: checked wherever a value comes from (see
//! [`crate::cli`]) and shown by `--help`.

use std::ops::RangeInclusive;

/// `snapshot-interval`, seconds.
pub const SNAPSHOT_INTERVAL_RANGE: RangeInclusive<u32> = 1..=86_400;
/// `capacity`, registrations.
pub const CAPACITY_RANGE: RangeInclusive<u32> = 1..=50_000_000;
/// `ttl`, seconds (10 s to 7 days).
pub const TTL_RANGE: RangeInclusive<u32> = 10..=604_800;
/// `retention`, seconds (0 to 30 days).
pub const RETENTION_RANGE: RangeInclusive<u32> = 0..=2_592_000;
/// `max-skew`, seconds.
pub const MAX_SKEW_RANGE: RangeInclusive<u32> = 1..=86_400;
/// `max-connections`.
pub const MAX_CONNECTIONS_RANGE: RangeInclusive<u32> = 1..=1_000_000;
/// `max-header-bytes` and `max-body-bytes` (1 KiB to 1 MiB).
pub const MESSAGE_BYTES_RANGE: RangeInclusive<u32> = 1024..=1_048_576;
/// `read-timeout` and `idle-timeout`, seconds.
pub const TIMEOUT_RANGE: RangeInclusive<u32> = 1..=3600;
/// `rate-ip` and `rate-key`, requests per second; 0 means unlimited.
pub const RATE_RANGE: RangeInclusive<u32> = 0..=1_000_000;
/// `rate-ip-burst` and `rate-key-burst`, requests (unused when the rate is 0).
pub const BURST_RANGE: RangeInclusive<u32> = 1..=1_000_000;
/// `friend-keys-total`, keys (0 allows only public registrations with friends lists empty).
pub const FRIEND_KEYS_TOTAL_RANGE: RangeInclusive<u32> = 0..=100_000_000;

/// `max-records-per-address`, live records.
pub const RECORDS_PER_ADDRESS_RANGE: RangeInclusive<u32> = 1..=50_000_000;
/// `max-friend-keys-per-address` and `max-friend-keys-per-key`, keys.
pub const FRIEND_KEYS_QUOTA_RANGE: RangeInclusive<u32> = 0..=100_000_000;
/// `quota-ipv6-prefix`, bits.
pub const QUOTA_IPV6_PREFIX_RANGE: RangeInclusive<u32> = 32..=64;
/// `udp-mapping-ttl`, seconds.
pub const UDP_MAPPING_TTL_RANGE: RangeInclusive<u32> = 30..=3600;
/// `punch-rate`, punch requests per second per requester and per target (at least 1: the
/// service is useless without it; turn UDP off with `udp-listen = off` instead).
pub const PUNCH_RATE_RANGE: RangeInclusive<u32> = 1..=10_000;
/// `relay-max-connections`.
pub const RELAY_CONNECTIONS_RANGE: RangeInclusive<u32> = 1..=100_000;
/// `relay-max-sessions`, per connection.
pub const RELAY_SESSIONS_RANGE: RangeInclusive<u32> = 1..=1024;
/// `relay-rate` and `relay-rate-total`, bytes per second (0: unlimited).
pub const RELAY_RATE_RANGE: RangeInclusive<u32> = 0..=4_000_000_000;
/// `relay-idle`, seconds.
pub const RELAY_IDLE_RANGE: RangeInclusive<u32> = 10..=3600;
/// `tls-handshake-timeout`, seconds.
pub const TLS_HANDSHAKE_TIMEOUT_RANGE: RangeInclusive<u32> = 1..=120;

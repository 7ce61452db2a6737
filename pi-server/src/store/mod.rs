//! Several phone books over one Redis (issue 13): the optional shared store.
//!
//! Every instance keeps answering lookups from its own in-memory [`crate::table::Table`];
//! Redis is the shared source of truth for writes. A register or unregister whose signature
//! verified is decided against the local table as without Redis, then written to Redis with a
//! compare-and-set ([`redis::Redis::cas`]: only if the stored record still has the key and
//! timestamp the local table had, or is still absent), and only once Redis acknowledged it is
//! the answer sent (`commit.rs`). A failed compare means another instance wrote first: the
//! record is reloaded and the request decided again, once. Every instance tails the change
//! stream and applies the others' writes (`replicate.rs`); at start and after every reconnect
//! it reads all records again.
//!
//! Records travel as opaque bytes made by the snapshot record codec
//! ([`crate::snapshot::encode_record`] / [`crate::snapshot::decode_record`]), so a change of
//! the record format flows through; `record.rs` is the one place that looks inside.
//!
//! Keys (all in one Redis Cluster hash slot, the `{prefix}` tag, since the compare-and-set
//! script touches a record and the stream at once):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{P}:r:<id>` | hash | `k` the owner's key (32 bytes), `t` the last signed timestamp (decimal), `v` the encoded record; expires with the record (TTL + retention, or retention) |
//! | `{P}:log` | stream | one entry per accepted write: `v` the encoded record (trimmed to about [`STREAM_MAX_LEN`]) |
//! | `{P}:secret` | string | the lookup-token key (32 bytes), set once by the first instance |
//! | `{P}:bus`, `{P}:bus:<instance>` | pub/sub channels | messages between instances ([`crate::bus`]) |

#[cfg(feature = "redis")]
pub(crate) mod commit;
#[cfg(not(feature = "redis"))]
mod off;
#[cfg(feature = "redis")]
pub(crate) mod record;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
pub(crate) mod replicate;
#[cfg(not(feature = "redis"))]
pub use off::redis;
#[cfg(not(feature = "redis"))]
pub(crate) use off::{commit, replicate};

/// Entries the change stream keeps (`XADD MAXLEN ~`): an instance that falls further behind
/// notices the gap (`replicate.rs`) and reads every record again.
pub const STREAM_MAX_LEN: u32 = 100_000;
/// Stream entries read per `XREAD`.
pub const STREAM_READ_COUNT: usize = 512;
/// Milliseconds an `XREAD` waits for new entries before it asks again.
pub const STREAM_BLOCK_MS: usize = 1000;
/// Keys asked for per `SCAN` step of a full read.
pub const SCAN_COUNT: usize = 1000;
/// Seconds a connection attempt or a command may take before Redis counts as unreachable.
pub const COMMAND_TIMEOUT_SECS: u64 = 2;
/// First wait before reconnecting, in milliseconds; doubles up to [`RECONNECT_MAX_MS`].
pub const RECONNECT_MIN_MS: u64 = 100;
/// Longest wait between reconnection attempts, in milliseconds.
pub const RECONNECT_MAX_MS: u64 = 5_000;
/// `Retry-After` of a write refused because Redis is unreachable, in seconds.
pub const UNAVAILABLE_RETRY_SECS: u32 = 5;
/// Longest `redis-url`, in bytes.
pub const MAX_URL_LEN: usize = 1024;
/// Longest `redis-prefix`, in bytes.
pub const MAX_PREFIX_LEN: usize = 64;

/// What a build without the `redis` feature says to `redis-url`.
pub const WITHOUT_REDIS: &str =
    "this pi-server was built without Redis support (cargo feature `redis`)";

/// Checks a `redis-url` setting without connecting: the error names what is wrong.
pub fn check_url(v: &str) -> Result<String, String> {
    if v.len() > MAX_URL_LEN || v.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "must be a redis:// URL of at most {MAX_URL_LEN} bytes without spaces"
        ));
    }
    let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|s| v.starts_with(s));
    if !scheme_ok {
        return Err(
            "must start with redis:// (redis://[user:password@]host[:port][/db]), rediss:// \
             (TLS) or redis+unix:///path"
                .to_string(),
        );
    }
    #[cfg(feature = "redis")]
    ::redis::Client::open(v).map_err(|e| format!("not a usable Redis URL: {e}"))?;
    #[cfg(not(feature = "redis"))]
    return Err(WITHOUT_REDIS.to_string());
    #[cfg(feature = "redis")]
    Ok(v.to_owned())
}

/// Checks a `redis-prefix` setting.
pub fn check_prefix(v: &str) -> Result<String, String> {
    if v.is_empty()
        || v.len() > MAX_PREFIX_LEN
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(format!(
            "must be 1 to {MAX_PREFIX_LEN} letters, digits, '-', '_', '.' or ':'"
        ));
    }
    Ok(v.to_owned())
}

/// The Redis keys of one phone book (see the module docs).
#[derive(Debug, Clone)]
pub struct Keys {
    tag: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Keys {
            tag: format!("{{{prefix}}}"),
        }
    }

    /// The hash of the record with Redis id `id` (`<lookup id>.<key>`, see
    /// `store::record::record_id`).
    pub fn record(&self, id: &str) -> String {
        format!("{}:r:{id}", self.tag)
    }

    /// The public binding of lookup id `lookup_id` (its text form): the record key of the
    /// public record that binds it, while it lives and for the retention after.
    pub fn binding(&self, lookup_id: &str) -> String {
        format!("{}:p:{lookup_id}", self.tag)
    }

    /// The pattern of every record key (for `SCAN`).
    pub fn records(&self) -> String {
        format!("{}:r:*", self.tag)
    }

    /// The change stream.
    pub fn log(&self) -> String {
        format!("{}:log", self.tag)
    }

    /// The lookup-token key.
    pub fn secret(&self) -> String {
        format!("{}:secret", self.tag)
    }

    /// The pub/sub channel of messages to every instance (see [`crate::bus`]).
    pub fn bus(&self) -> String {
        format!("{}:bus", self.tag)
    }

    /// The pub/sub channel of messages to instance `id` (its text form).
    pub fn bus_of(&self, id: &str) -> String {
        format!("{}:bus:{id}", self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_prefixes_are_checked() {
        #[cfg(not(feature = "redis"))]
        assert_eq!(
            check_url("redis://127.0.0.1:6379/0").unwrap_err(),
            WITHOUT_REDIS
        );
        #[cfg(feature = "redis")]
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        #[cfg(feature = "redis")]
        assert!(check_url("redis://:secret@db.example:6380").is_ok());
        #[cfg(feature = "redis")]
        assert!(check_url("redis+unix:///run/redis.sock").is_ok());
        #[cfg(feature = "redis")]
        assert!(check_url("rediss://db.example:6380").is_ok());
        assert!(check_url("http://x").unwrap_err().contains("redis://"));
        assert!(check_url("redis://a b").is_err());
        assert!(check_url("redis://host:notaport").is_err());
        assert!(check_prefix("pb-1.a:b_c").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("a{b}").is_err());
        let k = Keys::new("pb");
        assert_eq!(k.record("ab"), "{pb}:r:ab");
        assert_eq!(k.log(), "{pb}:log");
    }
}

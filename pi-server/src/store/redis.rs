//! The Redis side: connections, the compare-and-set script, full reads and the stream.
//! Replies are decoded defensively: a reply of an unexpected shape is an error, never a panic.

use super::{COMMAND_TIMEOUT_SECS, Keys, SCAN_COUNT, STREAM_BLOCK_MS, STREAM_MAX_LEN};
use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisError, Script, Value};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Writes a record only if the stored one still has the expected key and timestamp (or is
/// still absent, when the expected key is empty), and, for a public record (`ARGV[8]` = 1),
/// only if no other record holds the public binding of its lookup id (`KEYS[3]`, which names
/// the binding record's key); sets its expiry, takes or releases the binding, and appends the
/// record to the stream. Returns `{1}`, or `{0, stored record or '', PTTL}` when a compare
/// failed: this record's, or the binding record's.
const CAS_SCRIPT: &str = r"
if ARGV[8] == '1' then
  local b = redis.call('GET', KEYS[3])
  if b and b ~= KEYS[1] then
    local v = redis.call('HGET', b, 'v')
    return {0, v or '', redis.call('PTTL', b)}
  end
end
local cur = redis.call('HMGET', KEYS[1], 'k', 't')
local ok
if ARGV[1] == '' then ok = (cur[1] == false) else ok = (cur[1] == ARGV[1] and cur[2] == ARGV[2]) end
if not ok then
  local v = redis.call('HGET', KEYS[1], 'v')
  return {0, v or '', redis.call('PTTL', KEYS[1])}
end
redis.call('HSET', KEYS[1], 'k', ARGV[3], 't', ARGV[4], 'v', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
if ARGV[8] == '1' then
  redis.call('SET', KEYS[3], KEYS[1], 'PX', ARGV[6])
elseif redis.call('GET', KEYS[3]) == KEYS[1] then
  redis.call('DEL', KEYS[3])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'v', ARGV[5])
return {1}
";

/// Why a Redis operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// Not connected (Redis unreachable or reconnecting).
    Down,
    /// The command failed (connection lost, timeout, Redis error).
    Redis(RedisError),
    /// A reply of an unexpected shape.
    BadReply(&'static str),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Down => f.write_str("not connected to Redis"),
            StoreError::Redis(e) => write!(f, "Redis: {e}"),
            StoreError::BadReply(what) => write!(f, "unexpected reply from Redis: {what}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        StoreError::Redis(e)
    }
}

/// A stream entry: its id and its record (`None`: an entry without one, skipped).
pub type StreamEntry = (String, Option<Vec<u8>>);

/// A record as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The encoded record.
    pub bytes: Vec<u8>,
    /// Milliseconds Redis keeps it.
    pub pttl_ms: i64,
}

/// What a compare-and-set did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cas {
    /// Written.
    Written,
    /// Another instance wrote first: what Redis holds now (`None`: nothing).
    Conflict(Option<Fetched>),
}

/// One write for [`Redis::cas`].
#[derive(Debug)]
pub struct Write<'a> {
    /// The record's Redis id.
    pub id: &'a str,
    /// The text of the record's lookup id (the public binding is per lookup id).
    pub lookup_id: &'a str,
    /// The record is public (live, or retained after being public): it takes the binding.
    pub public: bool,
    /// The key and timestamp the local table had before (`None`: no record).
    pub expect: Option<([u8; 32], u64)>,
    /// The new owner key.
    pub key: [u8; 32],
    /// The new timestamp.
    pub timestamp: u64,
    /// The encoded record.
    pub bytes: &'a [u8],
    /// Milliseconds until Redis may forget it.
    pub expire_ms: u64,
}

/// One lock per name being written (an entry only while a write of it waits or runs, so
/// bounded by the connections).
#[derive(Debug, Default)]
pub(crate) struct NameLocks {
    map: RefCell<HashMap<String, Arc<async_lock::Mutex<()>>>>,
}

/// Holds a name's turn; frees the entry when the last holder or waiter is gone.
pub(crate) struct NameGuard<'a> {
    locks: &'a NameLocks,
    name: String,
    guard: Option<async_lock::MutexGuardArc<()>>,
}

impl NameLocks {
    /// Waits for the turn of `name` (a canonical name).
    pub(crate) async fn lock(&self, name: String) -> NameGuard<'_> {
        let lock = self
            .map
            .borrow_mut()
            .entry(name.clone())
            .or_insert_with(|| Arc::new(async_lock::Mutex::new(())))
            .clone();
        NameGuard {
            locks: self,
            name,
            guard: Some(lock.lock_arc().await),
        }
    }

    /// Names with a write waiting or running.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.borrow().len()
    }
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map.borrow_mut();
        if map
            .get(&self.name)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&self.name);
        }
    }
}

/// The connection to Redis of one phone book.
pub struct Redis {
    client: Client,
    keys: Keys,
    conn: RefCell<Option<MultiplexedConnection>>,
    cas: Script,
    up: Cell<bool>,
    /// Serializes this instance's writes of one name: a write decides against the table
    /// and must see the previous write's outcome there. Writes of different names go to
    /// Redis at the same time (pipelined on one connection; Redis's append-only file then
    /// syncs them together).
    pub(crate) names: NameLocks,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("keys", &self.keys)
            .field("up", &self.up.get())
            .finish_non_exhaustive()
    }
}

fn config(extra: Duration) -> AsyncConnectionConfig {
    let t = Duration::from_secs(COMMAND_TIMEOUT_SECS);
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(t))
        .set_response_timeout(Some(t + extra))
}

impl Redis {
    /// A client for `url` (checked, not connected); for `rediss://`, trusting the PEM
    /// certificates `ca` if given, else the bundled web roots.
    pub fn new(url: &str, prefix: &str, ca: Option<Vec<u8>>) -> Result<Self, StoreError> {
        let client = match ca {
            None => Client::open(url)?,
            Some(pem) => Client::build_with_tls(
                url,
                ::redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )?,
        };
        Ok(Redis {
            client,
            keys: Keys::new(prefix),
            conn: RefCell::new(None),
            cas: Script::new(CAS_SCRIPT),
            up: Cell::new(false),
            names: NameLocks::default(),
        })
    }

    /// The keys used.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Whether writes can go to Redis now.
    pub fn is_up(&self) -> bool {
        self.up.get()
    }

    /// A new connection for commands.
    pub async fn connect(&self) -> Result<MultiplexedConnection, StoreError> {
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config(Duration::ZERO))
            .await?)
    }

    /// A new connection for blocking stream reads (its timeout covers the block).
    pub async fn connect_for_stream(&self) -> Result<MultiplexedConnection, StoreError> {
        let block = Duration::from_millis(STREAM_BLOCK_MS as u64);
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config(block))
            .await?)
    }

    /// Uses `conn` for writes from now on and counts Redis as up (or drops it, and down).
    pub fn set_connection(&self, conn: Option<MultiplexedConnection>) {
        self.up.set(conn.is_some());
        *self.conn.borrow_mut() = conn;
    }

    fn conn(&self) -> Result<MultiplexedConnection, StoreError> {
        self.conn.borrow().clone().ok_or(StoreError::Down)
    }

    /// Counts Redis as down after a failed command on the write connection, so writes are
    /// refused at once until the replication task has reconnected.
    pub fn failed(&self) {
        self.set_connection(None);
    }

    /// The shared token key: `candidate` if no instance set one before, else theirs.
    pub async fn token_secret(
        &self,
        conn: &mut MultiplexedConnection,
        candidate: [u8; 32],
    ) -> Result<[u8; 32], StoreError> {
        let key = self.keys.secret();
        let _: Value = ::redis::cmd("SET")
            .arg(&key)
            .arg(&candidate[..])
            .arg("NX")
            .query_async(conn)
            .await?;
        let v: Value = ::redis::cmd("GET").arg(&key).query_async(conn).await?;
        match v {
            Value::BulkString(b) => b
                .try_into()
                .map_err(|_| StoreError::BadReply("token secret is not 32 bytes")),
            _ => Err(StoreError::BadReply("token secret missing")),
        }
    }

    /// Writes `w` if Redis still holds what the table had (the compare-and-set script).
    pub async fn cas(&self, w: &Write<'_>) -> Result<Cas, StoreError> {
        let mut conn = self.conn()?;
        let (ek, et): (&[u8], String) = match &w.expect {
            Some((k, t)) => (&k[..], t.to_string()),
            None => (&[], String::new()),
        };
        let v: Value = self
            .cas
            .key(self.keys.record(w.id))
            .key(self.keys.log())
            .key(self.keys.binding(w.lookup_id))
            .arg(ek)
            .arg(et)
            .arg(&w.key[..])
            .arg(w.timestamp.to_string())
            .arg(w.bytes)
            .arg(w.expire_ms)
            .arg(STREAM_MAX_LEN)
            .arg(if w.public { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await?;
        decode_cas(v)
    }

    /// The record `id`, if Redis holds one.
    pub async fn fetch(&self, id: &str) -> Result<Option<Fetched>, StoreError> {
        let mut conn = self.conn()?;
        let key = self.keys.record(id);
        let v: Value = ::redis::pipe()
            .ignore_errors()
            .cmd("HGET")
            .arg(&key)
            .arg("v")
            .cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        match v {
            Value::Array(items) if items.len() == 2 => {
                let mut it = items.into_iter();
                Ok(fetched(it.next(), it.next()))
            }
            _ => Err(StoreError::BadReply("HGET and PTTL")),
        }
    }

    /// Publishes `messages` (channel, bytes) in order, in one round trip.
    pub async fn publish(&self, messages: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut pipe = ::redis::pipe();
        for (channel, bytes) in messages {
            pipe.cmd("PUBLISH").arg(channel).arg(bytes).ignore();
        }
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// A new connection subscribed to `channels` (within the command timeout).
    pub async fn subscribe(&self, channels: &[String]) -> Result<::redis::aio::PubSub, StoreError> {
        use futures_lite::FutureExt;
        let t = Duration::from_secs(COMMAND_TIMEOUT_SECS);
        async {
            let mut ps = self.client.get_async_pubsub().await?;
            for c in channels {
                ps.subscribe(c).await?;
            }
            Ok(ps)
        }
        .or(async {
            async_io::Timer::after(t).await;
            Err(StoreError::BadReply("no answer to SUBSCRIBE in time"))
        })
        .await
    }

    /// Where the stream stands now (`XINFO STREAM`, Redis 7 or Valkey 7.2): where to tail
    /// from after a full read that starts now, and how many entries were ever added and are
    /// kept. No stream yet: nothing added.
    pub async fn stream_info(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<StreamInfo, StoreError> {
        let r: Result<Value, RedisError> = ::redis::cmd("XINFO")
            .arg("STREAM")
            .arg(self.keys.log())
            .query_async(conn)
            .await;
        match r {
            Ok(v) => decode_xinfo(v),
            Err(e) if e.to_string().contains("no such key") => Ok(StreamInfo {
                last: "0-0".to_owned(),
                added: 0,
                length: 0,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// One `SCAN` step of every record: the next cursor (0 at the end), the records, and how
    /// many keys held something else (of another type or shape: skipped).
    pub async fn scan(
        &self,
        conn: &mut MultiplexedConnection,
        cursor: u64,
    ) -> Result<(u64, Vec<Fetched>, u64), StoreError> {
        let v: Value = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(self.keys.records())
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await?;
        let (next, keys) = match v {
            Value::Array(items) if items.len() == 2 => {
                let mut it = items.into_iter();
                let next = match it.next() {
                    Some(Value::BulkString(b)) => std::str::from_utf8(&b)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or(StoreError::BadReply("SCAN cursor"))?,
                    _ => return Err(StoreError::BadReply("SCAN cursor")),
                };
                match it.next() {
                    Some(Value::Array(keys)) => (next, keys),
                    _ => return Err(StoreError::BadReply("SCAN keys")),
                }
            }
            _ => return Err(StoreError::BadReply("SCAN")),
        };
        if keys.is_empty() {
            return Ok((next, Vec::new(), 0));
        }
        let mut pipe = ::redis::pipe();
        // A key of another type answers WRONGTYPE: that key is skipped, not the whole step.
        pipe.ignore_errors();
        for k in &keys {
            if let Value::BulkString(k) = k {
                pipe.cmd("HGET")
                    .arg(&k[..])
                    .arg("v")
                    .cmd("PTTL")
                    .arg(&k[..]);
            }
        }
        let v: Value = pipe.query_async(conn).await?;
        let Value::Array(items) = v else {
            return Err(StoreError::BadReply("HGET and PTTL"));
        };
        let mut out = Vec::with_capacity(items.len() / 2);
        let mut bad = 0;
        let mut it = items.into_iter();
        while let (Some(a), Some(b)) = (it.next(), it.next()) {
            let gone = matches!(a, Value::Nil);
            match fetched(Some(a), Some(b)) {
                Some(f) => out.push(f),
                // Expired between SCAN and HGET: nothing to count.
                None if gone => {}
                None => bad += 1,
            }
        }
        Ok((next, out, bad))
    }

    /// Waits up to [`STREAM_BLOCK_MS`] for entries after `after`; returns them in order as
    /// (id, record bytes) (`None` for an entry without a record, which is skipped).
    pub async fn read_stream(
        &self,
        conn: &mut MultiplexedConnection,
        after: &str,
        count: usize,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        let v: Value = ::redis::cmd("XREAD")
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(STREAM_BLOCK_MS)
            .arg("STREAMS")
            .arg(self.keys.log())
            .arg(after)
            .query_async(conn)
            .await?;
        decode_xread(v)
    }
}

/// A record from the replies to `HGET key v` and `PTTL key`; `None` if absent or malformed.
fn fetched(v: Option<Value>, pttl: Option<Value>) -> Option<Fetched> {
    match (v, pttl) {
        (Some(Value::BulkString(bytes)), Some(Value::Int(pttl))) if !bytes.is_empty() => {
            Some(Fetched {
                bytes,
                // -1: no expiry (written by hand?): keep it for a day, as a retained binding.
                pttl_ms: if pttl == -1 { 86_400_000 } else { pttl },
            })
        }
        _ => None,
    }
}

fn decode_cas(v: Value) -> Result<Cas, StoreError> {
    let Value::Array(items) = v else {
        return Err(StoreError::BadReply("compare-and-set"));
    };
    let mut it = items.into_iter();
    match it.next() {
        Some(Value::Int(1)) => Ok(Cas::Written),
        Some(Value::Int(0)) => Ok(Cas::Conflict(fetched(it.next(), it.next()))),
        _ => Err(StoreError::BadReply("compare-and-set")),
    }
}

/// One stream entry `[id, [field, value, ...]]`: its id and its `v` field.
fn entry(e: Value) -> Option<StreamEntry> {
    let Value::Array(parts) = e else { return None };
    let mut it = parts.into_iter();
    let id = match it.next()? {
        Value::BulkString(b) => String::from_utf8(b).ok()?,
        Value::SimpleString(s) => s,
        _ => return None,
    };
    let v = match it.next() {
        Some(Value::Array(fields)) => {
            let mut v = None;
            let mut f = fields.into_iter();
            while let (Some(name), Some(value)) = (f.next(), f.next()) {
                if let (Value::BulkString(n), Value::BulkString(b)) = (name, value)
                    && n == b"v"
                {
                    v = Some(b);
                }
            }
            v
        }
        _ => None,
    };
    Some((id, v))
}

/// Where the change stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The last id it generated ("0-0": none).
    pub last: String,
    /// Entries ever added.
    pub added: u64,
    /// Entries kept.
    pub length: u64,
}

impl StreamInfo {
    /// Entries trimmed away from its start (the phone book never deletes entries otherwise).
    pub fn trimmed(&self) -> u64 {
        self.added.saturating_sub(self.length)
    }
}

/// An `XINFO STREAM` reply: field names and values in turn (RESP2) or a map (RESP3).
fn decode_xinfo(v: Value) -> Result<StreamInfo, StoreError> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Array(items) => {
            let mut it = items.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            out
        }
        Value::Map(m) => m,
        _ => return Err(StoreError::BadReply("XINFO STREAM")),
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok().map(str::to_owned),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let int = |v: &Value| match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    };
    let (mut last, mut added, mut length) = (None, None, None);
    for (k, v) in &pairs {
        match text(k).as_deref() {
            Some("last-generated-id") => last = text(v),
            Some("entries-added") => added = int(v),
            Some("length") => length = int(v),
            _ => {}
        }
    }
    match (last, added, length) {
        (Some(last), Some(added), Some(length)) => Ok(StreamInfo {
            last,
            added,
            length,
        }),
        _ => Err(StoreError::BadReply(
            "XINFO STREAM without last-generated-id, entries-added and length (Redis 7 needed)",
        )),
    }
}

/// An `XREAD` reply of one stream: `nil` (nothing new) or `[[name, [entry, ...]]]`.
fn decode_xread(v: Value) -> Result<Vec<StreamEntry>, StoreError> {
    let streams = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(s) => s,
        _ => return Err(StoreError::BadReply("XREAD")),
    };
    let mut out = Vec::new();
    for s in streams {
        let Value::Array(pair) = s else {
            return Err(StoreError::BadReply("XREAD stream"));
        };
        let Some(Value::Array(entries)) = pair.into_iter().nth(1) else {
            return Err(StoreError::BadReply("XREAD entries"));
        };
        for e in entries {
            out.push(entry(e).ok_or(StoreError::BadReply("XREAD entry"))?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bulk(b: &[u8]) -> Value {
        Value::BulkString(b.to_vec())
    }

    #[test]
    fn name_locks_take_turns_and_free_their_entries() {
        let l = NameLocks::default();
        smol::block_on(async {
            let a = l.lock("a".into()).await;
            let b = l.lock("b".into()).await;
            assert_eq!(l.len(), 2);
            // A second writer of "a" waits for the first.
            let mut second = Box::pin(l.lock("a".into()));
            assert!(futures_lite::future::poll_once(&mut second).await.is_none());
            drop(a);
            let a2 = second.await;
            drop((a2, b));
        });
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn stream_info_decodes_in_both_protocols() {
        let fields = vec![
            (bulk(b"length"), Value::Int(100_000)),
            (bulk(b"radix-tree-keys"), Value::Int(1000)),
            (bulk(b"last-generated-id"), bulk(b"1700000000000-7")),
            (bulk(b"entries-added"), Value::Int(120_001)),
        ];
        let want = StreamInfo {
            last: "1700000000000-7".to_owned(),
            added: 120_001,
            length: 100_000,
        };
        let flat = fields
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect();
        assert_eq!(decode_xinfo(Value::Array(flat)).unwrap(), want);
        assert_eq!(decode_xinfo(Value::Map(fields.clone())).unwrap(), want);
        assert_eq!(want.trimmed(), 20_001);
        // Redis 6 has no entries-added: a clear error, not a guess.
        let old = Value::Array(vec![bulk(b"length"), Value::Int(1)]);
        assert!(
            decode_xinfo(old)
                .unwrap_err()
                .to_string()
                .contains("Redis 7")
        );
    }

    #[test]
    fn replies_decode() {
        assert_eq!(
            decode_cas(Value::Array(vec![Value::Int(1)])).unwrap(),
            Cas::Written
        );
        assert_eq!(
            decode_cas(Value::Array(vec![
                Value::Int(0),
                bulk(b"rec"),
                Value::Int(5)
            ]))
            .unwrap(),
            Cas::Conflict(Some(Fetched {
                bytes: b"rec".to_vec(),
                pttl_ms: 5
            }))
        );
        assert_eq!(
            decode_cas(Value::Array(vec![Value::Int(0), bulk(b""), Value::Int(-2)])).unwrap(),
            Cas::Conflict(None)
        );
        assert!(decode_cas(Value::Nil).is_err());
        let x = Value::Array(vec![Value::Array(vec![
            bulk(b"{pb}:log"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk(b"1-0"),
                    Value::Array(vec![bulk(b"v"), bulk(b"r1")]),
                ]),
                Value::Array(vec![
                    bulk(b"2-0"),
                    Value::Array(vec![bulk(b"x"), bulk(b"r2")]),
                ]),
            ]),
        ])]);
        assert_eq!(
            decode_xread(x).unwrap(),
            vec![
                ("1-0".to_owned(), Some(b"r1".to_vec())),
                ("2-0".to_owned(), None)
            ]
        );
        assert!(decode_xread(Value::Nil).unwrap().is_empty());
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::BulkString),
            Just(Value::Okay),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            proptest::collection::vec(inner, 0..4).prop_map(Value::Array)
        })
    }

    proptest! {
        /// Whatever Redis (or something posing as it) answers, decoding never panics.
        #[test]
        fn any_reply_decodes_without_panic(v in arb_value()) {
            let _ = decode_cas(v.clone());
            let _ = decode_xread(v.clone());
            let _ = decode_xinfo(v.clone());
            let _ = entry(v);
        }
    }
}

//! Keeps the table in step with Redis: connects (with capped exponential back-off), reads
//! every record, then tails the change stream and applies what other instances wrote.

use super::redis::{Redis, StoreError, StreamInfo};
use super::{RECONNECT_MAX_MS, RECONNECT_MIN_MS, STREAM_READ_COUNT, record};
use crate::api::App;
use crate::server::Shared;
use ::redis::aio::MultiplexedConnection;
use async_io::Timer;
use std::rc::Rc;
use std::time::Duration;

/// A session that connected and read every record, ready to tail the stream.
pub(crate) struct Ready {
    write: MultiplexedConnection,
    stream: MultiplexedConnection,
    last: String,
    /// Entries of the stream up to and including `last` (Redis's `entries-added` then).
    position: u64,
}

impl Ready {
    /// The connection writes go through (the server takes it at start, before it listens).
    pub(crate) fn writer(&self) -> MultiplexedConnection {
        self.write.clone()
    }
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready").field("last", &self.last).finish()
    }
}

/// Connects and reads every record, giving each to `apply` with the milliseconds Redis
/// keeps it (and `None` for each key that holds no record); returns how many records and
/// the session.
pub(crate) async fn connect_and_read(
    redis: &Redis,
    apply: impl FnMut(Option<(&[u8], i64)>),
) -> Result<(u64, Ready), StoreError> {
    let mut write = redis.connect().await?;
    let stream = redis.connect_for_stream().await?;
    let (records, info) = read_all(redis, &mut write, apply).await?;
    Ok((
        records,
        Ready {
            write,
            stream,
            last: info.last,
            position: info.added,
        },
    ))
}

/// Notes where the stream ends, then reads every record (entries added meanwhile are read
/// from the stream after): the records read and the stream's position.
async fn read_all(
    redis: &Redis,
    conn: &mut MultiplexedConnection,
    mut apply: impl FnMut(Option<(&[u8], i64)>),
) -> Result<(u64, StreamInfo), StoreError> {
    let info = redis.stream_info(conn).await?;
    let mut cursor = 0;
    let mut records = 0u64;
    loop {
        let (next, batch, bad) = redis.scan(conn, cursor).await?;
        for f in &batch {
            apply(Some((&f.bytes, f.pttl_ms)));
        }
        for _ in 0..bad {
            apply(None);
        }
        records += batch.len() as u64;
        cursor = next;
        if cursor == 0 {
            return Ok((records, info));
        }
    }
}

/// Runs as long as the server: never returns. `ready` is the session the server started
/// with (see [`connect_and_read`]), if any.
pub(crate) async fn run(shared: Rc<Shared>, redis: Rc<Redis>, mut ready: Option<Ready>) {
    let mut backoff = RECONNECT_MIN_MS;
    let mut connected_before = false;
    loop {
        let e = session(
            &shared,
            &redis,
            ready.take(),
            &mut connected_before,
            &mut backoff,
        )
        .await;
        redis.set_connection(None);
        {
            let mut app = shared.app.borrow_mut();
            app.metrics.redis.up = false;
            app.metrics.redis.errors += 1;
        }
        log::warn!(
            "Redis unreachable ({e}); writes answer 503 until it is back, retrying in {backoff} ms"
        );
        Timer::after(Duration::from_millis(backoff)).await;
        backoff = (backoff * 2).min(RECONNECT_MAX_MS);
    }
}

/// Applies one record from Redis; counts and logs one that does not decode (or a key that
/// holds no record: `bytes` `None`).
pub(crate) fn apply_to(app: &mut App, bytes: Option<&[u8]>, pttl_ms: Option<i64>, now: u32) {
    let Some(bytes) = bytes else {
        app.metrics.redis.bad_records += 1;
        log::warn!("Redis holds a key of the phone book that is not a record; skipped");
        return;
    };
    let retention = app.config.retention;
    match record::apply(&mut app.table, bytes, pttl_ms, retention, now) {
        Ok(record::Applied::Put) => app.metrics.redis.applied += 1,
        Ok(record::Applied::Unchanged) => {}
        Ok(record::Applied::Refused) => app.metrics.redis.refused += 1,
        Err(e) => {
            app.metrics.redis.bad_records += 1;
            log::warn!("Redis holds a record that does not decode ({e}); skipped");
        }
    }
}

fn apply(shared: &Shared, bytes: Option<&[u8]>, pttl_ms: Option<i64>) {
    let now = shared.now().secs();
    apply_to(&mut shared.app.borrow_mut(), bytes, pttl_ms, now);
}

async fn session(
    shared: &Shared,
    redis: &Redis,
    ready: Option<Ready>,
    connected_before: &mut bool,
    backoff: &mut u64,
) -> StoreError {
    let r: Result<std::convert::Infallible, StoreError> = async {
        let Ready {
            write,
            mut stream,
            mut last,
            mut position,
        } = match ready {
            Some(r) => r,
            None => {
                let (records, r) = connect_and_read(redis, |r| match r {
                    Some((b, pttl)) => apply(shared, Some(b), Some(pttl)),
                    None => apply(shared, None, None),
                })
                .await?;
                log::info!("Redis connected; {records} records read");
                r
            }
        };
        redis.set_connection(Some(write));
        {
            let mut app = shared.app.borrow_mut();
            app.metrics.redis.up = true;
            if *connected_before {
                app.metrics.redis.reconnects += 1;
            }
        }
        *connected_before = true;
        *backoff = RECONNECT_MIN_MS;
        loop {
            let entries = redis
                .read_stream(&mut stream, &last, STREAM_READ_COUNT)
                .await?;
            if !redis.is_up() {
                // A write failed on the other connection: start over.
                return Err(StoreError::Down);
            }
            if entries.len() == STREAM_READ_COUNT {
                // Far behind: were entries we have not read trimmed away?
                let info = redis.stream_info(&mut stream).await?;
                if info.trimmed() > position {
                    log::warn!(
                        "Redis: this instance fell more than the change stream's length \
                         behind; reading every record again"
                    );
                    shared.app.borrow_mut().metrics.redis.resyncs += 1;
                    let (records, info) = read_all(redis, &mut stream, |r| match r {
                        Some((b, pttl)) => apply(shared, Some(b), Some(pttl)),
                        None => apply(shared, None, None),
                    })
                    .await?;
                    log::info!("Redis: {records} records read again");
                    (last, position) = (info.last, info.added);
                    continue;
                }
            }
            for (id, v) in entries {
                apply(shared, v.as_deref(), None);
                last = id;
                position += 1;
            }
        }
    }
    .await;
    match r {
        Err(e) => e,
    }
}

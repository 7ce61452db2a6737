//! Keeps the table in step with Redis: connects (with capped exponential back-off), reads
//! every record, then tails the change stream and applies what other instances wrote.

use super::redis::{Redis, StoreError};
use super::{RECONNECT_MAX_MS, RECONNECT_MIN_MS, STREAM_READ_COUNT, record};
use crate::server::Shared;
use async_io::Timer;
use std::rc::Rc;
use std::time::Duration;

/// Runs as long as the server: never returns.
pub(crate) async fn run(shared: Rc<Shared>, redis: Rc<Redis>) {
    let mut backoff = RECONNECT_MIN_MS;
    let mut connected_before = false;
    loop {
        let e = session(&shared, &redis, &mut connected_before, &mut backoff).await;
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

/// Applies one record from Redis; counts and logs one that does not decode.
fn apply(shared: &Shared, bytes: &[u8], pttl_ms: Option<i64>) {
    let now = shared.now().secs();
    let mut app = shared.app.borrow_mut();
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

async fn session(
    shared: &Shared,
    redis: &Redis,
    connected_before: &mut bool,
    backoff: &mut u64,
) -> StoreError {
    let r: Result<std::convert::Infallible, StoreError> = async {
        let mut w = redis.connect().await?;
        let mut r = redis.connect_for_stream().await?;
        let mut last = redis.stream_end(&mut w).await?;
        let mut cursor = 0;
        let mut records = 0u64;
        loop {
            let (next, batch) = redis.scan(&mut w, cursor).await?;
            for f in &batch {
                apply(shared, &f.bytes, Some(f.pttl_ms));
            }
            records += batch.len() as u64;
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        redis.set_connection(Some(w));
        {
            let mut app = shared.app.borrow_mut();
            app.metrics.redis.up = true;
            if *connected_before {
                app.metrics.redis.reconnects += 1;
            }
        }
        *connected_before = true;
        *backoff = RECONNECT_MIN_MS;
        log::info!("Redis connected; {records} records read");
        loop {
            let entries = redis.read_stream(&mut r, &last, STREAM_READ_COUNT).await?;
            if !redis.is_up() {
                // A write failed on the other connection: start over.
                return Err(StoreError::Down);
            }
            for (id, v) in entries {
                if let Some(v) = v {
                    apply(shared, &v, None);
                }
                last = id;
            }
        }
    }
    .await;
    match r {
        Err(e) => e,
    }
}

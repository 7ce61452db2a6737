//! A signed write over Redis: decided against the local table, written to Redis with a
//! compare-and-set, answered once Redis acknowledged it.

use super::UNAVAILABLE_RETRY_SECS;
use super::record::{self, Stored};
use super::redis::{Cas, Redis, Write};
use crate::api::Pending;
use crate::server::Shared;

/// Decisions per request: the first, and one more after another instance wrote first.
pub const ATTEMPTS: usize = 2;

fn changed(before: &Option<Stored>, after: &Option<Stored>) -> bool {
    match (before, after) {
        (Some(b), Some(a)) => (b.key, b.timestamp, b.live) != (a.key, a.timestamp, a.live),
        (None, None) => false,
        _ => true,
    }
}

/// Completes `p`, whose signature check said `verified`, writing the answer to `out`;
/// returns whether the connection stays open. The table is changed as without Redis, then
/// the change is written to Redis; if Redis refuses it (another instance wrote first) the
/// change is rolled back, Redis's record taken, and the request decided again; if Redis
/// cannot be reached it is rolled back and answered 503 `store_unavailable`.
pub(crate) async fn finish(
    shared: &Shared,
    redis: &Redis,
    p: &Pending,
    verified: bool,
    out: &mut Vec<u8>,
) -> bool {
    let rk = p.record();
    // One write per lookup id at a time (a public registration checks the other keys' records
    // under the id).
    let _turn = redis.names.lock(rk.0.to_text()).await;
    let id = record::record_id(&rk);
    for _ in 0..ATTEMPTS {
        out.clear();
        let now = shared.now();
        let (before, after, keep) = {
            let mut app = shared.app.borrow_mut();
            if !redis.is_up() {
                return app.store_unavailable(p, UNAVAILABLE_RETRY_SECS, out);
            }
            let retention = app.config.retention;
            let before = record::stored(&app.table, &rk, now.secs(), retention);
            let keep = app.finish(p, verified, now, out);
            let after = record::stored(&app.table, &rk, now.secs(), retention);
            if !changed(&before, &after) {
                return keep;
            }
            (before, after, keep)
        };
        let Some(after) = after else {
            // Freed at once (retention 0, which redis-url refuses): nothing to share.
            return keep;
        };
        let lookup_id = rk.0.to_text();
        let w = Write {
            id: &id,
            lookup_id: &lookup_id,
            public: after.record.visibility == phonebook_proto::Visibility::Public,
            expect: before.as_ref().map(|b| (b.key, b.timestamp)),
            key: after.key,
            timestamp: after.timestamp,
            bytes: &after.bytes,
            expire_ms: after.expire_ms,
        };
        let result = redis.cas(&w).await;
        let now = shared.now();
        let mut app = shared.app.borrow_mut();
        match result {
            Ok(Cas::Written) => {
                app.metrics.redis.writes += 1;
                return keep;
            }
            Ok(Cas::Conflict(current)) => {
                app.metrics.redis.conflicts += 1;
                record::roll_back(&mut app.table, &rk, before.as_ref(), now.secs());
                app.refund_key(p, now);
                let retention = app.config.retention;
                match current {
                    Some(f) => {
                        if let Err(e) = record::apply(
                            &mut app.table,
                            &f.bytes,
                            Some(f.pttl_ms),
                            retention,
                            now.secs(),
                        ) {
                            app.metrics.redis.bad_records += 1;
                            log::warn!("Redis holds a record that does not decode ({e}); skipped");
                        }
                    }
                    None => {
                        app.table.forget(&rk.0, &rk.1);
                    }
                }
            }
            Err(e) => {
                record::roll_back(&mut app.table, &rk, before.as_ref(), now.secs());
                app.refund_key(p, now);
                app.metrics.redis.errors += 1;
                app.metrics.redis.up = false;
                redis.failed();
                log::warn!("Redis write failed ({e}); writes are refused until it is back");
                out.clear();
                return app.store_unavailable(p, UNAVAILABLE_RETRY_SECS, out);
            }
        }
    }
    out.clear();
    shared
        .app
        .borrow_mut()
        .store_unavailable(p, UNAVAILABLE_RETRY_SECS, out)
}

//! Loading and writing snapshots (the codec and durable file writes live in
//! [`crate::snapshot`]).
//!
//! A snapshot is taken every `snapshot-interval` seconds if a registration or unregistration
//! happened since the last one, and once more on stop. It streams: the slot list is fixed at
//! the start, the table holds back frees until the end (see [`Table::hold_frees`]), records are
//! encoded [`CHUNK_RECORDS`] at a time between which the server keeps serving, and the disk
//! writes run on a blocking thread. Memory stays bounded whatever the table size.

use super::Shared;
use crate::api::App;
use crate::config::Config;
use crate::snapshot::{
    self, LoadOutcome, RecordState, SnapshotHeader, SnapshotRecord, SnapshotWriter,
};
use crate::table::{Slot, SlotState, Table};
use crate::token::TokenKey;
use async_io::Timer;
use phonebook_proto::{FriendKey, Visibility, public_digest};
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Records encoded per piece of a snapshot (about 700 KB).
pub const CHUNK_RECORDS: usize = 4096;

/// Builds the app, from the snapshot if one is configured.
pub(super) fn load(config: Config) -> io::Result<App> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| io::Error::other(e.to_string()))?;
    let path = config.snapshot.clone();
    let capacity = config.capacity;
    let mut app = App::new(config, secret);
    let Some(path) = path else {
        return Ok(app);
    };
    let mut skipped = 0u64;
    let outcome = snapshot::load_or_quarantine(&path, capacity, |rec| {
        if !restore(&mut app.table, rec) {
            skipped += 1;
        }
    });
    if skipped > 0 {
        log::warn!("snapshot: {skipped} records skipped (expired, duplicate or over a limit)");
    }
    if outcome.must_clear_table() {
        app.table.clear();
    }
    match outcome {
        LoadOutcome::Loaded { header, .. } => {
            app.tokens = TokenKey::new(header.token_secret);
        }
        LoadOutcome::Unreadable { error, .. } => {
            return Err(io::Error::other(format!(
                "snapshot {} cannot be read ({error}); fix its permissions or move it away",
                path.display()
            )));
        }
        _ => {}
    }
    Ok(app)
}

fn restore(table: &mut Table, rec: SnapshotRecord) -> bool {
    let Some((slot, friends, digest)) = parts(&rec) else {
        return false;
    };
    table.restore(
        rec.slot,
        slot,
        &friends,
        digest,
        &rec.candidates,
        rec.remaining_secs,
        0,
    )
}

#[cfg(feature = "redis")]
/// Puts `rec` into the table in place of whatever its name held (a record from the shared
/// store, whose slot number is another instance's and is ignored); `now` in table seconds.
pub(crate) fn put(table: &mut Table, rec: &SnapshotRecord, now: u32) -> bool {
    let Some((slot, friends, digest)) = parts(rec) else {
        return false;
    };
    table
        .put(
            slot,
            &friends,
            digest,
            &rec.candidates,
            rec.remaining_secs,
            now,
        )
        .is_some()
}

fn parts(rec: &SnapshotRecord) -> Option<(Slot, Vec<FriendKey>, [u8; 32])> {
    let state = match rec.state {
        RecordState::Live => SlotState::Live,
        RecordState::Retained => SlotState::Retained,
    };
    let slot = Slot::from_parts(
        rec.id,
        state,
        rec.visibility,
        rec.port,
        rec.key,
        rec.signature,
        rec.timestamp,
        rec.ip,
    )?;
    let friends: Vec<FriendKey> = rec.friends.iter().map(|k| FriendKey(*k)).collect();
    let digest = rec.friends_digest.unwrap_or_else(public_digest);
    Some((slot, friends, digest))
}

/// The record in slot `id` as the snapshot stores it; `now` in table seconds.
pub(crate) fn record(table: &Table, id: u32, now: u32) -> Option<SnapshotRecord> {
    let s = table.slot(id)?;
    let state = match s.state {
        SlotState::Live => RecordState::Live,
        SlotState::Retained => RecordState::Retained,
        SlotState::Free => return None,
    };
    let (friends, friends_digest) = match (s.state, s.visibility) {
        (SlotState::Live, Visibility::Friends) => match table.friends_of(s) {
            Some((keys, digest)) => (keys.to_vec(), Some(*digest)),
            None => (Vec::new(), Some(public_digest())),
        },
        // A retained record keeps only its binding: no list, a zero digest.
        (_, Visibility::Friends) => (Vec::new(), Some([0; 32])),
        _ => (Vec::new(), None),
    };
    Some(SnapshotRecord {
        slot: id,
        state,
        id: s.id,
        key: s.key,
        signature: s.signature,
        timestamp: s.timestamp,
        ip: s.ip(),
        port: s.port,
        visibility: s.visibility,
        friends,
        friends_digest,
        remaining_secs: table.remaining(id, now),
        candidates: if state == RecordState::Live {
            table.candidates_of(id).to_vec()
        } else {
            Vec::new()
        },
    })
}

/// Writes one snapshot to `path`; returns its size in bytes.
async fn write_snapshot(shared: &Rc<Shared>, path: PathBuf) -> io::Result<u64> {
    let (ids, header) = {
        let mut app = shared.app.borrow_mut();
        let ids = app.table.occupied();
        app.table.hold_frees(true);
        let header = SnapshotHeader {
            saved_wall_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            token_secret: app.tokens.secret(),
            record_count: ids.len() as u64,
        };
        (ids, header)
    };
    let result = async {
        let mut writer = smol::unblock(move || SnapshotWriter::create(&path)).await?;
        let mut buf = Vec::with_capacity(64 * 1024);
        snapshot::encode_header(&header, &mut buf);
        for chunk in ids.chunks(CHUNK_RECORDS) {
            {
                let app = shared.app.borrow();
                let now = shared.now().secs();
                for &id in chunk {
                    // hold_frees keeps every listed slot occupied until the end.
                    let rec = record(&app.table, id, now)
                        .ok_or_else(|| io::Error::other("snapshot slot freed while writing"))?;
                    snapshot::encode_record(&rec, &mut buf);
                }
            }
            let piece = std::mem::take(&mut buf);
            writer = smol::unblock(move || writer.write_chunk(&piece).map(|()| writer)).await?;
        }
        smol::unblock(move || writer.finish()).await
    }
    .await;
    shared.app.borrow_mut().table.hold_frees(false);
    result
}

async fn snapshot_once(shared: &Rc<Shared>) {
    let Some(path) = shared.app.borrow().config.snapshot.clone() else {
        return;
    };
    let changes = shared.app.borrow().table.changes();
    if changes == shared.snapshot_changes.get() {
        return;
    }
    let started = Instant::now();
    match write_snapshot(shared, path).await {
        Ok(bytes) => {
            shared.snapshot_changes.set(changes);
            let ms = started.elapsed().as_millis() as u64;
            let mut app = shared.app.borrow_mut();
            app.metrics.snapshot_at = Some(shared.now().mono_ms / 1000);
            app.metrics.snapshot_ms = ms;
            app.metrics.snapshot_bytes = bytes;
            log::info!(
                "snapshot written: {} records, {bytes} bytes, {ms} ms",
                app.table.live() + app.table.retained()
            );
        }
        Err(e) => {
            shared.app.borrow_mut().metrics.snapshot_failures += 1;
            log::error!("snapshot failed: {e}");
        }
    }
}

/// Writes a snapshot every `snapshot-interval` seconds when something changed.
pub(super) async fn snapshot_loop(shared: Rc<Shared>) {
    let interval = u64::from(shared.app.borrow().config.snapshot_interval.max(1));
    loop {
        Timer::after(Duration::from_secs(interval)).await;
        snapshot_once(&shared).await;
    }
}

/// Writes the last snapshot on the way out.
pub(super) async fn final_snapshot(shared: &Rc<Shared>) {
    snapshot_once(shared).await;
}

//! Records between the table and Redis, as opaque bytes of the snapshot record codec. The
//! only code of the store that looks inside a record: its lookup id and key (the table key),
//! timestamp, state and time left.

use crate::server::persist;
use crate::snapshot::{self, RecordState, SnapshotError, SnapshotRecord};
use crate::table::{SlotState, Table};
use phonebook_proto::LookupId;

/// A record's identity in the table: the player's lookup id and the owner's key.
pub(crate) type RecordKey = (LookupId, [u8; 32]);

/// The Redis id of a record: its lookup id and key, each as unpadded URL-safe base64
/// (`<id>.<key>`, 87 characters). Redis's key space holds no name.
pub(crate) fn record_id((id, key): &RecordKey) -> String {
    use base64::Engine as _;
    format!(
        "{}.{}",
        id.to_text(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
    )
}

/// What the table holds for a name, ready for Redis.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// The owner's key.
    pub key: [u8; 32],
    /// The last signed timestamp.
    pub timestamp: u64,
    /// Live or retained.
    pub live: bool,
    /// The encoded record.
    pub bytes: Vec<u8>,
    /// Milliseconds until Redis may forget it (time left, plus retention if live).
    pub expire_ms: u64,
    /// The decoded record (to put back on a rollback).
    pub record: SnapshotRecord,
}

/// The record `rk` has in `table` at `now` (table seconds), if any.
pub(crate) fn stored(table: &Table, rk: &RecordKey, now: u32, retention: u32) -> Option<Stored> {
    let id = table.find(&rk.0, &rk.1)?;
    let mut rec = persist::record(table, id, now)?;
    // The slot number is this instance's own: meaningless elsewhere.
    rec.slot = 0;
    let live = table.slot(id)?.state == SlotState::Live;
    let left = u64::from(rec.remaining_secs);
    let expire_ms = if live {
        (left + u64::from(retention)) * 1000
    } else {
        left * 1000
    };
    let mut bytes = Vec::new();
    snapshot::encode_record(&rec, &mut bytes);
    Some(Stored {
        key: rec.key,
        timestamp: rec.timestamp,
        live,
        bytes,
        expire_ms: expire_ms.max(1),
        record: rec,
    })
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The table now holds the record.
    Put,
    /// The table already held it or a newer one of the same key.
    Unchanged,
    /// The table could not take it (full, friend pool full, nothing left of its time).
    Refused,
}

/// Decodes `bytes` (from Redis) and puts the record into the table unless the table holds
/// the same or a newer one for the same key. `pttl_ms`, when given, is the time Redis still
/// keeps the record (a full read), from which the time left is computed; otherwise the time
/// left written in the record is used (a change just streamed).
pub(crate) fn apply(
    table: &mut Table,
    bytes: &[u8],
    pttl_ms: Option<i64>,
    retention: u32,
    now: u32,
) -> Result<Applied, SnapshotError> {
    let mut rec = snapshot::decode_record(bytes, u32::MAX)?;
    if let Some(pttl) = pttl_ms {
        let left = u32::try_from(pttl.max(0) / 1000).unwrap_or(u32::MAX);
        match rec.state {
            RecordState::Live if left > retention => rec.remaining_secs = left - retention,
            RecordState::Live => {
                // Expired while Redis kept its binding: retained as the table retains (the
                // visibility stays, so a public record still binds its id).
                rec.state = RecordState::Retained;
                rec.friends.clear();
                if rec.visibility == phonebook_proto::Visibility::Friends {
                    rec.friends_digest = Some([0; 32]);
                }
                rec.candidates.clear();
                rec.remaining_secs = left;
            }
            RecordState::Retained => rec.remaining_secs = left,
        }
    }
    if let Some(id) = table.find(&rec.id, &rec.key)
        && let Some(s) = table.slot(id)
        && s.timestamp >= rec.timestamp
    {
        return Ok(Applied::Unchanged);
    }
    Ok(
        if rec.remaining_secs > 0 && persist::put(table, &rec, now) {
            Applied::Put
        } else {
            Applied::Refused
        },
    )
}

/// Puts back what a record was before a write that Redis refused (`None`: nothing).
pub(crate) fn roll_back(table: &mut Table, rk: &RecordKey, before: Option<&Stored>, now: u32) {
    match before {
        Some(b) => {
            persist::put(table, &b.record, now);
        }
        None => {
            table.forget(&rk.0, &rk.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{QuotaLimits, TableLimits};
    use phonebook_proto::{Keypair, PlayerName, Register};

    fn table() -> Table {
        Table::new(TableLimits {
            capacity: 8,
            friend_keys_total: 64,
            quotas: QuotaLimits {
                records_per_source: 8,
                friend_keys_per_source: 64,
                friend_keys_per_key: 64,
                ipv6_prefix: 48,
            },
        })
    }

    /// A record travels from one table through its bytes to another; older copies and
    /// garbage change nothing.
    #[test]
    fn records_travel_between_tables() {
        let (mut a, mut b) = (table(), table());
        let name = "Alice Smith@Gilgamesh";
        let kp = Keypair::from_seed(&[1; 32]);
        let rk = (
            phonebook_proto::LookupId::of(&PlayerName::parse(name).unwrap()),
            *kp.public().as_bytes(),
        );
        let look = |t: &Table| {
            t.lookup(&rk.0, &rk.1, 0)
                .map(|(_, s, _)| (s.timestamp, s.port))
        };
        let r1 = Register::sign_public(&kp, PlayerName::parse(name).unwrap(), 5000, 1000);
        a.register(&r1, [192, 0, 2, 1].into(), 10, 3600).unwrap();
        let s1 = stored(&a, &rk, 10, 60).unwrap();
        assert!(s1.live);
        assert_eq!(s1.expire_ms, 3660 * 1000);
        assert_eq!(apply(&mut b, &s1.bytes, None, 60, 0).unwrap(), Applied::Put);
        assert_eq!(look(&b).unwrap().0, 1000);
        let r2 = Register::sign_public(&kp, PlayerName::parse(name).unwrap(), 5001, 2000);
        a.register(&r2, [192, 0, 2, 1].into(), 11, 3600).unwrap();
        let s2 = stored(&a, &rk, 11, 60).unwrap();
        assert_eq!(apply(&mut b, &s2.bytes, None, 60, 0).unwrap(), Applied::Put);
        assert_eq!(
            apply(&mut b, &s1.bytes, None, 60, 0).unwrap(),
            Applied::Unchanged
        );
        assert_eq!(look(&b).unwrap().1, 5001);
        assert_eq!(b.live(), 1);
        // Redis kept it past its TTL: only the binding is restored.
        assert_eq!(
            apply(&mut b, &s2.bytes, Some(30_000), 60, 0).unwrap(),
            Applied::Unchanged
        );
        let mut c = table();
        assert_eq!(
            apply(&mut c, &s2.bytes, Some(30_000), 60, 0).unwrap(),
            Applied::Put
        );
        assert_eq!((c.live(), c.retained()), (0, 1));
        assert!(apply(&mut c, b"junk", None, 60, 0).is_err());
        roll_back(&mut c, &rk, None, 0);
        assert_eq!((c.live(), c.retained()), (0, 0));
    }
}

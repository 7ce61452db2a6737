use super::*;
use phonebook_proto::{Keypair, PlayerName, PublicKey};
use proptest::prelude::*;

const TTL: u32 = 100;
const RET: u32 = 1000;
const TEST_SALT: [u8; 32] = [0x5a; 32];

fn kp(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

fn reg(k: &Keypair, name: &str, ts: u64) -> Register {
    Register::sign_public(k, PlayerName::parse(name).unwrap(), 5000, ts)
}

fn id(name: &str) -> LookupId {
    LookupId::of(&PlayerName::parse(name).unwrap())
}

/// A lookup by a stranger: sees public records only.
fn look<'a>(t: &'a Table, name: &str, now: u32) -> Option<(u32, &'a Slot, u32)> {
    t.lookup(&id(name), &[0xee; 32], now)
}

/// Any record under the name, live or retained, of any key.
fn find_any(t: &Table, name: &str) -> Option<u32> {
    t.same_id(&id(name)).next()
}

fn table(cap: u32) -> Table {
    Table::new(TableLimits {
        capacity: cap,
        friend_keys_total: 10,
        quotas: QuotaLimits::NONE,
    })
}

fn ip() -> IpAddr {
    "192.0.2.1".parse().unwrap()
}

#[test]
fn register_lookup_case_insensitive() {
    let mut t = table(4);
    let r = t
        .register(&reg(&kp(1), "Alice Smith@Gilgamesh", 1), ip(), 0, TTL)
        .unwrap();
    assert!(r.created);
    let (slot, s, left) = look(&t, "ALICE SMITH@gilgamesh", 5).unwrap();
    assert_eq!((slot, left), (r.slot, TTL - 5));
    assert_eq!(s.id, id("Alice Smith@Gilgamesh"));
    assert_eq!(s.ip(), ip());
    assert_eq!(t.live(), 1);
    assert!(look(&t, "Bob Smith@Gilgamesh", 5).is_none());
}

#[test]
fn other_key_conflicts_while_live_and_retained() {
    let mut t = table(4);
    t.register(&reg(&kp(1), "Alice Smith@Gilgamesh", 1), ip(), 0, TTL)
        .unwrap();
    let thief = reg(&kp(2), "Alice Smith@Gilgamesh", 2);
    assert_eq!(
        t.register(&thief, ip(), 1, TTL),
        Err(RegisterError::KeyConflict)
    );
    // Expired but not yet swept: still bound, and not served.
    assert!(look(&t, "Alice Smith@Gilgamesh", TTL).is_none());
    assert_eq!(
        t.register(&thief, ip(), TTL, TTL),
        Err(RegisterError::KeyConflict)
    );
    t.sweep(TTL + 1, 100, RET);
    assert_eq!((t.live(), t.retained()), (0, 1));
    assert_eq!(
        t.register(&thief, ip(), TTL + 1, TTL),
        Err(RegisterError::KeyConflict)
    );
    // After the retention the name is free.
    t.sweep(TTL + RET, 100, RET);
    assert_eq!((t.live(), t.retained()), (0, 0));
    assert!(t.register(&thief, ip(), TTL + RET, TTL).is_ok());
}

#[test]
fn replays_refused_including_after_unregister() {
    let mut t = table(4);
    let k = kp(1);
    t.register(&reg(&k, "Alice Smith@Gilgamesh", 10), ip(), 0, TTL)
        .unwrap();
    assert_eq!(
        t.register(&reg(&k, "Alice Smith@Gilgamesh", 10), ip(), 0, TTL),
        Err(RegisterError::Replayed)
    );
    let un = Unregister::sign(&k, PlayerName::parse("Alice Smith@Gilgamesh").unwrap(), 20);
    assert_eq!(t.unregister(&un, 1, RET), Ok(()));
    assert_eq!(t.unregister(&un, 1, RET), Err(UnregisterError::NotFound));
    assert!(look(&t, "Alice Smith@Gilgamesh", 1).is_none());
    // The old registration replayed after the unregister is refused.
    assert_eq!(
        t.register(&reg(&k, "Alice Smith@Gilgamesh", 15), ip(), 2, TTL),
        Err(RegisterError::Replayed)
    );
    let r = t
        .register(&reg(&k, "Alice Smith@Gilgamesh", 30), ip(), 2, TTL)
        .unwrap();
    assert!(r.created);
    assert_eq!((t.live(), t.retained()), (1, 0));
}

#[test]
fn forged_unregister_refused() {
    let mut t = table(4);
    t.register(&reg(&kp(1), "Alice Smith@Gilgamesh", 1), ip(), 0, TTL)
        .unwrap();
    let un = Unregister::sign(
        &kp(2),
        PlayerName::parse("Alice Smith@Gilgamesh").unwrap(),
        5,
    );
    assert_eq!(t.unregister(&un, 1, RET), Err(UnregisterError::NotFound));
    assert!(look(&t, "Alice Smith@Gilgamesh", 1).is_some());
}

#[test]
fn capacity_never_evicts_live_but_evicts_retained() {
    let mut t = table(2);
    t.register(&reg(&kp(1), "Aa Bb@World", 1), ip(), 0, TTL)
        .unwrap();
    t.register(&reg(&kp(2), "Cc Dd@World", 1), ip(), 0, 2 * TTL)
        .unwrap();
    assert_eq!(
        t.register(&reg(&kp(3), "Ee Ff@World", 1), ip(), 1, TTL),
        Err(RegisterError::CapacityFull)
    );
    // Renewing an existing name still works when full.
    assert!(
        t.register(&reg(&kp(1), "Aa Bb@World", 2), ip(), 1, TTL)
            .is_ok()
    );
    t.sweep(TTL + 1, 10, RET);
    assert_eq!((t.live(), t.retained()), (1, 1));
    assert!(
        t.register(&reg(&kp(3), "Ee Ff@World", 1), ip(), TTL + 1, TTL)
            .is_ok()
    );
    assert!(look(&t, "Cc Dd@World", TTL + 1).is_some());
    assert!(find_any(&t, "Aa Bb@World").is_none());
}

#[test]
fn friends_visibility_and_pool_budget() {
    let mut t = table(4);
    let owner = kp(1);
    let friends: Vec<PublicKey> = (2..5).map(|n| kp(n).public()).collect();
    let r = Register::sign_friends(
        &owner,
        PlayerName::parse("Aa Bb@World").unwrap(),
        1,
        friends.clone(),
        TEST_SALT,
        1,
    );
    t.register(&r, ip(), 0, TTL).unwrap();
    assert!(
        look(&t, "Aa Bb@World", 0).is_none(),
        "hidden from a stranger"
    );
    let (_, s, _) = t
        .lookup(&id("Aa Bb@World"), kp(3).public().as_bytes(), 0)
        .unwrap();
    assert!(t.allows(s, kp(3).public().as_bytes()));
    assert!(t.allows(s, owner.public().as_bytes()));
    assert!(!t.allows(s, kp(9).public().as_bytes()));
    let (_, digest) = t.friends_of(s).unwrap();
    assert_eq!(
        *digest,
        phonebook_proto::friends_digest(
            &TEST_SALT,
            &friends.iter().map(FriendKey::from).collect::<Vec<_>>()
        )
    );
    assert_eq!(t.friend_keys(), 3);
    // Budget is 10 keys: 3 + 8 does not fit; the old list stays.
    let many: Vec<PublicKey> = (10..18).map(|n| kp(n).public()).collect();
    let r2 = Register::sign_friends(
        &kp(7),
        PlayerName::parse("Cc Dd@World").unwrap(),
        1,
        many,
        TEST_SALT,
        1,
    );
    assert_eq!(
        t.register(&r2, ip(), 0, TTL),
        Err(RegisterError::FriendPoolFull)
    );
    assert_eq!(t.friend_keys(), 3);
    // Going public releases the list.
    t.register(&reg(&owner, "Aa Bb@World", 2), ip(), 0, TTL)
        .unwrap();
    assert_eq!(t.friend_keys(), 0);
}

#[test]
fn restore_puts_records_back() {
    let mut t = table(8);
    let s = Slot::from_parts(
        id("Aa Bb@World"),
        SlotState::Live,
        Visibility::Public,
        9,
        *kp(1).public().as_bytes(),
        [1; 64],
        5,
        ip(),
    )
    .unwrap();
    assert!(t.restore(
        6,
        s.clone(),
        &[],
        phonebook_proto::public_digest(),
        &[],
        50,
        0
    ));
    // A restored live record is charged to its address again.
    assert_eq!(t.quotas().source_use(t.quotas().source_of(ip())), (1, 0));
    assert!(!t.restore(
        6,
        s.clone(),
        &[],
        phonebook_proto::public_digest(),
        &[],
        50,
        0
    ));
    assert!(!t.restore(9, s, &[], phonebook_proto::public_digest(), &[], 50, 0));
    let (id, slot, left) = look(&t, "aa bb@world", 0).unwrap();
    assert_eq!((id, slot.port, left), (6, 9, 50));
    // Free slots below the restored one are usable.
    for n in 0..7 {
        let name = format!("Xx Y{}@World", (b'a' + n) as char);
        t.register(&reg(&kp(20 + n), &name, 1), ip(), 0, TTL)
            .unwrap();
    }
    assert_eq!(t.live(), 8);
}

fn quota_table(cap: u32, pool: u32, quotas: QuotaLimits) -> Table {
    Table::new(TableLimits {
        capacity: cap,
        friend_keys_total: pool,
        quotas,
    })
}

fn friends_reg(k: &Keypair, name: &str, n: u8, ts: u64) -> Register {
    Register::sign_friends(
        k,
        PlayerName::parse(name).unwrap(),
        1,
        (0..n).map(|i| kp(100 + i).public()).collect(),
        TEST_SALT,
        ts,
    )
}

fn at(n: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, n])
}

/// Issue 9: the pool and the quotas get their space back on every path a live record leaves
/// by: renewal with a shorter list, going public, unregistration, expiry (with and without
/// retention), and the end of retention.
#[test]
fn pool_and_quota_space_is_reclaimed_on_every_path() {
    let limits = QuotaLimits {
        records_per_source: 2,
        friend_keys_per_source: 8,
        friend_keys_per_key: 6,
        ipv6_prefix: 48,
    };
    for retention in [0, 40] {
        let mut t = quota_table(8, 100, limits);
        let src = t.quotas().source_of(at(1));
        t.register(&friends_reg(&kp(1), "Aa Bb@World", 6, 1), at(1), 0, TTL)
            .unwrap();
        assert_eq!((t.friend_keys(), t.quotas().source_use(src)), (6, (1, 6)));
        // Renewal with a shorter list.
        t.register(&friends_reg(&kp(1), "Aa Bb@World", 2, 2), at(1), 0, TTL)
            .unwrap();
        assert_eq!((t.friend_keys(), t.quotas().source_use(src)), (2, (1, 2)));
        assert_eq!(t.quotas().key_use(kp(1).public().as_bytes()), 2);
        // Renewal from another address moves the charge.
        t.register(&friends_reg(&kp(1), "Aa Bb@World", 2, 3), at(2), 0, TTL)
            .unwrap();
        assert_eq!(t.quotas().source_use(src), (0, 0));
        t.register(&friends_reg(&kp(1), "Aa Bb@World", 2, 4), at(1), 0, TTL)
            .unwrap();
        // Going public.
        t.register(&reg(&kp(1), "Aa Bb@World", 5), at(1), 0, TTL)
            .unwrap();
        assert_eq!((t.friend_keys(), t.quotas().source_use(src)), (0, (1, 0)));
        // Unregistration.
        t.register(&friends_reg(&kp(2), "Cc Dd@World", 3, 1), at(1), 0, TTL)
            .unwrap();
        let u = Unregister::sign(&kp(2), PlayerName::parse("Cc Dd@World").unwrap(), 2);
        t.unregister(&u, 1, retention).unwrap();
        assert_eq!((t.friend_keys(), t.quotas().source_use(src)), (0, (1, 0)));
        // Expiry: both records, after the sweep.
        t.register(&friends_reg(&kp(3), "Ee Ff@World", 4, 1), at(1), 0, TTL)
            .unwrap();
        assert_eq!(t.quotas().source_use(src), (2, 4));
        t.sweep(TTL, 100, retention);
        assert_eq!((t.friend_keys(), t.live()), (0, 0));
        assert_eq!(t.quotas().entries(), (0, 0));
        // End of retention frees the bindings, which held nothing.
        t.sweep(TTL + retention + 1, 100, retention);
        assert_eq!((t.live(), t.retained()), (0, 0));
        assert_eq!(t.quotas().entries(), (0, 0));
    }
}

/// Issue 9: one address (or key) at its quota does not stop another address; the refusal
/// names the quota and changes nothing.
#[test]
fn quotas_refuse_one_source_not_the_others() {
    let limits = QuotaLimits {
        records_per_source: 2,
        friend_keys_per_source: 8,
        friend_keys_per_key: 6,
        ipv6_prefix: 48,
    };
    let mut t = quota_table(8, 14, limits);
    t.register(&friends_reg(&kp(1), "Aa Bb@World", 6, 1), at(1), 0, TTL)
        .unwrap();
    assert_eq!(
        t.register(&friends_reg(&kp(1), "Aa Bc@World", 1, 1), at(2), 0, TTL),
        Err(RegisterError::Quota(QuotaError::KeyFriendKeys))
    );
    assert_eq!(
        t.register(&friends_reg(&kp(2), "Cc Dd@World", 3, 1), at(1), 0, TTL),
        Err(RegisterError::Quota(QuotaError::SourceFriendKeys))
    );
    t.register(&reg(&kp(2), "Cc Dd@World", 1), at(1), 0, TTL)
        .unwrap();
    assert_eq!(
        t.register(&reg(&kp(3), "Ee Ff@World", 1), at(1), 0, TTL),
        Err(RegisterError::Quota(QuotaError::Records))
    );
    // IPv6: another /64 of the same /48 is the same source.
    let v6a: IpAddr = "2001:db8:5:1::1".parse().unwrap();
    let v6b: IpAddr = "2001:db8:5:2::1".parse().unwrap();
    t.register(&reg(&kp(4), "Gg Hh@World", 1), v6a, 0, TTL)
        .unwrap();
    t.register(&reg(&kp(5), "Ii Jj@World", 1), v6b, 0, TTL)
        .unwrap();
    assert_eq!(
        t.register(&reg(&kp(6), "Kk Ll@World", 1), v6b, 0, TTL),
        Err(RegisterError::Quota(QuotaError::Records))
    );
    // Another address fills the rest of the pool.
    assert_eq!(t.live(), 4);
    t.register(&friends_reg(&kp(7), "Mm Nn@World", 6, 1), at(3), 0, TTL)
        .unwrap();
    assert_eq!(t.friend_keys(), 12);
}

#[derive(Debug, Clone)]
enum Op {
    Reg(u8, u8, u64, u8, u8),
    Unreg(u8, u8, u64),
    Tick(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6u8, 0..3u8, 0..50u64, 0..5u8, 0..3u8)
            .prop_map(|(n, k, t, f, a)| Op::Reg(n, k, t, f, a)),
        (0..6u8, 0..3u8, 0..50u64).prop_map(|(n, k, t)| Op::Unreg(n, k, t)),
        (0..60u32).prop_map(Op::Tick),
    ]
}

proptest! {
    /// Against a simple model: counts agree, a name is only ever served with the key that
    /// bound it, and nothing is served past its deadline.
    #[test]
    fn invariants_hold(ops in proptest::collection::vec(op(), 1..80)) {
        let names = ["Aa Bb@World", "Cc Dd@World", "Ee Ff@World", "Gg Hh@World", "Ii Jj@World", "Kk Ll@World"];
        let keys: Vec<Keypair> = (1..4).map(kp).collect();
        let mut t = quota_table(4, 10, QuotaLimits {
            records_per_source: 3,
            friend_keys_per_source: 5,
            friend_keys_per_key: 4,
            ipv6_prefix: 48,
        });
        let mut now = 0u32;
        // (name, key) -> deadline of its record.
        let mut bound: std::collections::HashMap<(u8, u8), u32> = Default::default();
        for op in ops {
            match op {
                Op::Reg(n, k, ts, f, a) => {
                    let r = if f == 0 {
                        reg(&keys[k as usize], names[n as usize], ts)
                    } else {
                        friends_reg(&keys[k as usize], names[n as usize], f - 1, ts)
                    };
                    if t.register(&r, at(a), now, 30).is_ok() {
                        bound.insert((n, k), now + 30);
                    }
                }
                Op::Unreg(n, k, ts) => {
                    let u = Unregister::sign(&keys[k as usize], PlayerName::parse(names[n as usize]).unwrap(), ts);
                    if t.unregister(&u, now, 40).is_ok() {
                        prop_assert!(bound.remove(&(n, k)).is_some());
                    }
                }
                Op::Tick(dt) => {
                    now += dt;
                    t.sweep(now, 2, 40);
                }
            }
            prop_assert!(t.live() + t.retained() <= 4);
            // The quota accounting equals a recount over the live records.
            let mut sources: std::collections::HashMap<u128, (u32, u32)> = Default::default();
            let mut by_key: std::collections::HashMap<[u8; 32], u32> = Default::default();
            let mut pool = 0;
            for id in t.occupied() {
                let s = t.slot(id).unwrap();
                if s.state != SlotState::Live {
                    continue;
                }
                let n = t.friends_of(s).map_or(0, |(k, _)| k.len() as u32);
                let e = sources.entry(t.quotas().source_of(s.ip())).or_default();
                e.0 += 1;
                e.1 += n;
                if n > 0 {
                    *by_key.entry(s.key).or_default() += n;
                }
                pool += n;
            }
            prop_assert_eq!(t.friend_keys(), pool);
            prop_assert_eq!(t.quotas().entries(), (sources.len(), by_key.len()));
            for (src, used) in &sources {
                prop_assert_eq!(t.quotas().source_use(*src), *used);
                prop_assert!(used.0 <= 3 && used.1 <= 5);
            }
            for (key, used) in &by_key {
                prop_assert_eq!(t.quotas().key_use(key), *used);
                prop_assert!(*used <= 4);
            }
            for (n, name) in names.iter().enumerate() {
                // Whoever asks, a record is served only under the (name, key) that registered
                // it and before its deadline; at most one public record lives per name.
                for asker in &keys {
                    if let Some((_, s, _)) = t.lookup(&id(name), asker.public().as_bytes(), now) {
                        let k = keys.iter().position(|x| x.public().as_bytes() == &s.key).unwrap();
                        let until = bound.get(&(n as u8, k as u8));
                        prop_assert!(until.is_some_and(|u| *u > now));
                    }
                }
                let public = t
                    .same_id(&id(name))
                    .filter(|&i| t.live_slot(i, now).is_some_and(|(s, _)| s.visibility == Visibility::Public))
                    .count();
                prop_assert!(public <= 1);
            }
        }
        // A full sweep leaves exactly the records whose deadline is ahead.
        t.sweep(now, 100, 40);
        let live = bound.values().filter(|&&u| u > now).count() as u32;
        prop_assert_eq!(t.live(), live);
    }
}

/// Several keys under one name: each key finds its own record first; a stranger finds the
/// public one; a listed friend finds the public one before a friends-only record that lists
/// it; nobody else finds a friends-only record.
#[test]
fn one_name_several_keys_each_lookup_gets_the_right_record() {
    let mut t = table(8);
    let name = "Aa Bb@World";
    let (owner, impostor, friend) = (kp(1), kp(2), kp(3));
    let hidden = Register::sign_friends(
        &owner,
        PlayerName::parse(name).unwrap(),
        1,
        vec![friend.public()],
        TEST_SALT,
        1,
    );
    t.register(&hidden, ip(), 0, TTL).unwrap();
    let as_key = |t: &Table, k: &Keypair| {
        t.lookup(&id(name), k.public().as_bytes(), 0)
            .map(|(_, s, _)| s.key)
    };
    assert_eq!(as_key(&t, &friend), Some(*owner.public().as_bytes()));
    assert_eq!(look(&t, name, 0).map(|(_, s, _)| s.key), None);
    t.register(&reg(&impostor, name, 1), ip(), 0, TTL).unwrap();
    // The public record comes before the friends-only one, for the friend too...
    assert_eq!(as_key(&t, &friend), Some(*impostor.public().as_bytes()));
    assert_eq!(
        look(&t, name, 0).map(|(_, s, _)| s.key),
        Some(*impostor.public().as_bytes())
    );
    // ...but each owner finds its own.
    assert_eq!(as_key(&t, &owner), Some(*owner.public().as_bytes()));
    assert_eq!(as_key(&t, &impostor), Some(*impostor.public().as_bytes()));
    // Another public registration of the name conflicts; the owner's going public too.
    assert_eq!(
        t.register(&reg(&owner, name, 2), ip(), 0, TTL),
        Err(RegisterError::KeyConflict)
    );
    assert_eq!(t.live(), 2);
}

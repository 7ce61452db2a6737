use super::*;
use phonebook_proto::{LookupId, MAX_FRIENDS, PlayerName, Visibility};
use proptest::prelude::*;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

const CAPACITY: u32 = 100_000;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("pi-server-snap-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn header(count: usize) -> SnapshotHeader {
    SnapshotHeader {
        saved_wall_ms: 1_764_000_000_000,
        token_secret: [0xA5; 32],
        record_count: count as u64,
    }
}

fn letters(mut i: u64) -> String {
    let mut s = String::new();
    loop {
        s.push(char::from(b'a' + (i % 26) as u8));
        i /= 26;
        if i == 0 {
            return s;
        }
    }
}

/// The name of record `i` of [`gen_records`] with `seed`.
fn gen_name(seed: u64, i: u32) -> String {
    format!("P{} S{}@Gilgamesh", letters(u64::from(i)), letters(seed))
}

fn id_of(name: &str) -> LookupId {
    LookupId::of(&PlayerName::parse(name).unwrap())
}

/// One encoded record in the layout of versions 1 to 3: the name in place of the lookup id
/// (bytes 5..37, after slot and state).
fn with_name(mut one: Vec<u8>, name: &str) -> Vec<u8> {
    let mut field = vec![name.len() as u8];
    field.extend_from_slice(name.as_bytes());
    one.splice(5..37, field);
    one
}

/// Deterministic records: the same `seed` gives the same rows in any process.
fn gen_records(seed: u64, n: u32) -> Vec<SnapshotRecord> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let r = next();
            let friends_only = r % 3 == 0;
            SnapshotRecord {
                slot: i,
                state: if r % 5 == 0 {
                    RecordState::Retained
                } else {
                    RecordState::Live
                },
                id: id_of(&gen_name(seed, i)),
                key: [(r >> 8) as u8; 32],
                signature: [(r >> 16) as u8; 64],
                timestamp: r >> 20,
                ip: if r % 2 == 0 {
                    IpAddr::V4(Ipv4Addr::from((r >> 24) as u32))
                } else {
                    IpAddr::V6(Ipv6Addr::from(u128::from(r) << 64 | u128::from(i)))
                },
                port: (r >> 40) as u16,
                visibility: if friends_only {
                    Visibility::Friends
                } else {
                    Visibility::Public
                },
                friends: if friends_only {
                    (0..(r >> 50) % 8).map(|f| [f as u8; 32]).collect()
                } else {
                    Vec::new()
                },
                friends_digest: friends_only.then_some([(r >> 12) as u8; 32]),
                remaining_secs: (r >> 33) as u32 % 90_000,
                candidates: if r % 7 == 0 {
                    vec![
                        phonebook_proto::Candidate::new(
                            phonebook_proto::CandidateKind::Reflexive,
                            (Ipv4Addr::new(198, 51, 100, (r >> 8) as u8), 7000).into(),
                        ),
                        phonebook_proto::Candidate::new(
                            phonebook_proto::CandidateKind::V6,
                            (
                                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, (r >> 16) as u16),
                                7001,
                            )
                                .into(),
                        ),
                        phonebook_proto::Candidate::new(
                            phonebook_proto::CandidateKind::Relay,
                            (Ipv4Addr::new(198, 51, 100, (r >> 8) as u8), 7002).into(),
                        ),
                    ]
                } else {
                    Vec::new()
                },
            }
        })
        .collect()
}

fn encode_file(h: &SnapshotHeader, records: &[SnapshotRecord]) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_header(h, &mut bytes);
    for r in records {
        encode_record(r, &mut bytes);
    }
    append_trailer(&mut bytes);
    bytes
}

fn decode_all(
    bytes: &[u8],
    capacity: u32,
) -> Result<(SnapshotHeader, Vec<SnapshotRecord>), SnapshotError> {
    let (mut reader, h) = SnapshotReader::open(bytes, capacity)?;
    let mut out = Vec::new();
    while let Some(r) = reader.next_record()? {
        out.push(r);
    }
    // Stays finished.
    assert!(matches!(reader.next_record(), Ok(None)));
    Ok((h, out))
}

fn write_file(path: &Path, h: &SnapshotHeader, records: &[SnapshotRecord]) -> u64 {
    let mut w = SnapshotWriter::create(path).unwrap();
    let mut buf = Vec::new();
    encode_header(h, &mut buf);
    w.write_chunk(&buf).unwrap();
    for chunk in records.chunks(100) {
        buf.clear();
        for r in chunk {
            encode_record(r, &mut buf);
        }
        w.write_chunk(&buf).unwrap();
    }
    w.finish().unwrap()
}

fn load_all(path: &Path) -> (LoadOutcome, Vec<SnapshotRecord>) {
    let mut got = Vec::new();
    let outcome = load_or_quarantine(path, CAPACITY, |r| got.push(r));
    (outcome, got)
}

fn arb_name() -> impl Strategy<Value = String> {
    (
        "[A-Z][a-z]{1,8}",
        "[A-Z][a-z]{0,3}(['-][a-z]{1,3})?",
        "[A-Z][a-z]{2,15}",
    )
        .prop_filter_map("valid", |(f, s, w)| {
            let name = format!("{f} {s}@{w}");
            phonebook_proto::name::validate(name.as_bytes())
                .is_ok()
                .then_some(name)
        })
}

fn arb_record() -> impl Strategy<Value = SnapshotRecord> {
    (
        (any::<bool>(), arb_name(), any::<[u8; 32]>(), any::<u64>()),
        (any::<IpAddr>(), any::<u16>(), any::<u32>()),
        proptest::option::of(proptest::collection::vec(
            any::<[u8; 32]>(),
            0..=MAX_FRIENDS,
        )),
        proptest::collection::vec(any::<u8>(), 64),
    )
        .prop_map(
            |((retained, name, key, timestamp), (ip, port, remaining), friends, sig)| {
                SnapshotRecord {
                    slot: 0,
                    state: if retained {
                        RecordState::Retained
                    } else {
                        RecordState::Live
                    },
                    id: id_of(&name),
                    key,
                    signature: sig.try_into().unwrap(),
                    timestamp,
                    ip,
                    port,
                    visibility: if friends.is_some() {
                        Visibility::Friends
                    } else {
                        Visibility::Public
                    },
                    friends_digest: friends.as_ref().map(|_| [timestamp as u8; 32]),
                    friends: friends.unwrap_or_default(),
                    remaining_secs: remaining,
                    candidates: Vec::new(),
                }
            },
        )
}

fn arb_snapshot() -> impl Strategy<Value = (SnapshotHeader, Vec<SnapshotRecord>)> {
    (
        any::<u64>(),
        any::<[u8; 32]>(),
        proptest::collection::btree_set(0..CAPACITY, 0..6),
    )
        .prop_flat_map(|(ms, secret, slots)| {
            let n = slots.len();
            (
                Just(ms),
                Just(secret),
                Just(slots),
                proptest::collection::vec(arb_record(), n),
            )
        })
        .prop_map(|(ms, secret, slots, mut records)| {
            for (r, slot) in records.iter_mut().zip(slots) {
                r.slot = slot;
            }
            let h = SnapshotHeader {
                saved_wall_ms: ms,
                token_secret: secret,
                record_count: records.len() as u64,
            };
            (h, records)
        })
}

proptest! {
    #[test]
    fn random_snapshots_round_trip((h, records) in arb_snapshot()) {
        let bytes = encode_file(&h, &records);
        let (h2, back) = decode_all(&bytes, CAPACITY).unwrap();
        prop_assert_eq!(h2, h);
        prop_assert_eq!(back, records);
    }

    #[test]
    fn every_cut_is_truncated((h, records) in arb_snapshot(), cut in any::<proptest::sample::Index>()) {
        let bytes = encode_file(&h, &records);
        let cut = cut.index(bytes.len());
        let e = decode_all(&bytes[..cut], CAPACITY).unwrap_err();
        prop_assert!(matches!(e, SnapshotError::Truncated), "cut {} of {}: {:?}", cut, bytes.len(), e);
    }

    #[test]
    fn bit_flips_are_caught((h, records) in arb_snapshot(), at in any::<proptest::sample::Index>(), bit in 0u8..8) {
        let mut bytes = encode_file(&h, &records);
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(decode_all(&bytes, CAPACITY).is_err());
    }

    #[test]
    fn one_record_round_trips_alone(r in arb_record(), extra in any::<u8>(), cut in any::<proptest::sample::Index>()) {
        let mut bytes = Vec::new();
        encode_record(&r, &mut bytes);
        prop_assert_eq!(decode_record(&bytes, CAPACITY).unwrap(), r);
        // Anything after it, or a cut, is refused.
        let cut = cut.index(bytes.len());
        prop_assert!(decode_record(&bytes[..cut], CAPACITY).is_err());
        bytes.push(extra);
        prop_assert!(matches!(decode_record(&bytes, CAPACITY), Err(SnapshotError::TrailingBytes)));
    }

    #[test]
    fn random_bytes_never_panic_one_record(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_record(&bytes, CAPACITY);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_all(&bytes, CAPACITY);
        let mut with_magic = MAGIC.to_vec();
        with_magic.extend_from_slice(&VERSION.to_be_bytes());
        with_magic.extend_from_slice(&bytes);
        let _ = decode_all(&with_magic, CAPACITY);
    }
}

#[test]
fn every_truncation_of_a_fixed_file_is_truncated() {
    let records = gen_records(7, 12);
    let bytes = encode_file(&header(records.len()), &records);
    assert_eq!(decode_all(&bytes, CAPACITY).unwrap().1, records);
    for cut in 0..bytes.len() {
        let e = decode_all(&bytes[..cut], CAPACITY).unwrap_err();
        assert!(matches!(e, SnapshotError::Truncated), "cut {cut}: {e:?}");
    }
}

#[test]
fn every_single_bit_flip_of_a_fixed_file_is_caught() {
    let records = gen_records(8, 3);
    let bytes = encode_file(&header(records.len()), &records);
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut bad = bytes.clone();
            bad[i] ^= 1 << bit;
            assert!(decode_all(&bad, CAPACITY).is_err(), "byte {i} bit {bit}");
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let records = gen_records(9, 2);
    let mut bytes = encode_file(&header(2), &records);
    bytes.push(0);
    assert!(matches!(
        decode_all(&bytes, CAPACITY),
        Err(SnapshotError::TrailingBytes)
    ));
}

#[test]
fn magic_and_version_are_checked() {
    let mut bytes = encode_file(&header(0), &[]);
    assert!(decode_all(&bytes, CAPACITY).is_ok());
    bytes[8..12].copy_from_slice(&5u32.to_be_bytes());
    let e = decode_all(&bytes, CAPACITY).unwrap_err();
    assert!(matches!(e, SnapshotError::UnsupportedVersion(5)), "{e:?}");
    assert!(e.to_string().contains("version 5 is not supported"));
    assert!(matches!(
        decode_all(b"PBSNAP\n\r\0\0\0\x01", CAPACITY),
        Err(SnapshotError::BadMagic)
    ));
    assert!(matches!(
        decode_all(b"GIF89a", CAPACITY),
        Err(SnapshotError::BadMagic)
    ));
    assert!(matches!(
        decode_all(b"PBS", CAPACITY),
        Err(SnapshotError::Truncated)
    ));
}

#[test]
fn capacity_bounds_count_and_slots() {
    let records = gen_records(10, 5);
    let bytes = encode_file(&header(5), &records);
    assert!(matches!(
        decode_all(&bytes, 4),
        Err(SnapshotError::TooManyRecords {
            count: 5,
            capacity: 4
        })
    ));
    let mut high = records.clone();
    high[1].slot = 5;
    let bytes = encode_file(&header(5), &high);
    assert!(decode_all(&bytes, 6).is_ok());
    let bytes = encode_file(&header(5), &high);
    assert!(matches!(
        decode_all(&bytes, 5),
        Err(SnapshotError::SlotOutOfRange {
            slot: 5,
            capacity: 5
        })
    ));
}

#[test]
fn semantic_errors_are_refused_even_with_a_good_checksum() {
    let base = gen_records(11, 2);
    let check = |records: Vec<SnapshotRecord>, want: &str| {
        let bytes = encode_file(&header(records.len()), &records);
        let e = decode_all(&bytes, CAPACITY).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
        assert!(records.iter().any(|r| r.validate(CAPACITY).is_err()) || want == "slot used twice");
    };
    let mut dup = base.clone();
    dup[1].slot = dup[0].slot;
    check(dup, "slot used twice");
    let mut public_friends = base.clone();
    public_friends[0].visibility = Visibility::Public;
    public_friends[0].friends = vec![[1; 32]];
    check(public_friends, "public record with friends");
    let mut many = base.clone();
    many[0].visibility = Visibility::Friends;
    many[0].friends = vec![[1; 32]; MAX_FRIENDS + 1];
    check(many, "more friends than MAX_FRIENDS");
    // Exactly MAX_FRIENDS is fine.
    let mut max = base;
    max[0].visibility = Visibility::Friends;
    max[0].friends = vec![[1; 32]; MAX_FRIENDS];
    let bytes = encode_file(&header(2), &max);
    assert_eq!(decode_all(&bytes, CAPACITY).unwrap().1, max);
}

#[test]
fn count_mismatch_is_refused() {
    let records = gen_records(12, 3);
    for count in [2, 4] {
        let bytes = encode_file(&header(count), &records);
        assert!(decode_all(&bytes, CAPACITY).is_err(), "count {count}");
    }
}

#[test]
fn header_debug_hides_the_token_secret() {
    let text = format!("{:?}", header(1));
    assert!(text.contains("redacted"));
    assert!(!text.contains("165"), "{text}"); // 0xA5
}

#[test]
fn writer_produces_a_loadable_private_file() {
    let dir = TempDir::new("writer");
    let path = dir.join("snap.bin");
    let records = gen_records(1, 250);
    let size = write_file(&path, &header(250), &records);
    assert_eq!(size, std::fs::metadata(&path).unwrap().len());
    assert_eq!(dir.names(), ["snap.bin"], "no temp file left");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (outcome, got) = load_all(&path);
    assert!(
        matches!(&outcome, LoadOutcome::Loaded { records: 250, header: h } if *h == header(250))
    );
    assert!(!outcome.must_clear_table());
    assert_eq!(got, records);
}

#[test]
fn dropping_a_writer_midway_keeps_the_old_file_and_removes_the_temp() {
    let dir = TempDir::new("drop");
    let path = dir.join("snap.bin");
    let old = gen_records(2, 50);
    write_file(&path, &header(50), &old);
    let before = std::fs::read(&path).unwrap();
    {
        let mut w = SnapshotWriter::create(&path).unwrap();
        let mut buf = Vec::new();
        encode_header(&header(1000), &mut buf);
        w.write_chunk(&buf).unwrap();
        assert_eq!(dir.names().len(), 2, "temp file beside the target");
    }
    assert_eq!(dir.names(), ["snap.bin"]);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn stale_temp_files_are_removed_at_load() {
    let dir = TempDir::new("stale");
    let path = dir.join("snap.bin");
    write_file(&path, &header(3), &gen_records(3, 3));
    std::fs::write(dir.join("snap.bin.tmp-99999-0"), b"half a snapshot").unwrap();
    std::fs::write(dir.join("other.bin.tmp-1-0"), b"not ours").unwrap();
    let (outcome, got) = load_all(&path);
    assert!(matches!(outcome, LoadOutcome::Loaded { records: 3, .. }));
    assert_eq!(got.len(), 3);
    assert_eq!(dir.names(), ["other.bin.tmp-1-0", "snap.bin"]);
}

#[test]
fn missing_file_is_an_empty_start() {
    let dir = TempDir::new("missing");
    let (outcome, got) = load_all(&dir.join("snap.bin"));
    assert!(matches!(outcome, LoadOutcome::Missing));
    assert!(got.is_empty());
    // A missing directory too.
    let (outcome, _) = load_all(&dir.join("nope").join("snap.bin"));
    assert!(matches!(outcome, LoadOutcome::Missing));
}

#[test]
fn corrupt_file_is_quarantined_and_the_table_must_be_cleared() {
    let dir = TempDir::new("corrupt");
    let path = dir.join("snap.bin");
    let records = gen_records(4, 20);
    write_file(&path, &header(20), &records);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // only the checksum is wrong: every record streams out first
    std::fs::write(&path, &bytes).unwrap();
    let (outcome, got) = load_all(&path);
    assert_eq!(got.len(), 20);
    assert!(outcome.must_clear_table());
    let LoadOutcome::Quarantined {
        error: SnapshotError::ChecksumMismatch,
        moved_to: Some(to),
        inserted: 20,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert!(!path.exists());
    assert_eq!(std::fs::read(&to).unwrap(), bytes, "kept for inspection");
    assert!(
        to.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("snap.bin.corrupt-")
    );
}

#[test]
fn truncated_file_is_quarantined_and_only_a_few_are_kept() {
    let dir = TempDir::new("quarantine");
    let path = dir.join("snap.bin");
    for round in 0..MAX_QUARANTINED + 3 {
        write_file(&path, &header(5), &gen_records(5, 5));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let (outcome, _) = load_all(&path);
        assert!(
            matches!(
                outcome,
                LoadOutcome::Quarantined {
                    error: SnapshotError::Truncated,
                    moved_to: Some(_),
                    ..
                }
            ),
            "{outcome:?}"
        );
        let kept = dir
            .names()
            .iter()
            .filter(|n| n.contains(".corrupt-"))
            .count();
        assert_eq!(kept, (round + 1).min(MAX_QUARANTINED));
    }
    // An empty file (power lost right after create, on a file system without ordering) too.
    std::fs::write(&path, b"").unwrap();
    let (outcome, _) = load_all(&path);
    assert!(matches!(
        outcome,
        LoadOutcome::Quarantined {
            error: SnapshotError::Truncated,
            inserted: 0,
            ..
        }
    ));
    assert!(!outcome.must_clear_table());
}

#[cfg(unix)]
#[test]
fn an_unreadable_file_is_left_in_place() {
    let dir = TempDir::new("unreadable");
    let path = dir.join("snap.bin");
    std::fs::create_dir(&path).unwrap(); // opening works, reading fails with EISDIR
    let (outcome, _) = load_all(&path);
    assert!(
        matches!(
            outcome,
            LoadOutcome::Unreadable {
                error: SnapshotError::Io(_),
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(path.is_dir());
}

const KILL9_PATH: &str = "PB_SNAPSHOT_KILL9_PATH";
const KILL9_SEED: &str = "PB_SNAPSHOT_KILL9_SEED";
const KILL9_RECORDS: u32 = 20_000;
const KILL9_CHUNK: usize = 200;

/// Not a test on its own: when the parent below spawns this binary with [`KILL9_PATH`] set,
/// writes a large snapshot slowly, reporting progress on stdout, then waits to be killed.
#[test]
fn kill9_child_writer() {
    let (Ok(path), Ok(seed)) = (std::env::var(KILL9_PATH), std::env::var(KILL9_SEED)) else {
        return;
    };
    let seed: u64 = seed.parse().unwrap();
    let records = gen_records(seed, KILL9_RECORDS);
    let say = |what: &str| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "PBCHILD {what}");
        let _ = out.flush();
    };
    let mut w = SnapshotWriter::create(Path::new(&path)).unwrap();
    let mut buf = Vec::new();
    encode_header(&header(records.len()), &mut buf);
    w.write_chunk(&buf).unwrap();
    say("created");
    for chunk in records.chunks(KILL9_CHUNK) {
        buf.clear();
        for r in chunk {
            encode_record(r, &mut buf);
        }
        w.write_chunk(&buf).unwrap();
        say("chunk");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    w.finish().unwrap();
    say("done");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}

#[test]
fn kill9_during_a_snapshot_leaves_the_old_or_the_new_one() {
    let dir = TempDir::new("kill9");
    let path = dir.join("snap.bin");
    let first = gen_records(100, 1000);
    write_file(&path, &header(first.len()), &first);
    let mut current = first;
    let steps = KILL9_RECORDS as u64 / KILL9_CHUNK as u64 + 2; // created, chunks, done
    let exe = std::env::current_exe().unwrap();
    for round in 0..6u64 {
        let seed = 200 + round;
        let wait_for = match round {
            0 => 0,     // before or while creating the file
            1 => steps, // after the rename
            _ => random_u64() % (steps + 1),
        };
        let mut child = std::process::Command::new(&exe)
            .args([
                "snapshot::tests::kill9_child_writer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(KILL9_PATH, &path)
            .env(KILL9_SEED, seed.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kept open until the kill, so the child never writes into a closed pipe.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < wait_for {
            match lines.next() {
                Some(Ok(line)) if line.contains("PBCHILD ") => seen += 1,
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        drop(lines);
        assert!(
            !status.success(),
            "round {round}: the child must have been killed"
        );

        let (outcome, got) = load_all(&path);
        assert!(
            matches!(outcome, LoadOutcome::Loaded { .. }),
            "round {round}: {outcome:?}"
        );
        let new = gen_records(seed, KILL9_RECORDS);
        assert!(
            got == current || got == new,
            "round {round} (killed after {seen} steps): neither the old nor the new snapshot"
        );
        let which = if got == new { "new" } else { "old" };
        eprintln!(
            "kill9 round {round}: killed after {seen}/{steps} steps, loaded the {which} snapshot"
        );
        if wait_for == steps {
            assert!(got == new, "the finished snapshot must be in place");
        }
        assert!(
            dir.names().iter().all(|n| !n.contains(".tmp-")),
            "stale temp files removed: {:?}",
            dir.names()
        );
        current = got;
    }
}

/// A version-1 file (before friend lists were salted: no digest field) still loads, and its
/// friends records get the unsalted digest their owners signed; version 2 stores the digest,
/// which the server cannot recompute because it never keeps the salt.
#[test]
fn version_1_files_load_with_the_unsalted_digest() {
    use sha2::{Digest, Sha256};
    let mut records = gen_records(11, 9);
    // Versions 1 and 2 had no candidates.
    for r in &mut records {
        r.candidates.clear();
    }
    let mut v1 = Vec::new();
    let mut h = header(records.len());
    h.record_count = records.len() as u64;
    encode_header(&h, &mut v1);
    v1[8..12].copy_from_slice(&VERSION_UNSALTED.to_be_bytes());
    for (i, r) in records.iter_mut().enumerate() {
        let mut one = Vec::new();
        encode_record(r, &mut one);
        let mut one = with_name(one, &gen_name(11, i as u32));
        one.pop(); // the candidate count (0), new in version 3
        if r.visibility == Visibility::Friends {
            // Drop the digest (32 bytes before remaining_secs) to get the v1 layout.
            let end = one.len() - 4;
            one.drain(end - 32..end);
            let mut sorted = r.friends.clone();
            sorted.sort_unstable();
            r.friends_digest = Some(Sha256::digest(sorted.concat()).into());
        }
        v1.extend_from_slice(&one);
    }
    append_trailer(&mut v1);
    assert!(records.iter().any(|r| r.visibility == Visibility::Friends));
    assert_eq!(decode_all(&v1, CAPACITY).unwrap().1, records);
    // The same records in version 2 keep their (salted) digests as written.
    let v2 = encode_file(&h, &records);
    assert_eq!(&v2[8..12], &VERSION.to_be_bytes());
    assert_eq!(decode_all(&v2, CAPACITY).unwrap().1, records);
}

/// Version 3 keeps the signed candidates; a version-2 file (no candidate field) still loads.
#[test]
fn candidates_survive_and_version_2_files_load() {
    let records = gen_records(40, 3);
    assert!(records.iter().any(|r| !r.candidates.is_empty()));
    let v3 = encode_file(&header(records.len()), &records);
    assert_eq!(decode_all(&v3, CAPACITY).unwrap().1, records);
    let mut plain = records.clone();
    for r in &mut plain {
        r.candidates.clear();
    }
    let mut v2 = Vec::new();
    encode_header(&header(plain.len()), &mut v2);
    v2[8..12].copy_from_slice(&VERSION_NO_CANDIDATES.to_be_bytes());
    for (i, r) in plain.iter().enumerate() {
        let mut one = Vec::new();
        encode_record(r, &mut one);
        let mut one = with_name(one, &gen_name(40, i as u32));
        one.pop();
        v2.extend_from_slice(&one);
    }
    append_trailer(&mut v2);
    assert_eq!(decode_all(&v2, CAPACITY).unwrap().1, plain);
}

/// Version 4 stores lookup ids, never names; a version-3 file (names) loads with each name
/// hashed into its id, and one with an invalid name is refused.
#[test]
fn version_3_files_load_with_names_hashed() {
    let records = gen_records(5, 40);
    let v4 = encode_file(&header(records.len()), &records);
    let text = String::from_utf8_lossy(&v4);
    assert!(
        !text.contains("Gilgamesh"),
        "a version-4 file holds no name"
    );
    let named = |name_of: &dyn Fn(usize) -> String| {
        let mut v3 = Vec::new();
        encode_header(&header(records.len()), &mut v3);
        v3[8..12].copy_from_slice(&VERSION_NAMES.to_be_bytes());
        for (i, r) in records.iter().enumerate() {
            let mut one = Vec::new();
            encode_record(r, &mut one);
            v3.extend_from_slice(&with_name(one, &name_of(i)));
        }
        append_trailer(&mut v3);
        v3
    };
    let v3 = named(&|i| gen_name(5, i as u32));
    assert_eq!(decode_all(&v3, CAPACITY).unwrap().1, records);
    let bad = named(&|i| {
        if i == 3 {
            "NoSpace@World".into()
        } else {
            gen_name(5, i as u32)
        }
    });
    let e = decode_all(&bad, CAPACITY).unwrap_err();
    assert!(e.to_string().contains("bad name"), "{e}");
    let long = named(&|i| {
        if i == 3 {
            "A".repeat(60)
        } else {
            gen_name(5, i as u32)
        }
    });
    let e = decode_all(&long, CAPACITY).unwrap_err();
    assert!(e.to_string().contains("name length out of range"), "{e}");
}

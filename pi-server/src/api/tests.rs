use super::*;
use crate::config::Cidr;
use crate::http::parse_head;
use phonebook_proto::{
    Asked, BatchAnswer, BatchLookup, Keypair, LookupId, LookupRecord, PlayerName, PublicKey,
    Register, RegisterAnswer, Unregister, name::encode_path_name,
};

const T0: u64 = 1_764_000_000_000;

struct Rig {
    app: App,
    now: Now,
}

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn code(&self) -> String {
        ErrorBody::from_json(&self.body)
            .map(|b| b.error)
            .unwrap_or_default()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    }
}

fn peer() -> IpAddr {
    "198.51.100.10".parse().unwrap()
}

impl Rig {
    fn new(f: impl FnOnce(&mut Config)) -> Self {
        let mut c = Config {
            capacity: 16,
            ..Config::default()
        };
        f(&mut c);
        Rig {
            app: App::new(c, [3; 32]),
            now: Now {
                mono_ms: 5_000,
                wall_ms: T0,
            },
        }
    }

    fn send_from(&mut self, from: IpAddr, req: &[u8]) -> Reply {
        let head = parse_head(req, 8192).expect("test request parses");
        let body = &req[head.len..];
        let mut out = Vec::new();
        self.app.handle(&head, body, from, self.now, &mut out);
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head_text = String::from_utf8(out[..split].to_vec()).unwrap();
        let status = head_text[9..12].parse().unwrap();
        Reply {
            status,
            head: head_text,
            body: out[split + 4..].to_vec(),
        }
    }

    fn send(&mut self, req: &[u8]) -> Reply {
        self.send_from(peer(), req)
    }

    fn post(&mut self, path: &str, body: &str, extra: &str) -> Reply {
        let req = format!(
            "POST {path} HTTP/1.1\r\nContent-Length: {}\r\n{extra}\r\n{body}",
            body.len()
        );
        self.send(req.as_bytes())
    }

    fn register(&mut self, r: &Register) -> Reply {
        self.post("/api/register", &r.to_json(), "")
    }

    fn unregister(&mut self, body: &str) -> Reply {
        let req = format!(
            "DELETE /api/unregister HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send(req.as_bytes())
    }

    /// `GET path` with the bearer token `token`.
    fn get(&mut self, path: &str, token: &str) -> Reply {
        let req = format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n");
        self.send(req.as_bytes())
    }

    fn token(&mut self, r: &Register) -> String {
        let rep = self.register(r);
        assert_eq!(rep.status, 200, "{}", String::from_utf8_lossy(&rep.body));
        RegisterAnswer::from_json(&rep.body).unwrap().token
    }

    fn lookup(&mut self, token: &str, name: &str) -> Reply {
        let n = encode_path_name(&PlayerName::parse(name).unwrap());
        self.get(&format!("/api/lookup/{n}"), token)
    }
}

const TEST_SALT: [u8; 32] = [0x5a; 32];

fn kp(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

fn reg(k: &Keypair, name: &str, ts: u64) -> Register {
    Register::sign_public(k, PlayerName::parse(name).unwrap(), 5000, ts)
}

fn friends_reg(k: &Keypair, name: &str, friends: Vec<PublicKey>, ts: u64) -> Register {
    Register::sign_friends(
        k,
        PlayerName::parse(name).unwrap(),
        5000,
        friends,
        TEST_SALT,
        ts,
    )
}

#[test]
fn register_then_verified_lookup() {
    let mut rig = Rig::new(|_| {});
    let alice = reg(&kp(1), "Alice Smith@Gilgamesh", T0);
    let rep = rig.register(&alice);
    assert_eq!(rep.status, 200);
    let a = RegisterAnswer::from_json(&rep.body).unwrap();
    assert_eq!(a.ip, "198.51.100.10");
    assert!(
        a.reregister_in >= 2880 && a.reregister_in <= 3240,
        "{}",
        a.reregister_in
    );
    let bob_token = rig.token(&reg(&kp(2), "Bob Jones@Gilgamesh", T0));
    let rep = rig.lookup(&bob_token, "alice smith@GILGAMESH");
    assert_eq!(rep.status, 200);
    let asked = PlayerName::parse("Alice Smith@Gilgamesh").unwrap();
    let rec = LookupRecord::from_json_verified(&rep.body, &asked).unwrap();
    assert_eq!((rec.port, rec.key), (5000, kp(1).public()));
    assert_eq!(rec.ip.to_string(), "198.51.100.10");
    assert_eq!(rec.expires_in, 3600);
}

#[test]
fn impersonation_and_replay_refused() {
    let mut rig = Rig::new(|_| {});
    assert_eq!(
        rig.register(&reg(&kp(1), "Alice Smith@Gilgamesh", T0))
            .status,
        200
    );
    let thief = rig.register(&reg(&kp(2), "ALICE SMITH@Gilgamesh", T0 + 1));
    assert_eq!((thief.status, thief.code()), (409, "key_conflict".into()));
    let replay = rig.register(&reg(&kp(1), "Alice Smith@Gilgamesh", T0));
    assert_eq!((replay.status, replay.code()), (409, "replayed".into()));
    // A forged signature: right key, wrong signer.
    let mut forged = reg(&kp(1), "Alice Smith@Gilgamesh", T0 + 5);
    forged.signature = kp(2).sign(&forged.fields().message());
    let rep = rig.register(&forged);
    assert_eq!((rep.status, rep.code()), (401, "bad_signature".into()));
    assert_eq!(rig.app.metrics.rejected(Reject::KeyConflict), 1);
}

#[test]
fn clock_skew_reports_server_time() {
    let mut rig = Rig::new(|c| c.max_skew = 10);
    let rep = rig.register(&reg(&kp(1), "Alice Smith@Gilgamesh", T0 - 11_000));
    assert_eq!((rep.status, rep.code()), (400, "clock_skew".into()));
    assert_eq!(
        ErrorBody::from_json(&rep.body).unwrap().server_time,
        Some(T0)
    );
    assert_eq!(
        rig.register(&reg(&kp(1), "Alice Smith@Gilgamesh", T0 + 9_000))
            .status,
        200
    );
}

#[test]
fn unregister_needs_the_owners_signature() {
    let mut rig = Rig::new(|_| {});
    let t = rig.token(&reg(&kp(9), "Req Uester@Gilgamesh", T0));
    assert_eq!(
        rig.register(&reg(&kp(1), "Alice Smith@Gilgamesh", T0))
            .status,
        200
    );
    let name = PlayerName::parse("Alice Smith@Gilgamesh").unwrap();
    let forged = Unregister::sign(&kp(2), name.clone(), T0 + 1);
    let rep = rig.send(
        format!(
            "DELETE /api/unregister HTTP/1.1\r\nContent-Length: {}\r\n\r\n{}",
            forged.to_json().len(),
            forged.to_json()
        )
        .as_bytes(),
    );
    // Another key has no record of its own under the name: 404, and Alice's stays.
    assert_eq!((rep.status, rep.code()), (404, "not_found".into()));
    let alice = rig
        .app
        .table
        .find(&LookupId::of(&name), kp(1).public().as_bytes());
    assert!(alice.is_some_and(|i| rig.app.table.live_slot(i, rig.now.secs()).is_some()));
    let mut bad_sig = Unregister::sign(&kp(1), name.clone(), T0 + 1);
    bad_sig.timestamp += 1;
    let body = bad_sig.to_json();
    let rep = rig.unregister(&body);
    assert_eq!(rep.status, 401);
    assert_eq!(rig.lookup(&t, "Alice Smith@Gilgamesh").status, 200);
    let good = Unregister::sign(&kp(1), name, T0 + 2).to_json();
    let rep = rig.unregister(&good);
    assert_eq!(rep.status, 200);
    assert_eq!(rig.lookup(&t, "Alice Smith@Gilgamesh").status, 404);
    // Replaying the unregister gets nothing; re-registering with an old timestamp neither.
    let rep = rig.unregister(&good);
    assert_eq!(rep.status, 404);
    assert_eq!(
        rig.register(&reg(&kp(1), "Alice Smith@Gilgamesh", T0 + 1))
            .code(),
        "replayed"
    );
}

/// Registering a name never tells a stranger whether a friends-only player holds it: the
/// stranger's registration under the same name succeeds as for a free name, with either
/// visibility; the owner's friends keep seeing the owner's record, the stranger sees its own.
/// Only a *public* record binds the name against other keys going public.
#[test]
fn registering_reveals_no_friends_only_record() {
    let mut rig = Rig::new(|_| {});
    let (alice, friend, eve) = (kp(1), kp(2), kp(3));
    let hidden = friends_reg(&alice, "Alice Smith@Gilgamesh", vec![friend.public()], T0);
    assert_eq!(rig.register(&hidden).status, 200);
    let friend_t = rig.token(&reg(&friend, "Bob Jones@Gilgamesh", T0));
    // Eve registers Alice's name, friends-only and then publicly, as she would a free one.
    let squat = friends_reg(&eve, "Alice Smith@Gilgamesh", vec![], T0);
    let first = rig.register(&squat);
    let free = friends_reg(&eve, "Nobody Here@Gilgamesh", vec![], T0);
    let control = rig.register(&free);
    assert_eq!((first.status, control.status), (200, 200));
    let eve_public = reg(&eve, "Alice Smith@Gilgamesh", T0 + 1);
    assert_eq!(rig.register(&eve_public).status, 200);
    // The friend is given Eve's public record first: the key is what the client checks
    // (docs/PROTOCOL.md "Binding"); asked by id with Alice's key pinned, a client refuses it.
    let rec =
        LookupRecord::from_json(&rig.lookup(&friend_t, "Alice Smith@Gilgamesh").body).unwrap();
    assert_eq!(rec.key, eve.public());
    // Alice going public now conflicts with Eve's public record...
    let alice_public = reg(&alice, "Alice Smith@Gilgamesh", T0 + 2);
    assert_eq!(rig.register(&alice_public).code(), "key_conflict");
    // ...and once Eve leaves (unregister), her public binding is retained: still a conflict.
    let u = Unregister::sign(
        &eve,
        PlayerName::parse("Alice Smith@Gilgamesh").unwrap(),
        T0 + 3,
    );
    let body = u.to_json();
    let rep = rig.unregister(&body);
    assert_eq!(rep.status, 200);
    let again = reg(&alice, "Alice Smith@Gilgamesh", T0 + 4);
    assert_eq!(rig.register(&again).code(), "key_conflict");
    // Alice's friends-only record is untouched: her friend finds it, by id or by name.
    let rec =
        LookupRecord::from_json(&rig.lookup(&friend_t, "Alice Smith@Gilgamesh").body).unwrap();
    assert_eq!(rec.key, alice.public());
    let id = LookupId::of(&PlayerName::parse("Alice Smith@Gilgamesh").unwrap());
    let rep = rig.get(&format!("/api/lookup/{id}"), &friend_t);
    assert_eq!(rep.status, 200);
    let text = String::from_utf8(rep.body.clone()).unwrap();
    assert!(
        !text.contains("playerName"),
        "asked by id, no name comes back: {text}"
    );
    let rec = LookupRecord::from_json_verified(
        &rep.body,
        &PlayerName::parse("alice smith@gilgamesh").unwrap(),
    )
    .unwrap();
    assert_eq!((rec.key, rec.id), (alice.public(), id));
    // No name is held anywhere in the table.
    assert!(
        rig.app
            .table
            .occupied()
            .iter()
            .all(|&i| rig.app.table.slot(i).unwrap().id != LookupId([0; 32]))
    );
}

/// A lookup path segment is a lookup id or a name; anything else is a 400 that names both.
#[test]
fn lookup_by_id_checks_the_segment() {
    let mut rig = Rig::new(|_| {});
    let t = rig.token(&reg(&kp(1), "Alice Smith@Gilgamesh", T0));
    for bad in [
        "x",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D",
    ] {
        let rep = rig.get(&format!("/api/lookup/{bad}"), &t);
        assert_eq!(
            (rep.status, rep.code()),
            (400, "bad_request".into()),
            "{bad}"
        );
        assert!(String::from_utf8_lossy(&rep.body).contains("lookup id or playerName"));
    }
    // A well-formed id of nobody: the same 404 as an absent name.
    let nobody = LookupId([7; 32]);
    let rep = rig.get(&format!("/api/lookup/{nobody}"), &t);
    assert_eq!((rep.status, rep.code()), (404, "not_found".into()));
}

#[test]
fn friends_only_is_invisible_to_strangers_and_identical_to_absent() {
    let mut rig = Rig::new(|_| {});
    let friend = kp(2);
    assert_eq!(
        rig.register(&friends_reg(
            &kp(1),
            "Alice Smith@Gilgamesh",
            vec![friend.public()],
            T0
        ))
        .status,
        200
    );
    let friend_t = rig.token(&reg(&friend, "Bob Jones@Gilgamesh", T0));
    let stranger_t = rig.token(&reg(&kp(3), "Eve Evil@Gilgamesh", T0));
    assert_eq!(rig.lookup(&friend_t, "Alice Smith@Gilgamesh").status, 200);
    let hidden = rig.lookup(&stranger_t, "Alice Smith@Gilgamesh");
    // A second stranger so that the miss back-off matches.
    let stranger2_t = rig.token(&reg(&kp(4), "Mal Lory@Gilgamesh", T0));
    let absent = rig.lookup(&stranger2_t, "Nobody Here@Gilgamesh");
    assert_eq!(hidden.status, 404);
    assert_eq!(hidden.body, absent.body);
    assert_eq!(hidden.header("Retry-After"), absent.header("Retry-After"));
    // Batch: the friend sees Alice, the stranger sees only the public one.
    let batch = BatchLookup {
        asked: vec![
            Asked::named(PlayerName::parse("Alice Smith@Gilgamesh").unwrap()),
            Asked::named(PlayerName::parse("Bob Jones@Gilgamesh").unwrap()),
        ],
    }
    .to_json();
    let rep = rig.post(
        "/api/lookup",
        &batch,
        &format!("Authorization: Bearer {stranger_t}\r\n"),
    );
    let found = BatchAnswer::from_json(&rep.body).unwrap().found;
    assert_eq!(
        found
            .iter()
            .map(|r| r.name.as_ref().unwrap().as_str())
            .collect::<Vec<_>>(),
        vec!["Bob Jones@Gilgamesh"]
    );
    let rep = rig.post(
        "/api/lookup",
        &batch,
        &format!("Authorization: Bearer {friend_t}\r\n"),
    );
    let found = BatchAnswer::from_json(&rep.body).unwrap().found;
    assert_eq!(found.len(), 2);
    assert!(found.iter().all(|r| r.verify(None).is_ok()));
}

#[test]
fn lookups_need_a_live_token() {
    let mut rig = Rig::new(|_| {});
    let r1 = reg(&kp(1), "Alice Smith@Gilgamesh", T0);
    let t1 = rig.token(&r1);
    let rep = rig.send(b"GET /api/lookup/Alice%20Smith@Gilgamesh HTTP/1.1\r\n\r\n");
    assert_eq!((rep.status, rep.code()), (401, "unauthorized".into()));
    assert_eq!(rep.header("WWW-Authenticate").as_deref(), Some("Bearer"));
    assert_eq!(rig.lookup("AAAA", "Alice Smith@Gilgamesh").status, 401);
    assert_eq!(rig.lookup(&t1, "Alice Smith@Gilgamesh").status, 200);
    // Renewal invalidates the old token.
    let t2 = rig.token(&reg(&kp(1), "Alice Smith@Gilgamesh", T0 + 1));
    assert_eq!(rig.lookup(&t1, "Alice Smith@Gilgamesh").status, 401);
    assert_eq!(rig.lookup(&t2, "Alice Smith@Gilgamesh").status, 200);
    // Expiry too.
    rig.now.mono_ms += 3600 * 1000;
    assert_eq!(rig.lookup(&t2, "Alice Smith@Gilgamesh").status, 401);
}

#[test]
fn spoofed_forwarding_and_claimed_ip() {
    let mut rig = Rig::new(|c| {
        c.trusted_proxies = vec![Cidr {
            addr: "10.0.0.0".parse().unwrap(),
            prefix: 8,
        }]
    });
    let body = reg(&kp(1), "Alice Smith@Gilgamesh", T0).to_json();
    let spoof = format!(
        "POST /api/register HTTP/1.1\r\nX-Forwarded-For: 203.0.113.66\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let rep = rig.send(spoof.as_bytes());
    assert_eq!(
        RegisterAnswer::from_json(&rep.body).unwrap().ip,
        "198.51.100.10"
    );
    let body = reg(&kp(1), "Alice Smith@Gilgamesh", T0 + 1).to_json();
    let proxied = format!(
        "POST /api/register HTTP/1.1\r\nX-Forwarded-For: 203.0.113.66\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let rep = rig.send_from("10.1.2.3".parse().unwrap(), proxied.as_bytes());
    assert_eq!(
        RegisterAnswer::from_json(&rep.body).unwrap().ip,
        "203.0.113.66"
    );
    // A claimed ip pointing at a victim is refused.
    let mut r = reg(&kp(1), "Alice Smith@Gilgamesh", T0 + 2);
    r.ip = Some("192.0.2.99".parse().unwrap());
    let rep = rig.register(&r);
    assert_eq!(rep.status, 400);
    assert!(String::from_utf8_lossy(&rep.body).contains("invalid ip"));
    r.ip = Some(peer());
    assert_eq!(rig.register(&r).status, 200);
}

#[test]
fn claimed_ip_allowed_on_lan() {
    let mut rig = Rig::new(|c| c.allow_claimed_ip = true);
    let mut r = reg(&kp(1), "Alice Smith@Gilgamesh", T0);
    r.ip = Some("::ffff:192.168.1.20".parse().unwrap());
    let rep = rig.register(&r);
    assert_eq!(
        RegisterAnswer::from_json(&rep.body).unwrap().ip,
        "192.168.1.20"
    );
}

#[test]
fn capacity_full_gives_503_with_retry_after() {
    let mut rig = Rig::new(|c| c.capacity = 2);
    assert_eq!(rig.register(&reg(&kp(1), "Aa Bb@World", T0)).status, 200);
    assert_eq!(rig.register(&reg(&kp(2), "Cc Dd@World", T0)).status, 200);
    let rep = rig.register(&reg(&kp(3), "Ee Ff@World", T0));
    assert_eq!((rep.status, rep.code()), (503, "capacity_full".into()));
    assert_eq!(rep.header("Retry-After").as_deref(), Some("60"));
    assert_eq!(
        rig.register(&reg(&kp(1), "Aa Bb@World", T0 + 1)).status,
        200
    );
}

#[test]
fn rate_limits_per_address_and_per_key() {
    let mut rig = Rig::new(|c| {
        c.rate_ip = 1;
        c.rate_ip_burst = 3;
    });
    for _ in 0..3 {
        assert_eq!(rig.send(b"GET /api/health HTTP/1.1\r\n\r\n").status, 200);
    }
    let rep = rig.send(b"GET /api/health HTTP/1.1\r\n\r\n");
    assert_eq!(
        (rep.status, rep.header("Retry-After").as_deref()),
        (429, Some("1"))
    );
    // Another address, even in the same IPv6 /64 as nobody, is unaffected.
    assert_eq!(
        rig.send_from(
            "2001:db8::1".parse().unwrap(),
            b"GET /api/health HTTP/1.1\r\n\r\n"
        )
        .status,
        200
    );

    let mut rig = Rig::new(|c| {
        c.rate_key = 1;
        c.rate_key_burst = 2;
    });
    let t = rig.token(&reg(&kp(1), "Alice Smith@Gilgamesh", T0));
    assert_eq!(rig.lookup(&t, "Alice Smith@Gilgamesh").status, 200);
    let rep = rig.lookup(&t, "Alice Smith@Gilgamesh");
    assert_eq!(rep.status, 429);
    assert_eq!(rep.code(), "rate_limited");
}

#[test]
fn absent_lookups_back_off() {
    let mut rig = Rig::new(|_| {});
    let t = rig.token(&reg(&kp(1), "Alice Smith@Gilgamesh", T0));
    let waits: Vec<String> = (0..4)
        .map(|_| {
            rig.lookup(&t, "No Body@Gilgamesh")
                .header("Retry-After")
                .unwrap()
        })
        .collect();
    assert_eq!(waits, vec!["1", "2", "4", "8"]);
}

#[test]
fn bad_input_gets_clear_errors() {
    let mut rig = Rig::new(|_| {});
    let t = rig.token(&reg(&kp(1), "Alice Smith@Gilgamesh", T0));
    let rep = rig.post("/api/register", r#"{"x":["#, "");
    assert_eq!(rep.status, 400);
    assert!(String::from_utf8_lossy(&rep.body).contains("invalid JSON"));
    let rep = rig.send(
        format!("GET /api/lookup/Alice%2 HTTP/1.1\r\nAuthorization: Bearer {t}\r\n\r\n").as_bytes(),
    );
    assert_eq!(rep.status, 400);
    let rep = rig.send(b"PUT /api/register HTTP/1.1\r\n\r\n");
    assert_eq!(
        (rep.status, rep.header("Allow").as_deref()),
        (405, Some("POST"))
    );
    assert_eq!(rig.send(b"GET /nope HTTP/1.1\r\n\r\n").status, 404);
    let rep = rig.post(
        "/api/lookup",
        r#"{"names":[]}"#,
        &format!("Authorization: Bearer {t}\r\n"),
    );
    assert_eq!(rep.status, 400);
}

#[test]
fn health_and_metrics() {
    let mut rig = Rig::new(|_| {});
    rig.register(&reg(&kp(1), "Alice Smith@Gilgamesh", T0));
    let h = Health::from_json(&rig.send(b"GET /api/health HTTP/1.1\r\n\r\n").body).unwrap();
    assert_eq!(
        (h.status.as_str(), h.active_users, h.capacity, h.ttl),
        ("ok", 1, 16, 3600)
    );
    // Metrics are hidden from the internet by default, shown on loopback.
    assert_eq!(rig.send(b"GET /metrics HTTP/1.1\r\n\r\n").status, 404);
    let rep = rig.send_from(
        "127.0.0.1".parse().unwrap(),
        b"GET /metrics HTTP/1.1\r\n\r\n",
    );
    let text = String::from_utf8(rep.body).unwrap();
    assert!(text.contains("phonebook_entries 1\n"), "{text}");
    assert!(text.contains("phonebook_requests_total{endpoint=\"register\",status=\"200\"} 1"));
    assert!(text.contains("phonebook_rejections_total{reason=\"key_conflict\"} 0"));
}

mod security;
mod udp;

/// Friend lists are salted (issue 9): a registration built the unsalted way, no
/// `friendsSalt` and the signature over SHA-256 of the sorted keys, is refused with 400 naming
/// `friendsSalt`; an accepted one is served with the salted digest only, so a friend who sees
/// the record cannot confirm a guessed list, and the salt itself appears in no answer.
#[test]
fn unsalted_friend_lists_are_refused_and_lookups_carry_no_salt() {
    use sha2::{Digest, Sha256};
    let mut rig = Rig::new(|_| {});
    let (owner, friend) = (kp(1), kp(2));
    let salted = friends_reg(&owner, "Alice Smith@Gilgamesh", vec![friend.public()], T0);
    let salt_b64 = phonebook_proto::b64::encode(&TEST_SALT);
    // The old protocol: no salt, signature over the unsalted digest.
    let unsalted_digest: [u8; 32] = Sha256::digest(friend.public().as_bytes()).into();
    let mut fields = salted.fields();
    fields.friends_digest = unsalted_digest;
    let old_sig = owner.sign(&fields.message());
    let old_body = salted
        .to_json()
        .replace(&format!(",\"friendsSalt\":\"{salt_b64}\""), "")
        .replace(&salted.signature.to_base64(), &old_sig.to_base64());
    assert!(!old_body.contains("friendsSalt"));
    let rep = rig.post("/api/register", &old_body, "");
    assert_eq!((rep.status, rep.code().as_str()), (400, "bad_request"));
    let msg = ErrorBody::from_json(&rep.body).unwrap().message;
    assert!(msg.contains("friendsSalt"), "{msg}");
    // The old signature with a salt added fails the signature check.
    let mut with_salt = salted.clone();
    with_salt.signature = old_sig;
    let rep = rig.register(&with_salt);
    assert_eq!((rep.status, rep.code().as_str()), (401, "bad_signature"));
    // The salted registration is served with the salted digest and no salt.
    assert_eq!(rig.register(&salted).status, 200);
    let friend_t = rig.token(&reg(&friend, "Bob Jones@Gilgamesh", T0));
    let rep = rig.lookup(&friend_t, "Alice Smith@Gilgamesh");
    assert_eq!(rep.status, 200);
    let text = String::from_utf8(rep.body.clone()).unwrap();
    assert!(
        !text.contains("friendsSalt") && !text.contains(&salt_b64),
        "{text}"
    );
    let rec = LookupRecord::from_json(&rep.body).unwrap();
    assert_eq!(rec.friends_digest, salted.friends_digest());
    assert_ne!(rec.friends_digest, unsalted_digest);
    assert_eq!(rec.verify(None), Ok(()));
}

/// docs/PROTOCOL.md "DELETE /api/unregister": signature first, then the name's binding, then
/// whether it is live, then the timestamp.
#[test]
fn unregister_checks_in_the_documented_order() {
    let mut rig = Rig::new(|_| {});
    let delete = |rig: &mut Rig, u: &Unregister| {
        let body = u.to_json();
        let rep = rig.unregister(&body);
        (rep.status, rep.code())
    };
    let name = |s: &str| PlayerName::parse(s).unwrap();
    // An unknown name with a bad signature: 401, not 404 (signature first).
    let mut bad = Unregister::sign(&kp(1), name("Nobody Here@Gilgamesh"), T0);
    bad.timestamp += 1;
    assert_eq!(delete(&mut rig, &bad), (401, "bad_signature".into()));
    // A good signature for an unknown name: 404.
    let u = Unregister::sign(&kp(1), name("Nobody Here@Gilgamesh"), T0);
    assert_eq!(delete(&mut rig, &u), (404, "not_found".into()));
    // Registered, then unregistered: another key gets 404, as for any name it never held.
    assert_eq!(
        rig.register(&reg(&kp(1), "Alice Smith@Gilgamesh", T0))
            .status,
        200
    );
    let u = Unregister::sign(&kp(1), name("Alice Smith@Gilgamesh"), T0 + 1);
    assert_eq!(delete(&mut rig, &u), (200, String::new()));
    let other = Unregister::sign(&kp(2), name("Alice Smith@Gilgamesh"), T0 + 5);
    assert_eq!(delete(&mut rig, &other), (404, "not_found".into()));
    // The owner, with a stale timestamp: 404 (not live) comes before 409 replayed.
    let stale = Unregister::sign(&kp(1), name("Alice Smith@Gilgamesh"), T0);
    assert_eq!(delete(&mut rig, &stale), (404, "not_found".into()));
}

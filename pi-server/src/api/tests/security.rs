//! Regression tests for the security defects of issue 9: tokens outliving their owner, the
//! client picking its recorded address, `/metrics` through a proxy, and one client exhausting
//! the table or the friend-key pool.

use super::*;

fn name(s: &str) -> phonebook_proto::PlayerName {
    phonebook_proto::PlayerName::parse(s).unwrap()
}

fn name_id(s: &str) -> phonebook_proto::LookupId {
    phonebook_proto::LookupId::of(&name(s))
}

/// Issue 9: a token must die with its registration. A registers, unregisters (or expires) and
/// the slot frees; B registers a name into the same slot with the same millisecond timestamp.
/// A's old token must not authenticate as B.
#[test]
fn token_dies_with_its_registration_when_the_slot_changes_hands() {
    for how in ["unregister", "expiry", "retention end"] {
        let retention = if how == "retention end" { 60 } else { 0 };
        let mut rig = Rig::new(|c| c.retention = retention);
        let a = reg(&kp(1), "Alice Smith@Gilgamesh", T0);
        let a_token = rig.token(&a);
        match how {
            "expiry" => rig.now.mono_ms += 3600 * 1000,
            _ => {
                let u = Unregister::sign(&kp(1), name("Alice Smith@Gilgamesh"), T0 + 1).to_json();
                let rep = rig.send(
                    format!(
                        "DELETE /api/unregister HTTP/1.1\r\nContent-Length: {}\r\n\r\n{u}",
                        u.len()
                    )
                    .as_bytes(),
                );
                assert_eq!(rep.status, 200);
            }
        }
        if how == "retention end" {
            rig.now.mono_ms += 61 * 1000;
        }
        let secs = rig.now.secs();
        rig.app.table.sweep(secs, 16, retention);
        assert_eq!(rig.app.table.find(&a.id, a.key.as_bytes()), None, "{how}");
        // B takes the freed slot with the same timestamp A used.
        rig.now.wall_ms = T0;
        let b_token = rig.token(&reg(&kp(2), "Bob Jones@Gilgamesh", T0));
        assert_eq!(
            rig.app
                .table
                .find(&name_id("Bob Jones@Gilgamesh"), kp(2).public().as_bytes()),
            Some(0),
            "{how}"
        );
        assert_eq!(rig.lookup(&b_token, "Bob Jones@Gilgamesh").status, 200);
        let rep = rig.lookup(&a_token, "Bob Jones@Gilgamesh");
        assert_eq!(
            (rep.status, rep.code()),
            (401, "unauthorized".into()),
            "A's token after {how} must not authenticate as B"
        );
    }
}

fn proxied_rig() -> Rig {
    Rig::new(|c| {
        c.trusted_proxies = vec![Cidr {
            addr: "10.0.0.0".parse().unwrap(),
            prefix: 8,
        }]
    })
}

/// Registers from the trusted proxy 10.1.2.3 with `headers` and returns the recorded address.
fn recorded_ip(rig: &mut Rig, ts: u64, headers: &str) -> String {
    let body = reg(&kp(1), "Alice Smith@Gilgamesh", ts).to_json();
    let req = format!(
        "POST /api/register HTTP/1.1\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let rep = rig.send_from("10.1.2.3".parse().unwrap(), req.as_bytes());
    assert_eq!(rep.status, 200, "{}", String::from_utf8_lossy(&rep.body));
    RegisterAnswer::from_json(&rep.body).unwrap().ip
}

/// Issue 9: behind a trusted proxy that sets X-Forwarded-For, a `Forwarded` header sent by the
/// client must not pick the recorded address.
#[test]
fn client_sent_forwarded_does_not_beat_the_proxys_header() {
    let mut rig = proxied_rig();
    let ip = recorded_ip(
        &mut rig,
        T0,
        "Forwarded: for=192.0.2.66\r\nX-Forwarded-For: 203.0.113.7\r\n",
    );
    assert_eq!(ip, "203.0.113.7");
}

/// Issue 9: 16 junk hops sent by the client must not push the address the proxy appended out
/// of the window.
#[test]
fn junk_hops_do_not_push_out_the_proxys_hop() {
    let mut rig = proxied_rig();
    let junk: Vec<String> = (1..=16).map(|i| format!("192.0.2.{i}")).collect();
    let xff = format!("X-Forwarded-For: {}, 203.0.113.7\r\n", junk.join(", "));
    assert_eq!(recorded_ip(&mut rig, T0, &xff), "203.0.113.7");
    // Unparsable junk left of the proxy's hop is never looked at either.
    let xff = "X-Forwarded-For: <script>, 203.0.113.8\r\n";
    assert_eq!(recorded_ip(&mut rig, T0 + 1, xff), "203.0.113.8");
}

/// Issue 9: several header lines of the same name are one comma list (RFC 9110 5.3). A first
/// proxy appended the client; a second trusted proxy added its own line (HAProxy style).
#[test]
fn repeated_forwarding_lines_are_one_list() {
    let mut rig = proxied_rig();
    let lines = "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 10.9.9.9\r\n";
    assert_eq!(recorded_ip(&mut rig, T0, lines), "203.0.113.7");
}

/// Issue 9: with a reverse proxy on the same host every request comes from loopback; /metrics
/// must be judged by the client address after proxy resolution.
#[test]
fn metrics_through_a_loopback_proxy_are_refused_to_the_internet() {
    let mut rig = Rig::new(|c| {
        c.trusted_proxies = vec![Cidr {
            addr: "127.0.0.1".parse().unwrap(),
            prefix: 32,
        }]
    });
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let rep = rig.send_from(
        lo,
        b"GET /metrics HTTP/1.1\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n",
    );
    assert_eq!((rep.status, rep.code()), (404, "not_found".into()));
    // The proxy host itself (no forwarding header) still sees them.
    assert_eq!(
        rig.send_from(lo, b"GET /metrics HTTP/1.1\r\n\r\n").status,
        200
    );
    // And everyone does with metrics-public.
    rig.app.config.metrics_public = true;
    let rep = rig.send_from(
        lo,
        b"GET /metrics HTTP/1.1\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n",
    );
    assert_eq!(rep.status, 200);
}

/// A trusted proxy whose header gives no usable client address gets a clear 400.
#[test]
fn unusable_forwarding_header_is_a_clear_400() {
    let mut rig = proxied_rig();
    let rep = rig.send_from(
        "10.1.2.3".parse().unwrap(),
        b"GET /api/health HTTP/1.1\r\nX-Forwarded-For: unknown\r\n\r\n",
    );
    assert_eq!((rep.status, rep.code()), (400, "bad_request".into()));
    assert!(String::from_utf8_lossy(&rep.body).contains("X-Forwarded-For"));
}

fn register_from(rig: &mut Rig, from: &str, r: &Register) -> Reply {
    let body = r.to_json();
    let req = format!(
        "POST /api/register HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    rig.send_from(from.parse().unwrap(), req.as_bytes())
}

fn seeded(a: u32, b: u32, tag: u8) -> Keypair {
    let mut seed = [tag; 32];
    seed[..4].copy_from_slice(&a.to_be_bytes());
    seed[4..8].copy_from_slice(&b.to_be_bytes());
    Keypair::from_seed(&seed)
}

fn junk_friends(list: u32) -> Vec<PublicKey> {
    (0..64).map(|i| seeded(list, i, 9).public()).collect()
}

/// Issue 9: one address filling the friend-key pool with junk keys (64 per registration, a
/// fresh key each time, within the rate limits) must not stop a friends-only registration from
/// another address. The pool here is 4,160 keys; the attacker is stopped at its quota.
#[test]
fn one_address_cannot_exhaust_the_friend_key_pool() {
    let mut rig = Rig::new(|c| {
        c.capacity = 1000;
        c.friend_keys_total = 4096 + 64;
    });
    let attacker = "203.0.113.66";
    let mut refused = None;
    for i in 0..66u32 {
        let k = seeded(i, 0, 7);
        let name = format!("Junk {}@World", letters(i));
        let r = friends_reg(&k, &name, junk_friends(i), T0);
        let rep = register_from(&mut rig, attacker, &r);
        if rep.status != 200 {
            refused = Some((rep.status, rep.code()));
            break;
        }
    }
    let honest = friends_reg(&kp(1), "Alice Smith@Gilgamesh", junk_friends(999), T0);
    let rep = register_from(&mut rig, "198.51.100.1", &honest);
    assert_eq!(rep.status, 200, "{}", String::from_utf8_lossy(&rep.body));
    assert_eq!(refused, Some((429, "quota_exceeded".into())));
}

/// Issue 9: the same attack on the table's live-record capacity: one address registering many
/// public names must not stop a registration from another address.
#[test]
fn one_address_cannot_fill_the_table() {
    let mut rig = Rig::new(|c| c.capacity = 257);
    let mut refused = None;
    for i in 0..257u32 {
        let k = seeded(i, 0, 8);
        let name = format!("Name {}@World", letters(i));
        // Another /64 of the same /48 each time: still one quota.
        let from = format!("2001:db8:66:{:x}::1", i + 1);
        let rep = register_from(&mut rig, &from, &reg(&k, &name, T0));
        if rep.status != 200 {
            refused = Some((rep.status, rep.code()));
            break;
        }
    }
    let rep = register_from(
        &mut rig,
        "198.51.100.1",
        &reg(&kp(1), "Alice Smith@Gilgamesh", T0),
    );
    assert_eq!(rep.status, 200, "{}", String::from_utf8_lossy(&rep.body));
    assert_eq!(refused, Some((429, "quota_exceeded".into())));
}

/// `i` spelled with letters only (names allow no digits).
fn letters(mut i: u32) -> String {
    let mut s = String::from("Q");
    loop {
        s.push((b'a' + (i % 26) as u8) as char);
        i /= 26;
        if i == 0 {
            return s;
        }
    }
}

/// Issue 9 ("lock honest players out"): the per-key limit must be charged only for requests
/// the key really signed. A stranger sending bodies that carry a victim's key and a bad
/// signature (well within the per-address limit) must not drain the victim's key bucket, or
/// the victim's renewals and unregistrations get 429 until the record expires.
#[test]
fn forged_requests_do_not_drain_the_victims_key_limit() {
    let mut rig = Rig::new(|c| {
        c.rate_ip = 1000;
        c.rate_ip_burst = 1000;
        c.rate_key = 1;
        c.rate_key_burst = 2;
    });
    let victim = kp(7);
    let first = reg(&victim, "Alice Smith@Gilgamesh", T0);
    rig.token(&first);
    for i in 0..20 {
        let mut forged = reg(&kp(8), "Alice Smith@Gilgamesh", T0 + 10 + i);
        forged.key = victim.public();
        let body = forged.to_json();
        let req = format!(
            "POST /api/register HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let rep = rig.send_from("192.0.2.200".parse().unwrap(), req.as_bytes());
        assert_eq!(rep.status, 401, "forged request {i}: {}", rep.code());
    }
    // The victim's own renewal, in the same millisecond: its bucket is as full as before.
    let renewal = reg(&victim, "Alice Smith@Gilgamesh", T0 + 100).to_json();
    let rep = rig.post("/api/register", &renewal, "");
    assert_eq!(rep.status, 200, "{}", String::from_utf8_lossy(&rep.body));
}

/// Anyone holding a copy of a player's signed body (another phone book the player registers
/// with, an on-path observer) can resend it: the signature verifies, the table refuses it as
/// replayed. Such copies must not drain the owner's per-key bucket.
#[test]
fn replayed_copies_do_not_drain_the_owners_key_bucket() {
    let mut rig = Rig::new(|c| {
        c.rate_key = 1;
        c.rate_key_burst = 3;
    });
    let post = |body: String| {
        format!(
            "POST /api/register HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let copy = post(reg(&kp(1), "Alice Smith@Gilgamesh", T0).to_json());
    let mut got = vec![];
    for i in 1..=4u8 {
        let from = format!("198.51.100.{i}").parse().unwrap();
        got.push(rig.send_from(from, copy.as_bytes()).status);
    }
    assert_eq!(
        got,
        vec![200, 409, 409, 409],
        "copies are refused as replayed"
    );
    rig.now.wall_ms = T0 + 1;
    let own = post(reg(&kp(1), "Alice Smith@Gilgamesh", T0 + 1).to_json());
    let rep = rig.send(own.as_bytes());
    assert_eq!(rep.status, 200, "the owner's own renewal after the copies");
}

/// A TLS handshake costs TLS_HANDSHAKE_COST of the address's bucket: one address gets
/// burst / cost handshakes at once, then is refused before any cryptography; another address
/// and a trusted proxy are not affected.
#[test]
fn tls_handshakes_are_charged_to_the_address() {
    let mut rig = Rig::new(|c| {
        c.rate_ip = 1;
        c.rate_ip_burst = 100;
        c.trusted_proxies = vec![crate::config::Cidr::parse("192.0.2.0/24").unwrap()];
    });
    let now = rig.now;
    let flood: IpAddr = "198.51.100.7".parse().unwrap();
    let admitted = (0..50)
        .take_while(|_| rig.app.admit_handshake(flood, now))
        .count() as u32;
    assert_eq!(admitted, 100 / TLS_HANDSHAKE_COST);
    assert!(!rig.app.admit_handshake(flood, now));
    assert!(
        rig.app
            .admit_handshake("198.51.100.8".parse().unwrap(), now)
    );
    let proxy: IpAddr = "192.0.2.9".parse().unwrap();
    assert!((0..50).all(|_| rig.app.admit_handshake(proxy, now)));
}

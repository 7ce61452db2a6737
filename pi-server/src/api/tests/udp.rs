//! The UDP service, sans I/O (issue 10): discovery, keep-alives, punch coordination, and the
//! privacy rule that a stranger's punch request gets the bytes an absent player gets and
//! reaches nobody.

use super::*;
use crate::api::udp::Datagram;
use phonebook_proto::udp::{Message, PunchStatus, TokenParts};
use std::net::SocketAddr;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

impl Rig {
    fn udp(&mut self, from: &str, bytes: &[u8]) -> Vec<Datagram> {
        let mut out = Vec::new();
        self.app.handle_udp(addr(from), bytes, self.now, &mut out);
        for d in &out {
            assert!(
                d.to != addr(from) || d.bytes.len() <= bytes.len(),
                "an answer larger than its request: {} > {}",
                d.bytes.len(),
                bytes.len()
            );
        }
        out
    }

    /// Registers and returns the token's parts.
    fn parts(&mut self, r: &Register) -> TokenParts {
        let token = self.token(r);
        TokenParts::parse(&token).expect("a version-2 token")
    }
}

fn keepalive(p: &TokenParts, counter: u64) -> Vec<u8> {
    Message::KeepAlive {
        auth: p.auth,
        counter,
    }
    .encode(&p.key)
}

fn punch(p: &TokenParts, counter: u64, target: &str) -> Vec<u8> {
    Message::PunchRequest {
        auth: p.auth,
        counter,
        nonce: [7; 8],
        target: phonebook_proto::LookupId::of(&PlayerName::parse(target).unwrap()),
        extra: [Some(addr("[2001:db8::5]:7000")), None],
    }
    .encode(&p.key)
}

const TARGET_AT: &str = "198.51.100.20:40000";
const FETCHER_AT: &str = "203.0.113.30:50000";

#[test]
fn binding_answers_the_source_and_the_second_port() {
    let mut rig = Rig::new(|_| {});
    rig.app.udp.alt_port = 3001;
    let out = rig.udp(
        "[::ffff:198.51.100.9]:4444",
        &Message::BindingRequest { txid: [1; 8] }.encode(&[0; 16]),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, addr("198.51.100.9:4444"));
    assert_eq!(
        Message::decode(&out[0].bytes),
        Ok(Message::BindingAnswer {
            txid: [1; 8],
            observed: addr("198.51.100.9:4444"),
            alt_port: 3001
        })
    );
    // Garbage and answers get nothing back.
    assert!(rig.udp(TARGET_AT, b"\x1bFX1\x02 not a message").is_empty());
    assert!(rig.udp(TARGET_AT, &[0xc0; 60]).is_empty());
    let answer = Message::PunchAck { nonce: [0; 8] }.encode(&[0; 16]);
    assert!(rig.udp(TARGET_AT, &answer).is_empty());
}

#[test]
fn keep_alives_need_the_token_tag_a_growing_counter_and_a_live_registration() {
    let mut rig = Rig::new(|_| {});
    let r = reg(&kp(1), "Alice Smith@Gilgamesh", T0);
    let p = rig.parts(&r);
    let out = rig.udp(TARGET_AT, &keepalive(&p, 10));
    assert_eq!(
        out.iter()
            .map(|d| Message::decode(&d.bytes).unwrap())
            .collect::<Vec<_>>(),
        vec![Message::KeepAliveAnswer {
            counter: 10,
            observed: addr(TARGET_AT)
        }]
    );
    assert_eq!(rig.app.udp.mappings(), 1);
    // A forged tag, a replay, an older counter: no answer.
    let forged = Message::KeepAlive {
        auth: p.auth,
        counter: 11,
    }
    .encode(&[9; 16]);
    assert!(rig.udp(FETCHER_AT, &forged).is_empty());
    assert!(rig.udp(FETCHER_AT, &keepalive(&p, 10)).is_empty());
    assert!(rig.udp(FETCHER_AT, &keepalive(&p, 9)).is_empty());
    assert_eq!(rig.udp(TARGET_AT, &keepalive(&p, 11)).len(), 1);
    // After unregistering, the token's keep-alives are refused and the mapping goes.
    let u = Unregister::sign(
        &kp(1),
        phonebook_proto::PlayerName::parse("Alice Smith@Gilgamesh").unwrap(),
        T0 + 1,
    )
    .to_json();
    let rep = rig.send(
        format!(
            "DELETE /api/unregister HTTP/1.1\r\nContent-Length: {}\r\n\r\n{u}",
            u.len()
        )
        .as_bytes(),
    );
    assert_eq!(rep.status, 200);
    assert!(rig.udp(TARGET_AT, &keepalive(&p, 12)).is_empty());
    let now = rig.now;
    rig.app.sweep_udp(now);
    assert_eq!(rig.app.udp.mappings(), 0);
}

#[test]
fn a_punch_request_is_forwarded_through_the_targets_mapping_tagged_for_the_target() {
    let mut rig = Rig::new(|_| {});
    let t = rig.parts(&reg(&kp(1), "Alice Smith@Gilgamesh", T0));
    let f = rig.parts(&friends_reg(&kp(2), "Bob Jones@Gilgamesh", vec![], T0));
    // No keep-alive yet: the target cannot be told.
    let out = rig.udp(FETCHER_AT, &punch(&f, 1, "alice smith@gilgamesh"));
    assert_eq!(
        Message::decode(&out[0].bytes),
        Ok(Message::PunchAnswer {
            counter: 1,
            status: PunchStatus::NoPath
        })
    );
    rig.udp(TARGET_AT, &keepalive(&t, 1));
    let out = rig.udp(FETCHER_AT, &punch(&f, 2, "alice smith@gilgamesh"));
    assert_eq!(out.len(), 2);
    let forward = out.iter().find(|d| d.to == addr(TARGET_AT)).unwrap();
    assert!(
        phonebook_proto::udp::tag_ok(&t.key, &forward.bytes),
        "tagged with the target's key"
    );
    assert!(!phonebook_proto::udp::tag_ok(&f.key, &forward.bytes));
    assert_eq!(
        Message::decode(&forward.bytes),
        Ok(Message::PunchForward {
            nonce: [7; 8],
            requester: kp(2).public(),
            addrs: [
                Some(addr(FETCHER_AT)),
                Some(addr("[2001:db8::5]:7000")),
                None
            ],
        })
    );
    let answer = out.iter().find(|d| d.to == addr(FETCHER_AT)).unwrap();
    assert_eq!(
        Message::decode(&answer.bytes),
        Ok(Message::PunchAnswer {
            counter: 2,
            status: PunchStatus::Forwarded
        })
    );
    // The same request again (a replay): dropped.
    assert!(
        rig.udp(FETCHER_AT, &punch(&f, 2, "alice smith@gilgamesh"))
            .is_empty()
    );
}

#[test]
fn a_stranger_gets_the_bytes_of_an_absent_player_and_reaches_nobody() {
    let mut rig = Rig::new(|_| {});
    let friend = kp(3).public();
    let t = rig.parts(&friends_reg(
        &kp(1),
        "Alice Smith@Gilgamesh",
        vec![friend],
        T0,
    ));
    rig.udp(TARGET_AT, &keepalive(&t, 1));
    let stranger = rig.parts(&friends_reg(&kp(2), "Bob Jones@Gilgamesh", vec![], T0));
    let hidden = rig.udp(FETCHER_AT, &punch(&stranger, 5, "Alice Smith@Gilgamesh"));
    let absent = rig.udp(FETCHER_AT, &punch(&stranger, 6, "Nobody Here@Gilgamesh"));
    assert_eq!(hidden.len(), 1, "no forward to the hidden player");
    assert_eq!(hidden[0].to, addr(FETCHER_AT));
    assert_eq!(absent.len(), 1);
    // Same status; the bytes differ only in the echoed counter.
    let mut h = hidden[0].bytes.clone();
    let a = absent[0].bytes.clone();
    h[5..13].copy_from_slice(&6u64.to_be_bytes());
    assert_eq!(h, a, "hidden and absent answers are the same bytes");
    assert!(matches!(
        Message::decode(&a),
        Ok(Message::PunchAnswer {
            status: PunchStatus::Unknown,
            ..
        })
    ));
    // The friend is forwarded.
    let fr = rig.parts(&friends_reg(&kp(3), "Carol Lee@Gilgamesh", vec![], T0));
    let out = rig.udp(FETCHER_AT, &punch(&fr, 1, "Alice Smith@Gilgamesh"));
    assert!(out.iter().any(|d| d.to == addr(TARGET_AT)));
    // An unregistered sender (no valid token) gets nothing at all.
    let fake = TokenParts {
        auth: phonebook_proto::udp::Auth {
            slot: 0,
            timestamp: T0,
        },
        key: [0; 16],
    };
    assert!(
        rig.udp(FETCHER_AT, &punch(&fake, 9, "Alice Smith@Gilgamesh"))
            .is_empty()
    );
}

#[test]
fn punch_requests_are_rate_limited_per_requester() {
    let mut rig = Rig::new(|c| c.punch_rate = 1);
    let t = rig.parts(&reg(&kp(1), "Alice Smith@Gilgamesh", T0));
    rig.udp(TARGET_AT, &keepalive(&t, 1));
    let f = rig.parts(&friends_reg(&kp(2), "Bob Jones@Gilgamesh", vec![], T0));
    let mut answered = 0;
    for c in 1..=20 {
        if !rig
            .udp(FETCHER_AT, &punch(&f, c, "Alice Smith@Gilgamesh"))
            .is_empty()
        {
            answered += 1;
        }
    }
    // A burst of 4 x punch-rate, then nothing within the same millisecond.
    assert_eq!(answered, 4);
    assert!(
        rig.app
            .metrics
            .udp_count(crate::metrics::UdpEvent::DroppedRateLimited)
            >= 16
    );
}

/// Several instances (issue 13): without a mapping here, a visible target's punch request is
/// handed to the other instances; the one holding the mapping forwards it, after checking the
/// lookup rules again with its own table.
#[test]
fn without_a_mapping_here_a_punch_request_is_handed_to_the_other_instances() {
    use crate::bus::codec::Message as Bus;
    let mut a = Rig::new(|_| {});
    a.app.bus = Some(crate::bus::Side::new());
    a.parts(&reg(&kp(1), "Alice Smith@Gilgamesh", T0));
    let f = a.parts(&friends_reg(&kp(2), "Bob Jones@Gilgamesh", vec![], T0));
    // The bus is down: no path, nothing queued.
    let out = a.udp(FETCHER_AT, &punch(&f, 1, "Alice Smith@Gilgamesh"));
    assert!(matches!(
        Message::decode(&out[0].bytes),
        Ok(Message::PunchAnswer {
            status: PunchStatus::NoPath,
            ..
        })
    ));
    assert!(a.app.bus.as_ref().unwrap().outbox.is_empty());
    // Up: handed over, answered `forwarded`.
    a.app.bus.as_mut().unwrap().up = true;
    let out = a.udp(FETCHER_AT, &punch(&f, 2, "Alice Smith@Gilgamesh"));
    assert_eq!(out.len(), 1, "nothing sent to anyone but the requester");
    assert!(matches!(
        Message::decode(&out[0].bytes),
        Ok(Message::PunchAnswer {
            status: PunchStatus::Forwarded,
            ..
        })
    ));
    let side = a.app.bus.as_mut().unwrap();
    let (dest, bytes) = side.outbox.pop().unwrap();
    assert_eq!(dest, crate::bus::Dest::All);
    let (from, msg) = Bus::decode(&bytes).unwrap();
    assert_eq!(from, side.me);
    let Bus::Punch {
        target,
        target_key,
        requester,
        nonce,
        addrs,
    } = msg
    else {
        panic!("a punch message")
    };
    assert_eq!(target_key, *kp(1).public().as_bytes());
    assert_eq!(requester, *kp(2).public().as_bytes());
    assert_eq!(addrs[0], Some(addr(FETCHER_AT)));
    // A hidden or absent target is never handed over.
    let out = a.udp(FETCHER_AT, &punch(&f, 3, "Nobody Here@Gilgamesh"));
    assert!(matches!(
        Message::decode(&out[0].bytes),
        Ok(Message::PunchAnswer {
            status: PunchStatus::Unknown,
            ..
        })
    ));
    assert!(a.app.bus.as_ref().unwrap().outbox.is_empty());

    // Instance B holds the same records (the test registers them again) and the mapping.
    let mut b = Rig::new(|_| {});
    let tb = b.parts(&reg(&kp(1), "Alice Smith@Gilgamesh", T0));
    b.parts(&friends_reg(&kp(2), "Bob Jones@Gilgamesh", vec![], T0));
    let now = b.now;
    assert!(
        b.app
            .punch_from_bus(&target, target_key, &requester, nonce, addrs, now)
            .is_none(),
        "no mapping here either: nothing"
    );
    b.udp(TARGET_AT, &keepalive(&tb, 1));
    let d = b
        .app
        .punch_from_bus(&target, target_key, &requester, nonce, addrs, now)
        .expect("forwarded by the mapping's holder");
    assert_eq!(d.to, addr(TARGET_AT));
    assert!(phonebook_proto::udp::tag_ok(&tb.key, &d.bytes));
    // Another key under that name, or a requester the target hides from: nothing.
    assert!(
        b.app
            .punch_from_bus(&target, [9; 32], &requester, nonce, addrs, now)
            .is_none()
    );
    let hidden = b.parts(&friends_reg(&kp(4), "Dana Hide@Gilgamesh", vec![], T0));
    b.udp("198.51.100.21:40000", &keepalive(&hidden, 1));
    let hidden_id =
        phonebook_proto::LookupId::of(&PlayerName::parse("Dana Hide@Gilgamesh").unwrap());
    assert!(
        b.app
            .punch_from_bus(
                &hidden_id,
                *kp(4).public().as_bytes(),
                &requester,
                nonce,
                addrs,
                now
            )
            .is_none(),
        "the lookup rules hold at the forwarding instance too"
    );
}

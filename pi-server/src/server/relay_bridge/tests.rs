//! Bridged sessions between two (or three) relay hubs, the bus played by hand.

use super::*;

type BusRx = async_channel::Receiver<(Dest, Vec<u8>)>;

struct Side {
    hub: Hub,
    me: Instance,
    bus: BusRx,
}

fn side(n: u8, max: usize) -> Side {
    let (tx, rx) = async_channel::bounded(64);
    let me = Instance([n; 8]);
    Side {
        hub: Hub::new(4, 1_000_000, Bridges::new(Some(me), Some(tx), max, 60_000)),
        me,
        bus: rx,
    }
}

fn peer(k: u8) -> RelayPeer {
    RelayPeer {
        slot: u32::from(k),
        key: [k; 32],
    }
}

fn target(k: u8) -> crate::api::relay::RelayTarget {
    crate::api::relay::RelayTarget {
        peer: peer(k),
        lookup_id: phonebook_proto::LookupId([k; 32]),
        call: None,
    }
}

/// The next bus message of `s`: its destination and bytes.
fn next(s: &Side) -> (Dest, Vec<u8>) {
    s.bus.try_recv().expect("a bus message")
}

/// Plays a `Bridged` message from `from` into `to`.
fn play(from: &Side, bytes: &[u8], to: &mut Side) -> Counts {
    let (sender, msg) = Message::decode(bytes).unwrap();
    assert_eq!(sender, from.me);
    let Message::Bridged {
        bridge,
        to_origin,
        frame,
    } = msg
    else {
        panic!("not bridged: {msg:?}")
    };
    to.hub.on_bridged(sender, bridge, to_origin, frame, 1)
}

fn frame_of(rx: &async_channel::Receiver<Vec<u8>>) -> Vec<u8> {
    rx.try_recv().expect("a frame")
}

fn decode(b: &[u8]) -> Frame<'_> {
    Frame::decode(b).unwrap().unwrap().0
}

/// A opens for target 7 on behalf of connection 100 (session 1); B answers with its ticket
/// (its connection 200 is the target). Returns the receivers of 100 and 200, B's ticket.
fn bridged(
    a: &mut Side,
    b: &mut Side,
) -> (
    async_channel::Receiver<Vec<u8>>,
    async_channel::Receiver<Vec<u8>>,
) {
    let r = a.hub.attach(100, peer(1));
    let t = b.hub.attach(200, peer(7));
    assert!(
        a.hub
            .open_elsewhere(100, 1, [1; 32], &target(7), [9; 16], 0)
    );
    let (dest, open) = next(a);
    assert_eq!(dest, Dest::All);
    let Ok((
        from,
        Message::RelayOpen {
            bridge,
            requester,
            target: id,
            target_key,
        },
    )) = Message::decode(&open)
    else {
        panic!("a relay open")
    };
    assert_eq!(
        (from, requester, id, target_key),
        (a.me, [1; 32], target(7).lookup_id, [7; 32])
    );
    assert!(
        b.hub
            .answer_elsewhere(from, bridge, requester, peer(7), [8; 16], 0)
    );
    // The target accepts B's ticket: the `Opened` crosses to A, which pairs its requester.
    let Accepted::Paired(opened) = b.hub.core.accept(200, 9, [8; 16]) else {
        panic!("paired at B")
    };
    assert!(b.hub.send(opened));
    let (dest, bytes) = next(b);
    assert_eq!(dest, Dest::To(a.me));
    assert_eq!(play(b, &bytes, a).paired, 1);
    assert_eq!(decode(&frame_of(&r)), Frame::Opened { session: 1 });
    (r, t)
}

#[test]
fn a_bridged_session_carries_data_both_ways_and_its_close() {
    let (mut a, mut b) = (side(1, 8), side(2, 8));
    let (r, t) = bridged(&mut a, &mut b);
    // Requester -> target.
    let o = a.hub.core.data(100, 1, b"to the target").unwrap();
    assert!(a.hub.send(o));
    let (dest, bytes) = next(&a);
    assert_eq!(dest, Dest::To(b.me));
    play(&a, &bytes, &mut b);
    assert_eq!(
        decode(&frame_of(&t)),
        Frame::Data {
            session: 9,
            payload: b"to the target"
        }
    );
    // Target -> requester.
    let o = b.hub.core.data(200, 9, b"back").unwrap();
    assert!(b.hub.send(o));
    let (_, bytes) = next(&b);
    play(&b, &bytes, &mut a);
    assert_eq!(
        decode(&frame_of(&r)),
        Frame::Data {
            session: 1,
            payload: b"back"
        }
    );
    // The requester closes: the target hears it, and both halves are let go.
    let o = a.hub.core.close(100, 1, CloseReason::Normal).unwrap();
    assert!(a.hub.send(o));
    let (_, bytes) = next(&a);
    assert_eq!(play(&a, &bytes, &mut b).paired, -1);
    assert_eq!(
        decode(&frame_of(&t)),
        Frame::Close {
            session: 9,
            reason: CloseReason::Normal
        }
    );
    assert_eq!(a.hub.sweep_bridges(2, 10_000), 0);
    assert_eq!(b.hub.sweep_bridges(2, 10_000), 0);
    assert_eq!((a.hub.bridges.len(), b.hub.bridges.len()), (0, 0));
    assert!(a.bus.is_empty() && b.bus.is_empty(), "nothing more to say");
}

#[test]
fn a_second_answer_is_told_close_and_late_frames_get_gone() {
    let (mut a, mut b, mut c) = (side(1, 8), side(2, 8), side(3, 8));
    let (_r, _t) = bridged(&mut a, &mut b);
    // C also told a target and it accepted: A already paired with B, so C hears `Close`.
    let late = Message::Bridged {
        bridge: 1,
        to_origin: true,
        frame: Frame::Opened { session: 0 },
    }
    .encode(c.me);
    assert_eq!(play(&c, &late, &mut a), Counts::default());
    let (dest, bytes) = next(&a);
    assert_eq!(dest, Dest::To(c.me));
    let Ok((
        _,
        Message::Bridged {
            frame,
            to_origin: false,
            ..
        },
    )) = Message::decode(&bytes)
    else {
        panic!("a bridged close")
    };
    assert!(matches!(
        frame,
        Frame::Close {
            reason: CloseReason::Normal,
            ..
        }
    ));
    // Data for a bridge A never had: answered `gone`; a Close for one: silence.
    let stray = Message::Bridged {
        bridge: 99,
        to_origin: true,
        frame: Frame::Data {
            session: 0,
            payload: b"x",
        },
    }
    .encode(c.me);
    play(&c, &stray, &mut a);
    let (_, bytes) = next(&a);
    assert!(matches!(
        Message::decode(&bytes),
        Ok((
            _,
            Message::Bridged {
                bridge: 99,
                frame: Frame::Close {
                    reason: CloseReason::Gone,
                    ..
                },
                ..
            }
        ))
    ));
    let stray_close = Message::Bridged {
        bridge: 99,
        to_origin: true,
        frame: Frame::Close {
            session: 0,
            reason: CloseReason::Gone,
        },
    }
    .encode(c.me);
    play(&c, &stray_close, &mut a);
    assert!(a.bus.is_empty());
    let _ = &mut c;
}

#[test]
fn unanswered_and_silent_bridges_are_let_go_and_their_number_is_bounded() {
    let mut a = side(1, 1);
    let _r = a.hub.attach(100, peer(1));
    assert!(
        a.hub
            .open_elsewhere(100, 1, [1; 32], &target(7), [9; 16], 0)
    );
    let _ = next(&a);
    // At most one bridge.
    assert!(
        !a.hub
            .open_elsewhere(100, 2, [1; 32], &target(8), [10; 16], 0)
    );
    assert!(!a.hub.bridge_room());
    // Nobody answered: kept through the accept time and the grace, then let go.
    assert_eq!(a.hub.sweep_bridges(10_000 + GRACE_MS, 10_000), 0);
    assert_eq!(a.hub.bridges.len(), 1);
    a.hub.sweep_bridges(10_001 + GRACE_MS, 10_000);
    assert_eq!(a.hub.bridges.len(), 0);

    // A paired bridge that falls silent (the other instance died) is let go after the idle
    // time; the requester hears `gone`.
    let (mut a, mut b) = (side(1, 8), side(2, 8));
    let (r, _t) = bridged(&mut a, &mut b);
    a.hub.bridges.tick(60_001);
    assert_eq!(a.hub.sweep_bridges(60_002, 10_000), 1);
    assert_eq!(
        decode(&frame_of(&r)),
        Frame::Close {
            session: 1,
            reason: CloseReason::Gone
        }
    );
    // And B is told, so its target hears it too.
    let (dest, bytes) = next(&a);
    assert_eq!(dest, Dest::To(b.me));
    assert_eq!(play(&a, &bytes, &mut b).paired, -1);
}
